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
from . import _im2col
from ._np import np
from ._util import axis_of, bottom, cdiv, fmt, has, has_errors, merge_same_shapes, top_count, \
    unknown
from .base import CaffeCheckFailed, Dim, IN_PLACE_WRONG, LayerSpec, Problem, ShapeContext, TRAIN, \
    TorchCode, TorchContext, TorchUnsupported, elements, fail, product, register, torch_axis, \
    torch_helper

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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        return _conv_forward(self, layer, bottoms, blobs, context)

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        return _conv_torch(self, layer, context)

    def macs(self, layer: Any, bottoms: list, tops: list) -> Optional[int]:
        """Each output value of a Convolution takes (channels / group) x kernel multiply-adds;
        each input value of a Deconvolution spreads over (num_output / group) x kernel."""
        p = layer.convolution_param
        total = 0
        for x, y in zip(bottoms, tops):
            if x is None or y is None or p.group == 0:
                return None
            axis = p.axis + len(x) if p.axis < 0 else p.axis
            try:
                kernel = product(conv_geometry(p, len(x) - axis - 1).kernel)
            except CaffeCheckFailed:
                return None
            if self.type == "Convolution":
                per, count = (None if x[axis] is None else x[axis] // p.group), elements(y)
            else:
                per, count = p.num_output // p.group, elements(x)
            if per is None or count is None or kernel is None:
                return None
            total += count * per * kernel
        return total


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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """Caffe's column buffer of each image as its top (C * prod(kernel), *out)."""
        x = _float_input(bottoms[0], context)
        xb, lead, geometry, spatial = _conv_input(layer, x, 1)
        out = tuple(conv_output(n, geometry, i) for i, n in enumerate(spatial))
        if any(o <= 0 for o in out):
            raise ValueError(f"{fmt(x.shape)} gives the empty output {fmt(out)}")
        columns = _im2col.im2col(xb, geometry.kernel, geometry.stride, geometry.pad,
                                 geometry.dilation, out)
        return [columns.reshape(tuple(lead) + (columns.shape[1],) + out)]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        return _im2col_torch(layer, context)


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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        p = layer.pooling_param
        x = _float_input(bottoms[0], context)
        if x.ndim != 4:
            raise ValueError(f"Pooling needs a 4-D input; got {fmt(x.shape)}")
        g = _pool_geometry(p, x.shape[2], x.shape[3])
        ceil_mode = p.round_mode == _PoolMethod.CEIL
        any_pad = g.pad != (0, 0)
        out = tuple(pooled_size(size, g.kernel[i], g.pad[i], g.stride[i], ceil_mode, any_pad)
                    for i, size in enumerate(x.shape[2:]))
        if any(o is None or o <= 0 for o in out):
            raise ValueError(f"{fmt(x.shape)} gives the empty output {fmt(out)}")
        want_mask = p.pool == _PoolMethod.MAX and len(layer.top) > 1
        top, mask = pool(x, p.pool, g.kernel, g.stride, g.pad, out, mask=want_mask,
                         train=getattr(context, "phase", None) == TRAIN,
                         rng=getattr(context, "rng", None))
        return [top, mask] if want_mask else [top]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        return _pool_torch(layer, context)


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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """One pooling per level, flattened and concatenated. Caffe builds the levels' pooling
        layers from a fresh LayerParameter, whose phase is TRAIN: STOCHASTIC SPP samples even
        in a TEST net."""
        p = layer.spp_param
        x = _float_input(bottoms[0], context)
        if x.ndim != 4:
            raise ValueError(f"SPP needs a 4-D input; got {fmt(x.shape)}")
        n, _, h, w = x.shape
        method = {_SPPMethod.MAX: _PoolMethod.MAX, _SPPMethod.AVE: _PoolMethod.AVE,
                  _SPPMethod.STOCHASTIC: _PoolMethod.STOCHASTIC}[p.pool]
        levels = []
        for level in range(p.pyramid_height):
            kh, ph, _ = self._level(h, level)
            kw, pw, _ = self._level(w, level)
            any_pad = bool(ph or pw)
            out = (pooled_size(h, kh, ph, kh, True, any_pad),
                   pooled_size(w, kw, pw, kw, True, any_pad))
            top, _ = pool(x, method, (kh, kw), (kh, kw), (ph, pw), out, train=True,
                          rng=getattr(context, "rng", None))
            levels.append(top)
        if p.pyramid_height == 1:
            return levels
        return [np.concatenate([top.reshape(n, -1) for top in levels], axis=1)]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        return _spp_torch(layer, context)


# -- forward passes -------------------------------------------------------------------------------
#
# Tops keep the bottom's dtype (float32 unless the executor runs in float64); blobs are cast to
# it. The axes before a convolution's channel axis fold into one batch axis (Caffe's num_).

#: Pooling windows up to this many cells are computed one kernel offset at a time (a strided
#: view per offset, in Caffe's order); larger ones (global pooling) by reducing a view of all
#: the windows at once.
_LOOP_WINDOW = 64
#: Convolution outputs smaller than this many positions (14 x 14 and below) are computed for
#: a whole batch in one matmul per group, which keeps the matrix products large.
_SMALL_OUTPUT = 1024
_FLT_MAX = 3.4028234663852886e38  # C's FLT_MAX, Caffe's starting value for MAX pooling


def _float_input(x: Any, context: Any) -> Any:
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(getattr(context, "dtype", None) or "float32")
    return x


def _axis_index(axis: int, ndim: int, what: str) -> int:
    """Blob::CanonicalAxisIndex; ValueError out of range."""
    if not -ndim <= axis < ndim:
        raise ValueError(f"{what} {axis} is out of range for an input with {ndim} axes")
    return axis % ndim


def _blob(blob: Any, dtype: Any, shape: tuple, what: str) -> Any:
    """A learnable blob in the computation's dtype, viewed as ``shape`` (Caffe matches blobs by
    element count; old files store InnerProduct weights as 1x1xNxK)."""
    array = np.asarray(blob, dtype=dtype)
    if array.size != math.prod(shape):
        raise ValueError(f"{what} hold {array.size} values ({fmt(array.shape)}) but the layer "
                         f"needs {fmt(shape)}")
    return array.reshape(shape)


def _conv_input(layer: Any, x: Any, minimum: int = 0) -> tuple:
    """(input folded to (B, C, *spatial), the axes before the channel axis, the geometry, the
    spatial sizes)."""
    p = layer.convolution_param
    axis = _axis_index(p.axis, x.ndim, "convolution_param.axis")
    lead, channels, spatial = x.shape[:axis], x.shape[axis], x.shape[axis + 1:]
    if len(spatial) < minimum:
        raise ValueError(f"{layer.type} needs at least {minimum} spatial axes after the channel "
                         f"axis {axis}; the input is {fmt(x.shape)}")
    try:
        geometry = conv_geometry(p, len(spatial))
    except CaffeCheckFailed as error:
        raise ValueError(str(error)) from None
    return (x.reshape((math.prod(lead), channels) + spatial), lead, geometry,
            tuple(spatial))


def convolve(x: Any, weight: Any, bias: Any, geometry: ConvGeometry, out: tuple) -> Any:
    """Caffe's forward_cpu_gemm (+ forward_cpu_bias) for a batch: x (B, C, *spatial), weight
    (G, M, Kd) with Kd = C / G * prod(kernel), bias (G * M, 1) or None; returns
    (B, G * M, prod(out)). One matmul per group (batched over images and groups by np.matmul)
    against the im2col columns; a 1x1 kernel without padding reads the (strided) input
    directly instead."""
    batch, channels = x.shape[:2]
    groups, per_group, kernel_dim = weight.shape
    size = math.prod(out)
    nd = len(out)
    y = np.empty((batch, groups * per_group, size), x.dtype)
    if all(k == 1 for k in geometry.kernel) and not any(geometry.pad):
        xp = x  # 1x1: the columns are the (strided) input itself, no copy at stride 1
    else:
        xp = _im2col.conv_padded(x, geometry.kernel, geometry.stride, geometry.pad,
                                 geometry.dilation, out)
    step = _im2col.chunk_size(channels * math.prod(geometry.kernel) * size * x.itemsize)
    for start in range(0, batch, step):
        part = xp[start:start + step]
        count = part.shape[0]
        columns = _im2col.windows(part, geometry.kernel, geometry.stride, geometry.dilation,
                                  out)
        per_image = channels * math.prod(geometry.kernel) * size * x.itemsize
        if count == 1 and nd >= 1 and out[0] > 1 and per_image > _im2col.COLUMN_BUDGET:
            _convolve_rows(columns, weight, y[start:start + count], out)
        elif count > 1 and size < _SMALL_OUTPUT:
            # Small images: one matmul per group over all the images' columns at once.
            columns = columns.transpose([1] + list(range(2, 2 + nd)) + [0] +
                                        list(range(2 + nd, 2 + 2 * nd)))
            result = np.matmul(weight, columns.reshape(groups, kernel_dim, count * size))
            np.copyto(y[start:start + count],
                      result.reshape(groups * per_group, count, size).transpose(1, 0, 2))
        else:
            np.matmul(weight, columns.reshape(count, groups, kernel_dim, size),
                      out=y[start:start + count].reshape(count, groups, per_group, size))
    if bias is not None:
        y += bias
    return y


def _convolve_rows(columns: Any, weight: Any, y: Any, out: tuple) -> None:
    """One image whose columns exceed the budget: build and multiply them a band of output
    rows at a time, so the column workspace stays within COLUMN_BUDGET (the peak memory of a
    big first convolution is then its input and output, not a 7x7 im2col of the image)."""
    groups, per_group, kernel_dim = weight.shape
    inner = math.prod(out[1:])
    per_row = kernel_dim * groups * inner * columns.itemsize
    rows = max(1, _im2col.COLUMN_BUDGET // per_row)
    lead = (slice(None),) * (columns.ndim - len(out))
    for top in range(0, out[0], rows):
        bottom = min(out[0], top + rows)
        band = columns[lead + (slice(top, bottom),)]
        cells = (bottom - top) * inner
        result = np.matmul(weight, band.reshape(1, groups, kernel_dim, cells))
        y[:, :, top * inner:bottom * inner] = result.reshape(1, groups * per_group, cells)


def deconvolve(x: Any, weight: Any, bias: Any, geometry: ConvGeometry, spatial: tuple,
               out: tuple) -> Any:
    """DeconvolutionLayer::Forward_cpu for a batch: x (B, C, *spatial), weight (G, C / G, Kd)
    with Kd = num_output / G * prod(kernel), bias (num_output, 1) or None; returns
    (B, num_output, prod(out)).

    Caffe computes the columns W_g^T x_g and scatters them with col2im; that is what runs
    with dilation. Without dilation the same sums are computed as one convolution per group
    (one matmul): kernel offset q * s + r sends input i to output (i + q) * s + r, so output
    phase r is a convolution of the input with the kernel taps r, r + s, ... (flipped), and
    all phases come out of one matmul, interleaved afterwards."""
    if any(d != 1 for d in geometry.dilation):
        return _deconvolve_col2im(x, weight, bias, geometry, spatial, out)
    batch, channels = x.shape[:2]
    groups, per_in, kernel_dim = weight.shape
    kernel, stride, pad = geometry.kernel, geometry.stride, geometry.pad
    nd = len(kernel)
    per_out = kernel_dim // math.prod(kernel)
    outputs = groups * per_out
    if all(k == 1 for k in kernel) and all(s == 1 for s in stride) and not any(pad):
        y = np.matmul(weight.transpose(0, 2, 1), x.reshape(batch, groups, per_in, -1))
        y = y.reshape(batch, outputs, -1)
        if bias is not None:
            y += bias
        return y
    taps = [-(-k // s) for k, s in zip(kernel, stride)]  # kernel taps per phase
    # Output cell f = j * s + r; only j in [first, last] reach the cropped output.
    first = [p // s for p, s in zip(pad, stride)]
    last = [(p + o - 1) // s for p, o, s in zip(pad, out, stride)]
    grid = tuple(b - a + 1 for a, b in zip(first, last))
    # Phase outputs j read x[j - t], t < taps: a correlation over x padded by taps - 1 - first.
    before = [m - 1 - a for m, a in zip(taps, first)]
    if any(b < 0 for b in before):  # inputs before -before never reach the output
        x = x[(slice(None), slice(None)) + tuple(slice(-min(b, 0), None) for b in before)]
        before = [max(b, 0) for b in before]
    after = [g + m - 1 - b - n for g, m, b, n in zip(grid, taps, before, x.shape[2:])]
    # Weights (G, per_out * prod(stride), per_in * prod(taps)): row (o, *r), column (c, *t)
    # holds w[c, o, (taps - 1 - t) * s + r], zero past the kernel.
    w = weight.reshape((groups, per_in, per_out) + tuple(kernel))
    whole = tuple(m * s for m, s in zip(taps, stride))
    if whole != tuple(kernel):
        padded_w = np.zeros((groups, per_in, per_out) + whole, w.dtype)
        padded_w[(slice(None),) * 3 + tuple(slice(0, k) for k in kernel)] = w
        w = padded_w
    w = w.reshape((groups, per_in, per_out) + tuple(v for m, s in zip(taps, stride)
                                                    for v in (m, s)))
    w = w[(slice(None),) * 3 + tuple(v for _ in range(nd) for v in (slice(None, None, -1),
                                                                    slice(None)))]
    order = [0, 2] + [4 + 2 * a for a in range(nd)] + [1] + [3 + 2 * a for a in range(nd)]
    w = w.transpose(order).reshape(groups, per_out * math.prod(stride),
                                   per_in * math.prod(taps))
    size = math.prod(grid)
    phases = math.prod(stride)
    full = tuple(g * s for g, s in zip(grid, stride))
    y = np.empty((batch, outputs) + tuple(out), x.dtype)
    crop = tuple(slice(p - a * s, p - a * s + o)
                 for p, a, s, o in zip(pad, first, stride, out))
    lead = (slice(None), slice(None))
    step = _im2col.chunk_size(max(channels * math.prod(taps), outputs * phases) * size *
                              x.itemsize)
    for start in range(0, batch, step):
        part = _im2col.padded(x[start:start + step], before, after)
        count = part.shape[0]
        columns = _im2col.windows(part, taps, (1,) * nd, (1,) * nd, grid)
        columns = columns.reshape(count, groups, per_in * math.prod(taps), size)
        result = np.matmul(w, columns)  # (count, G, per_out * phases, size)
        result = result.reshape((count, outputs) + tuple(stride) + grid)
        result = result.transpose([0, 1] + [v for a in range(nd) for v in (2 + nd + a, 2 + a)])
        split = (count, outputs) + tuple(v for g, s in zip(grid, stride) for v in (g, s))
        if full == tuple(out):  # nothing to crop: interleave straight into the top
            np.copyto(y[start:start + count].reshape(split), result)
            continue
        interleaved = np.empty(split, x.dtype)
        np.copyto(interleaved, result)
        y[start:start + count] = interleaved.reshape((count, outputs) + full)[lead + crop]
    y = y.reshape(batch, outputs, -1)
    if bias is not None:
        y += bias
    return y


def _deconvolve_col2im(x: Any, weight: Any, bias: Any, geometry: ConvGeometry, spatial: tuple,
                       out: tuple) -> Any:
    """Caffe's way: columns W_g^T x_g (one matmul per group), then col2im."""
    batch, channels = x.shape[:2]
    groups, per_in, kernel_dim = weight.shape
    kernel = geometry.kernel
    outputs = groups * (kernel_dim // math.prod(kernel))
    size = math.prod(spatial)
    xg = x.reshape(batch, groups, per_in, size)
    wt = weight.transpose(0, 2, 1)
    y = np.empty((batch, outputs) + out, x.dtype)
    step = _im2col.chunk_size(kernel_dim * groups * size * x.itemsize)
    for start in range(0, batch, step):
        columns = np.matmul(wt, xg[start:start + step])
        columns = columns.reshape((columns.shape[0], outputs) + tuple(kernel) + spatial)
        y[start:start + step] = _im2col.col2im(columns, kernel, geometry.stride, geometry.pad,
                                               geometry.dilation, out)
    y = y.reshape(batch, outputs, -1)
    if bias is not None:
        y += bias
    return y


def _conv_forward(spec: LayerSpec, layer: Any, bottoms: list, blobs: list,
                  context: Any) -> list:
    p = layer.convolution_param
    if p.group == 0 or p.num_output % p.group:
        raise ValueError(f"num_output {p.num_output} is not a multiple of group {p.group}")
    tops = []
    for x in bottoms:
        x = _float_input(x, context)
        xb, lead, geometry, spatial = _conv_input(layer, x)
        channels = xb.shape[1]
        if channels % p.group:
            raise ValueError(f"the input has {channels} channels, not a multiple of group "
                             f"({p.group})")
        out = tuple(spec.output_size(n, geometry, i) for i, n in enumerate(spatial))
        if any(o <= 0 for o in out):
            raise ValueError(f"{fmt(x.shape)} gives the empty output {fmt(out)}")
        kernel = math.prod(geometry.kernel)
        bias = _blob(blobs[1], x.dtype, (p.num_output, 1), "the biases") \
            if p.bias_term else None
        if spec.type == "Convolution":
            weight = _blob(blobs[0], x.dtype,
                           (p.group, p.num_output // p.group, channels // p.group * kernel),
                           "the weights")
            y = convolve(xb, weight, bias, geometry, out)
        else:
            weight = _blob(blobs[0], x.dtype,
                           (p.group, channels // p.group, p.num_output // p.group * kernel),
                           "the weights")
            y = deconvolve(xb, weight, bias, geometry, spatial, out)
        tops.append(y.reshape(tuple(lead) + (p.num_output,) + out))
    return tops


def _pool_divisors(size: int, kernel: int, stride: int, pad: int, out: int) -> Any:
    """AVE pooling's window lengths along one axis: clipped to the padded input, before
    clipping to the image (Caffe's pool_size)."""
    start = np.arange(out) * stride - pad
    return np.minimum(start + kernel, size + pad) - start


def pool(x: Any, method: int, kernel: tuple, stride: tuple, pad: tuple, out: tuple, *,
         mask: bool = False, train: bool = False, rng: Any = None) -> tuple:
    """PoolingLayer's forward over x (N, C, H, W): returns (top, mask top or None).

    MAX: windows clipped to the image, the first strictly larger value wins starting from
    -FLT_MAX (NaN never wins; a window with nothing larger gives -FLT_MAX and index -1); the
    mask holds h * W + w. AVE: the sum over the clipped window divided by the window clipped to
    the padded input. STOCHASTIC (Caffe's GPU kernels; its CPU forward is NOT_IMPLEMENTED):
    TEST gives sum(x^2) / sum(x) (0 when the sum is not positive), TRAIN picks the first cell
    whose running sum reaches u * sum(x), u uniform in (0, 1]."""
    n, c, h, w = x.shape
    dtype = x.dtype
    cells = kernel[0] * kernel[1]
    if method == _PoolMethod.MAX:
        lowest = dtype.type(-_FLT_MAX)
        xp = _im2col.conv_padded(x, kernel, stride, pad, (1, 1), out, fill=-np.inf)
        if not mask and cells <= _LOOP_WINDOW:
            top = np.full((n, c) + out, lowest, dtype)
            for _, view in _im2col.offset_views(xp, kernel, stride, out):
                np.fmax(top, view, out=top)
            return top, None
        view = _im2col.windows(xp, kernel, stride, (1, 1), out)
        if not mask:
            top = np.fmax.reduce(view, axis=(2, 3))
            return np.fmax(top, lowest, out=top), None
        candidates = view.reshape((n, c, cells) + out)
        candidates = np.where(candidates > lowest, candidates, dtype.type(-np.inf))
        best = np.argmax(candidates, axis=2)
        value = np.take_along_axis(candidates, best[:, :, None], axis=2)[:, :, 0]
        empty = value == -np.inf
        rows = np.arange(out[0])[:, None] * stride[0] - pad[0] + best // kernel[1]
        cols = np.arange(out[1])[None, :] * stride[1] - pad[1] + best % kernel[1]
        index = np.where(empty, -1, rows * w + cols).astype(dtype)
        return np.where(empty, lowest, value), index
    if method == _PoolMethod.AVE:
        xp = _im2col.conv_padded(x, kernel, stride, pad, (1, 1), out)
        if cells <= _LOOP_WINDOW:
            total = np.zeros((n, c) + out, dtype)
            for _, view in _im2col.offset_views(xp, kernel, stride, out):
                total += view
        else:  # a running sum keeps Caffe's order of additions
            view = _im2col.windows(xp, kernel, stride, (1, 1), out)
            total = np.cumsum(view.reshape((n, c, cells) + out), axis=2)[:, :, -1].copy()
        divisor = np.multiply.outer(
            _pool_divisors(h, kernel[0], stride[0], pad[0], out[0]),
            _pool_divisors(w, kernel[1], stride[1], pad[1], out[1])).astype(dtype)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.divide(total, divisor, out=total), None
    if method == _PoolMethod.STOCHASTIC:
        # Caffe's kernels ignore pad (it must be 0) and clip windows to the image.
        xp = _im2col.conv_padded(x, kernel, stride, (0, 0), (1, 1), out)
        values = _im2col.windows(xp, kernel, stride, (1, 1), out).reshape((n, c, cells) + out)
        running = np.cumsum(values, axis=2)
        total = running[:, :, -1]
        if not train:
            squares = np.cumsum(values * values, axis=2)[:, :, -1]
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(total > 0, squares / total, dtype.type(0)), None
        rng = rng if rng is not None else np.random.default_rng()
        uniform = dtype.type(1) - rng.random(total.shape, dtype=dtype)  # (0, 1], as curand
        threshold = (uniform * total).astype(np.float32)  # Caffe: float thres = u * cumsum
        reached = running >= threshold[:, :, None]
        first = np.argmax(reached, axis=2)[:, :, None]
        found = np.take_along_axis(reached, first, axis=2)[:, :, 0]
        value = np.take_along_axis(values, first, axis=2)[:, :, 0]
        return np.where(found, value, dtype.type(0)), None
    raise ValueError(f"unknown pooling method {method}")


__all__ = ["ConvolutionSpec", "DeconvolutionSpec", "Im2colSpec", "PoolingSpec", "SPPSpec",
           "ConvGeometry", "conv_geometry", "conv_output", "pooled_size", "convolve",
           "deconvolve", "pool"]


# -- PyTorch ---------------------------------------------------------------------------------------

_TORCH_CONV = {("Convolution", 1): "nn.Conv1d", ("Convolution", 2): "nn.Conv2d",
               ("Convolution", 3): "nn.Conv3d", ("Deconvolution", 1): "nn.ConvTranspose1d",
               ("Deconvolution", 2): "nn.ConvTranspose2d",
               ("Deconvolution", 3): "nn.ConvTranspose3d"}


def _channel_axis(axis: int, x: tuple, minimum_spatial: int) -> int:
    channel_axis = torch_axis(axis, x)
    if len(x) - channel_axis - 1 < minimum_spatial:
        raise TorchUnsupported(f"needs at least {minimum_spatial} spatial axes after axis "
                               f"{channel_axis}")
    return channel_axis


def _fold_batch(template: str, channel_axis: int) -> str:
    """``template`` (an expression of ``{x}``, an (N, C, *spatial) tensor) applied to a bottom
    whose channel axis is ``channel_axis``: the axes before it fold into one batch axis, as
    Caffe's num_ does, and unfold afterwards."""
    if channel_axis == 1:
        return template.replace("{x}", "{b}")
    if channel_axis == 0:
        return template.replace("{x}", "{b}.unsqueeze(0)") + ".squeeze(0)"
    folded = template.replace("{x}", f"{{b}}.flatten(0, {channel_axis - 1})")
    return f"{folded}.unflatten(0, {{b}}.shape[:{channel_axis}])"


def _tuple_text(values: tuple) -> str:
    return str(values[0]) if len(set(values)) == 1 else str(tuple(values))


def _conv_torch(spec: LayerSpec, layer: Any, context: TorchContext) -> TorchCode:
    """nn.ConvNd / nn.ConvTransposeNd: Caffe's weight layouts are PyTorch's, and Caffe's
    output sizes are PyTorch's with output_padding 0. Several bottoms share the module; the
    axes before a channel axis other than 1 fold into the batch."""
    p = layer.convolution_param
    x = context.bottom_shapes[0] if context.bottom_shapes else None
    if x is None:
        raise TorchUnsupported("the input's rank is unknown (give --input-shape)")
    channel_axis = _channel_axis(p.axis, x, 1)
    num_spatial = len(x) - channel_axis - 1
    kind = _TORCH_CONV.get((spec.type, num_spatial))
    if kind is None:
        raise TorchUnsupported(f"{num_spatial} spatial axes (PyTorch has 1 to 3)")
    for other in context.bottom_shapes[1:]:
        if other is None or len(other) != len(x) or other[channel_axis] != x[channel_axis]:
            raise TorchUnsupported("bottoms of different ranks or channel counts")
    geometry = conv_geometry(p, num_spatial)
    channels = x[channel_axis]
    if channels is None:
        raise TorchUnsupported("the input's channel count is unknown (give --input-shape)")
    args = [str(channels), str(p.num_output), _tuple_text(geometry.kernel)]
    if set(geometry.stride) != {1}:
        args.append(f"stride={_tuple_text(geometry.stride)}")
    if set(geometry.pad) != {0}:
        args.append(f"padding={_tuple_text(geometry.pad)}")
    if set(geometry.dilation) != {1}:
        args.append(f"dilation={_tuple_text(geometry.dilation)}")
    if p.group != 1:
        args.append(f"groups={p.group}")
    if not p.bias_term:
        args.append("bias=False")
    state = {"weight": lambda blobs, fused: blobs[0]}
    if p.bias_term:
        state["bias"] = lambda blobs, fused: np.reshape(blobs[1], -1)
    template = "{m}({x})"
    if spec.type == "Convolution":
        extra = _conv_overhang(x[channel_axis + 1:], geometry)
        if any(extra):
            pads = ", ".join(f"0, {n}" for n in reversed(extra))
            template = "{m}(F.pad({x}, (" + pads + ")))"
    template = _fold_batch(template, channel_axis)
    forward = [template.replace("{b}", f"{{b{i}}}")
               for i in range(max(1, len(context.bottom_shapes)))]
    return TorchCode(forward, module=f"{kind}({', '.join(args)})", state=state, fresh=True)


def _conv_overhang(spatial: tuple, geometry: ConvGeometry) -> list:
    """Zeros to add after each spatial axis where Caffe's one window is longer than the padded
    input (its output size truncates toward zero to 1; PyTorch refuses such a kernel)."""
    extra = []
    for i, size in enumerate(spatial):
        if size is None:
            extra.append(0)
            continue
        span = size + 2 * geometry.pad[i]
        extra.append(max(0, geometry.extent(i) - span))
    return extra


def _im2col_torch(layer: Any, context: TorchContext) -> TorchCode:
    """``F.unfold``, whose rows are Caffe's column buffer rows (channel-major, then the kernel
    offsets in row-major order), unflattened to the output's spatial sizes; one spatial axis
    runs as a 2-D unfold of height 1."""
    p = layer.convolution_param
    x = context.bottom_shapes[0] if context.bottom_shapes else None
    if x is None:
        raise TorchUnsupported("the input's rank is unknown (give --input-shape)")
    channel_axis = _channel_axis(p.axis, x, 1)
    num_spatial = len(x) - channel_axis - 1
    geometry = conv_geometry(p, num_spatial)
    kernel, dilation, pad, stride = (_tuple_text(tuple(v)) for v in (
        geometry.kernel, geometry.dilation, geometry.pad, geometry.stride))
    function = "im2col" if num_spatial == 2 else "im2col_nd"
    if num_spatial == 2:
        call = f"im2col({{x}}, {kernel}, dilation={dilation}, padding={pad}, stride={stride})"
    else:  # tuples: the helper counts the spatial axes from them
        kernel, dilation, pad, stride = (str(tuple(v)) for v in (
            geometry.kernel, geometry.dilation, geometry.pad, geometry.stride))
        call = f"im2col_nd({{x}}, {kernel}, {dilation}, {pad}, {stride})"
    forward = _fold_batch(call, channel_axis).replace("{b}", "{b0}")
    return TorchCode(forward, helpers=(function,), fresh=True)


torch_helper("im2col_nd", '''
def im2col_nd(x, kernel, dilation, padding, stride):
    """Caffe's Im2col over any number of spatial axes: channel c * prod(kernel) + (flat
    kernel offset) at each output position holds the input under that kernel cell."""
    spatial = len(kernel)
    pads = []
    for p in reversed(padding):
        pads += [p, p]
    x = F.pad(x, pads)
    for axis in range(spatial):  # each unfold appends one kernel axis
        extent = dilation[axis] * (kernel[axis] - 1) + 1
        x = x.unfold(2 + axis, extent, stride[axis])[..., ::dilation[axis]]
    n, c = x.shape[:2]
    out = x.shape[2:2 + spatial]
    order = [0, 1] + list(range(2 + spatial, 2 + 2 * spatial)) + list(range(2, 2 + spatial))
    return x.permute(order).reshape((n, -1) + tuple(out))
''')


torch_helper("im2col", '''
def im2col(x, kernel_size, dilation, padding, stride):
    """Caffe's Im2col: F.unfold's columns as channels over the output's height and width."""
    columns = F.unfold(x, kernel_size, dilation=dilation, padding=padding, stride=stride)
    k, d, p, s = (v if isinstance(v, tuple) else (v, v)
                  for v in (kernel_size, dilation, padding, stride))
    height = (x.shape[2] + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    return columns.unflatten(2, (height, columns.shape[2] // height))
''')


torch_helper("caffe_pool_windows", '''
def caffe_pool_windows(x, kernel, stride, padding, ceil_mode):
    """Caffe's pooled output size per axis, and the F.pad widths that put every window inside
    the input: size + 2 pad - kernel over stride, rounded up (ceil_mode) or down, plus 1,
    less a last window that would start in the padding (checked when either axis is
    padded); pad before by pad, after up to the last window's end."""
    padded = padding[0] > 0 or padding[1] > 0
    sizes = []
    for axis in (0, 1):
        size, k, s, p = x.shape[2 + axis], kernel[axis], stride[axis], padding[axis]
        span = size + 2 * p - k
        out = (-(-span // s) if ceil_mode else span // s) + 1
        if padded and (out - 1) * s >= size + p:
            out -= 1
        sizes.append(out)
    after = [max(0, (sizes[a] - 1) * stride[a] + kernel[a] - padding[a] - x.shape[2 + a])
             for a in (0, 1)]
    return sizes, (padding[1], after[1], padding[0], after[0])
''')


torch_helper("caffe_pool2d", '''
def caffe_pool2d(x, method, kernel, stride, padding, ceil_mode=True):
    """Caffe's pooling where PyTorch's own rounding or padding rules differ.

    Output sizes as caffe_pool_windows computes them. MAX: windows clipped to the input,
    -3.4028235e38 (-FLT_MAX) for an empty one. AVE: the sum over the clipped window divided by
    the window clipped to the padded input. STOCHASTIC (TEST): sum(x^2) / sum(x) over the
    window, 0 when the sum is not positive; pad must be 0.
    """
    sizes, pads = caffe_pool_windows(x, kernel, stride, padding, ceil_mode)
    if method == "max":
        windows = F.pad(x, pads, value=float("-inf"))
        return F.max_pool2d(windows, kernel, stride).clamp_min(-3.4028234663852886e38)
    if method == "stochastic":
        windows = F.pad(x, pads)
        total = F.avg_pool2d(windows, kernel, stride, divisor_override=1)
        squares = F.avg_pool2d(windows * windows, kernel, stride, divisor_override=1)
        return torch.where(total > 0, squares / total, torch.zeros_like(total))
    total = F.avg_pool2d(F.pad(x, pads), kernel, stride, divisor_override=1)
    counts = []
    for axis in (0, 1):
        start = torch.arange(sizes[axis], device=x.device) * stride[axis] - padding[axis]
        end = torch.clamp(start + kernel[axis], max=x.shape[2 + axis] + padding[axis])
        counts.append((end - start).to(x.dtype))
    return total / (counts[0][:, None] * counts[1][None, :])
''', requires=("caffe_pool_windows",))


torch_helper("caffe_max_pool2d_with_argmax", '''
def caffe_max_pool2d_with_argmax(x, kernel, stride, padding, ceil_mode=True):
    """Caffe's MAX pooling with its mask top: the values as caffe_pool2d computes them and
    the index h * width + w of each window's first maximum (-1 for an empty window), in x's
    dtype."""
    _, pads = caffe_pool_windows(x, kernel, stride, padding, ceil_mode)
    windows = F.pad(x, pads, value=float("-inf"))
    values, index = F.max_pool2d(windows, kernel, stride, return_indices=True)
    width = windows.shape[3]
    rows = index // width - padding[0]
    columns = index % width - padding[1]
    empty = values == float("-inf")
    index = torch.where(empty, torch.full_like(index, -1), rows * x.shape[3] + columns)
    return values.clamp_min(-3.4028234663852886e38), index.to(x.dtype)
''', requires=("caffe_pool_windows",))


torch_helper("stochastic_pool2d_sample", '''
def stochastic_pool2d_sample(x, kernel, stride, ceil_mode=True):
    """Caffe's STOCHASTIC pooling in TRAIN: each window picks one cell with probability
    x / sum(x) (the first cell whose running sum reaches u * sum(x), u uniform in (0, 1]),
    0 where none does. Draws from torch's generator."""
    sizes, pads = caffe_pool_windows(x, kernel, stride, (0, 0), ceil_mode)
    cells = F.unfold(F.pad(x, pads), kernel, stride=stride)
    n, c = x.shape[:2]
    cells = cells.unflatten(1, (c, kernel[0] * kernel[1]))  # (N, C, cells, windows)
    running = cells.cumsum(2)
    u = 1 - torch.rand(running[:, :, -1:].shape, dtype=x.dtype, device=x.device)
    reached = running >= u * running[:, :, -1:]
    first = reached.to(torch.uint8).argmax(2, keepdim=True)
    value = cells.gather(2, first) * reached.gather(2, first)
    return value.reshape(n, c, sizes[0], sizes[1])
''', requires=("caffe_pool_windows",))


def _pool_torch(layer: Any, context: TorchContext) -> TorchCode:
    """PyTorch's own pooling calls where they compute Caffe's windows: Caffe's CEIL rounding
    and its rule dropping a last window that starts in the padding are ``ceil_mode=True``'s,
    and Caffe's AVE divisor (the window clipped to the padded input) is
    ``count_include_pad=True``'s. Where they differ (a stride longer than the kernel without
    padding, a pad over half the kernel, unknown sizes, the mask top, STOCHASTIC) the helpers
    compute Caffe's rule. One difference is left: PyTorch's max propagates NaN where Caffe's
    skips it (Caffe never picks a NaN over a number)."""
    p = layer.pooling_param
    x = context.bottom_shapes[0] if context.bottom_shapes else None
    if x is not None and len(x) != 4:
        raise TorchUnsupported(f"Pooling needs a 4-D input; got {fmt(x)}")
    method = {_PoolMethod.MAX: "max", _PoolMethod.AVE: "ave",
              _PoolMethod.STOCHASTIC: "stochastic"}.get(p.pool)
    if method is None:
        raise TorchUnsupported(f"unknown pooling method {p.pool}")
    ceil_mode = p.round_mode == _PoolMethod.CEIL
    with_mask = method == "max" and len(layer.top) > 1
    g = _pool_geometry(p)
    if p.global_pooling and not with_mask:
        if method == "max":
            return TorchCode("{b0}.amax((2, 3), keepdim=True)"
                             ".clamp_min(-3.4028234663852886e38)", fresh=True)
        if method == "ave":
            return TorchCode("{b0}.mean((2, 3), keepdim=True)", fresh=True)
    kernel = "tuple({b0}.shape[2:])" if p.global_pooling else str(g.kernel)
    pairs = f"{kernel}, {g.stride}, {g.pad}"
    rounding = "" if ceil_mode else ", ceil_mode=False"
    if with_mask:
        return TorchCode(f"caffe_max_pool2d_with_argmax({{b0}}, {pairs}{rounding})",
                         tuple_tops=True, helpers=("caffe_max_pool2d_with_argmax",))
    if method == "stochastic":  # Caffe samples in TRAIN; so does the module in train mode
        sample = f"stochastic_pool2d_sample({{b0}}, {kernel}, {g.stride}{rounding})"
        return TorchCode(f'{sample} if self.training else '
                         f'caffe_pool2d({{b0}}, "stochastic", {pairs}{rounding})',
                         helpers=("caffe_pool2d", "stochastic_pool2d_sample"), fresh=True)
    if _torch_pool_matches(g, x, ceil_mode):
        args = [_tuple_text(g.kernel)]
        if g.stride != g.kernel:
            args.append(f"stride={_tuple_text(g.stride)}")
        if g.pad != (0, 0):
            args.append(f"padding={_tuple_text(g.pad)}")
        if ceil_mode:
            args.append("ceil_mode=True")
        function = "F.max_pool2d" if method == "max" else "F.avg_pool2d"
        return TorchCode(f"{function}({{b0}}, {', '.join(args)})", fresh=True)
    return TorchCode(f'caffe_pool2d({{b0}}, "{method}", {pairs}{rounding})',
                     helpers=("caffe_pool2d",), fresh=True)


def _torch_pool_matches(g: PoolGeometry, x: Optional[tuple], ceil_mode: bool) -> bool:
    """PyTorch's pooling computes Caffe's windows: same output sizes (PyTorch drops a last
    window starting in the padding whenever it rounds up, Caffe only when some axis is
    padded), and a pad of at most half the kernel (PyTorch's limit)."""
    if any(2 * pad > kernel for pad, kernel in zip(g.pad, g.kernel)):
        return False
    any_pad = g.pad != (0, 0)
    if any_pad or not ceil_mode or all(s <= k for s, k in zip(g.stride, g.kernel)):
        return True  # no window can start beyond the input: both rules agree
    if x is None or None in x[2:]:
        return False
    for i, size in enumerate(x[2:]):
        caffe = pooled_size(size, g.kernel[i], 0, g.stride[i], True, False)
        if (caffe - 1) * g.stride[i] >= size:
            return False
    return True


def _spp_torch(layer: Any, context: TorchContext) -> TorchCode:
    """The helper ``spatial_pyramid_pool``: Caffe's per-level kernel, pad and stride computed
    from the input's size at run time, each level pooled as Caffe pools it."""
    p = layer.spp_param
    method = {_SPPMethod.MAX: "max", _SPPMethod.AVE: "ave",
              _SPPMethod.STOCHASTIC: "stochastic"}.get(p.pool)
    if method is None:
        raise TorchUnsupported(f"unknown pooling method {p.pool}")
    x = context.bottom_shapes[0] if context.bottom_shapes else None
    if x is not None and len(x) != 4:
        raise TorchUnsupported(f"SPP needs a 4-D input; got {fmt(x)}")
    return TorchCode(f'spatial_pyramid_pool({{b0}}, "{method}", {p.pyramid_height})',
                     helpers=("spatial_pyramid_pool",), fresh=True)


torch_helper("spatial_pyramid_pool", '''
def spatial_pyramid_pool(x, method, height):
    """Caffe's SPP: level l pools into 2^l x 2^l bins (kernel ceil(size / 2^l), pad
    (kernel * 2^l - size + 1) // 2, stride = kernel); the levels are flattened and
    concatenated, or, with one level, returned as they are. Caffe builds the levels' pooling
    layers in TRAIN phase: STOCHASTIC samples, at TEST too."""
    levels = []
    for level in range(height):
        bins = 2 ** level
        kernel = tuple(-(-size // bins) for size in x.shape[2:])
        pad = tuple((k * bins - size + 1) // 2 for k, size in zip(kernel, x.shape[2:]))
        if method == "stochastic":
            levels.append(stochastic_pool2d_sample(x, kernel, kernel))
        else:
            levels.append(caffe_pool2d(x, method, kernel, kernel, pad))
    if height == 1:
        return levels[0]
    return torch.cat([level.flatten(1) for level in levels], 1)
''', requires=("caffe_pool2d", "stochastic_pool2d_sample"))
