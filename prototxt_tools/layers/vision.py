"""Vision layers: Convolution, Deconvolution, Im2col, Pooling and SPP.

Convolution, Deconvolution and Im2col read ``convolution_param`` the way Caffe's
BaseConvolutionLayer does: kernel, stride, pad and dilation are each given once for every
spatial axis or once per spatial axis (the ``_h``/``_w`` forms only with two spatial axes), and
the spatial axes are the ones after ``axis`` (the channel axis, default 1). Output sizes use
C++ integer division, which truncates toward zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from ..schema import caffe_pb2
from ._util import axis_of, bottom, cdiv, fmt, has, has_errors, merge_same_shapes, top_count, \
    unknown
from .base import IN_PLACE_WRONG, CaffeCheckFailed, Dim, LayerSpec, Problem, ShapeContext, fail, \
    product, register

CONV = "convolution_param"
POOL = "pooling_param"
SPP_FIELD = "spp_param"

_PoolMethod = caffe_pb2.PoolingParameter
_SPPMethod = caffe_pb2.SPPParameter


# -- convolution geometry -------------------------------------------------------------------------

def _pair_problems(p: Any, what: str, base: str, limit_zero: bool) -> Iterator[Problem]:
    """kernel_h/kernel_w, stride_h/stride_w, pad_h/pad_w against kernel_size, stride, pad."""
    h, w = f"{what}_h", f"{what}_w"
    if not (has(p, h) or has(p, w)):
        return
    if len(getattr(p, base)):
        yield Problem("L010", f"{base} and {h}/{w} are both given; Caffe takes one or the other",
                      (CONV, base))
    if limit_zero:
        for name, other in ((h, w), (w, h)):
            if not has(p, name):
                yield Problem("L010", f"{other} is given without {name}; Caffe then reads {name} "
                                      f"as 0, and a {what} of 0 is rejected", (CONV, other))
            elif getattr(p, name) == 0:
                yield Problem("L010", f"{name} is 0; every {what} dimension must be at least 1",
                              (CONV, name))


def conv_geometry_problems(p: Any) -> Iterator[Problem]:
    """The kernel/stride/pad/dilation checks of BaseConvolutionLayer (and Im2col) that do not
    depend on the input."""
    yield from _pair_problems(p, "kernel", "kernel_size", True)
    if not (has(p, "kernel_h") or has(p, "kernel_w")):
        if not len(p.kernel_size):
            yield Problem("L010", "no kernel size: give kernel_size (once, or once per spatial "
                                  "axis) or kernel_h and kernel_w", (CONV,))
        for i, k in enumerate(p.kernel_size):
            if k == 0:
                yield Problem("L010", "kernel_size is 0; every kernel dimension must be at least 1",
                              (CONV, "kernel_size", i))
    yield from _pair_problems(p, "stride", "stride", True)
    if not (has(p, "stride_h") or has(p, "stride_w")):
        for i, s in enumerate(p.stride):
            if s == 0:
                yield Problem("L010", "stride is 0; every stride must be at least 1",
                              (CONV, "stride", i))
    # pad_h without pad_w is accepted (the other reads as 0); only mixing the forms is not.
    yield from _pair_problems(p, "pad", "pad", False)
    # Repeated fields given more than once must each match the number of spatial axes, so they
    # must agree with each other (and be 2 when the _h/_w forms are used).
    lengths = [(name, len(getattr(p, name))) for name in ("kernel_size", "stride", "pad",
                                                             "dilation")
               if len(getattr(p, name)) > 1]
    for what in ("kernel", "stride", "pad"):
        if has(p, f"{what}_h") or has(p, f"{what}_w"):
            lengths.insert(0, (f"{what}_h/{what}_w", 2))
    for (name_a, n_a), (name_b, n_b) in zip(lengths, lengths[1:]):
        if n_a != n_b:
            yield Problem("L010", f"{name_a} sets {n_a} spatial axes but {name_b} sets {n_b}; "
                                  f"each must be given once or once per spatial axis",
                          (CONV, name_b.split("/")[0]))
            break


@dataclass(frozen=True)
class ConvGeometry:
    kernel: tuple
    stride: tuple
    pad: tuple
    dilation: tuple

    def extent(self, i: int) -> int:
        """The span of the dilated kernel along spatial axis ``i``."""
        return self.dilation[i] * (self.kernel[i] - 1) + 1


def conv_geometry(p: Any, num_spatial: int) -> ConvGeometry:
    """Kernel, stride, pad and dilation per spatial axis, read as Caffe reads them; fails where
    Caffe aborts (counts that fit neither one value nor one per spatial axis)."""

    def per_axis(name: str, default: Optional[int]) -> tuple:
        values = list(getattr(p, name))
        if len(values) == 1:
            return tuple(values) * num_spatial
        if len(values) == num_spatial:
            return tuple(values)
        if not values and default is not None:
            return (default,) * num_spatial
        fail("L010", f"{name} is given {len(values)} times but the input has {num_spatial} "
                     f"spatial axes; give it once or once per spatial axis", (CONV, name))
        raise AssertionError  # unreachable: fail() raises

    def pair_or_list(what: str, name: str, default: Optional[int]) -> tuple:
        if has(p, f"{what}_h") or has(p, f"{what}_w"):
            if num_spatial != 2:
                given = f"{what}_h" if has(p, f"{what}_h") else f"{what}_w"
                fail("L010", f"{what}_h/{what}_w can only be used with 2 spatial axes; the "
                             f"input has {num_spatial}", (CONV, given))
            return getattr(p, f"{what}_h"), getattr(p, f"{what}_w")
        return per_axis(name, default)

    geometry = ConvGeometry(pair_or_list("kernel", "kernel_size", None),
                            pair_or_list("stride", "stride", 1),
                            pair_or_list("pad", "pad", 0),
                            per_axis("dilation", 1))
    if 0 in geometry.kernel or 0 in geometry.stride:
        fail("L010", "kernel and stride dimensions must be at least 1", (CONV,))
    return geometry


def conv_output(size: Dim, geometry: ConvGeometry, i: int) -> Dim:
    """Convolution's (and Im2col's) output size along spatial axis ``i``."""
    if size is None:
        return None
    return cdiv(size + 2 * geometry.pad[i] - geometry.extent(i), geometry.stride[i]) + 1


def check_output_size(out: Dim, description: str, code: str, field_path: tuple,
                      context: ShapeContext) -> None:
    """Caffe aborts on a negative output dimension (Blob::Reshape); a zero one it accepts,
    leaving an empty blob nothing downstream can use, so that is a warning."""
    if out is None or out > 0:
        return
    if out < 0:
        fail(code, description, field_path)
    context.warn(code, f"{description}: Caffe accepts the empty output, but every later layer "
                       f"then works on nothing", field_path)


def _spatial_layout(layer: Any, x: tuple, minimum: int) -> tuple[int, ConvGeometry]:
    """The channel axis and the geometry for input ``x``."""
    p = layer.convolution_param
    channel_axis = axis_of(p.axis, x, (CONV, "axis"))
    num_spatial = len(x) - channel_axis - 1
    if num_spatial < minimum:
        fail("L010", f"the input {fmt(x)} has {num_spatial} spatial axes after the channel "
                     f"axis {channel_axis}; this layer needs at least {minimum}", (CONV, "axis"))
    return channel_axis, conv_geometry(p, num_spatial)


class BaseConvolutionSpec(LayerSpec):
    """Caffe's BaseConvolutionLayer: one top per bottom, all bottoms of one shape."""

    family = "vision"
    param_field = CONV
    min_bottoms = 1
    min_tops = 1
    equal_bottom_top = True
    in_place = IN_PLACE_WRONG

    def blob_count(self, layer: Any) -> int:
        return 1 + int(layer.convolution_param.bias_term)

    def check(self, layer: Any) -> Iterator[Problem]:
        p = layer.convolution_param
        yield from conv_geometry_problems(p)
        if p.num_output == 0:
            yield Problem("L010", "num_output is 0 or missing; Caffe needs at least one output "
                                  "channel", (CONV, "num_output"))
        if p.group == 0:
            yield Problem("L010", "group is 0; Caffe divides the channels into groups and "
                                  "needs at least one", (CONV, "group"))
        elif p.num_output % p.group:
            yield Problem("L010", f"num_output ({p.num_output}) is not a multiple of group "
                                  f"({p.group})", (CONV, "num_output"))

    def output_size(self, size: Dim, geometry: ConvGeometry, i: int) -> Dim:
        raise NotImplementedError

    def weight_shape(self, channels: Dim, p: Any, kernel: tuple) -> tuple:
        raise NotImplementedError

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        if has_errors(self, layer):
            return unknown(self, layer)
        x = merge_same_shapes(bottoms, "L010", "every input of a convolution must have the "
                                               "same shape")
        if x is None:
            return unknown(self, layer)
        p = layer.convolution_param
        channel_axis, geometry = _spatial_layout(layer, x, 0)
        channels = x[channel_axis]
        if channels is not None and channels % p.group:
            fail("L010", f"the input has {channels} channels, not a multiple of group "
                         f"({p.group})", (CONV, "group"))
        spatial = []
        for i, size in enumerate(x[channel_axis + 1:]):
            out = self.output_size(size, geometry, i)
            check_output_size(out, f"spatial axis {i} of the input {fmt(x)} gives an output "
                                   f"size of {out} with kernel {geometry.kernel[i]}, stride "
                                   f"{geometry.stride[i]}, pad {geometry.pad[i]} and dilation "
                                   f"{geometry.dilation[i]}", "L010", (CONV,), context)
            self.warn_partial(context, size, geometry, i)
            spatial.append(out)
        top = tuple(x[:channel_axis]) + (p.num_output,) + tuple(spatial)
        return [top] * top_count(self, layer)

    def warn_partial(self, context: ShapeContext, size: Dim, geometry: ConvGeometry,
                     i: int) -> None:
        pass

    def blob_shapes(self, layer: Any, bottoms: list) -> Optional[list]:
        p = layer.convolution_param
        x = bottom(bottoms, 0)
        bias = [(p.num_output,)] if p.bias_term else []
        if x is None or has_errors(self, layer):
            return [None] + bias
        try:
            channel_axis, geometry = _spatial_layout(layer, x, 0)
        except CaffeCheckFailed:  # an input Caffe rejects leaves the weights unknown
            return [None] + bias
        return [self.weight_shape(x[channel_axis], p, geometry.kernel)] + bias


