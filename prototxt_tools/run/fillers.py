"""Deterministic weights for a net: Caffe's fillers, and ``prototxt init-weights``.

Every learnable blob gets values from the layer's own filler when the file gives one
(constant, uniform, gaussian with sparse, positive_unitball, xavier, msra, bilinear, with
Caffe's fan-in/fan-out rules). Where the file gives none (deploy nets, for instance) the blob
gets random values that exercise the numerics instead of Caffe's all-zero default: He-style
Gaussian weights, small random biases, scales near 1. BatchNorm statistics are random with a
positive variance and the scale-factor blob is 1.

Each blob draws from its own generator seeded by (seed, layer name, blob index), so adding or
removing a layer leaves every other layer's weights unchanged.
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import PrototxtError
from ..net.model import Layer, Net

#: Which blobs of which layer types take which filler field (in blob order).
_FILLER_FIELDS = {
    "Convolution": (("convolution_param", "weight_filler"), ("convolution_param", "bias_filler")),
    "Deconvolution": (("convolution_param", "weight_filler"),
                      ("convolution_param", "bias_filler")),
    "InnerProduct": (("inner_product_param", "weight_filler"),
                     ("inner_product_param", "bias_filler")),
    "Embed": (("embed_param", "weight_filler"), ("embed_param", "bias_filler")),
    "Scale": (("scale_param", "filler"), ("scale_param", "bias_filler")),
    "Bias": (("bias_param", "filler"),),
    "PReLU": (("prelu_param", "filler"),),
}


def generator(seed: int, layer_name: str, blob_index: int) -> np.random.Generator:
    """The generator for one blob: independent of every other layer and blob."""
    key = zlib.crc32(layer_name.encode("utf-8", "surrogateescape"))
    return np.random.default_rng([seed & 0xFFFFFFFF, key, blob_index])


def fill(filler: Any, shape: tuple, rng: np.random.Generator,
         dtype: Any = np.float32) -> np.ndarray:
    """Caffe's filler ``filler`` (a FillerParameter) for a blob of ``shape``."""
    kind = filler.type
    count = int(np.prod(shape)) if shape else 1
    if kind == "constant":
        return np.full(shape, filler.value, dtype)
    if kind == "uniform":
        return rng.uniform(filler.min, filler.max, shape).astype(dtype)
    if kind == "gaussian":
        values = rng.normal(filler.mean, filler.std, shape)
        if filler.sparse >= 0:
            # Caffe keeps each weight with probability sparse / num_outputs.
            outputs = shape[0] if shape else 1
            keep = rng.random(shape) < (filler.sparse / outputs)
            values = values * keep
        return values.astype(dtype)
    if kind == "positive_unitball":
        num = shape[0] if shape else 1
        values = rng.uniform(0, 1, (num, count // max(num, 1)))
        values /= values.sum(axis=1, keepdims=True)
        return values.reshape(shape).astype(dtype)
    if kind in ("xavier", "msra"):
        n = _fan(filler, shape, count)
        if kind == "xavier":
            scale = math.sqrt(3.0 / n)
            return rng.uniform(-scale, scale, shape).astype(dtype)
        return rng.normal(0.0, math.sqrt(2.0 / n), shape).astype(dtype)
    if kind == "bilinear":
        if len(shape) != 4 or shape[2] != shape[3]:
            raise PrototxtError(f"the bilinear filler needs a 4-D blob with square kernels, "
                                f"not {shape}")
        size = shape[3]
        factor = math.ceil(size / 2.0)
        center = (2 * factor - 1 - factor % 2) / (2.0 * factor)
        grid = np.arange(size)
        line = 1 - np.abs(grid / factor - center)
        kernel = np.outer(line, line)
        return np.broadcast_to(kernel, shape).astype(dtype).copy()
    raise PrototxtError(f"unknown filler type '{kind}'")


def _fan(filler: Any, shape: tuple, count: int) -> float:
    fan_in = count / shape[0] if shape else count
    fan_out = count / shape[1] if len(shape) > 1 else count
    norm = filler.variance_norm
    if norm == 1:  # FAN_OUT
        return fan_out
    if norm == 2:  # AVERAGE
        return (fan_in + fan_out) / 2.0
    return fan_in


def _default_values(layer: Layer, index: int, shape: tuple,
                    rng: np.random.Generator, dtype: Any) -> np.ndarray:
    """Random values for a blob whose layer gives no filler (see the module docs)."""
    layer_type = layer.type
    if layer_type in ("Convolution", "Deconvolution", "InnerProduct") and index == 0:
        fan_in = int(np.prod(shape[1:])) if layer_type != "Deconvolution" else \
            int(np.prod(shape)) // max(shape[0], 1)
        if layer_type == "InnerProduct" and layer.param.inner_product_param.transpose:
            fan_in = shape[0]
        return rng.normal(0.0, math.sqrt(2.0 / max(fan_in, 1)), shape).astype(dtype)
    if layer_type == "Scale" and index == 0:
        return rng.uniform(0.5, 1.5, shape).astype(dtype)
    if layer_type == "PReLU":
        return rng.uniform(0.0, 0.5, shape).astype(dtype)
    if index >= 1 or layer_type == "Bias":
        return rng.normal(0.0, 0.1, shape).astype(dtype)
    return rng.normal(0.0, 1.0, shape).astype(dtype)


def layer_blobs(layer: Layer, shapes: Sequence[Optional[tuple]], seed: int,
                dtype: Any = np.float32) -> list:
    """Initial values for every learnable blob of ``layer`` (shapes from ``blob_shapes``)."""
    if layer.type == "BatchNorm":
        return _batch_norm_blobs(layer, shapes, seed, dtype)
    fields = _FILLER_FIELDS.get(layer.type, ())
    blobs = []
    for index, shape in enumerate(shapes):
        if shape is None or any(d is None for d in shape):
            raise PrototxtError(f"cannot size blob {index} of layer '{layer.name}' "
                                f"({layer.type}): its input shape is unknown; give one with "
                                f"--input-shape")
        rng = generator(seed, layer.name, index)
        filler = _filler(layer, fields[index] if index < len(fields) else None)
        if filler is None and layer.type in ("RNN", "LSTM"):
            filler = _recurrent_filler(layer, len(shape))
        if filler is not None:
            blobs.append(fill(filler, tuple(shape), rng, dtype))
        else:
            blobs.append(_default_values(layer, index, tuple(shape), rng, dtype))
    return blobs


def _filler(layer: Layer, path: Optional[tuple]) -> Any:
    if path is None:
        return None
    block, name = path
    params = getattr(layer.param, block)
    return getattr(params, name) if params.HasField(name) else None


def _recurrent_filler(layer: Layer, rank: int) -> Any:
    """RNN/LSTM blobs are weight matrices and bias vectors (1-D)."""
    params = layer.param.recurrent_param
    name = "bias_filler" if rank == 1 else "weight_filler"
    return getattr(params, name) if params.HasField(name) else None


def _batch_norm_blobs(layer: Layer, shapes: Sequence[Optional[tuple]], seed: int,
                      dtype: Any) -> list:
    channels_shape = shapes[0] if shapes else None
    if channels_shape is None or any(d is None for d in channels_shape):
        raise PrototxtError(f"cannot size the statistics of BatchNorm '{layer.name}': its input "
                            f"channels are unknown; give the input shape with --input-shape")
    rng = generator(seed, layer.name, 0)
    mean = rng.normal(0.0, 0.5, channels_shape).astype(dtype)
    variance = rng.uniform(0.5, 1.5, channels_shape).astype(dtype)
    return [mean, variance, np.ones((1,), dtype)]


def init_weights(net: Net, seed: int = 0, phase: Optional[int] = None,
                 dtype: Any = np.float32) -> list:
    """[(layer name, layer type, [arrays])] for every layer with learnable blobs.

    Shapes come from shape inference on the net's TEST view (TRAIN layers too when they are
    only active there), so the inputs' shapes must be known (Input layers, data layers with
    crop sizes, or the net's ``input_shapes`` from --input-shape).
    """
    from ..layers.base import TEST, TRAIN

    phases = (phase,) if phase is not None else (TEST, TRAIN)
    result = []
    seen: set = set()
    for current in phases:
        view = net.view(current)
        shapes = view.shapes
        for layer in view.layers:
            spec = layer.spec
            if spec is None or spec.blob_count(layer.param) == 0 or layer.name in seen:
                continue
            seen.add(layer.name)
            blob_shapes = spec.blob_shapes(layer.param, shapes.bottom_shapes(view, layer))
            if blob_shapes is None:
                blob_shapes = [None] * spec.blob_count(layer.param)
            result.append((layer.name, layer.type, layer_blobs(layer, blob_shapes, seed, dtype)))
    return result
