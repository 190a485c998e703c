"""What every layer type module provides: one :class:`LayerSpec` per Caffe layer type.

A spec is the single home of a layer type's Caffe semantics: how many bottoms and tops it takes,
whether it may run in place, how many learnable blobs it owns, the checks Caffe runs when it
sets the layer up, and how it computes its top shapes. The linter, the shape inference, and
later the executor and the PyTorch exporter all read them from here.

Shapes are tuples of dimensions; a dimension is ``None`` when unknown, and a whole shape is
``None`` when even its number of axes is unknown. Shape rules must accept unknown inputs and
propagate them (an unknown input dimension makes the dimensions computed from it unknown).

Checks report :class:`Problem` objects carrying a lint code from :data:`CHECK_CODES`; a check
that would make Caffe abort during shape computation raises :class:`CaffeCheckFailed`, which
leaves the layer's tops unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

Dim = Optional[int]
Shape = Optional[tuple]  # tuple of Dim, or None when the rank is unknown
FieldPath = tuple  # e.g. ("convolution_param", "kernel_size", 1)

TRAIN = 0
TEST = 1

# How a layer behaves when its top is its bottom (top[i] == bottom[i]).
IN_PLACE_OK = "ok"
IN_PLACE_FORBIDDEN = "forbidden"  # Caffe aborts ("does not allow in-place computation")
IN_PLACE_WRONG = "wrong"  # Caffe runs it but the result is silently wrong

#: The lint codes layer checks report, with a short name and what they cover. The linter
#: publishes one rule per code (prototxt_tools/lint/rules/layer_checks.py).
CHECK_CODES: dict[str, tuple[str, str]] = {
    "L001": ("blob-count", "a layer has a number of bottoms or tops its type does not accept"),
    "L002": ("propagate-down-count", "propagate_down is given neither 0 nor once per bottom"),
    "L003": ("axis-out-of-range", "an axis parameter is outside the input's axes"),
    "L010": ("convolution-params", "kernel, stride, pad, dilation, num_output or group of a "
                                   "Convolution, Deconvolution or Im2col layer Caffe rejects"),
    "L020": ("pooling-params", "Pooling or SPP parameters Caffe rejects"),
    "L030": ("inner-product-params", "InnerProduct or Embed parameters Caffe rejects"),
    "L040": ("eltwise-params", "Eltwise coefficients or input shapes Caffe rejects"),
    "L050": ("concat-slice-params", "Concat or Slice parameters or input shapes Caffe rejects"),
    "L060": ("crop-params", "Crop offsets or sizes Caffe rejects"),
    "L070": ("reshape-params", "Reshape or Flatten parameters Caffe rejects"),
    "L080": ("normalization-params", "BatchNorm, LRN, MVN, Scale or Bias parameters or shapes "
                                     "Caffe rejects"),
    "L090": ("activation-params", "Dropout, Exp, Log, Power, PReLU, Clip and other "
                                  "element-wise layer parameters Caffe rejects"),
    "L100": ("loss-params", "loss and Accuracy layer parameters or label shapes Caffe rejects"),
    "L110": ("data-params", "data and Input layer parameters Caffe rejects"),
    "L120": ("misc-params", "RNN, LSTM, ArgMax, Reduction, Tile, Filter, Parameter and other "
                            "layer parameters Caffe rejects"),
}


@dataclass(frozen=True)
class Problem:
    """A Caffe set-up check that fails (or, with severity "warning", a likely mistake).

    ``field`` is the path inside the LayerParameter to the offending value (the linter
    points there, or at the nearest enclosing field that exists in the file).
    """

    code: str
    message: str
    field: FieldPath = ()
    severity: str = "error"


class CaffeCheckFailed(Exception):
    """Raised by a shape rule where Caffe would abort; the layer's tops become unknown."""

    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