@register
class ConvolutionSpec(BaseConvolutionSpec):
    """Weights (num_output, channels / group, *kernel); out = (H + 2p - extent) / s + 1."""

    type = "Convolution"

    def output_size(self, size: Dim, geometry: ConvGeometry, i: int) -> Dim:
        return conv_output(size, geometry, i)

    def warn_partial(self, context: ShapeContext, size: Dim, geometry: ConvGeometry,
                     i: int) -> None:
        if size is not None and size + 2 * geometry.pad[i] < geometry.extent(i):
            padded = size + 2 * geometry.pad[i]
            context.warn("L010", f"spatial axis {i}: the kernel spans {geometry.extent(i)} but "
                                 f"the {'padded ' if geometry.pad[i] else ''}input only "
                                 f"{padded}; Caffe's integer division still gives one output, "
                                 f"computed partly from zeros beyond the input", (CONV,))

    def weight_shape(self, channels: Dim, p: Any, kernel: tuple) -> tuple:
        return (p.num_output, cdiv(channels, p.group)) + tuple(kernel)


@register
class DeconvolutionSpec(BaseConvolutionSpec):
    """Weights (channels, num_output / group, *kernel); out = s (H - 1) + extent - 2p."""

    type = "Deconvolution"

    def output_size(self, size: Dim, geometry: ConvGeometry, i: int) -> Dim:
        if size is None:
            return None
        return geometry.stride[i] * (size - 1) + geometry.extent(i) - 2 * geometry.pad[i]

    def weight_shape(self, channels: Dim, p: Any, kernel: tuple) -> tuple:
        return (channels, cdiv(p.num_output, p.group)) + tuple(kernel)


