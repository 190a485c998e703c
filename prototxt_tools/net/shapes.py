"""Shape inference over a net view, layer by layer, with each layer type's own rule.

Every blob version gets a shape: a tuple of dimensions (``None`` for an unknown dimension) or
``None`` when unknown altogether. A layer whose type BVLC Caffe lacks, whose bottom is missing,
or whose Caffe checks fail leaves its tops unknown, and only what depends on them becomes
unknown too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..layers.base import CaffeCheckFailed, Problem, ShapeContext


@dataclass
class ShapeResult:
    shapes: dict = field(default_factory=dict)  # BlobRef -> shape
    problems: list = field(default_factory=list)  # (Layer, Problem) from shape rules
    count_problems: list = field(default_factory=list)  # (Layer, Problem): bottom/top counts
    unknown_types: list = field(default_factory=list)  # layers whose type has no spec
    internal_errors: list = field(default_factory=list)  # (Layer, message): bugs, never fatal

    def top_shapes(self, view: Any, layer: Any) -> list:
        return [self.shapes.get(ref) for ref in view.outputs.get(layer.index, [])]

    def bottom_shapes(self, view: Any, layer: Any) -> list:
        return [None if ref is None else self.shapes.get(ref)
                for ref in view.inputs.get(layer.index, [])]


def count_problem(layer: Any) -> Optional[Problem]:
    """Caffe's Layer::CheckBlobCounts for this layer, or None when the counts are fine."""
    spec = layer.spec
    if spec is None:
        return None
    param = layer.param
    bottoms, tops = len(param.bottom), len(param.top)
    low, high = spec.bottom_range(param)
    problem = _count_message("bottom", bottoms, low, high, layer.type)
    if problem is not None:
        return Problem("L001", problem, ("bottom",))
    low, high = spec.top_range(param)
    if spec.auto_tops:
        low = 0  # Caffe creates the missing ones
    problem = _count_message("top", tops, low, high, layer.type)
    if problem is not None:
        return Problem("L001", problem, ("top",))
    if spec.equal_bottom_top and bottoms != tops:
        return Problem("L001", f"{layer.type} needs one top per bottom; it has {bottoms} "
                               f"bottom{'s' if bottoms != 1 else ''} and {tops} "
                               f"top{'s' if tops != 1 else ''}", ("top",))
    return None


def _count_message(kind: str, count: int, low: int, high: Optional[int],
                   layer_type: str) -> Optional[str]:
    if low <= count and (high is None or count <= high):
        return None
    if high == low:
        wanted = f"exactly {low}"
    elif high is None:
        wanted = f"at least {low}"
    elif low == 0:
        wanted = f"at most {high}"
    else:
        wanted = f"{low} to {high}"
    plural = "s" if (high or low) != 1 else ""
    return f"{layer_type} takes {wanted} {kind}{plural}; it has {count}"


def infer_shapes(view: Any, input_shapes: Optional[dict] = None) -> ShapeResult:
    result = ShapeResult()
    context = ShapeContext(phase=view.state.phase, input_shapes=dict(input_shapes or {}))
    for layer in view.layers:
        refs_out = view.outputs.get(layer.index, [])
        tops: list = [None] * len(refs_out)
        spec = layer.spec
        bottoms = result.bottom_shapes(view, layer)
        if spec is None:
            result.unknown_types.append(layer)
        else:
            problem = count_problem(layer)
            if problem is not None:
                result.count_problems.append((layer, problem))
            else:
                before = len(context.problems)
                try:
                    computed = spec.shape(layer.param, bottoms, context)
                except CaffeCheckFailed as exc:
                    result.problems.append((layer, exc.problem))
                    computed = []
                except Exception as exc:  # noqa: BLE001 - a bug in a rule must not stop a lint
                    result.internal_errors.append((layer, f"{type(exc).__name__}: {exc}"))
                    computed = []
                for extra in context.problems[before:]:
                    result.problems.append((layer, extra))
                del context.problems[before:]
                for index, shape in enumerate(computed[:len(tops)]):
                    tops[index] = None if shape is None else tuple(shape)
                if spec.is_data and layer.type != "Input":
                    _follow_given_batch(layer, tops, context.input_shapes)
        for ref, shape in zip(refs_out, tops):
            result.shapes[ref] = shape
    return result


def _follow_given_batch(layer: Any, tops: list, given: dict) -> None:
    """A data layer's tops share one batch size: when --input-shape resizes one top (the
    data) and not the others (the labels), they take its batch size."""
    names = list(layer.tops)
    batches = {given[name][0] for name in names if name in given and given[name]}
    if len(batches) != 1:
        return
    (batch,) = batches
    for index, name in enumerate(names[:len(tops)]):
        shape = tops[index]
        if name not in given and shape:
            tops[index] = (batch,) + tuple(shape[1:])
