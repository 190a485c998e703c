"""Normalisation layers: BatchNorm, LRN, MVN, and the per-channel affine layers Scale and Bias."""

from __future__ import annotations

from typing import Any, Iterator, Optional

from ..schema import caffe_pb2
from ._np import np
from ._util import axis_of, bottom, differ, fmt, has, legacy_4d, top_count, unknown
from .activation import caffe_power, canonical, out_buffer, scalar
from .base import CaffeCheckFailed, IN_PLACE_OK, IN_PLACE_WRONG, LayerSpec, Problem, Shape, \
    ShapeContext, TEST, TorchCode, TorchContext, TorchUnsupported, elements, fail, register, \
    torch_axis, torch_helper, torch_number

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

    def macs(self, layer: Any, bottoms: list, tops: list) -> Optional[int]:
        """One per value: (x - mean) * (1 / std) with the statistics fixed (TEST)."""
        return elements(bottoms[0]) if bottoms else None

    def learnable(self, layer: Any, index: int) -> bool:
        return False  # mean, variance and the scale factor are accumulated, not learned

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

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """An ``nn.BatchNorm1d/2d/3d`` (by rank; more axes: BatchNorm1d over the spatial axes
        flattened) holding mean = f * blob0 and var = f * blob1 (f = 1 / blob2, 0 when blob2
        is 0), momentum = 1 - moving_average_fraction. With the Scale after it fused
        (``context.fused``), the module is affine with the Scale's gamma and beta and computes
        both layers. ``use_global_stats: true``: ``FrozenBatchNorm`` (stored statistics in
        training mode too, as in Caffe TRAIN); ``false``: batch statistics even in eval mode
        (``track_running_stats=False``; Caffe's updates of the stored statistics at TEST
        never affect an output)."""
        p = layer.batch_norm_param
        x = context.bottom_shapes[0] if context.bottom_shapes else None
        if x is None:
            raise TorchUnsupported("the input's rank is unknown (give --input-shape)")
        channels = x[1] if len(x) > 1 else None
        stored = context.blob_shapes[0] if context.blob_shapes else None
        if channels is None and stored is not None and None not in stored:
            channels = int(np.prod(stored, dtype=np.int64))
        if channels is None:
            raise TorchUnsupported("the input's channel count is unknown (give --input-shape)")
        scale = context.fused
        if scale is not None:
            sp = scale.scale_param
            axis = sp.axis + len(x) if sp.axis < 0 else sp.axis
            if len(scale.bottom) != 1 or axis != 1 or sp.num_axes != 1:
                raise TorchUnsupported("the Scale offered for fusion does not scale channels "
                                       "(axis 1, num_axes 1, a learned gamma)")
        global_stats = p.use_global_stats if has(p, "use_global_stats") else None
        kind = _TORCH_BN.get(len(x), "nn.BatchNorm1d")
        if global_stats is True:
            kind = "FrozenBatchNorm"
        args = [str(channels)]
        if torch_number(p.eps) != "1e-05":
            args.append(f"eps={torch_number(p.eps)}")
        if global_stats is None:
            args.append(f"momentum={_momentum(p.moving_average_fraction)}")
        if scale is None:
            args.append("affine=False")
        if global_stats is False:
            args.append("track_running_stats=False")
        forward = "{m}({b0})"
        if kind != "FrozenBatchNorm" and len(x) > 5:
            forward = "{m}({b0}.flatten(2)).view_as({b0})"
        state: dict = {}
        if global_stats is not False:
            state["running_mean"] = lambda blobs, fused: _bn_statistic(blobs, 0)
            state["running_var"] = lambda blobs, fused: _bn_statistic(blobs, 1)
            state["num_batches_tracked"] = lambda blobs, fused: np.zeros((), np.float32)
        if scale is not None:
            state["weight"] = lambda blobs, fused: np.reshape(fused[0], -1)
            if scale.scale_param.bias_term:
                state["bias"] = lambda blobs, fused: np.reshape(fused[1], -1)
            else:
                state["bias"] = lambda blobs, fused: np.zeros(np.size(fused[0]), np.float32)
        helpers = ("FrozenBatchNorm",) if kind == "FrozenBatchNorm" else ()
        return TorchCode(forward, module=f"{kind}({', '.join(args)})", state=state,
                         helpers=helpers, fresh=True)