@register
class Im2colSpec(LayerSpec):
    """Unfolds patches into channels: channels * prod(kernel), spatial sizes as Convolution."""

    type = "Im2col"
    family = "vision"
    param_field = CONV
    min_bottoms = max_bottoms = 1
    min_tops = max_tops = 1
    in_place = IN_PLACE_WRONG

    def check(self, layer: Any) -> Iterator[Problem]:
        yield from conv_geometry_problems(layer.convolution_param)

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        x = bottom(bottoms, 0)
        if x is None or has_errors(self, layer):
            return unknown(self, layer)
        channel_axis, geometry = _spatial_layout(layer, x, 1)
        channels = x[channel_axis]
        spatial = tuple(conv_output(size, geometry, i)
                        for i, size in enumerate(x[channel_axis + 1:]))
        for i, out in enumerate(spatial):
            check_output_size(out, f"spatial axis {i} of the input {fmt(x)} gives an output "
                                   f"size of {out} with kernel {geometry.kernel[i]}, stride "
                                   f"{geometry.stride[i]}, pad {geometry.pad[i]} and dilation "
                                   f"{geometry.dilation[i]}", "L010", (CONV,), context)
        columns = None if channels is None else channels * product(geometry.kernel)
        top = tuple(x[:channel_axis]) + (columns,) + spatial
        return [top] * top_count(self, layer)