@dataclass
class ShapeContext:
    """What shape rules may need besides the layer and its bottom shapes."""

    phase: int = TEST
    #: ``--input-shape NAME=N,C,H,W`` overrides, by top (blob) name.
    input_shapes: dict = field(default_factory=dict)
    #: Non-fatal problems found while computing shapes (``warn`` appends here).
    problems: list = field(default_factory=list)

    def warn(self, code: str, message: str, field_path: FieldPath = (),
             severity: str = "warning") -> None:
        self.problems.append(Problem(code, message, field_path, severity))


@dataclass
class ForwardContext:
    """What a forward pass may need besides the layer, its bottoms and its blobs.

    ``writable`` holds the indices of bottoms the layer may overwrite (it runs in place and
    nothing reads the old values later), so element-wise layers can reuse the buffer.
    ``rng`` is a numpy Generator for Dropout's mask and STOCHASTIC pooling in TRAIN.
    """

    phase: int = TEST
    rng: Any = None
    dtype: Any = "float32"
    writable: frozenset = frozenset()
    #: State a layer keeps from one forward pass to the next, by layer name (RNN and LSTM
    #: carry their last hidden state into the next pass, as Caffe copies h_T into h_0).
    state: dict = field(default_factory=dict)


@dataclass
class TorchContext:
    """What a layer's PyTorch emission may need; everything is known before code is written.

    Shapes come from shape inference on the exported net (a dimension may be None when the
    net does not fix it; emitted code should then read it from the tensor at run time).
    ``fused`` is a following layer (a LayerParameter) whose computation this one absorbs: the
    exporter offers BatchNorm the Scale right after it, and the emission must then compute
    both (its ``state`` functions receive the fused layer's blobs as their second argument).
    """

    bottom_shapes: list = field(default_factory=list)
    top_shapes: list = field(default_factory=list)
    blob_shapes: list = field(default_factory=list)  # the layer's learnable blobs, as stored
    fused: Any = None
    fused_blob_shapes: list = field(default_factory=list)


@dataclass
class TorchCode:
    """One layer in the emitted PyTorch module, as source text.

    ``forward``: one Python expression per top (a list), or, with ``tuple_tops``, one
    expression giving a tuple of all tops. Placeholders: ``{b0}``, ``{b1}``... the bottoms
    (local variable names), ``{m}`` the layer's submodule (``self.conv1``).
    ``module``: the submodule's constructor (``nn.Conv2d(3, 64, 7, stride=2, padding=3)``),
    or None for a layer computed by functions only.
    ``state``: {state_dict key inside the submodule: fn(blobs, fused_blobs) -> array}: how the
    layer's Caffe blobs (NumPy arrays) become the submodule's parameters and buffers. Every
    parameter and buffer of the submodule must be covered.
    ``helpers``: names of helper definitions (see :func:`torch_helper`) the code calls.
    ``inplace``: the same computation writing into ``{b0}`` (single top), which the exporter
    uses when nothing else reads that tensor and autograd allows it.
    ``fresh``: the tops are new tensors (never views of, or the same tensor as, a bottom) and
    autograd does not keep them for the backward pass, so a later layer may overwrite them in
    place (Convolution, BatchNorm, addition: yes; ReLU, Sigmoid, a reshape, Dropout: no).
    """

    forward: Union[str, list]
    module: Optional[str] = None
    state: dict = field(default_factory=dict)
    helpers: tuple = ()
    inplace: Optional[str] = None
    tuple_tops: bool = False
    fresh: bool = False

    @property
    def expressions(self) -> list:
        return [self.forward] if isinstance(self.forward, str) else list(self.forward)


def torch_axis(axis: int, shape: Shape, what: str = "axis") -> int:
    """Blob::CanonicalAxisIndex for emitted code: ``axis`` made non-negative. A negative axis
    needs the rank; out of range, or negative with an unknown rank, is TorchUnsupported."""
    if shape is None:
        if axis >= 0:
            return axis
        raise TorchUnsupported(f"negative {what} {axis} with an input of unknown rank")
    if not -len(shape) <= axis < len(shape):
        raise TorchUnsupported(f"{what} {axis} is out of range for a {len(shape)}-D input")
    return axis + len(shape) if axis < 0 else axis


