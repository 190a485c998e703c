"""Layers that move, combine or select values without learning: Concat, Slice, Split, Eltwise,
Flatten, Reshape, Crop, Tile, Reduction, Filter, Silence, ArgMax, BatchReindex, Parameter."""

from __future__ import annotations

from typing import Any, Iterator, Optional

from ..schema import caffe_pb2
from ._np import np
from ._util import axis_of, blob_dims, bottom, count, differ, fmt, has, has_errors, merge_dim, \
    merge_same_shapes, top_count, unknown
from .activation import canonical, out_buffer, scalar
from .base import CaffeCheckFailed, Dim, IN_PLACE_FORBIDDEN, IN_PLACE_OK, IN_PLACE_WRONG, \
    LayerSpec, Problem, ShapeContext, TorchCode, TorchContext, TorchUnsupported, elements, fail, \
    product, register, torch_axis, torch_helper, torch_number

_EltwiseOp = caffe_pb2.EltwiseParameter
_ReductionOp = caffe_pb2.ReductionParameter


def _top_shapes(spec: LayerSpec, layer: Any, bottoms: list) -> list:
    """The spec's shape rule on concrete arrays; where Caffe would abort: ValueError (the
    executor reports it with the layer's name)."""
    problems = [p for p in spec.check(layer) if p.severity == "error"]
    if problems:
        raise ValueError(problems[0].message)
    try:
        shapes = spec.shape(layer, [tuple(b.shape) for b in bottoms], ShapeContext())
    except CaffeCheckFailed as exc:
        raise ValueError(str(exc)) from None
    return [tuple(shape) for shape in shapes]


class StructureSpec(LayerSpec):
    """One bottom, one top, and wrong in place unless a type says otherwise."""

    family = "structure"
    min_bottoms = max_bottoms = 1
    min_tops = max_tops = 1
    in_place = IN_PLACE_WRONG


def _legacy_axis(layer: Any, field: str, legacy: str, rank: int, code: str) -> int:
    """Concat's concat_dim / Slice's slice_dim when given, else the canonical ``axis``."""
    p = getattr(layer, field)
    if has(p, legacy):
        value = getattr(p, legacy)
        if value >= rank:
            fail(code, f"{legacy} {value} is out of range for inputs with {rank} axes",
                 (field, legacy))
        return value
    return axis_of(p.axis, (None,) * rank, (field, "axis"))


def _axis_and_legacy(layer: Any, field: str, legacy: str) -> Iterator[Problem]:
    p = getattr(layer, field)
    if has(p, "axis") and has(p, legacy):
        yield Problem("L050", f"axis and {legacy} are both given; Caffe takes one or the other "
                              f"({legacy} is the old name)", (field, legacy))


def _torch_legacy_axis(layer: Any, field: str, legacy: str) -> int:
    """The axis for torch.cat / torch.split: the legacy field when given (never negative),
    else ``axis`` as written (PyTorch counts negative axes from the end, as Caffe does)."""
    p = getattr(layer, field)
    return getattr(p, legacy) if has(p, legacy) else p.axis


def _bottom_shape(context: TorchContext, index: int = 0) -> Any:
    """Bottom ``index``'s shape from the export's shape inference (None when unknown)."""
    shapes = context.bottom_shapes
    return shapes[index] if index < len(shapes) else None


def _torch_axis(axis: int, x: Any, what: str = "the input") -> int:
    """A Caffe axis made non-negative for the emitted code, which then needs the rank."""
    if x is None:
        raise TorchUnsupported(f"the rank of {what} is unknown (give --input-shape)")
    return torch_axis(axis, x)


@register
class ConcatSpec(StructureSpec):
    """Joins its inputs along ``axis`` (default 1); every other axis must match."""

    type = "Concat"
    param_field = "concat_param"
    max_bottoms = None

    def check(self, layer: Any) -> Iterator[Problem]:
        yield from _axis_and_legacy(layer, "concat_param", "concat_dim")

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        known = [(i, s) for i, s in enumerate(bottoms) if s is not None]
        if not known or has_errors(self, layer):
            return unknown(self, layer)
        rank = len(known[0][1])
        for index, shape in known:
            if len(shape) != rank:
                fail("L050", f"every input of Concat must have the same number of axes; bottom "
                             f"{index} is {fmt(shape)}, bottom {known[0][0]} is "
                             f"{fmt(known[0][1])}", ("bottom", index))
        axis = _legacy_axis(layer, "concat_param", "concat_dim", rank, "L050")
        top: list = [None] * rank
        for index, shape in known:
            for j, dim in enumerate(shape):
                if j == axis:
                    continue
                if differ(top[j], dim):
                    fail("L050", f"Concat inputs must match on every axis but {axis}; bottom "
                                 f"{index} {fmt(shape)} differs at axis {j} ({dim} vs {top[j]})",
                         ("bottom", index))
                top[j] = merge_dim(top[j], dim)
        sizes = [None if s is None else s[axis] for s in bottoms]
        top[axis] = None if None in sizes else sum(sizes)
        return [tuple(top)] * top_count(self, layer)

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        _top_shapes(self, layer, bottoms)
        axis = _legacy_axis(layer, "concat_param", "concat_dim", bottoms[0].ndim, "L050")
        return [np.concatenate(bottoms, axis=axis)]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """``torch.cat`` along the axis (concat_dim when given; torch.cat counts negative axes
        from the end as Caffe does). One bottom: the bottom itself, as Caffe's top shares it."""
        if len(layer.bottom) == 1:
            return TorchCode("{b0}")
        axis = _torch_legacy_axis(layer, "concat_param", "concat_dim")
        bottoms = ", ".join(f"{{b{i}}}" for i in range(len(layer.bottom)))
        return TorchCode(f"torch.cat([{bottoms}], {axis})", fresh=True)