# -- pooling --------------------------------------------------------------------------------------

def pooled_size(size: Dim, kernel: Dim, pad: int, stride: int, ceil_mode: bool,
                any_pad: bool) -> Dim:
    """PoolingLayer::Reshape for one axis. The rounding is done in float, as Caffe does; with
    any padding (on either axis), a last window that would start in the padding is dropped."""
    if size is None or kernel is None or stride == 0:
        return None
    ratio = float(size + 2 * pad - kernel) / stride
    out = int(math.ceil(ratio) if ceil_mode else math.floor(ratio)) + 1
    if any_pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@dataclass(frozen=True)
class PoolGeometry:
    kernel: tuple  # (h, w); None entries for global pooling over unknown sizes
    pad: tuple
    stride: tuple


def _pool_geometry(p: Any, height: Dim = None, width: Dim = None) -> PoolGeometry:
    if p.global_pooling:
        kernel: tuple = (height, width)
    elif has(p, "kernel_size"):
        kernel = (p.kernel_size, p.kernel_size)
    else:
        kernel = (p.kernel_h, p.kernel_w)
    pad = (p.pad_h, p.pad_w) if has(p, "pad_h") else (p.pad, p.pad)
    stride = (p.stride_h, p.stride_w) if has(p, "stride_h") else (p.stride, p.stride)
    return PoolGeometry(kernel, pad, stride)


def _pair_rule(p: Any, single: str) -> Iterator[Problem]:
    """Pooling's rule for pad and stride: the single field, or both _h and _w, never a mix."""
    h, w = f"{single}_h", f"{single}_w"
    if has(p, single) and (has(p, h) or has(p, w)):
        yield Problem("L020", f"{single} and {h}/{w} are both given; Caffe takes {single} or "
                              f"both {h} and {w}", (POOL, single))
    elif has(p, h) != has(p, w):
        given, missing = (h, w) if has(p, h) else (w, h)
        yield Problem("L020", f"{given} is given without {missing}; Caffe needs both or neither",
                      (POOL, given))