def torch_number(value: float) -> str:
    """A float32 parameter as the shortest Python literal that gives it back (0.1, not
    0.10000000149011612); infinities and NaN as ``float("inf")``."""
    import struct

    value = struct.unpack("f", struct.pack("f", float(value)))[0]
    if value != value:
        return 'float("nan")'
    if value in (float("inf"), float("-inf")):
        return 'float("inf")' if value > 0 else '-float("inf")'
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value)}.0"
    for digits in range(1, 18):
        text = f"{value:.{digits}g}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == value:
            return text
    return repr(value)


class TorchUnsupported(Exception):
    """A layer (or a variant of its parameters) the PyTorch exporter cannot express."""


#: Helper definitions pasted once into an emitted module: name -> (source, names it needs).
_TORCH_HELPERS: dict[str, tuple[str, tuple]] = {}


def torch_helper(name: str, source: str, requires: Sequence[str] = ()) -> None:
    """Register a helper (a function or class, source text using only ``torch``, ``nn`` and
    ``F``) that emitted code may call by ``name``. ``requires``: other helpers it calls."""
    existing = _TORCH_HELPERS.get(name)
    if existing is not None and existing[0] != source:
        raise ValueError(f"torch helper {name!r} registered twice with different sources")
    _TORCH_HELPERS[name] = (source.strip("\n") + "\n", tuple(requires))


def torch_helper_names() -> list:
    """Every registered helper's name (emitted code must not shadow them)."""
    return list(_TORCH_HELPERS)


def torch_helpers(names: Iterable[str]) -> list:
    """The sources of ``names`` and what they require, dependencies first, each once."""
    _load_all()
    ordered: list = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        if name not in _TORCH_HELPERS:
            raise KeyError(f"unknown torch helper {name!r}")
        for required in _TORCH_HELPERS[name][1]:
            visit(required)
        ordered.append(name)

    for name in names:
        visit(name)
    return [_TORCH_HELPERS[name][0] for name in ordered]


class LayerSpec:
    """The Caffe semantics of one layer type. Subclasses override what differs.

    Counts follow Caffe's Layer::CheckBlobCounts: ``min``/``max`` of bottoms and tops
    (``None`` = no limit), ``equal_bottom_top`` for layers with one top per bottom, and
    ``auto_tops`` for layers whose missing tops Caffe creates itself (losses).
    """

    type: str = ""
    # data, vision, common, activation, normalization, loss, structure, recurrent, python
    family: str = "other"
    param_field: Optional[str] = None  # e.g. "convolution_param"
    min_bottoms: int = 0
    max_bottoms: Optional[int] = None
    min_tops: int = 0
    max_tops: Optional[int] = None
    equal_bottom_top: bool = False
    auto_tops: bool = False
    in_place: str = IN_PLACE_OK
    is_loss: bool = False  # its top 0 carries loss weight 1 by default
    is_data: bool = False  # reads its tops from a source (database, files, memory, input)

    # -- counts ------------------------------------------------------------------------------
    def bottom_range(self, layer: Any) -> tuple[int, Optional[int]]:
        """(min, max) bottoms for this layer (some types depend on their parameters)."""
        return self.min_bottoms, self.max_bottoms

    def top_range(self, layer: Any) -> tuple[int, Optional[int]]:
        return self.min_tops, self.max_tops

    def blob_count(self, layer: Any) -> int:
        """How many learnable blobs the layer owns (weights, biases, statistics)."""
        return 0

    # -- checks and shapes -------------------------------------------------------------------
    def params(self, layer: Any) -> Any:
        """The type-specific parameter message (Caffe defaults where unset)."""
        if self.param_field is None:
            return None
        return getattr(layer, self.param_field)

    def check(self, layer: Any) -> Iterable[Problem]:
        """Checks Caffe makes from the parameters alone (no shapes needed)."""
        return ()

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        """Top shapes from bottom shapes. Default: tops mirror the first bottom."""
        first = bottoms[0] if bottoms else None
        count = max(len(layer.top), self.min_tops)
        return [first] * count

    def blob_shapes(self, layer: Any, bottoms: list) -> Optional[list]:
        """Shapes of the learnable blobs given the bottom shapes, or None if unknown."""
        return [] if self.blob_count(layer) == 0 else None

    def macs(self, layer: Any, bottoms: list, tops: list) -> Optional[int]:
        """Multiply-adds of one forward pass given the bottom and top shapes (None when a
        shape it needs is unknown). Default 0: comparisons, additions, copies and lookups are
        no multiply-adds (``prototxt summary --help`` states the conventions)."""
        return 0

    def learnable(self, layer: Any, index: int) -> bool:
        """Blob ``index`` is a parameter (learned), not a statistic Caffe only accumulates."""
        return True

    # -- computing ---------------------------------------------------------------------------
    def forward(self, layer: Any, bottoms: list, blobs: list, context: "ForwardContext") -> list:
        """Top arrays from bottom arrays and the layer's blobs, exactly as Caffe's Forward_cpu
        computes them (in ``context.phase``). Layers that update their blobs while computing
        (BatchNorm in TRAIN) change ``blobs`` in place. Data layers have no forward: their tops
        are the executor's inputs."""
        raise NotImplementedError(f"{self.type} has no forward pass")

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """The layer in PyTorch, computing exactly what :meth:`forward` computes in TEST.
        Raise :class:`TorchUnsupported` (with the reason) for what PyTorch cannot express."""
        raise TorchUnsupported(f"no PyTorch code for {self.type} layers yet")