_TORCH_BN = {2: "nn.BatchNorm1d", 3: "nn.BatchNorm1d", 4: "nn.BatchNorm2d",
             5: "nn.BatchNorm3d"}

torch_helper("FrozenBatchNorm", '''
class FrozenBatchNorm(nn.BatchNorm1d):
    """Batch normalisation over axis 1 (any rank) that always uses the stored statistics, in
    training mode too: Caffe's BatchNorm with use_global_stats: true."""

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, eps=self.eps)
''')


def _momentum(fraction: float) -> str:
    """PyTorch's momentum for Caffe's moving_average_fraction, 1 - fraction, from the decimal
    the fraction is written as (0.999 gives 0.001, not float32 noise)."""
    from decimal import Decimal, InvalidOperation

    try:
        return torch_number(float(1 - Decimal(torch_number(fraction))))
    except InvalidOperation:
        return torch_number(1 - fraction)


def _bn_statistic(blobs: list, index: int) -> Any:
    """Blob ``index`` (mean or variance) times Caffe's factor 1 / blob2 (0 when blob2 is 0),
    in float32 as Caffe computes it."""
    stored = np.float32(np.reshape(blobs[2], -1)[0])
    factor = np.float32(0) if stored == 0 else np.float32(1) / stored
    return np.reshape(np.asarray(blobs[index], np.float32), -1) * factor


@register
class LRNSpec(LayerSpec):
    """Local response normalisation across channels or within each channel, on 4-D input."""

    type = "LRN"
    family = "normalization"
    param_field = "lrn_param"
    min_bottoms = max_bottoms = 1
    min_tops = max_tops = 1
    in_place = IN_PLACE_WRONG  # it overwrites the input before multiplying by it again

    def macs(self, layer: Any, bottoms: list, tops: list) -> Optional[int]:
        """local_size squares summed per value (local_size^2 within a channel), plus the
        scaling multiply."""
        count = elements(bottoms[0]) if bottoms else None
        if count is None:
            return None
        p = layer.lrn_param
        window = p.local_size if p.norm_region == _LRN.ACROSS_CHANNELS else p.local_size ** 2
        return count * (window + 1)

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

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """ACROSS_CHANNELS: ``F.local_response_norm`` computes Caffe's formula -- x / (k +
        alpha / n * sum)^beta over n zero-padded channels centred on each one (PyTorch pads
        n // 2 before and (n - 1) // 2 after: the same for Caffe's odd n). WITHIN_CHANNEL: the
        helper ``lrn_within_channel`` (Caffe's pooling of x^2, k ignored)."""
        p = layer.lrn_param
        x = context.bottom_shapes[0] if context.bottom_shapes else None
        if x is not None and len(x) != 4:
            raise TorchUnsupported(f"LRN needs a 4-D input; got {fmt(x)}")
        size = p.local_size
        if size % 2 != 1:
            raise TorchUnsupported(f"local_size {size} is even (Caffe rejects it)")
        alpha, beta = torch_number(p.alpha), torch_number(p.beta)
        if p.norm_region == _LRN.ACROSS_CHANNELS:
            return TorchCode(f"F.local_response_norm({{b0}}, {size}, alpha={alpha}, "
                             f"beta={beta}, k={torch_number(p.k)})", fresh=True)
        if p.norm_region == _LRN.WITHIN_CHANNEL:
            return TorchCode(f"lrn_within_channel({{b0}}, {size}, alpha={alpha}, beta={beta})",
                             helpers=("lrn_within_channel",), fresh=True)
        raise TorchUnsupported(f"unknown norm_region {p.norm_region}")


