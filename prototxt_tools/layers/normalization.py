"""Normalisation layers: BatchNorm, LRN, MVN, and the per-channel affine layers Scale and Bias."""

from __future__ import annotations

from typing import Any, Iterator, Optional

from ._util import axis_of, bottom, differ, fmt, legacy_4d, top_count, unknown
from .base import IN_PLACE_OK, IN_PLACE_WRONG, CaffeCheckFailed, LayerSpec, Problem, Shape, \
    ShapeContext, fail, register


@register
class BatchNormSpec(LayerSpec):
    """Normalises each channel (axis 1) with batch or stored statistics. Three blobs: mean * s,
    variance * s (both (C,)) and the factor s ((1,)). No learnable affine: pair with Scale."""

    type = "BatchNorm"
    family = "normalization"
    param_field = "batch_norm_param"
    min_bottoms = max_bottoms = 1
    min_tops = max_tops = 1
    in_place = IN_PLACE_OK

    def blob_count(self, layer: Any) -> int:
        return 3

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        x = bottom(bottoms, 0)
        if x is not None and len(x) < 2:
            fail("L080", f"BatchNorm reads the channels from axis 1, so it needs an input with "
                         f"at least 2 axes; got {fmt(x)}", ("bottom", 0))
        return [x] * top_count(self, layer)

    def blob_shapes(self, layer: Any, bottoms: list) -> Optional[list]:
        x = bottom(bottoms, 0)
        channels = x[1] if x is not None and len(x) >= 2 else None
        return [(channels,), (channels,), (1,)]


@register
class LRNSpec(LayerSpec):
    """Local response normalisation across channels or within each channel, on 4-D input."""

    type = "LRN"
    family = "normalization"
    param_field = "lrn_param"
    min_bottoms = max_bottoms = 1
    min_tops = max_tops = 1
    in_place = IN_PLACE_WRONG  # it overwrites the input before multiplying by it again

    def check(self, layer: Any) -> Iterator[Problem]:
        size = layer.lrn_param.local_size
        if size % 2 != 1:
            yield Problem("L080", f"local_size {size} must be odd; Caffe's LRN only supports "
                                  f"odd window sizes", ("lrn_param", "local_size"))

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        x = bottom(bottoms, 0)
        if x is not None and len(x) != 4:
            fail("L080", f"LRN needs a 4-D input (num, channels, height, width); got {fmt(x)}",
                 ("bottom", 0))
        return [x] * top_count(self, layer)


@register
class MVNSpec(LayerSpec):
    """Mean (and variance) normalisation per sample and channel, or across channels. Caffe
    reshapes its top to (num, channels, height, width): a 2-D input (N, C) comes out as
    (N, C, 1, 1), and inputs with more than 4 axes are rejected."""

    type = "MVN"
    family = "normalization"
    param_field = "mvn_param"
    min_bottoms = max_bottoms = 1
    min_tops = max_tops = 1
    in_place = IN_PLACE_OK

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        x = bottom(bottoms, 0)
        if x is None:
            return unknown(self, layer)
        return [legacy_4d(x, "L080", "MVN")] * top_count(self, layer)


class AffineSpec(LayerSpec):
    """Scale and Bias: a parameter of shape bottom[0].shape[axis : axis + num_axes] (num_axes
    -1: to the end), either a learned blob (one bottom) or the second bottom, broadcast over
    the other axes. A 0-D parameter is a single scalar."""

    family = "normalization"
    min_bottoms = 1
    max_bottoms = 2
    min_tops = max_tops = 1
    in_place = IN_PLACE_OK

    def learned_blob_count(self, layer: Any) -> int:
        return 1 if len(layer.bottom) == 1 else 0

    def blob_count(self, layer: Any) -> int:
        return self.learned_blob_count(layer)

    def check(self, layer: Any) -> Iterator[Problem]:
        p = self.params(layer)
        if len(layer.bottom) <= 1 and p.num_axes < -1:
            yield Problem("L080", f"num_axes {p.num_axes} is invalid; it must be -1 (to the last "
                                  f"axis) or at least 0", (self.param_field, "num_axes"))

    def param_shape(self, layer: Any, bottoms: list) -> Shape:
        """The shape of the scale/bias: from bottom[0] with one bottom, bottom[1] with two.
        Fails where Caffe rejects the combination."""
        p = self.params(layer)
        x = bottom(bottoms, 0)
        if len(layer.bottom) <= 1 or len(bottoms) < 2:
            if x is None:
                return None
            axis = axis_of(p.axis, x, (self.param_field, "axis"))
            if p.num_axes < -1:
                return None
            if p.num_axes >= 0 and axis + p.num_axes > len(x):
                fail("L080", f"axis {p.axis} with num_axes {p.num_axes} reaches past the last "
                             f"axis of the input {fmt(x)}", (self.param_field, "num_axes"))
            end = len(x) if p.num_axes == -1 else axis + p.num_axes
            return tuple(x[axis:end])
        given = bottoms[1]
        if x is None or given is None:
            return given
        axis = 0 if len(given) == 0 else axis_of(p.axis, x, (self.param_field, "axis"))
        if axis + len(given) > len(x):
            fail("L080", f"bottom 1 {fmt(given)} applied from axis {axis} reaches past the last "
                         f"axis of bottom 0 {fmt(x)}", ("bottom", 1))
        for i, dim in enumerate(given):
            if differ(x[axis + i], dim):
                fail("L080", f"bottom 1 {fmt(given)} does not match bottom 0 {fmt(x)} at axis "
                             f"{axis + i} ({dim} vs {x[axis + i]})", ("bottom", 1))
        return given

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        self.param_shape(layer, bottoms)
        return [bottom(bottoms, 0)] * top_count(self, layer)

    def blob_shapes(self, layer: Any, bottoms: list) -> Optional[list]:
        try:
            shape = self.param_shape(layer, bottoms)
        except CaffeCheckFailed:  # a combination Caffe rejects leaves the blobs unknown
            shape = None
        return [shape] * self.blob_count(layer)


@register
class ScaleSpec(AffineSpec):
    """y = gamma * x (+ beta with bias_term, which defaults to false). Blobs: gamma (only with
    one bottom), then beta with bias_term, both of the parameter shape."""

    type = "Scale"
    param_field = "scale_param"

    def blob_count(self, layer: Any) -> int:
        return self.learned_blob_count(layer) + int(layer.scale_param.bias_term)

    def param_shape(self, layer: Any, bottoms: list) -> Shape:
        shape = super().param_shape(layer, bottoms)
        x = bottom(bottoms, 0)
        if layer.scale_param.bias_term and x is not None and len(layer.bottom) > 1:
            # The internal Bias layer checks the axis even for a scalar second bottom.
            axis_of(layer.scale_param.axis, x, ("scale_param", "axis"))
        return shape


@register
class BiasSpec(AffineSpec):
    """y = x + beta. One learned blob with one bottom; none with two."""

    type = "Bias"
    param_field = "bias_param"