# -- the registry ------------------------------------------------------------------------------

_REGISTRY: dict[str, LayerSpec] = {}


def register(spec_class: type) -> type:
    """Class decorator: register one instance of the spec under its ``type``."""
    spec = spec_class()
    if not spec.type:
        raise ValueError(f"{spec_class.__name__} has no type")
    if spec.type in _REGISTRY:
        raise ValueError(f"layer type {spec.type!r} registered twice")
    _REGISTRY[spec.type] = spec
    return spec_class


def get_spec(layer_type: str) -> Optional[LayerSpec]:
    """The spec for a layer type, or None for a type BVLC Caffe does not have."""
    _load_all()
    return _REGISTRY.get(layer_type)


def known_types() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


_LOADED = False


def _load_all() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from . import _catalog  # noqa: F401  (imports every layer module, which registers)


# -- helpers for shape rules -------------------------------------------------------------------

def known(*dims: Dim) -> bool:
    return all(d is not None for d in dims)


def product(dims: Iterable[Dim]) -> Dim:
    """The product of dimensions, None if any is unknown."""
    result = 1
    for d in dims:
        if d is None:
            return None
        result *= d
    return result


def canonical_axis(axis: int, num_axes: int, layer_field: FieldPath, code: str = "L003") -> int:
    """Caffe's Blob::CanonicalAxisIndex: -num_axes <= axis < num_axes, negatives count from
    the end. Raises CaffeCheckFailed outside that range."""
    if not -num_axes <= axis < num_axes:
        raise CaffeCheckFailed(Problem(
            code, f"axis {axis} is out of range for an input with {num_axes} axes "
                  f"(valid: {-num_axes} to {num_axes - 1})", layer_field))
    return axis + num_axes if axis < 0 else axis


def fail(code: str, message: str, field_path: FieldPath = ()) -> None:
    """Raise CaffeCheckFailed with a Problem."""
    raise CaffeCheckFailed(Problem(code, message, field_path))


Check = Callable[[Any], Iterator[Problem]]
ShapeLike = Union[Shape, Sequence[Dim]]


def elements(shape: Shape) -> Optional[int]:
    """The number of values in a blob of ``shape`` (None when it is not fully known)."""
    return None if shape is None else product(shape)