@register
class PoolingSpec(LayerSpec):
    """MAX, AVE or STOCHASTIC pooling over a 4-D input; MAX may output its argmax as a 2nd
    top. Output size rounds up (round_mode CEIL, the default) or down (FLOOR)."""

    type = "Pooling"
    family = "vision"
    param_field = POOL
    min_bottoms = max_bottoms = 1
    min_tops = 1
    max_tops = 2
    in_place = IN_PLACE_WRONG

    def top_range(self, layer: Any) -> tuple[int, Optional[int]]:
        return 1, 2 if layer.pooling_param.pool == _PoolMethod.MAX else 1

    def check(self, layer: Any) -> Iterator[Problem]:
        p = layer.pooling_param
        sizes = [name for name in ("kernel_size", "kernel_h", "kernel_w") if has(p, name)]
        if p.global_pooling:
            if sizes:
                yield Problem("L020", f"global_pooling takes its kernel from the input; "
                                      f"{sizes[0]} must not be given", (POOL, sizes[0]))
        elif has(p, "kernel_size") and has(p, "kernel_h") and has(p, "kernel_w"):
            yield Problem("L020", "kernel_size and kernel_h/kernel_w are both given; Caffe "
                                  "takes kernel_size or both kernel_h and kernel_w",
                          (POOL, "kernel_size"))
        elif not has(p, "kernel_size") and not (has(p, "kernel_h") and has(p, "kernel_w")):
            if sizes:
                missing = "kernel_w" if sizes[0] == "kernel_h" else "kernel_h"
                yield Problem("L020", f"{sizes[0]} is given without {missing}; Caffe needs both",
                              (POOL, sizes[0]))
            else:
                yield Problem("L020", "no kernel size: give kernel_size, kernel_h and kernel_w, "
                                      "or global_pooling", (POOL,))
        yield from _pair_rule(p, "pad")
        yield from _pair_rule(p, "stride")
        g = _pool_geometry(p)
        kernel_given = has(p, "kernel_size") or (has(p, "kernel_h") and has(p, "kernel_w"))
        if not p.global_pooling and kernel_given and 0 in g.kernel:
            field = "kernel_size" if has(p, "kernel_size") else \
                ("kernel_h" if g.kernel[0] == 0 else "kernel_w")
            yield Problem("L020", f"{field} is 0; a kernel dimension must be at least 1",
                          (POOL, field))
        stride_field = "stride_h" if has(p, "stride_h") else "stride"
        if 0 in g.stride:
            yield Problem("L020", "stride is 0; Caffe divides by the stride", (POOL, stride_field))
        pad_field = "pad_h" if has(p, "pad_h") else "pad"
        if p.global_pooling and (g.pad != (0, 0) or g.stride != (1, 1)):
            field = pad_field if g.pad != (0, 0) else stride_field
            yield Problem("L020", "global_pooling needs pad 0 and stride 1", (POOL, field))
        if g.pad != (0, 0):
            if p.pool == _PoolMethod.STOCHASTIC:
                yield Problem("L020", "padding is only implemented for MAX and AVE pooling, "
                                      "not STOCHASTIC", (POOL, "pool"))
            if not p.global_pooling and 0 not in g.kernel and (
                    g.pad[0] >= g.kernel[0] or g.pad[1] >= g.kernel[1]):
                yield Problem("L020", f"pad {g.pad[0]}x{g.pad[1]} must be smaller than the "
                                      f"kernel {g.kernel[0]}x{g.kernel[1]}", (POOL, pad_field))

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        x = bottom(bottoms, 0)
        if x is None or has_errors(self, layer):
            return unknown(self, layer)
        if len(x) != 4:
            fail("L020", f"Pooling needs a 4-D input (num, channels, height, width); got "
                         f"{fmt(x)}", ("bottom", 0))
        p = layer.pooling_param
        n, c, h, w = x
        g = _pool_geometry(p, h, w)
        if p.global_pooling and (h == 0 or w == 0):
            fail("L020", f"global pooling over an empty input {fmt(x)}", ("bottom", 0))
        ceil_mode = p.round_mode == _PoolMethod.CEIL
        any_pad = g.pad != (0, 0)
        if p.global_pooling and not any_pad and g.stride == (1, 1):
            out_h, out_w = 1, 1  # a single window whatever the size
        else:
            out_h = pooled_size(h, g.kernel[0], g.pad[0], g.stride[0], ceil_mode, any_pad)
            out_w = pooled_size(w, g.kernel[1], g.pad[1], g.stride[1], ceil_mode, any_pad)
        for axis, out, size in (("height", out_h, h), ("width", out_w, w)):
            check_output_size(out, f"the input {axis} {size} gives an output {axis} of {out} "
                                   f"with kernel {g.kernel}, pad {g.pad} and stride {g.stride}",
                              "L020", (POOL,), context)
        top = (n, c, out_h, out_w)
        return [top] * top_count(self, layer)


