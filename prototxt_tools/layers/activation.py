"""Element-wise (neuron) layers, PReLU and Softmax.

Caffe's NeuronLayer takes exactly one bottom and one top of the bottom's shape. They all run in
place correctly in the forward pass except AbsVal, which refuses it. (Log, Power, BNLL and Clip
read the bottom again in their backward pass, so their gradients go wrong in place; Caffe does
not stop that.)
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

from ._util import axis_of, bottom, fmt, has, legacy_4d, top_count, unknown
from .base import IN_PLACE_FORBIDDEN, IN_PLACE_OK, LayerSpec, Problem, ShapeContext, fail, \
    register


class NeuronSpec(LayerSpec):
    """Caffe's NeuronLayer: one bottom, one top of the same shape."""

    family = "activation"
    min_bottoms = max_bottoms = 1
    min_tops = max_tops = 1
    in_place = IN_PLACE_OK

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        return [bottom(bottoms, 0)] * top_count(self, layer)


@register
class AbsValSpec(NeuronSpec):
    """y = |x|. Caffe aborts when run in place (its backward needs the sign of x)."""

    type = "AbsVal"
    in_place = IN_PLACE_FORBIDDEN


@register
class BNLLSpec(NeuronSpec):
    """y = log(1 + exp(x)), computed stably."""

    type = "BNLL"


@register
class ClipSpec(NeuronSpec):
    """y = max(min, min(x, max))."""

    type = "Clip"
    param_field = "clip_param"

    def check(self, layer: Any) -> Iterator[Problem]:
        p = layer.clip_param
        for name in ("min", "max"):
            if not has(p, name):
                yield Problem("L090", f"clip_param.{name} is missing; Caffe's schema requires "
                                      f"both min and max", ("clip_param", name))
        if has(p, "min") and has(p, "max") and p.min > p.max:
            yield Problem("L090", f"min ({p.min:g}) is greater than max ({p.max:g}); every output "
                                  f"would be min", ("clip_param", "min"), "warning")


@register
class DropoutSpec(NeuronSpec):
    """Training: zeroes each value with probability dropout_ratio and scales the rest by
    1 / (1 - ratio); testing: identity."""

    type = "Dropout"
    param_field = "dropout_param"

    def check(self, layer: Any) -> Iterator[Problem]:
        ratio = layer.dropout_param.dropout_ratio
        field = ("dropout_param", "dropout_ratio")
        if ratio < 0 or ratio >= 1:
            yield Problem("L090", f"dropout_ratio {ratio:g} is outside [0, 1); Caffe scales the "
                                  f"kept values by 1 / (1 - ratio)", field)
        elif ratio == 0:
            yield Problem("L090", "dropout_ratio 0 makes Dropout a no-op (and Caffe's debug "
                                  "builds assert 0 < ratio < 1)", field, "warning")


@register
class ELUSpec(NeuronSpec):
    """y = x for x > 0, alpha (exp(x) - 1) otherwise."""

    type = "ELU"
    param_field = "elu_param"


def _base_problems(layer: Any, field: str) -> Iterator[Problem]:
    base = getattr(layer, field).base
    if base != -1 and base <= 0:
        yield Problem("L090", f"base {base:g} must be positive (or -1 for e)", (field, "base"))


@register
class ExpSpec(NeuronSpec):
    """y = base ^ (shift + scale x); base -1 means e."""

    type = "Exp"
    param_field = "exp_param"

    def check(self, layer: Any) -> Iterator[Problem]:
        yield from _base_problems(layer, "exp_param")


@register
class LogSpec(NeuronSpec):
    """y = log_base(shift + scale x); base -1 means e."""

    type = "Log"
    param_field = "log_param"

    def check(self, layer: Any) -> Iterator[Problem]:
        yield from _base_problems(layer, "log_param")


@register
class PowerSpec(NeuronSpec):
    """y = (shift + scale x) ^ power."""

    type = "Power"
    param_field = "power_param"


@register
class PReLUSpec(NeuronSpec):
    """y = max(0, x) + a min(0, x) with a learned slope per channel (axis 1), or one shared
    slope stored as a 0-D blob when channel_shared."""

    type = "PReLU"
    param_field = "prelu_param"

    def blob_count(self, layer: Any) -> int:
        return 1

    def _channels(self, x: tuple) -> Any:
        if len(x) < 2:
            fail("L090", f"PReLU needs an input with at least 2 axes (num, channels, ...); got "
                         f"{fmt(x)}", ("bottom", 0))
        return legacy_4d(x, "L090", "PReLU")[1]

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        x = bottom(bottoms, 0)
        if x is not None:
            self._channels(x)
        return [x] * top_count(self, layer)

    def blob_shapes(self, layer: Any, bottoms: list) -> Optional[list]:
        if layer.prelu_param.channel_shared:
            return [()]
        x = bottom(bottoms, 0)
        return [(x[1] if x is not None and 2 <= len(x) <= 4 else None,)]


@register
class ReLUSpec(NeuronSpec):
    """y = max(0, x) + negative_slope min(0, x)."""

    type = "ReLU"
    param_field = "relu_param"


@register
class SigmoidSpec(NeuronSpec):
    """y = 1 / (1 + exp(-x))."""

    type = "Sigmoid"
    param_field = "sigmoid_param"


@register
class SwishSpec(NeuronSpec):
    """y = x sigmoid(beta x)."""

    type = "Swish"
    param_field = "swish_param"


@register
class TanHSpec(NeuronSpec):
    """y = tanh(x)."""

    type = "TanH"
    param_field = "tanh_param"


@register
class ThresholdSpec(NeuronSpec):
    """y = 1 if x > threshold else 0."""

    type = "Threshold"
    param_field = "threshold_param"


@register
class SoftmaxSpec(LayerSpec):
    """Softmax along ``axis`` (default 1); correct in place (it copies x before working)."""

    type = "Softmax"
    family = "activation"
    param_field = "softmax_param"
    min_bottoms = max_bottoms = 1
    min_tops = max_tops = 1
    in_place = IN_PLACE_OK

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        x = bottom(bottoms, 0)
        if x is None:
            return unknown(self, layer)
        axis_of(layer.softmax_param.axis, x, ("softmax_param", "axis"))
        return [x] * top_count(self, layer)
