"""Fully connected layers: InnerProduct and Embed."""

from __future__ import annotations

import math
from typing import Any, Iterator, Optional

from ._np import np
from ._util import axis_of, bottom, count, fmt, has_errors, top_count, unknown
from .base import IN_PLACE_WRONG, LayerSpec, Problem, ShapeContext, TorchCode, TorchContext, \
    TorchUnsupported, elements, register, torch_axis, torch_helper

IP = "inner_product_param"
EMBED = "embed_param"


@register
class InnerProductSpec(LayerSpec):
    """y = W x + b over the input flattened from ``axis`` (default 1) on: K = count(axis), top
    (*shape[:axis], num_output). Weights (num_output, K), or (K, num_output) with transpose."""

    type = "InnerProduct"
    family = "common"
    param_field = IP
    min_bottoms = max_bottoms = 1
    min_tops = max_tops = 1
    in_place = IN_PLACE_WRONG

    def blob_count(self, layer: Any) -> int:
        return 1 + int(layer.inner_product_param.bias_term)

    def check(self, layer: Any) -> Iterator[Problem]:
        # Caffe has no CHECK here, but a zero-output layer makes empty blobs (and the usual
        # fillers then divide by zero).
        if layer.inner_product_param.num_output == 0:
            yield Problem("L030", "num_output is 0 or missing; an InnerProduct needs at least one "
                                  "output", (IP, "num_output"))

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        x = bottom(bottoms, 0)
        if x is None or has_errors(self, layer):
            return unknown(self, layer)
        p = layer.inner_product_param
        axis = axis_of(p.axis, x, (IP, "axis"))
        return [tuple(x[:axis]) + (p.num_output,)] * top_count(self, layer)

    def blob_shapes(self, layer: Any, bottoms: list) -> Optional[list]:
        p = layer.inner_product_param
        x = bottom(bottoms, 0)
        k = None
        if x is not None and -len(x) <= p.axis < len(x):
            k = count(x, p.axis % len(x))
        weight = (k, p.num_output) if p.transpose else (p.num_output, k)
        return [weight] + ([(p.num_output,)] if p.bias_term else [])

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """top (M, N) = x (M, K) W^T (W^T stored as is with transpose) + b: one matmul."""
        p = layer.inner_product_param
        x = _float_input(bottoms[0], context)
        if not -x.ndim <= p.axis < x.ndim:
            raise ValueError(f"inner_product_param.axis {p.axis} is out of range for an input "
                             f"with {x.ndim} axes")
        axis = p.axis % x.ndim
        lead = x.shape[:axis]
        rows, inputs = math.prod(lead), math.prod(x.shape[axis:])
        n = p.num_output
        weight = _blob(blobs[0], x.dtype, (inputs, n) if p.transpose else (n, inputs),
                       "the weights", x.shape, axis)
        y = np.matmul(x.reshape(rows, inputs), weight if p.transpose else weight.T)
        if p.bias_term:
            y += _blob(blobs[1], x.dtype, (n,), "the biases")
        return [y.reshape(tuple(lead) + (n,))]

    def macs(self, layer: Any, bottoms: list, tops: list) -> Optional[int]:
        """K multiply-adds per output value (K: the input's count from ``axis`` on)."""
        x, y = bottoms[0] if bottoms else None, tops[0] if tops else None
        if x is None or y is None or not -len(x) <= layer.inner_product_param.axis < len(x):
            return None
        k, count = elements(x[layer.inner_product_param.axis % len(x):]), elements(y)
        return None if k is None or count is None else k * count

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """``nn.Linear`` on ``x.flatten(axis)`` (which keeps the axes before ``axis``, as
        Caffe's top does); with ``transpose`` Caffe stores the weights (K, num_output), so they
        are transposed into nn.Linear's (num_output, K)."""
        p = layer.inner_product_param
        x = context.bottom_shapes[0] if context.bottom_shapes else None
        n = p.num_output
        if n == 0:
            raise TorchUnsupported("num_output is 0")
        axis = p.axis
        inputs = None
        if x is not None:
            axis = torch_axis(axis, x)
            inputs = count(x, axis)
        stored = context.blob_shapes[0] if context.blob_shapes else None
        if inputs is None and stored is not None and None not in stored:
            inputs = math.prod(stored) // n
        if inputs is None:
            raise TorchUnsupported("the number of inputs is unknown (give --input-shape)")
        args = [str(inputs), str(n)] + ([] if p.bias_term else ["bias=False"])
        last = x is not None and axis == len(x) - 1
        forward = "{m}({b0})" if last else f"{{m}}({{b0}}.flatten({axis}))"
        shape = (inputs, n) if p.transpose else (n, inputs)

        def weight(blobs: list, fused: list) -> Any:
            array = np.reshape(blobs[0], shape)
            return array.T if p.transpose else array

        state = {"weight": weight}
        if p.bias_term:
            state["bias"] = lambda blobs, fused: np.reshape(blobs[1], -1)
        return TorchCode(forward, module=f"nn.Linear({', '.join(args)})", state=state,
                         fresh=True)