@register
class SliceSpec(StructureSpec):
    """Cuts its input along ``axis`` at slice_point (one fewer than the tops), or into equal
    parts when slice_point is empty."""

    type = "Slice"
    param_field = "slice_param"
    max_tops = None

    def check(self, layer: Any) -> Iterator[Problem]:
        yield from _axis_and_legacy(layer, "slice_param", "slice_dim")
        points = list(layer.slice_param.slice_point)
        if points and len(points) != len(layer.top) - 1:
            yield Problem("L050", f"{len(points)} slice_point values for {len(layer.top)} tops; "
                                  f"Caffe needs one fewer than the tops",
                          ("slice_param", "slice_point"))
        previous = 0
        for i, point in enumerate(points):
            if point <= previous:
                yield Problem("L050", "slice_point values must be increasing and greater than 0",
                              ("slice_param", "slice_point", i))
                break
            previous = point

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        x = bottom(bottoms, 0)
        if x is None or has_errors(self, layer):
            return unknown(self, layer)
        axis = _legacy_axis(layer, "slice_param", "slice_dim", len(x), "L050")
        size = x[axis]
        n = top_count(self, layer)
        points = list(layer.slice_param.slice_point)
        if points:
            if size is not None and n > size:
                fail("L050", f"{n} slices of an axis of size {size}", ("top",))
            if size is not None and points[-1] > size:
                fail("L050", f"slice_point {points[-1]} is past the end of axis {axis} (size "
                             f"{size})", ("slice_param", "slice_point", len(points) - 1))
            bounds = [0] + points
            sizes: list = [b - a for a, b in zip(bounds, bounds[1:])]
            sizes.append(None if size is None else size - points[-1])
        else:
            if size is not None and size % n:
                fail("L050", f"axis {axis} of size {size} cannot be cut into {n} equal slices",
                     ("bottom", 0))
            sizes = [None if size is None else size // n] * n
        return [tuple(x[:axis]) + (part,) + tuple(x[axis + 1:]) for part in sizes]

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """Copies of the slices (Caffe copies; a view would keep the whole input alive)."""
        x = bottoms[0]
        shapes = _top_shapes(self, layer, bottoms)
        axis = _legacy_axis(layer, "slice_param", "slice_dim", x.ndim, "L050")
        tops, start = [], 0
        for shape in shapes:
            index = [slice(None)] * x.ndim
            index[axis] = slice(start, start + shape[axis])
            tops.append(x[tuple(index)].copy())
            start += shape[axis]
        return tops

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """``torch.split`` into the slices' sizes when the axis size is known and is not the
        batch axis; otherwise ``torch.tensor_split`` at slice_point, which works for any size.
        Without slice_point: ``torch.chunk`` into equal parts (Caffe requires the axis size to
        divide evenly, where chunk gives exactly that many). The tops are views (Caffe
        copies): the exporter never writes into them in place."""
        n = len(layer.top)
        if n <= 1:  # (one top: the whole input)
            return TorchCode(["{b0}"] * n)
        axis = _torch_legacy_axis(layer, "slice_param", "slice_dim")
        points = list(layer.slice_param.slice_point)
        if not points:
            return TorchCode(f"torch.chunk({{b0}}, {n}, {axis})", tuple_tops=True)
        if len(points) != n - 1:
            raise TorchUnsupported(f"{len(points)} slice_point values for {n} tops (Caffe "
                                   f"needs one fewer than the tops)")
        x = _bottom_shape(context)
        canonical_axis = axis if axis >= 0 or x is None else axis + len(x)
        size = x[canonical_axis] if x is not None and 0 <= canonical_axis < len(x) else None
        if size is not None and canonical_axis != 0:
            sizes = [b - a for a, b in zip([0] + points, points + [size])]
            return TorchCode(f"torch.split({{b0}}, {sizes}, {axis})", tuple_tops=True)
        return TorchCode(f"torch.tensor_split({{b0}}, {points}, {axis})", tuple_tops=True)


@register
class SplitSpec(StructureSpec):
    """Copies its input to every top (Caffe inserts these itself for blobs used twice)."""

    type = "Split"
    max_tops = None
    in_place = IN_PLACE_FORBIDDEN

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        return [bottom(bottoms, 0)] * top_count(self, layer)

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """The input array itself for every top, as Caffe's tops share the bottom's data.
        Nothing is copied: a caller that lets a later layer write into a top in place must
        first check that no other top (or the bottom) is still read -- the executor counts
        the live references to each buffer and never offers a shared one as writable."""
        return [bottoms[0]] * max(len(layer.top), 1)

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """Every top is the bottom tensor itself (not fresh: no top may be overwritten)."""
        return TorchCode(["{b0}"] * len(layer.top))


@register
class SilenceSpec(StructureSpec):
    """Consumes its inputs and outputs nothing (keeps them from being net outputs)."""

    type = "Silence"
    max_bottoms = None
    min_tops = max_tops = 0
    in_place = IN_PLACE_OK

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        return []

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        return []

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        return TorchCode([])  # no tops: nothing to compute


@register
class EltwiseSpec(StructureSpec):
    """Element-wise PROD, SUM (with optional coefficients, one per bottom) or MAX of inputs of
    one shape. Wrong in place: SUM clears the top (= the first input) before adding."""

    type = "Eltwise"
    param_field = "eltwise_param"
    min_bottoms = 2
    max_bottoms = None

    def macs(self, layer: Any, bottoms: list, tops: list) -> Optional[int]:
        """PROD: a multiply per value per extra bottom; SUM with coefficients other than 1:
        a multiply-add per value per bottom; plain SUM and MAX: none."""
        count = elements(tops[0]) if tops else None
        if count is None:
            return None
        p = layer.eltwise_param
        if p.operation == caffe_pb2.EltwiseParameter.PROD:
            return count * (len(bottoms) - 1)
        if p.operation == caffe_pb2.EltwiseParameter.SUM and any(c != 1 for c in p.coeff):
            return count * len(bottoms)
        return 0

    def check(self, layer: Any) -> Iterator[Problem]:
        p = layer.eltwise_param
        if p.coeff and p.operation == _EltwiseOp.PROD:
            yield Problem("L040", "coeff only applies to SUM; Caffe rejects it with PROD",
                          ("eltwise_param", "coeff"))
        elif p.coeff and len(p.coeff) != len(layer.bottom):
            yield Problem("L040", f"{len(p.coeff)} coeff value{'s' if len(p.coeff) != 1 else ''} "
                                  f"for {len(layer.bottom)} bottoms; "
                                  f"give one per bottom or none", ("eltwise_param", "coeff"))

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        top = merge_same_shapes(bottoms, "L040", "Eltwise needs inputs of one shape")
        return [top] * top_count(self, layer)

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """EltwiseLayer::Forward_cpu. PROD: b0 * b1 * ...; SUM: 0 + c0 b0 + c1 b1 + ...
        (coefficients default to 1); MAX: a > b ? a : b pairwise from the left, so a NaN
        input loses to the next one as in Caffe. Computes into bottom 0 when allowed."""
        _top_shapes(self, layer, bottoms)
        p = layer.eltwise_param
        first = bottoms[0]
        dtype = first.dtype
        y = out_buffer(bottoms, context)
        if p.operation == _EltwiseOp.PROD:
            y = np.multiply(first, bottoms[1], out=y)
            for other in bottoms[2:]:
                y *= other
        elif p.operation == _EltwiseOp.SUM:
            coeffs = list(p.coeff) or [1.0] * len(bottoms)
            y = np.multiply(first, scalar(coeffs[0], dtype), out=y) if coeffs[0] != 1 else \
                (first.copy() if y is None else y)
            for other, coeff in zip(bottoms[1:], coeffs[1:]):
                if coeff == 1:
                    y += other
                else:
                    y += other * scalar(coeff, dtype)
        elif p.operation == _EltwiseOp.MAX:
            second = bottoms[1]
            take_second = ~np.greater(first, second)
            y = first.copy() if y is None else y
            np.copyto(y, second, where=take_second)
            del take_second
            for other in bottoms[2:]:
                np.copyto(y, other, where=np.greater(other, y))
        else:
            raise ValueError(f"unknown Eltwise operation {p.operation}")
        return [y]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """PROD: ``b0 * b1 * ...``; SUM: ``c0 * b0 + c1 * b1 + ...`` with the float32
        coefficients (a coefficient 1 is left out, -1 and negative ones become a subtraction,
        which rounds the same); MAX: the helper ``eltwise_max`` (Caffe's pairwise
        ``a > b ? a : b``, which treats NaN differently from torch.maximum)."""
        p = layer.eltwise_param
        n = len(layer.bottom)
        names = [f"{{b{i}}}" for i in range(n)]
        if p.operation == _EltwiseOp.PROD:
            if p.coeff:
                raise TorchUnsupported("coeff with PROD (Caffe rejects it)")
            return TorchCode(" * ".join(names), fresh=True)
        if p.operation == _EltwiseOp.SUM:
            coeffs = list(p.coeff) or [1.0] * n
            if len(coeffs) != n:
                raise TorchUnsupported(f"{len(coeffs)} coeff values for {n} bottoms")
            return TorchCode(_weighted_sum(names, coeffs), fresh=True)
        if p.operation == _EltwiseOp.MAX:
            return TorchCode(f"eltwise_max({', '.join(names)})", helpers=("eltwise_max",),
                             fresh=True)
        raise TorchUnsupported(f"unknown Eltwise operation {p.operation}")


def _weighted_sum(names: list, coeffs: list) -> str:
    """``c0 * b0 + c1 * b1 ...`` as readable source: 1 left out, negative coefficients as a
    subtraction of |c| * b (the same float32 result as adding c * b)."""
    text = ""
    for i, (name, coeff) in enumerate(zip(names, coeffs)):
        magnitude = abs(coeff) if i else coeff
        term = name if magnitude == 1 else "-" + name if magnitude == -1 else \
            f"{torch_number(magnitude)} * {name}"
        if i == 0:
            text = term
        else:
            text += f" {'-' if coeff < 0 else '+'} {term}"
    return text


torch_helper("eltwise_max", '''
def eltwise_max(first, *others):
    """Caffe's Eltwise MAX: first > second ? first : second, then each later input replaces
    the running maximum where it is greater. A NaN loses to the next input where it is the
    running value and never wins where it is the next input (torch.maximum propagates it)."""
    top = torch.where(first > others[0], first, others[0])
    for other in others[1:]:
        top = torch.where(other > top, other, top)
    return top
''')


@register
class FlattenSpec(StructureSpec):
    """Merges axes axis..end_axis (default 1..-1) into one. Caffe refuses to run it in place."""

    type = "Flatten"
    param_field = "flatten_param"
    in_place = IN_PLACE_FORBIDDEN

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        x = bottom(bottoms, 0)
        if x is None:
            return unknown(self, layer)
        p = layer.flatten_param
        start = axis_of(p.axis, x, ("flatten_param", "axis"))
        end = axis_of(p.end_axis, x, ("flatten_param", "end_axis"))
        if end + 1 < start:
            fail("L070", f"end_axis {p.end_axis} comes before axis {p.axis} in the input "
                         f"{fmt(x)}", ("flatten_param", "end_axis"))
        top = tuple(x[:start]) + (count(x, start, end + 1),) + tuple(x[end + 1:])
        return [top] * top_count(self, layer)

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """A reshaped view of the input (Caffe's top shares the bottom's data)."""
        return [bottoms[0].reshape(_top_shapes(self, layer, bottoms)[0])]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """``x.flatten(axis, end_axis)`` (end_axis left out when it is the last axis). Caffe
        allows end_axis just before axis, which inserts an axis of size 1 there (torch.flatten
        refuses): ``x.unsqueeze(axis)``."""
        p = layer.flatten_param
        x = _bottom_shape(context)
        start, end = p.axis, p.end_axis
        if x is not None:
            start, end = _torch_axis(start, x), _torch_axis(end, x)
            if end + 1 < start:
                raise TorchUnsupported(f"end_axis {p.end_axis} comes before axis {p.axis}")
            if end + 1 == start:
                return TorchCode(f"{{b0}}.unsqueeze({start})")
            if end == len(x) - 1:
                end = -1
        elif (start < 0) == (end < 0) and end < start:
            raise TorchUnsupported(f"end_axis {p.end_axis} does not come after axis {p.axis} "
                                   f"(give --input-shape)")
        if end == -1:
            return TorchCode(f"{{b0}}.flatten({start})")
        return TorchCode(f"{{b0}}.flatten({start}, {end})")


@register
class ReshapeSpec(StructureSpec):
    """Replaces axes axis..axis+num_axes (default: all) by reshape_param.shape: 0 copies the
    input dimension at that position, one -1 is inferred from the count. The count must not
    change. Caffe refuses to run it in place."""

    type = "Reshape"
    param_field = "reshape_param"
    in_place = IN_PLACE_FORBIDDEN

    def check(self, layer: Any) -> Iterator[Problem]:
        p = layer.reshape_param
        inferred = 0
        for i, dim in enumerate(p.shape.dim):
            if dim == -1:
                inferred += 1
                if inferred == 2:
                    yield Problem("L070", "the new shape has more than one -1; at most one "
                                          "dimension can be inferred",
                                  ("reshape_param", "shape", "dim", i))
            elif dim < -1:
                yield Problem("L070", f"dimension {dim} is invalid: use a size, 0 to copy the "
                                      f"input dimension, or -1 to infer it",
                              ("reshape_param", "shape", "dim", i))
        if p.num_axes < -1:
            yield Problem("L070", f"num_axes {p.num_axes} is invalid; it must be -1 (all "
                                  f"remaining axes) or at least 0", ("reshape_param", "num_axes"))

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        if has_errors(self, layer):
            return unknown(self, layer)
        p = layer.reshape_param
        dims = blob_dims(p.shape)
        x = bottom(bottoms, 0)
        if x is None:
            if p.axis == 0 and p.num_axes == -1:  # the new shape is the whole top
                return [tuple(None if d in (0, -1) else d for d in dims)]
            return unknown(self, layer)
        rank = len(x)
        start = p.axis if p.axis >= 0 else rank + p.axis + 1
        if not 0 <= start <= rank:
            fail("L003", f"axis {p.axis} is out of range for an input with {rank} axes",
                 ("reshape_param", "axis"))
        end = rank if p.num_axes == -1 else start + p.num_axes
        if end > rank:
            fail("L003", f"axis + num_axes = {end} reaches past the {rank} axes of the input "
                         f"{fmt(x)}", ("reshape_param", "num_axes"))
        top: list = list(x[:start]) + list(dims) + list(x[end:])
        for i, dim in enumerate(dims):
            if dim == 0:
                if start + i >= rank:
                    fail("L070", f"dimension {i} of the new shape is 0 (copy the input's) but "
                                 f"the input {fmt(x)} has no axis {start + i}",
                         ("reshape_param", "shape", "dim", i))
                top[start + i] = x[start + i]
        if -1 in dims:
            position = start + dims.index(-1)
            others = [d for i, d in enumerate(top) if i != position]
            known_count = product(others)
            total = count(x)
            top[position] = None
            if known_count is not None and total is not None:
                if known_count == 0 or total % known_count:
                    fail("L070", f"the input {fmt(x)} has {total} values, which the other "
                                 f"dimensions ({known_count} values) do not divide",
                         ("reshape_param", "shape"))
                top[position] = total // known_count
        before, after = count(x), product(top)
        if differ(before, after):
            fail("L070", f"Reshape would change the number of values from {before} "
                         f"{fmt(x)} to {after} {fmt(tuple(top))}", ("reshape_param", "shape"))
        return [tuple(top)] * top_count(self, layer)

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """A reshaped view of the input (Caffe's top shares the bottom's data)."""
        return [bottoms[0].reshape(_top_shapes(self, layer, bottoms)[0])]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """``x.reshape(...)`` with Caffe's rule written out so that it holds at run time: the
        input's axes before ``axis`` and after the replaced ones come from ``x.shape``, a 0
        copies the input's dimension at its position, -1 is left to PyTorch (inferred from
        the count, as Caffe does). The module then takes any batch size Caffe's net takes."""
        problems = [q for q in self.check(layer) if q.severity == "error"]
        if problems:
            raise TorchUnsupported(problems[0].message)
        p = layer.reshape_param
        dims = blob_dims(p.shape)
        x = _bottom_shape(context)
        rank = None if x is None else len(x)
        if p.axis < 0 and rank is None:
            raise TorchUnsupported("the input's rank is unknown (give --input-shape)")
        start = p.axis if p.axis >= 0 else rank + p.axis + 1
        end = rank if p.num_axes == -1 else start + p.num_axes  # None: unknown rank, to the end
        if rank is not None and not 0 <= start <= end <= rank:
            raise TorchUnsupported(f"axis {p.axis} with num_axes {p.num_axes} is out of range "
                                   f"for an input with {rank} axes")
        if rank is not None and any(d == 0 and start + i >= rank for i, d in enumerate(dims)):
            raise TorchUnsupported("a 0 in the new shape copies an input axis that does not "
                                   "exist")
        # Each top axis: the input axis whose size it copies (an int) or a size (source text).
        items: list = list(range(start))
        items += [start + i if d == 0 else str(d) for i, d in enumerate(dims)]
        rest = None  # with an unknown rank, the input's axes from here on follow
        if rank is not None:
            items += list(range(end, rank))
        elif end is not None:
            rest = end
        return TorchCode(f"{{b0}}.reshape({_shape_source(items, rest, rank)})")


def _shape_source(items: list, rest: Optional[int], rank: Optional[int]) -> str:
    """Reshape's arguments: sizes as written, ``x.shape[i]`` for a copied input axis, and
    ``*x.shape[i:j]`` for a run of three or more; ``*x.shape[rest:]`` at the end."""
    parts: list = []
    i = 0
    while i < len(items):
        item = items[i]
        j = i
        if not isinstance(item, str):
            while j + 1 < len(items) and items[j + 1] == items[j] + 1 \
                    and not isinstance(items[j + 1], str):
                j += 1
        if isinstance(item, str):
            parts.append(item)
        elif j - i < 2:
            parts += [f"{{b0}}.shape[{axis}]" for axis in items[i:j + 1]]
        elif item == 0 and items[j] + 1 == rank:
            parts.append("*{b0}.shape")
        else:
            stop = "" if items[j] + 1 == rank else str(items[j] + 1)
            parts.append(f"*{{b0}}.shape[{item or ''}:{stop}]")
        i = j + 1
    if rest is not None:
        parts.append(f"*{{b0}}.shape[{rest}:]")
    return ", ".join(parts) if parts else "()"


@register
class CropSpec(StructureSpec):
    """Crops bottom 0 to the size of bottom 1 on every axis from ``axis`` (default 2) on,
    starting at ``offset`` (one for all those axes, or one per axis)."""

    type = "Crop"
    param_field = "crop_param"
    min_bottoms = max_bottoms = 2

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        x, reference = bottom(bottoms, 0), bottom(bottoms, 1)
        if x is None:
            return unknown(self, layer)
        p = layer.crop_param
        start = axis_of(p.axis, x, ("crop_param", "axis"))
        offsets = list(p.offset)
        if len(offsets) > 1 and start + len(offsets) != len(x):
            fail("L060", f"{len(offsets)} offsets, but the input {fmt(x)} has "
                         f"{len(x) - start} axes from axis {start}; give one offset or one per "
                         f"cropped axis", ("crop_param", "offset"))
        top: list = list(x)
        for i in range(start, len(x)):
            if reference is not None and i >= len(reference):
                fail("L060", f"the reference bottom 1 {fmt(reference)} has no axis {i} to take "
                             f"the cropped size from", ("bottom", 1))
            size = None if reference is None else reference[i]
            offset = offsets[0] if len(offsets) == 1 else offsets[i - start] if offsets else 0
            if x[i] is not None and size is not None and x[i] - offset < size:
                fail("L060", f"axis {i}: a crop of {size} at offset {offset} does not fit in "
                             f"the input size {x[i]}", ("crop_param", "offset"))
            top[i] = size
        return [tuple(top)] * top_count(self, layer)

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        x = bottoms[0]
        shape = _top_shapes(self, layer, bottoms)[0]
        p = layer.crop_param
        start = canonical(p.axis, x.ndim)
        offsets = list(p.offset)
        index = []
        for i in range(x.ndim):
            if i < start:
                offset = 0
            elif len(offsets) == 1:
                offset = offsets[0]
            elif offsets:
                offset = offsets[i - start]
            else:
                offset = 0
            index.append(slice(offset, offset + shape[i]))
        return [x[tuple(index)].copy()]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """Slicing: ``x[:, :, o:o + r.shape[2], o:o + r.shape[3]]``: from ``axis`` on, each
        axis from its offset for the size of bottom 1 on that axis (read at run time); the
        axes before ``axis`` whole. A view (Caffe copies): never overwritten in place."""
        p = layer.crop_param
        x = _bottom_shape(context)
        start = _torch_axis(p.axis, x)
        offsets = list(p.offset)
        if len(offsets) > 1 and start + len(offsets) != len(x):
            raise TorchUnsupported(f"{len(offsets)} offsets for the {len(x) - start} axes "
                                   f"from axis {start}")
        index = [":"] * start
        for i in range(start, len(x)):
            offset = offsets[0] if len(offsets) == 1 else offsets[i - start] if offsets else 0
            size = f"{{b1}}.shape[{i}]"
            index.append(f"{offset}:{offset} + {size}" if offset else f":{size}")
        return TorchCode(f"{{b0}}[{', '.join(index)}]")


@register
class TileSpec(StructureSpec):
    """Repeats the input ``tiles`` times along ``axis`` (default 1)."""

    type = "Tile"
    param_field = "tile_param"

    def check(self, layer: Any) -> Iterator[Problem]:
        p = layer.tile_param
        if not has(p, "tiles"):
            yield Problem("L120", "tiles is missing; Tile needs the number of copies",
                          ("tile_param", "tiles"))
        elif p.tiles <= 0:
            yield Problem("L120", f"tiles {p.tiles} must be positive", ("tile_param", "tiles"))

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        x = bottom(bottoms, 0)
        if x is None or has_errors(self, layer):
            return unknown(self, layer)
        p = layer.tile_param
        axis = axis_of(p.axis, x, ("tile_param", "axis"))
        top = list(x)
        top[axis] = None if x[axis] is None else x[axis] * p.tiles
        return [tuple(top)] * top_count(self, layer)

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """For each index before ``axis``, the block of axes axis.. repeated ``tiles`` times."""
        x = bottoms[0]
        _top_shapes(self, layer, bottoms)
        axis = canonical(layer.tile_param.axis, x.ndim)
        reps = [1] * x.ndim
        reps[axis] = layer.tile_param.tiles
        return [np.tile(x, reps)]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """``x.repeat(1, tiles, 1...)``: each block of axes axis.. repeated ``tiles`` times,
        what np.tile and Caffe's loops compute."""
        p = layer.tile_param
        if not has(p, "tiles") or p.tiles <= 0:
            raise TorchUnsupported("tiles must be given and positive")
        x = _bottom_shape(context)
        axis = _torch_axis(p.axis, x)
        reps = ["1"] * len(x)
        reps[axis] = str(p.tiles)
        return TorchCode(f"{{b0}}.repeat({', '.join(reps)})", fresh=True)


@register
class ReductionSpec(StructureSpec):
    """Reduces (SUM, ASUM, SUMSQ, MEAN) all axes from ``axis`` (default 0) on: the top is the
    input's shape up to ``axis``, a scalar with axis 0."""

    type = "Reduction"
    param_field = "reduction_param"

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        x = bottom(bottoms, 0)
        if x is None:
            return unknown(self, layer)
        axis = axis_of(layer.reduction_param.axis, x, ("reduction_param", "axis"))
        return [tuple(x[:axis])] * top_count(self, layer)

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """ReductionLayer: each of the count(0, axis) rows of count(axis) values reduced by
        SUM, ASUM, SUMSQ or MEAN, then scaled by coeff (coeff / dim for MEAN, as Caffe folds
        the mean into the coefficient)."""
        x = bottoms[0]
        p = layer.reduction_param
        dtype = x.dtype
        axis = canonical(p.axis, x.ndim)
        outer = tuple(x.shape[:axis])
        rows = x.reshape(int(np.prod(outer, dtype=np.int64)), -1)
        dim = rows.shape[1]
        if p.operation in (_ReductionOp.SUM, _ReductionOp.MEAN):
            y = np.sum(rows, axis=1, dtype=dtype)
        elif p.operation == _ReductionOp.ASUM:
            y = np.abs(rows).sum(axis=1, dtype=dtype)
        elif p.operation == _ReductionOp.SUMSQ:
            y = np.einsum("rd,rd->r", rows, rows)
        else:
            raise ValueError(f"unknown Reduction operation {p.operation}")
        coeff = scalar(p.coeff, dtype)
        if p.operation == _ReductionOp.MEAN:
            coeff = coeff / scalar(dim, dtype)
        if coeff != 1:
            y *= coeff
        return [np.asarray(y, dtype=dtype).reshape(outer)]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """``x.sum(dims)``, ``x.abs().sum(dims)``, ``x.square().sum(dims)`` or ``x.mean(dims)``
        over the axes from ``axis`` on (all of them: ``.sum()``), times coeff. (Caffe scales
        the sum by coeff / count for MEAN: the same value within float32 rounding.) With an
        unknown rank the axes are flattened first: ``x.flatten(axis).sum(-1)``."""
        p = layer.reduction_param
        operations = {_ReductionOp.SUM: ("", "sum"), _ReductionOp.ASUM: (".abs()", "sum"),
                      _ReductionOp.SUMSQ: (".square()", "sum"), _ReductionOp.MEAN: ("", "mean")}
        if p.operation not in operations:
            raise TorchUnsupported(f"unknown Reduction operation {p.operation}")
        term, method = operations[p.operation]
        x = _bottom_shape(context)
        if x is None:
            expression = f"{{b0}}.flatten({p.axis}){term}.{method}(-1)"
        else:
            axis = _torch_axis(p.axis, x)
            dims = tuple(range(axis, len(x)))
            argument = "" if axis == 0 else str(axis) if len(dims) == 1 else str(dims)
            expression = f"{{b0}}{term}.{method}({argument})"
        if p.coeff != 1:
            expression = f"{torch_number(p.coeff)} * {expression}"
        return TorchCode(expression, fresh=True)


@register
class FilterSpec(StructureSpec):
    """Keeps the items (first axis) of bottoms 0..n-2 where the last bottom, the selector, is
    non-zero; one top per filtered bottom. The kept count depends on the data."""

    type = "Filter"
    min_bottoms = 2
    max_bottoms = None
    max_tops = None

    def top_range(self, layer: Any) -> tuple[int, Optional[int]]:
        n = len(layer.bottom)
        return (n - 1, n - 1) if n >= 2 else (1, None)

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        selector_index = len(bottoms) - 1
        selector = bottom(bottoms, selector_index)
        if selector is not None:
            if len(selector) == 0 or any(differ(d, 1) for d in selector[1:]):
                fail("L120", f"the selector (last bottom) must be (N, 1, ...); got "
                             f"{fmt(selector)}", ("bottom", selector_index))
        tops = []
        for index in range(top_count(self, layer)):
            shape = bottom(bottoms, index)
            if shape is not None and len(shape) == 0:
                fail("L120", f"bottom {index} is a scalar; Filter selects along the first axis",
                     ("bottom", index))
            if shape is not None and selector is not None and differ(shape[0], selector[0]):
                fail("L120", f"bottom {index} {fmt(shape)} and the selector {fmt(selector)} "
                             f"differ in their first dimension", ("bottom", index))
            tops.append(None if shape is None else (None,) + tuple(shape[1:]))
        return tops

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """The items n of each bottom but the last whose selector value (the last bottom's
        n-th value) is non-zero, in order."""
        selector = bottoms[-1]
        _top_shapes(self, layer, bottoms)
        items = selector.shape[0] if selector.ndim else 0
        keep = np.flatnonzero(selector.reshape(-1)[:items] != 0)
        return [np.take(b, keep, axis=0) for b in bottoms[:-1]]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """``x[selector.flatten() != 0]`` for each filtered bottom: boolean indexing keeps the
        selected items in order (the output size depends on the data: fine in eager mode)."""
        n = len(layer.bottom)
        if n < 2:
            raise TorchUnsupported("Filter needs a selector (its last bottom)")
        keep = f"{{b{n - 1}}}.flatten() != 0"
        return TorchCode([f"{{b{i}}}[{keep}]" for i in range(n - 1)], fresh=True)


@register
class ArgMaxSpec(StructureSpec):
    """The indices (and with out_max_val the values) of the top_k largest values, along
    ``axis`` when given, else over each item: then the top is (N, 1 or 2, top_k[, 1...])."""

    type = "ArgMax"
    param_field = "argmax_param"

    def check(self, layer: Any) -> Iterator[Problem]:
        if layer.argmax_param.top_k == 0:
            yield Problem("L120", "top_k must be at least 1", ("argmax_param", "top_k"))

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        x = bottom(bottoms, 0)
        if x is None or has_errors(self, layer):
            return unknown(self, layer)
        p = layer.argmax_param
        if has(p, "axis"):
            axis = axis_of(p.axis, x, ("argmax_param", "axis"))
            if x[axis] is not None and p.top_k > x[axis]:
                fail("L120", f"top_k {p.top_k} is more than the {x[axis]} values along axis "
                             f"{axis}", ("argmax_param", "top_k"))
            top: list = list(x)
            top[axis] = p.top_k
        else:
            if len(x) == 0:
                fail("L120", "ArgMax without an axis needs an input with a first (batch) axis",
                     ("bottom", 0))
            per_item = count(x, 1)
            if per_item is not None and p.top_k > per_item:
                fail("L120", f"top_k {p.top_k} is more than the {per_item} values of each item",
                     ("argmax_param", "top_k"))
            top = [1] * max(len(x), 3)
            top[0] = x[0]
            top[2] = p.top_k
            if p.out_max_val:
                top[1] = 2
        return [tuple(top)] * top_count(self, layer)

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """ArgMaxLayer: per row, the top_k (value, index) pairs by std::partial_sort with
        std::greater -- larger values first, and among equal values the larger index first.
        Indices are stored as floats. Without ``axis`` a row is one item (count(1) values) and
        the top is (N, 1 or 2, top_k, 1...) holding the indices then (out_max_val) the
        values; with ``axis`` the top replaces that axis by top_k and holds values
        (out_max_val) or indices."""
        x = bottoms[0]
        p = layer.argmax_param
        shape = _top_shapes(self, layer, bottoms)[0]
        k = p.top_k
        if has(p, "axis"):
            axis = canonical(p.axis, x.ndim)
            rows = np.moveaxis(x, axis, -1)
            moved_shape = rows.shape
            rows = rows.reshape(-1, x.shape[axis])
        else:
            rows = x.reshape(x.shape[0], -1)
        dim = rows.shape[1]
        positions = np.broadcast_to(np.arange(dim), rows.shape)
        # lexsort: the last key is primary; ascending (value, index), then reversed.
        order = np.lexsort((positions, rows), axis=-1)[:, ::-1][:, :k]
        values = np.take_along_axis(rows, order, axis=-1)
        indices = order.astype(x.dtype)
        if has(p, "axis"):
            result = values if p.out_max_val else indices
            result = result.reshape(moved_shape[:-1] + (k,))
            return [np.ascontiguousarray(np.moveaxis(result, -1, axis)).reshape(shape)]
        if p.out_max_val:
            result = np.stack([indices, values], axis=1)
        else:
            result = indices[:, None, :]
        return [result.reshape(shape)]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """The helper ``argmax_like_caffe``: torch.topk and torch.argmax order equal values
        differently from Caffe (which puts the larger index first), and the layout without
        ``axis`` is Caffe's own."""
        p = layer.argmax_param
        if p.top_k < 1:
            raise TorchUnsupported("top_k must be at least 1")
        args = ["{b0}", str(p.top_k)]
        if has(p, "axis"):
            args.append(f"axis={p.axis}")
        if p.out_max_val:
            args.append("out_max_val=True")
        return TorchCode(f"argmax_like_caffe({', '.join(args)})",
                         helpers=("argmax_like_caffe",), fresh=True)


torch_helper("argmax_like_caffe", '''
def argmax_like_caffe(x, top_k, axis=None, out_max_val=False):
    """Caffe's ArgMax: the top_k largest values and their indices (as floats), larger values
    first and, among equal values, the larger index first (Caffe sorts (value, index) pairs
    with std::greater). With axis: along it, the values (out_max_val) or else the indices in
    its place. Without: over each item, an (N, 1 or 2, top_k, 1...) top holding the indices
    (then the values, with out_max_val)."""
    rows = x if axis is not None else x.reshape(x.shape[0], -1)
    dim = axis if axis is not None else 1
    # Reversed, a stable descending sort puts the larger index first among equal values.
    values, order = rows.flip(dim).sort(dim=dim, descending=True, stable=True)
    values = values.narrow(dim, 0, top_k)
    indices = (rows.shape[dim] - 1 - order.narrow(dim, 0, top_k)).to(x.dtype)
    if axis is not None:
        return values if out_max_val else indices
    top = torch.stack([indices, values], 1) if out_max_val else indices[:, None]
    return top.reshape(top.shape + (1,) * (x.dim() - 3))
''')


@register
class BatchReindexSpec(StructureSpec):
    """Gathers items of bottom 0 by the indices in bottom 1 (1-D): the top's first dimension is
    the number of indices."""

    type = "BatchReindex"
    min_bottoms = max_bottoms = 2

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        x, indices = bottom(bottoms, 0), bottom(bottoms, 1)
        if indices is not None and len(indices) != 1:
            fail("L120", f"the indices (bottom 1) must be 1-D; got {fmt(indices)}", ("bottom", 1))
        if x is None:
            return unknown(self, layer)
        first: Dim = None if indices is None else indices[0]
        return [(first,) + tuple(x[1:])] * top_count(self, layer)

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        x, permutation = bottoms
        _top_shapes(self, layer, bottoms)
        bad = (permutation < 0) | (permutation >= x.shape[0]) | np.isnan(permutation)
        if bad.any():
            value = permutation[bad][0]
            raise ValueError(f"index {value:g} in bottom 1 is outside the {x.shape[0]} items "
                             f"of bottom 0")
        return [np.take(x, permutation.astype(np.int64), axis=0)]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """``x[indices.long()]``: the indices come as floats, truncated as Caffe's cast does."""
        return TorchCode("{b0}[{b1}.long()]", fresh=True)


@register
class ParameterSpec(StructureSpec):
    """Outputs its one learnable blob, of parameter_param.shape."""

    type = "Parameter"
    param_field = "parameter_param"
    min_bottoms = max_bottoms = 0
    in_place = IN_PLACE_OK

    def blob_count(self, layer: Any) -> int:
        return 1

    def check(self, layer: Any) -> Iterator[Problem]:
        for i, dim in enumerate(layer.parameter_param.shape.dim):
            if dim < 0:
                yield Problem("L120", f"dimension {dim} is negative",
                              ("parameter_param", "shape", "dim", i))

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        if has_errors(self, layer):
            return unknown(self, layer)
        return [blob_dims(layer.parameter_param.shape)] * top_count(self, layer)

    def blob_shapes(self, layer: Any, bottoms: list) -> Optional[list]:
        return [blob_dims(layer.parameter_param.shape)]

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """A copy of the blob (Caffe's top shares it; a copy keeps in-place layers downstream
        from writing into the learned parameter)."""
        shape = _top_shapes(self, layer, bottoms)[0]
        return [np.array(blobs[0], dtype=context.dtype, copy=True).reshape(shape)]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """The helper module ``CaffeParameter`` holding the blob as an ``nn.Parameter``
        (state key ``blob``); its output is the parameter itself, so it is not fresh."""
        problems = [q for q in self.check(layer) if q.severity == "error"]
        if problems:
            raise TorchUnsupported(problems[0].message)
        shape = blob_dims(layer.parameter_param.shape)
        literal = "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
        return TorchCode("{m}()", module=f"CaffeParameter({literal})",
                         state={"blob": lambda blobs, fused: np.reshape(blobs[0], shape)},
                         helpers=("CaffeParameter",))


torch_helper("CaffeParameter", '''
class CaffeParameter(nn.Module):
    """Caffe's Parameter layer: no input, its learned blob as the output."""

    def __init__(self, shape):
        super().__init__()
        self.blob = nn.Parameter(torch.zeros(shape))

    def forward(self):
        return self.blob
''')