torch_helper("lrn_within_channel", '''
def lrn_within_channel(x, size, alpha, beta):
    """Caffe's LRN with norm_region WITHIN_CHANNEL: x * (1 + alpha * a)^-beta, where a is the
    average of x^2 over the size x size window centred on each value, zero-padded (the divisor
    is always size * size). Caffe ignores k here."""
    average = F.avg_pool2d(x * x, size, stride=1, padding=(size - 1) // 2)
    return x * (1 + alpha * average).pow(-beta)
''')


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

    def macs(self, layer: Any, bottoms: list, tops: list) -> Optional[int]:
        """With normalize_variance: a square summed and a multiply per value; else none."""
        count = elements(bottoms[0]) if bottoms else None
        if count is None:
            return None
        return 2 * count if layer.mvn_param.normalize_variance else 0

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

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """The mean over (C,) H, W subtracted; with normalize_variance the helper
        ``normalize_mean_variance`` (eps added to the standard deviation, as Caffe does). Inputs
        with fewer than 4 axes get trailing axes of 1 first: Caffe's top is 4-D."""
        p = layer.mvn_param
        x = context.bottom_shapes[0] if context.bottom_shapes else None
        if x is None:
            raise TorchUnsupported("the input's rank is unknown (give --input-shape)")
        if len(x) > 4:
            raise TorchUnsupported(f"MVN reads its input as 4-D; got {fmt(x)}")
        value = "{b0}"
        if len(x) < 4:
            value += "[" + ", ".join(["..."] + ["None"] * (4 - len(x))) + "]"
        dims = "(1, 2, 3)" if p.across_channels else "(2, 3)"
        if p.normalize_variance:
            return TorchCode(f"normalize_mean_variance({value}, {dims}, "
                             f"eps={torch_number(p.eps)})",
                             helpers=("normalize_mean_variance",), fresh=True)
        return TorchCode(f"{value} - {value}.mean({dims}, keepdim=True)", fresh=True)


torch_helper("normalize_mean_variance", '''
def normalize_mean_variance(x, dims, eps):
    """Caffe's MVN with normalize_variance: x minus its mean over dims, divided by the
    standard deviation (biased) over dims plus eps -- Caffe adds eps after the square root."""
    centred = x - x.mean(dims, keepdim=True)
    return centred / (centred.pow(2).mean(dims, keepdim=True).sqrt() + eps)
''')


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

    def torch_layout(self, layer: Any, context: TorchContext) -> tuple:
        """(shape, operand): with one bottom, the learned parameter's shape as PyTorch holds it
        -- the Caffe shape followed by a 1 per later input axis, so it broadcasts as Caffe's
        (outer, dim, inner) layout does -- and operand None; with two, bottom 1's shape and
        bottom 1 as an expression with those trailing axes (``{b1}[..., None, None]``)."""
        p = self.params(layer)
        x = context.bottom_shapes[0] if context.bottom_shapes else None
        if x is None:
            raise TorchUnsupported("the input's rank is unknown (give --input-shape)")
        if len(layer.bottom) > 1:
            given = context.bottom_shapes[1] if len(context.bottom_shapes) > 1 else None
            if given is None:
                raise TorchUnsupported("bottom 1's rank is unknown (give --input-shape)")
            axis = 0 if len(given) == 0 else torch_axis(p.axis, x)
            trailing = len(x) - axis - len(given)
            if trailing < 0:
                raise TorchUnsupported(f"bottom 1 {fmt(given)} reaches past the last axis of "
                                       f"bottom 0 {fmt(x)}")
            operand = "{b1}"
            if trailing:
                operand += "[" + ", ".join(["..."] + ["None"] * trailing) + "]"
            return tuple(given), operand
        axis = torch_axis(p.axis, x)
        if p.num_axes < -1:
            raise TorchUnsupported(f"num_axes {p.num_axes} is invalid")
        end = len(x) if p.num_axes == -1 else axis + p.num_axes
        if end > len(x):
            raise TorchUnsupported(f"axis {p.axis} with num_axes {p.num_axes} reaches past the "
                                   f"last axis of the input {fmt(x)}")
        middle = tuple(x[axis:end])
        if None in middle:
            stored = context.blob_shapes[0] if context.blob_shapes else None
            if stored is None or None in stored or len(stored) != len(middle):
                raise TorchUnsupported(f"the parameter's shape {fmt(middle)} is unknown "
                                       f"(give --input-shape)")
            middle = tuple(stored)
        if not middle:  # a single value
            return (), None
        return middle + (1,) * (len(x) - end), None