@register
class SPPSpec(LayerSpec):
    """Spatial pyramid pooling: level l pools into 2^l x 2^l bins, each flattened and all
    concatenated into (N, C * sum 4^l); with pyramid_height 1 the top stays (N, C, 1, 1)."""

    type = "SPP"
    family = "vision"
    param_field = SPP_FIELD
    min_bottoms = max_bottoms = 1
    min_tops = max_tops = 1
    in_place = IN_PLACE_WRONG

    def check(self, layer: Any) -> Iterator[Problem]:
        if layer.spp_param.pyramid_height == 0:
            yield Problem("L020", "pyramid_height is 0 or missing; it must be at least 1",
                          (SPP_FIELD, "pyramid_height"))

    @staticmethod
    def _level(size: Dim, level: int) -> tuple[Dim, Dim, int]:
        """Kernel, pad and output of pyramid level ``level`` along one axis."""
        bins = 2 ** level
        if size is None:
            return None, None, bins  # always ``bins`` when Caffe accepts the geometry
        kernel = math.ceil(size / bins)
        pad = (kernel * bins - size + 1) // 2
        return kernel, pad, bins

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        x = bottom(bottoms, 0)
        if x is None or has_errors(self, layer):
            return unknown(self, layer)
        if len(x) != 4:
            fail("L020", f"SPP needs a 4-D input (num, channels, height, width); got {fmt(x)}",
                 ("bottom", 0))
        n, c, h, w = x
        if h == 0 or w == 0:
            fail("L020", f"SPP cannot pool an empty input {fmt(x)}", ("bottom", 0))
        p = layer.spp_param
        stochastic = p.pool == _SPPMethod.STOCHASTIC
        total: Dim = 0
        outputs = []
        for level in range(p.pyramid_height):
            kh, ph, bins_h = self._level(h, level)
            kw, pw, bins_w = self._level(w, level)
            if stochastic and (ph or pw):
                fail("L020", f"pyramid level {level} needs padding on a {fmt(x)} input, which "
                             f"STOCHASTIC pooling does not implement", (SPP_FIELD, "pool"))
            if any(pad is not None and pad >= kernel for pad, kernel in ((ph, kh), (pw, kw))):
                fail("L020", f"pyramid level {level} on a {fmt(x)} input needs pad {ph}x{pw} "
                             f"with kernel {kh}x{kw}; Caffe's pooling rejects a pad not smaller "
                             f"than the kernel", (SPP_FIELD, "pyramid_height"))
            any_pad = bool(ph or pw)
            oh = bins_h if kh is None else pooled_size(h, kh, ph, kh, True, any_pad)
            ow = bins_w if kw is None else pooled_size(w, kw, pw, kw, True, any_pad)
            outputs.append((oh, ow))
            total = None if total is None or c is None else total + c * oh * ow
        if p.pyramid_height == 1:
            return [(n, c) + outputs[0]]
        return [(n, total)]


__all__ = ["ConvolutionSpec", "DeconvolutionSpec", "Im2colSpec", "PoolingSpec", "SPPSpec",
           "ConvGeometry", "conv_geometry", "conv_output", "pooled_size"]
