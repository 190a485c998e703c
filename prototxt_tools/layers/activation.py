"""Element-wise (neuron) layers, PReLU and Softmax.

Caffe's NeuronLayer takes exactly one bottom and one top of the bottom's shape. They all run in
place correctly in the forward pass except AbsVal, which refuses it. (Log, Power, BNLL and Clip
read the bottom again in their backward pass, so their gradients go wrong in place; Caffe does
not stop that.)
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

from ._np import np
from ._util import axis_of, bottom, fmt, has, legacy_4d, top_count, unknown
from .base import IN_PLACE_FORBIDDEN, IN_PLACE_OK, TRAIN, LayerSpec, Problem, ShapeContext, \
    TorchCode, TorchContext, TorchUnsupported, elements, fail, product, register, torch_helper, \
    torch_number


# -- forward helpers (shared with the other layer modules) ----------------------------------------
#
# Forward passes keep the input's dtype (float32 unless the executor runs in float64): scalar
# parameters are Python floats, which NumPy applies without upcasting the arrays. A layer may
# compute into bottom i only when i is in ``context.writable``; otherwise bottoms are never
# modified.

def out_buffer(bottoms: list, context: Any, index: int = 0) -> Any:
    """Bottom ``index`` when the layer may overwrite it (compute the top into it), else None
    (NumPy allocates a new array)."""
    return bottoms[index] if index in context.writable else None


def canonical(axis: int, ndim: int, what: str = "axis") -> int:
    """Blob::CanonicalAxisIndex for an array of ``ndim`` axes; ValueError out of range."""
    if not -ndim <= axis < ndim:
        raise ValueError(f"{what} {axis} is out of range for an input with {ndim} axes")
    return axis + ndim if axis < 0 else axis


def scalar(value: float, dtype: Any) -> Any:
    """A parameter as a NumPy scalar of the computation's dtype (Caffe's ``Dtype(value)``)."""
    return np.dtype(dtype).type(value)


def caffe_sigmoid(x: Any, out: Any = None) -> Any:
    """SigmoidLayer's formula in final Caffe: 0.5 tanh(0.5 x) + 0.5 (no overflow)."""
    y = np.multiply(x, 0.5, out=out)
    np.tanh(y, out=y)
    y *= 0.5
    y += 0.5
    return y


def caffe_softmax(x: Any, axis: int, out: Any = None) -> Any:
    """SoftmaxLayer::Forward_cpu: subtract the maximum along ``axis``, exponentiate, divide by
    the sum along ``axis``."""
    peak = np.max(x, axis=axis, keepdims=True)
    y = np.subtract(x, peak, out=out)
    np.exp(y, out=y)
    y /= np.sum(y, axis=axis, keepdims=True)
    return y


def caffe_power(x: Any, power: float, scale: float, shift: float, out: Any = None) -> Any:
    """PowerLayer::Forward_cpu: (shift + scale x) ^ power, with Caffe's shortcuts: when
    power * scale == 0 the output is the constant 1 (power 0) or shift ^ power; each step runs
    only when it changes something."""
    dtype = x.dtype
    if power * scale == 0:
        value = 1.0 if power == 0 else scalar(shift, dtype) ** scalar(power, dtype)
        y = np.empty_like(x) if out is None else out
        y.fill(value)
        return y
    y = caffe_affine(x, scale, shift, out)
    if power != 1:
        np.power(y, scalar(power, dtype), out=y)
    return y


def caffe_affine(x: Any, scale: float, shift: float, out: Any = None) -> Any:
    """Copy x, then scale (only when scale != 1), then add shift (only when shift != 0), as
    Power and Log layers do."""
    if out is None:
        y = x.copy()
    else:
        y = out
        if y is not x:
            np.copyto(y, x)
    if scale != 1:
        y *= scalar(scale, x.dtype)
    if shift != 0:
        y += scalar(shift, x.dtype)
    return y


# -- PyTorch helpers (pasted into the exported modules that call them) --------------------------