@register
class ScaleSpec(AffineSpec):
    """y = gamma * x (+ beta with bias_term, which defaults to false). Blobs: gamma (only with
    one bottom), then beta with bias_term, both of the parameter shape."""

    type = "Scale"
    param_field = "scale_param"

    def macs(self, layer: Any, bottoms: list, tops: list) -> Optional[int]:
        """One per value: x * gamma (+ beta)."""
        return elements(bottoms[0]) if bottoms else None

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

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """Learned gamma: the helper module ``CaffeScale`` (weight, and bias with bias_term,
        shaped to broadcast). Second bottom: ``x * g`` with g's trailing axes added, plus a
        ``CaffeBias`` module for beta with bias_term."""
        shape, operand = self.torch_layout(layer, context)
        bias = layer.scale_param.bias_term
        if operand is None:
            module = f"CaffeScale({_tuple(shape)}{', bias=True' if bias else ''})"
            state = {"weight": _reshaped(0, shape)}
            inplace = "{b0}.mul_({m}.weight)"
            if bias:
                state["bias"] = _reshaped(1, shape)
                inplace += ".add_({m}.bias)"
            return TorchCode("{m}({b0})", module=module, state=state, helpers=("CaffeScale",),
                             inplace=inplace, fresh=True)
        if not bias:
            return TorchCode(f"{{b0}} * {operand}", inplace=f"{{b0}}.mul_({operand})",
                             fresh=True)
        shape = _bias_shape(shape, operand, context)
        return TorchCode(f"{{m}}({{b0}} * {operand})", module=f"CaffeBias({_tuple(shape)})",
                         state={"bias": _reshaped(0, shape)}, helpers=("CaffeBias",),
                         inplace=f"{{b0}}.mul_({operand}).add_({{m}}.bias)", fresh=True)


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

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """Learned beta: the helper module ``CaffeBias`` (its bias shaped to broadcast).
        Second bottom: ``x + b`` with b's trailing axes added."""
        shape, operand = self.torch_layout(layer, context)
        if operand is None:
            return TorchCode("{m}({b0})", module=f"CaffeBias({_tuple(shape)})",
                             state={"bias": _reshaped(0, shape)}, helpers=("CaffeBias",),
                             inplace="{b0}.add_({m}.bias)", fresh=True)
        return TorchCode(f"{{b0}} + {operand}", inplace=f"{{b0}}.add_({operand})", fresh=True)


def _tuple(shape: tuple) -> str:
    """A shape as a Python tuple literal: (), (3,), (3, 1, 1)."""
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _reshaped(index: int, shape: tuple) -> Any:
    """A state function: blob ``index`` of the layer reshaped to ``shape``."""
    return lambda blobs, fused: np.reshape(blobs[index], shape)


def _bias_shape(given: tuple, operand: str, context: TorchContext) -> tuple:
    """Scale's beta with a second bottom: bottom 1's shape (or the stored blob's, when the
    shape leaves some dimension unknown) with the operand's trailing axes of 1."""
    if None in given:
        stored = context.blob_shapes[0] if context.blob_shapes else None
        if stored is None or None in stored or len(stored) != len(given):
            raise TorchUnsupported(f"the bias's shape {fmt(given)} is unknown (give "
                                   f"--input-shape)")
        given = tuple(stored)
    return tuple(given) + (1,) * operand.count("None")


torch_helper("CaffeScale", '''
class CaffeScale(nn.Module):
    """Caffe's Scale layer with a learned scale: y = x * weight (+ bias). The parameters have
    the shape of the input axes they scale followed by a 1 for every later axis, so they
    broadcast over the other axes."""

    def __init__(self, shape, bias=False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape)) if bias else None

    def forward(self, x):
        if self.bias is None:
            return x * self.weight
        return x * self.weight + self.bias
''')

torch_helper("CaffeBias", '''
class CaffeBias(nn.Module):
    """Caffe's Bias layer with a learned bias: y = x + bias. The bias has the shape of the
    input axes it applies to followed by a 1 for every later axis, so it broadcasts over the
    other axes."""

    def __init__(self, shape):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(shape))

    def forward(self, x):
        return x + self.bias
''')
