"""The executor: a forward pass through a net with Caffe's semantics, in NumPy.

The net is filtered and wired for one state exactly as Caffe does (``Net.view``), each layer's
forward comes from its spec in ``prototxt_tools/layers``, and weights are matched to layers by
name as Caffe's CopyTrainedLayersFrom matches them. Memory: a blob is freed after its last
reader unless it is kept; a layer whose input dies with it may compute into that input's
buffer (in-place layers do); float32 throughout, float64 on request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import PrototxtError
from ..layers.base import TEST, TRAIN, ForwardContext, LayerSpec
from ..net.model import Layer, Net, NetView

__all__ = ["Executor", "load_net", "match_weights"]


def load_net(source: Any, input_shapes: Optional[dict] = None) -> Net:
    """A :class:`Net` from a Net, a Document, a NetParameter, prototxt text or a file path."""
    if isinstance(source, Net):
        if input_shapes:
            source.input_shapes.update(input_shapes)
        return source
    from ..syntax.parser import parse
    from ..syntax.tree import Document

    if isinstance(source, Document):
        return Net.from_document(source, input_shapes=input_shapes)
    if hasattr(source, "DESCRIPTOR"):
        return Net.from_message(source, input_shapes=input_shapes)
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                    and source.endswith((".prototxt", ".pt", ".txt"))):
        from ..fileio import read_bytes

        path = str(source)
        return Net.from_document(parse(read_bytes(path), path), input_shapes=input_shapes)
    return Net.from_document(parse(source), input_shapes=input_shapes)


def _weights_by_name(source: Any) -> dict:
    """{layer name: [arrays]} from a .caffemodel path, a NetParameter, a list of
    LayerWeights/(name, type, arrays) or a mapping."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return {name: list(arrays) for name, arrays in source.items()}
    if isinstance(source, (str, Path)):
        from ..schema.caffemodel import read_weights

        layers = read_weights(source)
    elif hasattr(source, "DESCRIPTOR"):
        from ..schema.caffemodel import layer_weights_from_net

        layers = layer_weights_from_net(source)
    else:
        layers = list(source)
    weights: dict = {}
    for item in layers:
        name, arrays = (item.name, item.blobs) if hasattr(item, "blobs") else (item[0], item[2])
        weights.setdefault(name, list(arrays))  # Caffe copies the first layer of a name
    return weights


def _legacy_equal(stored: tuple, wanted: tuple) -> bool:
    """Caffe's Blob::ShapeEquals for legacy 4-D blobs: shapes compared from the end, missing
    leading axes counting as 1 (InnerProduct weights stored 1x1xNxK, biases 1x1x1xN)."""
    if len(stored) != 4 or len(wanted) > 4:
        return False
    return (1,) * (4 - len(wanted)) + tuple(wanted) == tuple(stored)