torch_helper("clip_like_caffe", '''
def clip_like_caffe(x, low, high):
    """Caffe's Clip: max(low, min(x, high)) with C++'s std::max and std::min, so a NaN
    becomes low (torch.clamp keeps it) and low > high gives low everywhere (torch.clamp
    gives high)."""
    return torch.where(torch.isnan(x), low, x.clamp(max=high).clamp(min=low))
''')


def _affine_torch(scale: float, shift: float) -> tuple:
    """caffe_affine in PyTorch: (an expression, the same as an in-place chain on ``{b0}``)
    computing scale x + shift, each step only when it changes something."""
    expression, inplace = "{b0}", "{b0}"
    if scale != 1:
        expression = f"{torch_number(scale)} * {expression}"
        inplace += f".mul_({torch_number(scale)})"
    if shift != 0:
        sign = "-" if shift < 0 else "+"
        expression += f" {sign} {torch_number(abs(shift))}"
        inplace += f".add_({torch_number(shift)})"
    return expression, inplace


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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        return [np.abs(bottoms[0], out=out_buffer(bottoms, context))]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        return TorchCode("torch.abs({b0})", inplace="{b0}.abs_()", fresh=True)


@register
class BNLLSpec(NeuronSpec):
    """y = log(1 + exp(x)), computed stably."""

    type = "BNLL"

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        # Caffe: x > 0 ? x + log(1 + exp(-x)) : log(1 + exp(x)), i.e. log(1 + exp(-|x|)) plus
        # max(x, 0) -- one formula for both branches, without overflow.
        x = bottoms[0]
        positive = np.maximum(x, 0)
        y = np.abs(x, out=out_buffer(bottoms, context))
        np.negative(y, out=y)
        np.exp(y, out=y)
        np.log1p(y, out=y)
        y += positive
        return [y]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        # F.softplus returns x itself above 20, where log1p(exp(-x)) < 2e-9 is below float32
        # resolution of x: the same values as Caffe's formula.
        return TorchCode("F.softplus({b0})", fresh=True)


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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        # Caffe: std::max(min, std::min(x, max)). std::max(min, NaN) returns min, which is
        # what fmax does (np.maximum would propagate the NaN).
        p = layer.clip_param
        dtype = bottoms[0].dtype
        y = np.minimum(bottoms[0], scalar(p.max, dtype), out=out_buffer(bottoms, context))
        return [np.fmax(y, scalar(p.min, dtype), out=y)]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        p = layer.clip_param
        return TorchCode(f"clip_like_caffe({{b0}}, {torch_number(p.min)}, {torch_number(p.max)})",
                         helpers=("clip_like_caffe",), fresh=True)


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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """TEST: the input itself (Caffe copies it; nothing here writes it, and the executor
        tracks shared buffers). TRAIN: Caffe's caffe_rng_bernoulli(1 - ratio) mask from
        ``context.rng``, kept values scaled by 1 / (1 - ratio) (Caffe scales at train time)."""
        x = bottoms[0]
        if context.phase != TRAIN:
            return [x]
        ratio = layer.dropout_param.dropout_ratio
        if not 0 <= ratio < 1:
            raise ValueError(f"dropout_ratio {ratio:g} is outside [0, 1)")
        rng = context.rng if context.rng is not None else np.random.default_rng()
        keep = rng.random(x.shape) < 1.0 - ratio
        scale = scalar(1.0 / (1.0 - ratio), x.dtype)
        y = np.multiply(x, scale, out=out_buffer(bottoms, context))
        y *= keep
        return [y]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """nn.Dropout: the identity in eval mode (Caffe's TEST); in train mode it drops with
        the same ratio and scales the kept values by 1 / (1 - ratio), as Caffe's TRAIN does.
        A ratio nn.Dropout refuses (outside [0, 1]) gives the identity Caffe's TEST computes."""
        ratio = layer.dropout_param.dropout_ratio
        if not 0 <= ratio <= 1:
            return TorchCode("{b0}")
        return TorchCode("{m}({b0})", module=f"nn.Dropout({torch_number(ratio)})")


