"""Fully connected layers: InnerProduct and Embed."""

from __future__ import annotations

from typing import Any, Iterator, Optional

from ._util import axis_of, bottom, count, has_errors, top_count, unknown
from .base import IN_PLACE_WRONG, LayerSpec, Problem, ShapeContext, register

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