@register
class EmbedSpec(LayerSpec):
    """A lookup table: each input value is an index in [0, input_dim) whose row of the
    (input_dim, num_output) weights is output; top = (*input shape, num_output)."""

    type = "Embed"
    family = "common"
    param_field = EMBED
    min_bottoms = max_bottoms = 1
    min_tops = max_tops = 1
    in_place = IN_PLACE_WRONG

    def blob_count(self, layer: Any) -> int:
        return 1 + int(layer.embed_param.bias_term)

    def check(self, layer: Any) -> Iterator[Problem]:
        p = layer.embed_param
        if p.num_output == 0:
            yield Problem("L030", "num_output is 0 or missing; Embed needs a positive num_output",
                          (EMBED, "num_output"))
        if p.input_dim == 0:
            yield Problem("L030", "input_dim is 0 or missing; Embed needs the size of its "
                                  "vocabulary (input_dim > 0)", (EMBED, "input_dim"))

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        x = bottom(bottoms, 0)
        if x is None or has_errors(self, layer):
            return unknown(self, layer)
        return [tuple(x) + (layer.embed_param.num_output,)] * top_count(self, layer)

    def blob_shapes(self, layer: Any, bottoms: list) -> Optional[list]:
        p = layer.embed_param
        return [(p.input_dim, p.num_output)] + ([(p.num_output,)] if p.bias_term else [])

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """Row x of the (input_dim, num_output) weights for every input value x, plus the
        bias. Caffe (in debug builds) checks each value is an integer in [0, input_dim)."""
        p = layer.embed_param
        x = _float_input(bottoms[0], context)
        weight = _blob(blobs[0], x.dtype, (p.input_dim, p.num_output), "the weights")
        values = x.reshape(-1)
        index = np.trunc(values)  # Caffe's static_cast<int>
        bad = ~np.isfinite(values) | (index != values)
        if bad.any():
            first = values[np.argmax(bad)]
            raise ValueError(f"Embed input {float(first)!r} is not an integer; its values are "
                             f"indices into the {p.input_dim} rows of the weights")
        outside = (index < 0) | (index >= p.input_dim)
        if outside.any():
            first = values[np.argmax(outside)]
            raise ValueError(f"Embed input {float(first):g} is out of range: indices must be in "
                             f"[0, {p.input_dim}) (input_dim)")
        y = np.take(weight, index.astype(np.intp), axis=0)
        if p.bias_term:
            y += _blob(blobs[1], x.dtype, (p.num_output,), "the biases")
        return [y.reshape(x.shape + (p.num_output,))]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """``nn.Embedding`` (``EmbeddingWithBias`` with bias_term) on the input converted to
        integer indices (Caffe reads them as floats and casts them, truncating)."""
        p = layer.embed_param
        if p.num_output == 0 or p.input_dim == 0:
            raise TorchUnsupported("num_output and input_dim must be positive")
        state = {"weight": lambda blobs, fused: np.reshape(blobs[0],
                                                           (p.input_dim, p.num_output))}
        if not p.bias_term:
            return TorchCode("{m}({b0}.long())",
                             module=f"nn.Embedding({p.input_dim}, {p.num_output})",
                             state=state, fresh=True)
        state["bias"] = lambda blobs, fused: np.reshape(blobs[1], -1)
        return TorchCode("{m}({b0}.long())",
                         module=f"EmbeddingWithBias({p.input_dim}, {p.num_output})",
                         state=state, helpers=("EmbeddingWithBias",), fresh=True)


torch_helper("EmbeddingWithBias", '''
class EmbeddingWithBias(nn.Embedding):
    """nn.Embedding plus a learned bias added to every looked-up row, as Caffe's Embed layer
    with bias_term computes."""

    def __init__(self, num_embeddings, embedding_dim):
        super().__init__(num_embeddings, embedding_dim)
        self.bias = nn.Parameter(torch.zeros(embedding_dim))

    def forward(self, indices):
        return super().forward(indices) + self.bias
''')


def _float_input(x: Any, context: Any) -> Any:
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(getattr(context, "dtype", None) or "float32")
    return x


def _blob(blob: Any, dtype: Any, shape: tuple, what: str, input_shape: tuple = (),
          axis: int = 0) -> Any:
    """A learnable blob in the computation's dtype viewed as ``shape``. Caffe matches blobs by
    element count (old files store InnerProduct weights as 1x1xNxK)."""
    array = np.asarray(blob, dtype=dtype)
    if array.size != math.prod(shape):
        where = f" for the input {fmt(input_shape)} flattened from axis {axis}" \
            if input_shape else ""
        raise ValueError(f"{what} hold {array.size} values ({fmt(array.shape)}) but the layer "
                         f"needs {fmt(shape)}{where}")
    return array.reshape(shape)