@register
class ELUSpec(NeuronSpec):
    """y = x for x > 0, alpha (exp(x) - 1) otherwise."""

    type = "ELU"
    param_field = "elu_param"

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        # Caffe: max(x, 0) + alpha * (exp(min(x, 0)) - 1)
        x = bottoms[0]
        negative = np.minimum(x, 0)
        np.exp(negative, out=negative)
        negative -= 1
        negative *= scalar(layer.elu_param.alpha, x.dtype)
        y = np.maximum(x, 0, out=out_buffer(bottoms, context))
        y += negative
        return [y]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        alpha = layer.elu_param.alpha
        if alpha == 1:
            return TorchCode("F.elu({b0})", inplace="F.elu_({b0})")
        number = torch_number(alpha)
        # (in place, autograd computes the gradient from the output: only for alpha >= 0)
        return TorchCode(f"F.elu({{b0}}, {number})",
                         inplace=f"F.elu_({{b0}}, {number})" if alpha >= 0 else None)


def _base_problems(layer: Any, field: str) -> Iterator[Problem]:
    base = getattr(layer, field).base
    if base != -1 and base <= 0:
        yield Problem("L090", f"base {base:g} must be positive (or -1 for e)", (field, "base"))


def _exp_scales(p: Any, dtype: Any) -> tuple:
    """ExpLayer's constants in ``dtype``: y = outer * exp(inner x), inner = ln(base) * scale
    (ln(e) = 1 for base -1), outer = base ^ shift (1 when shift is 0)."""
    base, one = scalar(p.base, dtype), scalar(1, dtype)
    inner = (one if p.base == -1 else np.log(base)) * scalar(p.scale, dtype)
    if p.shift == 0:
        return inner, one
    shift = scalar(p.shift, dtype)
    return inner, np.exp(shift) if p.base == -1 else base ** shift


def _log_base_scale(p: Any, dtype: Any) -> Any:
    """LogLayer's 1 / ln(base) in ``dtype`` (1 for base -1, the natural log)."""
    one = scalar(1, dtype)
    return one if p.base == -1 else one / np.log(scalar(p.base, dtype))


@register
class ExpSpec(NeuronSpec):
    """y = base ^ (shift + scale x); base -1 means e."""

    type = "Exp"
    param_field = "exp_param"

    def check(self, layer: Any) -> Iterator[Problem]:
        yield from _base_problems(layer, "exp_param")

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        # ExpLayer: y = outer_scale * exp(inner_scale * x), inner_scale = log(base) * scale,
        # outer_scale = base ^ shift (e ^ shift for base -1; 1 when shift is 0).
        p = layer.exp_param
        x = bottoms[0]
        if p.base != -1 and not p.base > 0:
            raise ValueError(f"exp_param.base {p.base:g} must be positive (or -1 for e)")
        inner, outer = _exp_scales(p, x.dtype)
        y = out_buffer(bottoms, context)
        if inner == 1:
            y = np.exp(x, out=y)
        else:
            y = np.multiply(x, inner, out=y)
            np.exp(y, out=y)
        if outer != 1:
            y *= outer
        return [y]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """exp(inner x) * outer with the forward's float32 constants: inner = ln(base) scale,
        outer = base ^ shift."""
        p = layer.exp_param
        if p.base != -1 and not p.base > 0:
            raise TorchUnsupported(f"exp_param.base {p.base:g} is not positive (Caffe aborts)")
        inner, outer = _exp_scales(p, "float32")
        if inner == 1:
            expression, inplace = "torch.exp({b0})", "{b0}.exp_()"
        else:
            number = torch_number(inner)
            expression, inplace = f"torch.exp({number} * {{b0}})", f"{{b0}}.mul_({number}).exp_()"
        if outer != 1:  # (torch.exp keeps its output for the gradient: no in-place after it)
            return TorchCode(f"{expression} * {torch_number(outer)}", fresh=True)
        return TorchCode(expression, inplace=inplace)