def match_weights(view: NetView, weights: dict, dtype: Any, writable: bool,
                  init_missing: Optional[int] = None) -> dict:
    """Blobs for every learnable layer of ``view``, checked as Caffe checks them.

    Raises PrototxtError for a wrong blob count or shape, and for layers the weights do not
    cover (a layer Caffe would silently leave at its fillers) unless ``init_missing`` is a
    seed, in which case those layers get init-weights values.
    """
    from .fillers import layer_blobs

    shapes = view.shapes
    blobs: dict = {}
    missing = []
    for layer in view.layers:
        spec = layer.spec
        if spec is None:
            continue
        count = spec.blob_count(layer.param)
        if count == 0:
            continue
        expected = spec.blob_shapes(layer.param, shapes.bottom_shapes(view, layer))
        stored = weights.get(layer.name)
        if stored is None:
            if init_missing is None:
                missing.append(layer)
                continue
            sized = expected if expected is not None else [None] * count
            blobs[layer.name] = layer_blobs(layer, sized, init_missing, dtype)
            continue
        if len(stored) != count:
            raise _layer_error(layer, f"has {count} learnable blobs but the weights give "
                                      f"{len(stored)} (Caffe: incompatible number of blobs)")
        arrays = []
        for index, array in enumerate(stored):
            want = None if expected is None else expected[index]
            array = np.asarray(array)
            if want is not None and None not in want and tuple(array.shape) != tuple(want):
                legacy = array.ndim == 4 and 1 in array.shape[:2] and \
                    array.size == int(np.prod(want))
                if _legacy_equal(array.shape, want) or legacy:
                    array = array.reshape(want)
                else:
                    raise _layer_error(layer, f"blob {index} has shape {tuple(array.shape)} in "
                                              f"the weights but the net needs {tuple(want)}")
            array = array.astype(dtype, copy=False)
            if writable and not array.flags.writeable:
                array = array.copy()
            arrays.append(array)
        blobs[layer.name] = arrays
    if missing:
        names = ", ".join(f"'{layer.name}'" for layer in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise _layer_error(missing[0], f"has no weights: the weights hold no layer named "
                                       f"{names}{more} (Caffe would silently keep the "
                                       f"fillers' values; pass init_missing / --init-missing "
                                       f"to do that)")
    return blobs


def _layer_error(layer: Layer, message: str) -> PrototxtError:
    return PrototxtError.at(layer.node, f"layer '{layer.name}' ({layer.type}) {message}")


@dataclass
class _Step:
    layer: Layer
    spec: LayerSpec
    inputs: list  # BlobRef | None per bottom
    outputs: list  # BlobRef per top
    dies: list = field(default_factory=list)  # BlobRefs read for the last time here


class Executor:
    """Runs a net forward: ``Executor(net, weights).forward({"data": x}) -> {blob: array}``.

    ``net``: a Net, Document, NetParameter, prototxt text or path. ``weights``: a .caffemodel
    path, a NetParameter, (name, type, arrays) triples or {layer name: [arrays]}; None means
    init-weights values from ``seed``. ``phase`` TEST (default) or TRAIN (BatchNorm uses and
    updates batch statistics, Dropout drops with a mask drawn from ``seed``).
    """

    def __init__(self, net: Any, weights: Any = None, *, phase: int = TEST,
                 level: Optional[int] = None, stages: Sequence[str] = (),
                 dtype: Any = np.float32, seed: int = 0, input_shapes: Optional[dict] = None,
                 init_missing: bool = False):
        self.net = load_net(net, input_shapes)
        self.phase = phase
        self.dtype = np.dtype(dtype)
        self.seed = seed
        self.view = self.net.view(phase, level, tuple(stages))
        self._check_runnable()
        if weights is None:
            from .fillers import init_weights

            weights = {name: arrays for name, _, arrays in
                       init_weights(self.net, seed, dtype=self.dtype)}
        self.blobs = match_weights(self.view, _weights_by_name(weights), self.dtype,
                                   writable=phase == TRAIN,
                                   init_missing=seed if init_missing else None)
        self._steps = self._plan()
        self.rng = np.random.default_rng(seed)
        self.state: dict = {}  # carried between passes (recurrent layers' last hidden state)

    # -- planning ------------------------------------------------------------------------------
    def _check_runnable(self) -> None:
        for layer in self.view.layers:
            spec = layer.spec
            if spec is None:
                raise _layer_error(layer, "has no forward pass: the type is not a BVLC Caffe "
                                          "layer (a fork's?); register one with "
                                          "prototxt_tools.run.register_layer or --plugin")
            if layer.type == "Python":
                raise _layer_error(layer, "is a Python layer; its module is never imported, so "
                                          "it cannot run (register a replacement forward with "
                                          "--plugin)")
            if not spec.is_data and type(spec).forward is LayerSpec.forward \
                    and layer.type != "HDF5Output":
                raise _layer_error(layer, "has no forward pass in prototxt-tools yet")

    def _plan(self) -> list:
        view = self.view
        last_read: dict = {}
        for position, layer in enumerate(view.layers):
            for ref in view.inputs.get(layer.index, []):
                if ref is not None:
                    last_read[ref] = position
        steps = []
        for position, layer in enumerate(view.layers):
            step = _Step(layer, layer.spec, list(view.inputs.get(layer.index, [])),
                         list(view.outputs.get(layer.index, [])))
            step.dies = [ref for ref in dict.fromkeys(step.inputs)
                         if ref is not None and last_read.get(ref) == position]
            steps.append(step)
        return steps

    @property
    def input_names(self) -> list:
        """The tops the caller must feed: those of data and Input layers."""
        names = []
        for step in self._steps:
            if step.spec.is_data:
                names.extend(ref.name for ref in step.outputs if ref.name)
        return names

    def input_shapes(self) -> dict:
        """{input name: shape} as far as the net states them (None where unknown)."""
        shapes = self.view.shapes
        result = {}
        for step in self._steps:
            if step.spec.is_data:
                for ref in step.outputs:
                    if ref.name:
                        result[ref.name] = shapes.shapes.get(ref)
        return result

    # -- running -------------------------------------------------------------------------------
    def forward(self, inputs: Optional[Mapping[str, Any]] = None, *,
                keep: Union[str, Iterable[str]] = (),
                outputs: Optional[Iterable[str]] = None) -> dict:
        """Run the net; returns {blob name: array} for ``outputs`` (default: the net's
        outputs, the blobs nothing reads), plus every blob named in ``keep`` ("all": every
        blob, as Caffe's net.blobs holds them after a forward pass)."""
        inputs = dict(inputs or {})
        view = self.view
        keep_all = keep == "all"
        wanted = list(outputs) if outputs is not None else [r.name for r in view.net_outputs]
        kept_names = set(wanted) | (set() if keep_all else set(keep))
        final = {}  # name -> last BlobRef, for kept names
        for step in self._steps:
            for ref in step.outputs:
                if ref.name:
                    final[ref.name] = ref
        unknown = [name for name in kept_names if name not in final]
        if unknown:
            raise PrototxtError(f"no blob named {', '.join(repr(n) for n in sorted(unknown))} "
                                f"in the {view.state.describe()} net")
        protected = set(final.values()) if keep_all else {final[n] for n in kept_names}
        live: dict = {}
        roots: dict = {}  # id(root buffer) -> number of live refs using it
        context = ForwardContext(phase=self.phase, rng=self.rng, dtype=self.dtype,
                                 state=self.state)
        for step in self._steps:
            layer = step.layer
            if step.spec.is_data:
                tops = self._feed(step, inputs)
            else:
                bottoms = []
                for ref in step.inputs:
                    if ref is None:
                        raise _layer_error(layer, "reads a blob no earlier layer produces")
                    bottoms.append(live[ref])
                writable = frozenset(
                    i for i, ref in enumerate(step.inputs)
                    if ref in step.dies and ref not in protected
                    and roots.get(id(_root(live[ref])), 0) == 1
                    and step.inputs.count(ref) == 1)
                context.writable = writable
                try:
                    tops = step.spec.forward(layer.param, bottoms, self.blobs.get(layer.name, []),
                                             context)
                except PrototxtError:
                    raise
                except (ValueError, IndexError, FloatingPointError, ZeroDivisionError) as exc:
                    raise _layer_error(layer, f"failed: {exc}") from None
            for ref, array in zip(step.outputs, tops):
                live[ref] = array
                key = id(_root(array))
                # The caller's arrays are pinned (one extra reference) so that no layer
                # ever computes into them.
                roots[key] = roots.get(key, 0) + (2 if step.spec.is_data else 1)
            for ref in step.dies:
                if ref in protected or ref not in live:
                    continue
                array = live.pop(ref)
                key = id(_root(array))
                roots[key] -= 1
        result = {}
        names = list(final) if keep_all else [*wanted, *[n for n in keep if n not in wanted]]
        for name in names:
            ref = final[name]
            if ref in live:
                result[name] = live[ref]
        return result

    def _feed(self, step: _Step, inputs: dict) -> list:
        """Data and Input layers' tops are the caller's arrays (any batch or spatial size:
        every forward computes from the arrays it gets, as after Caffe's net.reshape())."""
        tops = []
        for ref in step.outputs:
            if ref.name not in inputs:
                raise _layer_error(step.layer, f"needs input '{ref.name}': pass it "
                                               f"(--input {ref.name}=FILE.npy or "
                                               f"{ref.name}=random)")
            tops.append(np.asarray(inputs[ref.name], dtype=self.dtype))
        return tops


def _root(array: Any) -> Any:
    """The array that owns the memory ``array`` views."""
    while isinstance(getattr(array, "base", None), np.ndarray):
        array = array.base
    return array
