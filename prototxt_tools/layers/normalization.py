"""Normalisation layers: BatchNorm, LRN, MVN, and the per-channel affine layers Scale and Bias."""

from __future__ import annotations

from typing import Any, Iterator, Optional

from ..schema import caffe_pb2
from ._np import np
from ._util import axis_of, bottom, differ, fmt, has, legacy_4d, top_count, unknown
from .activation import caffe_power, canonical, out_buffer, scalar
from .base import IN_PLACE_OK, IN_PLACE_WRONG, TEST, CaffeCheckFailed, LayerSpec, Problem, \
    Shape, ShapeContext, fail, register

_LRN = caffe_pb2.LRNParameter


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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """BatchNormLayer::Forward_cpu. With global statistics (``use_global_stats``, unset =
        TEST phase): mean = f * blob0, var = f * blob1, f = 0 if blob2 == 0 else 1 / blob2.
        Otherwise the batch mean and biased variance per channel over the m = N * spatial
        values, and the three blobs are updated in place, in Caffe's order: s = lambda s + 1;
        blob0 = mean + lambda blob0; blob1 = var * m / (m - 1) (1 when m == 1) + lambda blob1.
        Either way y = (x - mean) / sqrt(var + eps)."""
        p = layer.batch_norm_param
        x = bottoms[0]
        dtype = x.dtype
        use_global = p.use_global_stats if has(p, "use_global_stats") else context.phase == TEST
        num = x.shape[0] if x.ndim else 1
        channels = x.shape[1] if x.ndim > 1 else 1
        if len(blobs) != 3:
            raise ValueError(f"BatchNorm needs 3 blobs (mean, variance, scale factor); got "
                             f"{len(blobs)}")
        for index, size in ((0, channels), (1, channels), (2, 1)):
            if np.size(blobs[index]) != size:
                raise ValueError(f"BatchNorm blob {index} holds {np.size(blobs[index])} values "
                                 f"but the input has {channels} channels")
        view = x.reshape(num, channels, -1)  # (N, C, spatial)
        y = out_buffer(bottoms, context)
        y = view.copy() if y is None else y.reshape(view.shape)
        if use_global:
            stored = np.asarray(blobs[2], dtype=dtype).reshape(-1)[0]
            factor = scalar(0, dtype) if stored == 0 else scalar(1, dtype) / stored
            mean = np.asarray(blobs[0], dtype=dtype).reshape(-1) * factor
            variance = np.asarray(blobs[1], dtype=dtype).reshape(-1) * factor
            y -= mean[None, :, None]
        else:
            count = view.shape[0] * view.shape[2]  # m = N * spatial
            mean = np.sum(view, axis=(0, 2), dtype=dtype) / scalar(count, dtype)
            y -= mean[None, :, None]
            variance = np.einsum("ncs,ncs->c", y, y) / scalar(count, dtype)
            self.update_statistics(blobs, mean, variance, count, p.moving_average_fraction,
                                   required=context.phase != TEST)
        std = np.sqrt(variance + scalar(p.eps, dtype))
        y /= std[None, :, None]
        return [y.reshape(x.shape)]

    @staticmethod
    def update_statistics(blobs: list, mean: Any, variance: Any, count: int,
                          fraction: float, required: bool) -> None:
        """Caffe's moving averages, in place and in this order: s = lambda s + 1;
        blob0 = mean + lambda blob0; blob1 = m / (m - 1) var + lambda blob1. Read-only blobs
        are an error in TRAIN; in TEST (``use_global_stats: false``) they are left as they
        are -- the executor only makes weights writable for TRAIN, and with batch statistics
        in use the stored ones never affect an output."""
        if not all(isinstance(b, np.ndarray) and b.flags.writeable for b in blobs):
            if required:
                raise ValueError("BatchNorm updates its statistics blobs in TRAIN, but they "
                                 "are not writable NumPy arrays")
            return
        dtype = blobs[0].dtype
        fraction = scalar(fraction, dtype)
        correction = scalar(count / (count - 1) if count > 1 else 1, dtype)
        factor_blob, mean_blob, var_blob = blobs[2], blobs[0], blobs[1]
        factor_blob *= fraction
        factor_blob += 1
        mean_blob *= fraction
        mean_blob += mean.reshape(np.shape(mean_blob))
        var_blob *= fraction
        var_blob += (variance * correction).reshape(np.shape(var_blob))


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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """ACROSS_CHANNELS: y = x * (k + alpha / n * sum of x^2 over the n channels centred on
        each one, zero-padded) ^ -beta. WITHIN_CHANNEL: Caffe's internal layers -- x^2, AVE
        pooling n x n with pad (n - 1) / 2 and stride 1 (the divisor is always n * n: the
        padded window never leaves the padded input), Power (1 + alpha * avg) ^ -beta (k is not
        used), times x."""
        p = layer.lrn_param
        x = bottoms[0]
        dtype = x.dtype
        if x.ndim != 4:
            raise ValueError(f"LRN needs a 4-D input; got {x.shape}")
        size = p.local_size
        if size % 2 != 1:
            raise ValueError(f"LRN local_size {size} must be odd")
        pad = (size - 1) // 2
        num, channels, height, width = x.shape
        square = np.square(x)
        if p.norm_region == _LRN.ACROSS_CHANNELS:
            padded = np.zeros((num, channels + 2 * pad, height, width), dtype)
            padded[:, pad:pad + channels] = square
            del square
            total = padded[:, 0:channels].copy()
            for offset in range(1, size):
                total += padded[:, offset:offset + channels]
            del padded
            total *= scalar(p.alpha, dtype) / scalar(size, dtype)  # Caffe's alpha_ / size_
            total += scalar(p.k, dtype)
            np.power(total, -scalar(p.beta, dtype), out=total)
        elif p.norm_region == _LRN.WITHIN_CHANNEL:
            padded = np.zeros((num, channels, height + 2 * pad, width + 2 * pad), dtype)
            padded[:, :, pad:pad + height, pad:pad + width] = square
            del square
            rows = padded[:, :, 0:height].copy()
            for offset in range(1, size):
                rows += padded[:, :, offset:offset + height]
            del padded
            total = rows[..., 0:width].copy()
            for offset in range(1, size):
                total += rows[..., offset:offset + width]
            del rows
            total /= scalar(size * size, dtype)
            caffe_power(total, -p.beta, p.alpha, 1.0, out=total)
        else:
            raise ValueError(f"unknown LRN norm_region {p.norm_region}")
        y = out_buffer(bottoms, context)
        return [np.multiply(x, total, out=y)]


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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """MVNLayer::Forward_cpu on (num, dim) rows -- num = N (across_channels) or N * C:
        subtract the row mean; with normalize_variance divide by sqrt(E[(x - mean)^2]) + eps
        (eps added after the square root, as in final Caffe). The top is 4-D (N, C, H, W)."""
        p = layer.mvn_param
        x = bottoms[0]
        dtype = x.dtype
        if x.ndim > 4:
            raise ValueError(f"MVN reads its input as (num, channels, height, width); got "
                             f"{x.ndim} axes")
        shape4 = tuple(x.shape) + (1,) * (4 - x.ndim)
        rows = shape4[0] if p.across_channels else shape4[0] * shape4[1]
        view = x.reshape(rows, -1)
        dim = view.shape[1]
        y = out_buffer(bottoms, context)
        y = view.copy() if y is None else y.reshape(view.shape)
        mean = np.sum(view, axis=1, keepdims=True, dtype=dtype) / scalar(dim, dtype)
        y -= mean
        if p.normalize_variance:
            variance = np.einsum("rd,rd->r", y, y)[:, None] / scalar(dim, dtype)
            std = np.sqrt(variance)
            std += scalar(p.eps, dtype)
            y /= std
        return [y.reshape(shape4)]


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

    def broadcast(self, layer: Any, x: Any, values: Any, given: Optional[tuple] = None) -> Any:
        """``values`` (a blob, or bottom 1 when ``given`` is its shape) shaped to broadcast
        against x: Caffe's (outer, dim, inner) layout with dim at axis .. axis + num_axes, or
        axis 0 for a scalar."""
        p = self.params(layer)
        if given is None:
            axis = canonical(p.axis, x.ndim)
            if p.num_axes < -1:
                raise ValueError(f"num_axes {p.num_axes} is invalid")
            end = x.ndim if p.num_axes == -1 else axis + p.num_axes
            if end > x.ndim:
                raise ValueError(f"axis {p.axis} with num_axes {p.num_axes} reaches past the "
                                 f"input's {x.ndim} axes")
            middle = tuple(x.shape[axis:end])
        else:
            axis = 0 if len(given) == 0 else canonical(p.axis, x.ndim)
            middle = tuple(given)
            if tuple(x.shape[axis:axis + len(middle)]) != middle:
                raise ValueError(f"bottom 1 {middle} does not match bottom 0 {x.shape} from "
                                 f"axis {axis}")
        values = np.asarray(values, dtype=x.dtype)
        if values.size != int(np.prod(middle, dtype=np.int64)):
            raise ValueError(f"{values.size} values for a parameter of shape {middle}")
        return values.reshape(middle + (1,) * (x.ndim - axis - len(middle)))