@register
class LogSpec(NeuronSpec):
    """y = log_base(shift + scale x); base -1 means e."""

    type = "Log"
    param_field = "log_param"

    def check(self, layer: Any) -> Iterator[Problem]:
        yield from _base_problems(layer, "log_param")

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        # LogLayer: y = log(shift + scale x) / log(base) (natural log for base -1).
        p = layer.log_param
        x = bottoms[0]
        if p.base != -1 and not p.base > 0:
            raise ValueError(f"log_param.base {p.base:g} must be positive (or -1 for e)")
        base_scale = _log_base_scale(p, x.dtype)
        y = out_buffer(bottoms, context)
        if p.scale == 1 and p.shift == 0:
            y = np.log(x, out=y)
        else:
            y = caffe_affine(x, p.scale, p.shift, out=y)
            np.log(y, out=y)
        if base_scale != 1:
            y *= base_scale
        return [y]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """log(scale x + shift) * (1 / ln(base)), each step only where the forward runs it."""
        p = layer.log_param
        if p.base != -1 and not p.base > 0:
            raise TorchUnsupported(f"log_param.base {p.base:g} is not positive (Caffe aborts)")
        inner, inplace = _affine_torch(p.scale, p.shift)
        expression, inplace = f"torch.log({inner})", inplace + ".log_()"
        base_scale = _log_base_scale(p, "float32")
        if base_scale != 1:
            expression += f" * {torch_number(base_scale)}"
            inplace += f".mul_({torch_number(base_scale)})"
        return TorchCode(expression, inplace=inplace, fresh=True)


@register
class PowerSpec(NeuronSpec):
    """y = (shift + scale x) ^ power."""

    type = "Power"
    param_field = "power_param"

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        p = layer.power_param
        return [caffe_power(bottoms[0], p.power, p.scale, p.shift,
                            out=out_buffer(bottoms, context))]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        p = layer.power_param
        if p.power * p.scale == 0:  # Caffe's shortcut: a constant
            if p.power == 0:
                return TorchCode("torch.ones_like({b0})", fresh=True)
            value = scalar(p.shift, "float32") ** scalar(p.power, "float32")
            return TorchCode(f"torch.full_like({{b0}}, {torch_number(value)})", fresh=True)
        expression, inplace = _affine_torch(p.scale, p.shift)
        if p.power != 1:
            if expression != "{b0}":
                expression = f"({expression})"
            expression += f" ** {torch_number(p.power)}"
            inplace += f".pow_({torch_number(p.power)})"
        if expression == "{b0}":  # the identity (Caffe copies)
            return TorchCode(expression)
        return TorchCode(expression, inplace=inplace, fresh=True)


@register
class PReLUSpec(NeuronSpec):
    """y = max(0, x) + a min(0, x) with a learned slope per channel (axis 1), or one shared
    slope stored as a 0-D blob when channel_shared."""

    type = "PReLU"
    param_field = "prelu_param"

    def macs(self, layer: Any, bottoms: list, tops: list) -> Optional[int]:
        """One per value: slope * x on the negative side (counted for every value)."""
        return elements(bottoms[0]) if bottoms else None

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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        # Caffe: max(x, 0) + slope[c] * min(x, 0), c the index on axis 1 (channels()).
        x = bottoms[0]
        if x.ndim < 2:
            raise ValueError(f"PReLU needs an input with at least 2 axes; got {x.shape}")
        slope = np.asarray(blobs[0], dtype=x.dtype)
        if layer.prelu_param.channel_shared:
            slope = slope.reshape(())
        else:
            if slope.size != x.shape[1]:
                raise ValueError(f"PReLU has {slope.size} slopes for {x.shape[1]} channels")
            slope = slope.reshape((x.shape[1],) + (1,) * (x.ndim - 2))
        negative = np.minimum(x, 0)
        negative *= slope
        y = np.maximum(x, 0, out=out_buffer(bottoms, context))
        y += negative
        return [y]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """nn.PReLU: one slope, or one per channel (axis 1), as Caffe's blob holds them."""
        if layer.prelu_param.channel_shared:
            module = "nn.PReLU()"
        else:
            x = context.bottom_shapes[0] if context.bottom_shapes else None
            channels = x[1] if x is not None and len(x) > 1 else None
            if channels is None and context.blob_shapes:
                channels = product(context.blob_shapes[0])
            if channels is None:
                raise TorchUnsupported("the number of channels is unknown (give --input-shape)")
            module = f"nn.PReLU({channels})"
        return TorchCode("{m}({b0})", module=module,
                         state={"weight": lambda blobs, fused: np.reshape(blobs[0], -1)},
                         fresh=True)


