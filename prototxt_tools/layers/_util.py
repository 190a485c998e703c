"""Small helpers the layer modules share: C++ arithmetic, shape merging, message formatting."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from .base import Dim, LayerSpec, Shape, ShapeContext, canonical_axis, fail, product


def cdiv(a: Dim, b: Dim) -> Dim:
    """C++ ``int / int``: truncates toward zero (unlike Python's ``//``). None if unknown."""
    if a is None or b is None:
        return None
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def count(shape: Sequence[Dim], start: int = 0, end: Optional[int] = None) -> Dim:
    """Blob::count(start, end): the product of the dimensions in [start, end)."""
    return product(shape[start:len(shape) if end is None else end])


def axis_of(axis: int, shape: Sequence[Dim], field: tuple, code: str = "L003") -> int:
    """Blob::CanonicalAxisIndex for ``shape`` (raises CaffeCheckFailed when out of range)."""
    return canonical_axis(axis, len(shape), field, code)


def fmt(shape: Shape) -> str:
    """A shape for messages: ``(1, 3, ?, 224)``; ``()`` is a scalar, None an unknown rank."""
    if shape is None:
        return "(unknown)"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def differ(a: Dim, b: Dim) -> bool:
    """True only when both dimensions are known and different."""
    return a is not None and b is not None and a != b


def merge_dim(a: Dim, b: Dim) -> Dim:
    return a if a is not None else b


def merge_same_shapes(shapes: Sequence[Shape], code: str, what: str) -> Shape:
    """The common shape of bottoms Caffe requires to be identical, with unknown dimensions
    filled in from the others. Fails when the known dimensions prove them different."""
    merged: Optional[list] = None
    for index, shape in enumerate(shapes):
        if shape is None:
            continue
        if merged is None:
            merged = list(shape)
            continue
        if len(shape) != len(merged) or any(differ(a, b) for a, b in zip(shape, merged)):
            fail(code, f"{what}: bottom {index} has shape {fmt(shape)} but the bottoms before "
                       f"it have {fmt(tuple(merged))}", ("bottom", index))
        merged = [merge_dim(a, b) for a, b in zip(merged, shape)]
    return None if merged is None else tuple(merged)


def legacy_4d(shape: Sequence[Dim], code: str, who: str, field: tuple = ("bottom", 0)) -> tuple:
    """Caffe's num()/channels()/height()/width(): at most 4 axes, missing trailing axes read as
    1. Fails for more than 4 axes, as Blob::LegacyShape does."""
    if len(shape) > 4:
        fail(code, f"{who} reads its input as (num, channels, height, width), which Caffe "
                   f"only allows for inputs with at most 4 axes; this one is {fmt(shape)}",
             field)
    return tuple(shape) + (1,) * (4 - len(shape))


def bottom(bottoms: Sequence[Shape], index: int) -> Shape:
    """The shape of bottom ``index``, None when absent or unknown."""
    return bottoms[index] if index < len(bottoms) else None


def top_count(spec: LayerSpec, layer: Any) -> int:
    """How many tops the layer ends up with (losses get their missing top from Caffe)."""
    return max(len(layer.top), spec.top_range(layer)[0])


def unknown(spec: LayerSpec, layer: Any) -> list:
    return [None] * top_count(spec, layer)


def has_errors(spec: LayerSpec, layer: Any) -> bool:
    """Whether the parameter checks already found a problem that stops Caffe's set-up; shape
    rules then leave the tops unknown (the problem is reported once, by the check)."""
    return any(p.severity == "error" for p in spec.check(layer))


def blob_dims(blob_shape: Any) -> tuple:
    """A BlobShape message as a tuple of ints."""
    return tuple(int(d) for d in blob_shape.dim)


def with_overrides(layer: Any, shapes: list, context: ShapeContext) -> list:
    """Replace the shapes of tops named in ``context.input_shapes`` (``--input-shape``)."""
    overrides = context.input_shapes or {}
    result = list(shapes)
    for index, name in enumerate(layer.top):
        if index < len(result) and name in overrides:
            result[index] = tuple(overrides[name])
    return result


def has(message: Any, name: str) -> bool:
    return message.HasField(name)