@register
class ScaleSpec(AffineSpec):
    """y = gamma * x (+ beta with bias_term, which defaults to false). Blobs: gamma (only with
    one bottom), then beta with bias_term, both of the parameter shape."""

    type = "Scale"
    param_field = "scale_param"

    def blob_count(self, layer: Any) -> int:
        return self.learned_blob_count(layer) + int(layer.scale_param.bias_term)

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """y = gamma * x (+ beta with bias_term): gamma is blob 0, or bottom 1 when given (then
        beta is blob 0, else blob 1). Caffe's internal Bias layer gets num_axes = bottom 1's
        axes, so beta has gamma's shape either way."""
        x = bottoms[0]
        two = len(bottoms) > 1
        given = tuple(bottoms[1].shape) if two else None
        gamma = self.broadcast(layer, x, bottoms[1] if two else blobs[0], given)
        y = np.multiply(x, gamma, out=out_buffer(bottoms, context))
        if layer.scale_param.bias_term:
            beta_index = 0 if two else 1
            if len(blobs) <= beta_index:
                raise ValueError("bias_term is set but the layer has no bias blob")
            beta = np.asarray(blobs[beta_index], dtype=x.dtype)
            if beta.size != gamma.size:
                raise ValueError(f"the bias blob holds {beta.size} values but the scale has "
                                 f"{gamma.size}")
            y += beta.reshape(gamma.shape)
        return [y]

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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        x = bottoms[0]
        two = len(bottoms) > 1
        beta = self.broadcast(layer, x, bottoms[1] if two else blobs[0],
                              tuple(bottoms[1].shape) if two else None)
        return [np.add(x, beta, out=out_buffer(bottoms, context))]