@register
class ReLUSpec(NeuronSpec):
    """y = max(0, x) + negative_slope min(0, x)."""

    type = "ReLU"
    param_field = "relu_param"

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        # Caffe: max(x, 0) + negative_slope * min(x, 0). With slope 0 the second term only
        # matters for -inf (0 * -inf = NaN in Caffe too), so it is kept literally.
        x = bottoms[0]
        slope = layer.relu_param.negative_slope
        if slope == 0 and not (x.size and np.min(x) == -np.inf):
            return [np.maximum(x, 0, out=out_buffer(bottoms, context))]
        negative = np.minimum(x, 0)
        with np.errstate(invalid="ignore"):  # 0 * -inf, deliberately
            negative *= scalar(slope, x.dtype)
        y = np.maximum(x, 0, out=out_buffer(bottoms, context))
        y += negative
        return [y]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """torch.relu with slope 0, else F.leaky_relu (x > 0 ? x : slope x). One value
        differs: Caffe computes max(x, 0) + slope min(x, 0), so -inf gives 0 * -inf = NaN
        where torch.relu gives 0."""
        slope = layer.relu_param.negative_slope
        if slope == 0:
            return TorchCode("torch.relu({b0})", inplace="torch.relu_({b0})")
        number = torch_number(slope)
        # (in place, autograd computes the gradient from the output: only for slope >= 0)
        inplace = f"F.leaky_relu_({{b0}}, {number})" \
            if layer.relu_param.negative_slope >= 0 else None
        return TorchCode(f"F.leaky_relu({{b0}}, {number})", inplace=inplace)


@register
class SigmoidSpec(NeuronSpec):
    """y = 1 / (1 + exp(-x))."""

    type = "Sigmoid"
    param_field = "sigmoid_param"

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        return [caffe_sigmoid(bottoms[0], out=out_buffer(bottoms, context))]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        return TorchCode("torch.sigmoid({b0})", inplace="torch.sigmoid_({b0})")


@register
class SwishSpec(NeuronSpec):
    """y = x sigmoid(beta x)."""

    type = "Swish"
    param_field = "swish_param"

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        # SwishLayer: its internal Sigmoid runs on beta * x, then y = x * sigmoid.
        x = bottoms[0]
        gate = np.multiply(x, scalar(layer.swish_param.beta, x.dtype))
        caffe_sigmoid(gate, out=gate)
        return [np.multiply(x, gate, out=out_buffer(bottoms, context))]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        beta = layer.swish_param.beta
        if beta == 1:
            return TorchCode("F.silu({b0})", inplace="F.silu({b0}, inplace=True)", fresh=True)
        gate = f"torch.sigmoid({torch_number(beta)} * {{b0}})"
        return TorchCode(f"{{b0}} * {gate}", inplace=f"{{b0}}.mul_({gate})", fresh=True)


@register
class TanHSpec(NeuronSpec):
    """y = tanh(x)."""

    type = "TanH"
    param_field = "tanh_param"

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        return [np.tanh(bottoms[0], out=out_buffer(bottoms, context))]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        return TorchCode("torch.tanh({b0})", inplace="torch.tanh_({b0})")


@register
class ThresholdSpec(NeuronSpec):
    """y = 1 if x > threshold else 0."""

    type = "Threshold"
    param_field = "threshold_param"

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        # Caffe: 1 if x > threshold else 0
        x = bottoms[0]
        above = np.greater(x, scalar(layer.threshold_param.threshold, x.dtype))
        y = out_buffer(bottoms, context)
        if y is None:
            return [above.astype(x.dtype)]
        np.copyto(y, above)
        return [y]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        # (a float32 tensor compared with a Python float compares in float32, as Caffe does)
        number = torch_number(layer.threshold_param.threshold)
        return TorchCode(f"({{b0}} > {number}).to({{b0}}.dtype)", fresh=True)


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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        x = bottoms[0]
        axis = canonical(layer.softmax_param.axis, x.ndim)
        return [caffe_softmax(x, axis, out=out_buffer(bottoms, context))]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        return TorchCode(f"F.softmax({{b0}}, dim={layer.softmax_param.axis})")
