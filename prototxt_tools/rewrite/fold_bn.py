"""Fold BatchNorm (+ Scale, + Bias) into the layer before it, or into one Scale layer.

For every BatchNorm active in the chosen phase, the chain is the BatchNorm, then optionally a
Scale reading its output (alone), then optionally a Bias reading that (alone). With the stored
statistics (as at TEST: f = 0 if s == 0 else 1 / s; mu = f * blob0; var = f * blob1; eps from
the layer) the chain is one affine map per channel, y = a * x + c, with
a = gamma / sqrt(var + eps) and c = beta + bias - mu * a.

- Into the producer: when the BatchNorm reads a Convolution, Deconvolution or InnerProduct
  whose output only it reads, the producer's weights are scaled per output channel
  (W' = W * a; groups and Deconvolution's (Cin, Cout / group, ...) layout handled; InnerProduct
  with transpose stores (K, N)) and its bias becomes b' = b * a + c (created, with
  ``bias_term: true``, when it had none). The chain's layers are deleted; the producer's top is
  renamed to the chain's last top when they differ, so every reader, every other layer name
  and therefore every other layer's weights stay as they were.
- Otherwise (after a ReLU, Concat, Eltwise, Pooling, an input, a producer others read too...):
  the BatchNorm becomes ONE ``Scale { bias_term: true }`` layer carrying (a, c), keeping the
  BatchNorm's name (the new weights go under it), its bottom, and the chain's last top.

Everything is a text edit on the original file: comments and layout of the layers that stay are
kept. The folded net is then run against the original by the executor on random inputs, and
every blob both nets still have must agree within ``tolerance`` (relative to the blob's largest
magnitude). Layers of other phases are left untouched; a chain is only folded when doing so
does not change the other phase's wiring.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import PrototxtError
from ..layers.base import TEST, TRAIN
from ..lint.fixes import block_text, set_field, unique_layer_name
from ..net.model import PHASE_NAMES, Layer, Net, NetView
from ..syntax.edits import TextEdit, apply_edits, delete, indent_unit, insert_field, replace
from ..syntax.edits import replace_value
from ..syntax.parser import parse
from ..syntax.tree import Document, Field, Message
from ..syntax.values import escape_bytes

__all__ = ["FoldResult", "fold_bn"]

#: Producers a chain folds into, and the block holding their bias_term.
PRODUCERS = {"Convolution": "convolution_param", "Deconvolution": "convolution_param",
             "InnerProduct": "inner_product_param"}


@dataclass
class FoldResult:
    text: str  # the new prototxt
    weights: list  # [(layer name, type, [arrays])] for the new net, for write_weights
    folded: list  # [(producer or replacement layer name, [BatchNorm, Scale, Bias names])]
    max_abs: Optional[float] = None  # None when not checked
    max_rel: Optional[float] = None
    notes: list = field(default_factory=list)
    compared: list = field(default_factory=list)  # names of the blobs compared
    worst: Optional[str] = None  # the blob with the largest relative difference
    #: median executor forward time in seconds, (original, folded); None when not timed
    forward_seconds: Optional[tuple] = None

    @property
    def into_producers(self) -> list:
        """The entries folded into a Convolution, Deconvolution or InnerProduct."""
        return [entry for entry in self.folded if entry[0] not in entry[1]]

    @property
    def replaced(self) -> list:
        """The entries replaced by one Scale layer (named after the BatchNorm)."""
        return [entry for entry in self.folded if entry[0] in entry[1]]


@dataclass
class _Chain:
    bn: Layer
    members: list  # [BatchNorm, Scale?, Bias?]
    scale: np.ndarray  # a, per channel (float64)
    shift: np.ndarray  # c, per channel (float64)
    producer: Optional[Layer] = None
    producer_blobs: list = field(default_factory=list)  # its weights (as matched)
    target: str = ""  # the producer's name, or the replacement Scale's

    @property
    def final_top(self) -> str:
        return self.members[-1].tops[0]

    @property
    def names(self) -> list:
        return [layer.name for layer in self.members]


def fold_bn(source: Union[str, bytes, Path, Document], weights: Any, *, phase: Any = TEST,
            tolerance: float = 1e-4, seed: int = 0, check: bool = True,
            input_shapes: Optional[dict] = None, level: Optional[int] = None,
            stages: Sequence[str] = (), path: Optional[str] = None,
            timing_runs: int = 0) -> FoldResult:
    """Fold every BatchNorm of the ``phase`` net (see the module docs).

    ``source``: a Document, prototxt text (str/bytes) or a Path. ``weights``: a .caffemodel
    path, a NetParameter, (name, type, arrays) triples or {layer name: [arrays]}.
    ``input_shapes`` ({top: shape}) sizes data layers for the check, as --input-shape does.
    Raises PrototxtError for a legacy (V0/V1) net, missing or mis-shaped weights, or when the
    folded net's blobs differ from the original's by more than ``tolerance``.
    ``timing_runs`` > 0 also times both nets' forward passes (the median of that many runs,
    outputs only) into ``forward_seconds``.
    """
    from ..run.executor import _weights_by_name, match_weights

    document = _document(source, path)
    phase = _phase(phase)
    input_shapes = dict(input_shapes or {})
    notes: list = []
    net = Net.from_document(document, input_shapes=input_shapes)
    if len(net.message.layers):
        raise PrototxtError("fold-bn edits V2 'layer' blocks, and this net is written in the "
                            "legacy V1/V0 format ('layers'): run prototxt upgrade first",
                            document.path)
    if weights is None:
        raise PrototxtError("fold-bn needs the trained weights (the BatchNorm statistics)",
                            document.path)
    _schema_notes(document, notes)
    view = net.view(phase, level, tuple(stages))
    _check_wired(view)
    raw = _weights_by_name(weights)
    try:
        matched = match_weights(view, raw, np.float32, writable=False)
    except PrototxtError as exc:
        if "has no weights" not in exc.message:
            raise
        message = exc.message.split(" (Caffe would")[0]
        raise PrototxtError(f"{message}: folding needs the trained weights of every layer",
                            exc.path, exc.line, exc.column, offset=exc.offset) from None

    builder = _Folder(net, view, matched, phase, notes)
    chains = builder.find()
    edits = builder.edits(chains)
    text = apply_edits(document.source, edits) if edits else document.source
    if document.bom:
        text = "\ufeff" + text
    new_document = parse(text, document.path)  # the edits must leave valid syntax
    new_net = Net.from_document(new_document, input_shapes=input_shapes)
    new_weights = _new_weights(new_net, raw, chains, notes)
    result = FoldResult(text, new_weights, [(c.target, c.names) for c in chains], notes=notes)
    left = [layer.name for layer in new_net.view(phase, level, tuple(stages)).layers
            if layer.type == "BatchNorm"]
    if left:
        notes.append(f"BatchNorm left in the {PHASE_NAMES[phase]} net: {', '.join(left)}")
    if check and chains:
        original = net
        if builder.forced_global:
            forced = [edit for layer in builder.forced_global
                      for edit in set_field(layer, ["batch_norm_param"], "use_global_stats",
                                            "true") or []]
            original = Net.from_document(parse(apply_edits(document.source, forced),
                                               document.path), input_shapes=input_shapes)
        _compare(result, original, raw, new_net, new_weights, phase, level, stages, seed,
                 tolerance, timing_runs)
    elif check:
        result.max_abs = result.max_rel = 0.0
    return result


# -- input -------------------------------------------------------------------------------------

def _document(source: Any, path: Optional[str]) -> Document:
    if isinstance(source, Document):
        return source
    if isinstance(source, Path):
        from ..fileio import read_bytes

        return parse(read_bytes(str(source)), str(source))
    return parse(source, path)


def _phase(phase: Any) -> int:
    if isinstance(phase, str):
        names = {"TRAIN": TRAIN, "TEST": TEST}
        if phase.upper() not in names:
            raise PrototxtError(f"unknown phase '{phase}' (TRAIN or TEST)")
        return names[phase.upper()]
    return int(phase)


def _schema_notes(document: Document, notes: list) -> None:
    from ..schema.binding import bind

    problems = bind(document, "net").diagnostics
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        notes.append(f"kept as written, though BVLC Caffe's schema rejects it: "
                     f"{first.format()}{more}")


def _check_wired(view: NetView) -> None:
    problems = [(layer, f"reads '{layer.bottoms[index]}', which no earlier layer produces")
                for layer, index in view.unknown_bottoms]
    problems += [(layer, f"writes '{layer.tops[index]}' again (not in place)")
                 for layer, index, _ in view.duplicate_tops]
    if problems:
        layer, message = problems[0]
        raise _layer_error(layer, f"{message}: fix the net's wiring before folding")


def _layer_error(layer: Layer, message: str) -> PrototxtError:
    return PrototxtError.at(layer.node, f"layer '{layer.name}' ({layer.type}) {message}")


# -- finding and folding chains ----------------------------------------------------------------

class _Folder:
    def __init__(self, net: Net, view: NetView, blobs: dict, phase: int, notes: list):
        self.net = net
        self.view = view
        self.blobs = blobs
        self.phase = phase
        self.notes = notes
        self.others = [net.view(other, view.state.level, view.state.stages)
                       for other in (TRAIN, TEST) if other != phase]
        self.forced_global: list = []  # BatchNorms the original uses batch statistics in
        self.name_count: dict = {}
        self.with_spec: list = []  # producers given a bias and a param spec for it
        self.without_spec: list = []  # producers given a bias (Caffe's default spec)
        for layer in net.layers:
            self.name_count[layer.name] = self.name_count.get(layer.name, 0) + 1

    def shape(self, layer: Layer, top: int = 0) -> Optional[tuple]:
        refs = self.view.outputs.get(layer.index, [])
        shape = self.view.shapes.shapes.get(refs[top]) if top < len(refs) else None
        return None if shape is None or None in shape else tuple(shape)

    def find(self) -> list:
        chains = []
        phase_name = PHASE_NAMES[self.phase]
        for layer in self.net.layers:
            if layer.type == "BatchNorm" and not self.view.is_active(layer):
                self.notes.append(f"BatchNorm '{layer.name}' is not in the {phase_name} net: "
                                  f"left as is")
        for layer in self.view.layers:
            if layer.type != "BatchNorm":
                continue
            chain = self.chain(layer)
            if chain is not None:
                chains.append(chain)
        return chains

    def chain(self, bn: Layer) -> Optional[_Chain]:
        view = self.view
        if len(bn.bottoms) != 1 or len(bn.tops) != 1:
            self.notes.append(f"BatchNorm '{bn.name}' does not have one bottom and one top: "
                              f"left as is")
            return None
        p = bn.param.batch_norm_param
        use_global = p.use_global_stats if p.HasField("use_global_stats") else \
            self.phase == TEST
        mean, variance, factor = (np.asarray(b, np.float64).reshape(-1)
                                  for b in self.blobs[bn.name])
        channels = mean.size
        stored = factor[0] if factor.size else 1.0
        f = 0.0 if stored == 0 else 1.0 / stored
        a = 1.0 / np.sqrt(variance * f + p.eps)
        c = -mean * f * a
        # Every chain this BatchNorm could start, longest first: (members, a, c).
        candidates = [([bn], a, c)]
        shape = self.shape(bn)
        current = bn
        for kind in ("Scale", "Bias"):
            readers = view.readers(current, 0)
            if len(readers) != 1:
                break
            reader, index = readers[0]
            if reader.type != kind or index != 0 or len(reader.bottoms) != 1 \
                    or len(reader.tops) != 1:
                continue
            params = reader.param.scale_param if kind == "Scale" else reader.param.bias_param
            arrays = [np.asarray(b, np.float64).reshape(-1) for b in self.blobs[reader.name]]
            if not _per_channel(params, shape, channels) or \
                    any(array.size not in (1, channels) for array in arrays):
                continue
            if kind == "Scale":
                gamma = np.broadcast_to(arrays[0], (channels,))
                a, c = a * gamma, c * gamma
                if len(arrays) > 1:
                    c = c + np.broadcast_to(arrays[1], (channels,))
            else:
                c = c + np.broadcast_to(arrays[0], (channels,))
            candidates.insert(0, ([*candidates[0][0], reader], a, c))
            current = reader
        chain = None
        why_not_producer = None
        for members, a, c in candidates:
            candidate = _Chain(bn, members, a, c)
            producer, reason = self.producer(candidate, channels)
            why_not_producer = why_not_producer or reason
            if producer is not None:
                candidate.producer = producer
                candidate.producer_blobs = list(self.blobs[producer.name])
                candidate.target = producer.name
                chain = candidate
                break
        if chain is None:
            for members, a, c in candidates:
                if self.same_elsewhere(members):
                    chain = _Chain(bn, members, a, c, target=bn.name)
                    break
            if why_not_producer:
                self.notes.append(why_not_producer)
        if chain is None:
            self.notes.append(f"BatchNorm '{bn.name}' is wired differently in another phase: "
                              f"left as is")
            return None
        if len(chain.members) < len(candidates[0][0]):
            kept = ", ".join(f"'{m.name}'" for m in candidates[0][0][len(chain.members):])
            self.notes.append(f"{kept} after BatchNorm '{bn.name}' also serve(s) another phase: "
                              f"left as is")
        if chain.producer is None and self.name_count.get(bn.name, 0) > 1:
            chain.target = unique_layer_name(bn, bn.name)
            self.notes.append(f"BatchNorm '{bn.name}' shares its name with a layer of another "
                              f"phase: its replacement Scale is named '{chain.target}'")
        if not use_global:
            self.forced_global.append(bn)
            why = "use_global_stats: false" if p.HasField("use_global_stats") else \
                "it is in the TRAIN phase"
            self.notes.append(f"BatchNorm '{bn.name}' would use batch statistics ({why}): "
                              f"folded its stored statistics, as at TEST; the check compares "
                              f"with use_global_stats: true")
        return chain

    def producer(self, chain: _Chain, channels: int) -> tuple:
        """(the Convolution / Deconvolution / InnerProduct the chain folds into, None) or
        (None, why not: a note, or None when there is simply no such producer)."""
        written = self.view.writer(chain.bn, 0)
        if written is None:
            return None, None
        producer, top = written
        if producer.type not in PRODUCERS or top != 0 or len(producer.tops) != 1 \
                or len(producer.bottoms) != 1:
            return None, None
        if self.view.readers(producer, 0) != [(chain.bn, 0)]:
            return None, None  # others read it too: replace by a Scale instead
        p = producer.param
        bn_name = chain.bn.name
        if producer.type == "InnerProduct":
            axis, num_output = p.inner_product_param.axis, p.inner_product_param.num_output
        else:
            axis, num_output = p.convolution_param.axis, p.convolution_param.num_output
        refs = self.view.inputs.get(producer.index, [])
        shape = self.view.shapes.shapes.get(refs[0]) if refs and refs[0] is not None else None
        if axis != 1 and not (axis < 0 and shape is not None and axis + len(shape) == 1):
            return None, (f"'{producer.name}' works along axis {axis}, not the channels "
                          f"BatchNorm '{bn_name}' normalises: replaced by a Scale")
        if num_output != channels or not self.blobs.get(producer.name):
            return None, None
        if any(spec.name for spec in p.param):
            return None, (f"'{producer.name}' names its parameters (they may be shared): "
                          f"BatchNorm '{bn_name}' replaced by a Scale instead")
        if self.name_count.get(producer.name, 0) > 1:
            return None, (f"'{producer.name}' shares its name (so its weights) with a layer "
                          f"of another phase: BatchNorm '{bn_name}' replaced by a Scale "
                          f"instead")
        if not self.same_elsewhere([producer, *chain.members]):
            return None, (f"'{producer.name}' and BatchNorm '{bn_name}' are wired "
                          f"differently in another phase: replaced by a Scale instead")
        return producer, None

    def same_elsewhere(self, members: list) -> bool:
        """Whether folding ``members`` leaves every other phase's net as it would be: there,
        each member is active exactly when here, and what each member but the last writes
        is read by the same layers."""
        def signature(view: NetView) -> list:
            active = [view.is_active(layer) for layer in members]
            readers = [[(reader.index, index) for reader, index in view.readers(layer, 0)]
                       for layer in members[:-1]]
            return [active, readers]

        here = signature(self.view)
        for other in self.others:
            if not any(other.is_active(layer) for layer in members):
                continue
            if signature(other) != here:
                return False
        return True

    # -- edits ---------------------------------------------------------------------------------
    def edits(self, chains: list) -> list:
        edits: list = []
        deleted: list = []
        for chain in chains:
            deleted.extend(layer.node for layer in chain.members[1:])
            if chain.producer is not None:
                deleted.append(chain.bn.node)
                edits.extend(self.producer_edits(chain))
            else:
                edits.extend(self.replacement_edits(chain))
        if self.without_spec:
            self.notes.append(f"gained a bias (bias_term: true): {_names(self.without_spec)}")
        if self.with_spec:
            self.notes.append(f"gained a bias and a second param spec for it (lr_mult twice "
                              f"the weights', decay_mult 0: the BVLC convention for biases), "
                              f"as their one spec covered the weights only: "
                              f"{_names(self.with_spec)}")
        return edits + _deletions(deleted)

    def producer_edits(self, chain: _Chain) -> list:
        producer = chain.producer
        assert producer is not None
        edits = []
        block = PRODUCERS[producer.type]
        if not getattr(producer.param, block).bias_term:
            edits.extend(_bias_term_true(producer, block))
            specs = [f for f in producer.node.value.fields if f.name == "param"] \
                if isinstance(producer.node.value, Message) else []
            if len(producer.param.param) == 1 and specs:
                lr = producer.param.param[0].lr_mult * 2
                unit = indent_unit(producer.node.document)
                text = block_text("param", [f"lr_mult: {_number(lr)}", "decay_mult: 0"], unit)
                index = producer.node.value.fields.index(specs[-1]) + 1
                edits.append(insert_field(producer.node, text, index))
                self.with_spec.append(producer.name)
            else:
                self.without_spec.append(producer.name)
        if chain.final_top != producer.tops[0]:
            edits.append(_replace_item(producer, "top", 0, _quote(chain.final_top)))
        return edits

    def replacement_edits(self, chain: _Chain) -> list:
        bn = chain.bn
        edits = []
        type_field = bn.field("type")
        assert type_field is not None
        edits.append(replace_value(type_field, '"Scale"'))
        if chain.target != bn.name:
            name_field = bn.field("name")
            if name_field is not None:
                edits.append(replace_value(name_field, _quote(chain.target)))
        fields = bn.node.value.fields if isinstance(bn.node.value, Message) else []
        edits.extend(_deletions([child for child in fields if child.name == "param"],
                                with_comments=False))
        if chain.final_top != bn.tops[0]:
            edits.append(_replace_item(bn, "top", 0, _quote(chain.final_top)))
        # Laid out like what it replaces: on several lines, or on one.
        unit = indent_unit(bn.node.document)
        old = bn.field("batch_norm_param")
        spread = _spans_lines(old if old is not None else bn.node)
        scale_param = block_text("scale_param", ["bias_term: true"], unit) if spread else \
            "scale_param { bias_term: true }"
        if old is not None:
            indent = _line_indent(old)
            edits.append(replace(old, scale_param.replace("\n", "\n" + indent)))
        else:
            anchor = max(i for i, child in enumerate(fields) if child.name in ("type", "top"))
            edits.append(insert_field(bn.node, scale_param, anchor + 1))
        return edits


def _deletions(nodes: list, with_comments: bool = True) -> list:
    """Edits deleting the fields ``nodes``; neighbours deleted together that filled their
    line(s) take the line with them (``delete`` decides for one field at a time)."""
    if not nodes:
        return []
    source = nodes[0].document.source
    edits = sorted((delete(node, with_comments) for node in nodes),
                   key=lambda e: (e.start, e.end))
    merged: list = []  # [start, end, how many]
    for edit in edits:
        if merged and edit.start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], edit.end)
            merged[-1][2] += 1
        else:
            merged.append([edit.start, edit.end, 1])
    result = []
    for start, end, count in merged:
        if count > 1 and end < len(source) and source[end - 1] != "\n":  # ends mid-line
            line_start = source.rfind("\n", 0, start) + 1
            line_end = _REST_OF_LINE.match(source, end).end()  # type: ignore[union-attr]
            if not source[line_start:start].strip() and (line_end == len(source)
                                                          or source[line_end] == "\n"):
                start, end = line_start, min(line_end + 1, len(source))
        result.append(TextEdit(start, end, ""))
    return result


_REST_OF_LINE = re.compile(r"[ \t\f\v\r]*(?:#[^\n]*)?")


def _per_channel(params: Any, shape: Optional[tuple], channels: int) -> bool:
    """Whether a Scale/Bias blob with these params multiplies/adds per channel (axis 1) or
    one value everywhere."""
    axis, num_axes = params.axis, params.num_axes
    if num_axes == 0:
        return True
    if shape is None:
        return axis == 1 and num_axes == 1
    rank = len(shape)
    axis = axis + rank if axis < 0 else axis
    end = rank if num_axes == -1 else axis + num_axes
    region = shape[axis:end]
    if int(np.prod(region)) == 1:
        return True
    return axis == 1 and region[0] == channels and int(np.prod(region[1:])) == 1


def _bias_term_true(producer: Layer, block: str) -> list:
    """``bias_term: true`` in the producer; a comment on the line of an explicit
    ``bias_term: false`` goes with the old value (it explained why there was no bias, e.g.
    "BatchNorm follows", which the fold made untrue)."""
    existing = producer.field(block, "bias_term")
    if existing is None:
        return set_field(producer, [block], "bias_term", "true") or []
    source = existing.document.source
    comment = re.compile(r"[ \t]*#[^\r\n]*").match(source, existing.end_offset)
    end = comment.end() if comment else existing.value.end_offset
    return [TextEdit(existing.value.start_offset, end, "true")]


def _replace_item(layer: Layer, name: str, index: int, text: str) -> TextEdit:
    node = layer.locate((name, index))
    if isinstance(node, Field):
        return replace_value(node, text)
    return replace(node, text)


def _names(names: list, most: int = 12) -> str:
    shown = ", ".join(f"'{name}'" for name in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _quote(name: str) -> str:
    return escape_bytes(name.encode("utf-8", "surrogateescape"))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _spans_lines(node: Field) -> bool:
    return "\n" in node.document.source[node.start_offset:node.end_offset]


def _line_indent(node: Field) -> str:
    source = node.document.source
    start = source.rfind("\n", 0, node.start_offset) + 1
    text = source[start:node.start_offset]
    return text if not text.strip() else ""


# -- weights -----------------------------------------------------------------------------------

def _fold_weights(chain: _Chain, arrays: list) -> list:
    """The producer's [weights, bias] with the chain's affine map folded in (float32)."""
    producer = chain.producer
    assert producer is not None
    a, c = chain.scale, chain.shift
    weights = np.asarray(arrays[0], np.float64)
    if producer.type == "Convolution":
        folded = weights * a.reshape((-1,) + (1,) * (weights.ndim - 1))
    elif producer.type == "Deconvolution":
        group = producer.param.convolution_param.group
        cin, per_group = weights.shape[0], weights.shape[1]
        grouped = weights.reshape((group, cin // group, per_group) + weights.shape[2:])
        factors = a.reshape((group, 1, per_group) + (1,) * (weights.ndim - 2))
        folded = (grouped * factors).reshape(weights.shape)
    elif producer.param.inner_product_param.transpose:
        folded = weights * a.reshape(1, -1)  # stored (K, N)
    else:
        folded = weights * a.reshape(-1, 1)  # stored (N, K)
    bias = np.asarray(arrays[1], np.float64).reshape(-1) if len(arrays) > 1 else 0.0
    return [folded.astype(np.float32), (bias * a + c).astype(np.float32)]


def _new_weights(new_net: Net, raw: dict, chains: list, notes: list) -> list:
    """[(name, type, arrays)] for every layer of the new net that has weights: the folded
    producers and replacement Scales, and every other layer's arrays as given."""
    changed: dict = {}
    for chain in chains:
        if chain.producer is not None:
            changed[chain.target] = _fold_weights(chain, chain.producer_blobs)
        else:
            changed[chain.target] = [chain.scale.astype(np.float32),
                                     chain.shift.astype(np.float32)]
    result = []
    seen: set = set()
    for layer in new_net.layers:
        if layer.name in seen:
            continue
        seen.add(layer.name)
        if layer.name in changed:
            result.append((layer.name, layer.type, changed[layer.name]))
        elif layer.name in raw and raw[layer.name]:
            result.append((layer.name, layer.type, list(raw[layer.name])))
    removed = {name for chain in chains for name in chain.names}
    dropped = [name for name, arrays in raw.items()
               if name not in seen and name not in removed and arrays]
    if dropped:
        notes.append(f"weights for layers the net does not have were left out: "
                     f"{', '.join(dropped[:8])}{' ...' if len(dropped) > 8 else ''}")
    return result


# -- the check ---------------------------------------------------------------------------------

def _compare(result: FoldResult, original: Net, raw: dict, new_net: Net, new_weights: list,
             phase: int, level: Optional[int], stages: Sequence[str], seed: int,
             tolerance: float, timing_runs: int = 0) -> None:
    from ..run.executor import Executor

    def run(net: Net, weights: Any, inputs: Optional[dict]) -> tuple:
        executor = Executor(net, weights, phase=phase, level=level, stages=stages, seed=seed)
        if inputs is None:
            inputs = _random_inputs(executor, seed)
        blobs = executor.forward(inputs, keep="all")
        return blobs, _median_seconds(executor, inputs, timing_runs), inputs

    try:
        before, before_seconds, inputs = run(original, raw, None)
        after, after_seconds, _ = run(new_net, {name: arrays for name, _, arrays in new_weights},
                                      inputs)
    except PrototxtError as exc:
        raise PrototxtError(f"cannot check the folded net against the original "
                            f"(check=False skips the check): {exc.message}", exc.path,
                            exc.line, exc.column, offset=exc.offset) from None
    if timing_runs > 0:
        result.forward_seconds = (before_seconds, after_seconds)
    max_abs = max_rel = 0.0
    worst = None
    compared = []
    for name, expected in before.items():
        actual = after.get(name)
        if actual is None or np.shape(actual) != np.shape(expected):
            continue
        compared.append(name)
        expected64 = np.asarray(expected, np.float64)
        if not expected64.size:
            continue
        difference = float(np.max(np.abs(np.asarray(actual, np.float64) - expected64)))
        magnitude = float(np.max(np.abs(expected64))) or 1.0
        if not np.isfinite(difference):
            difference = float("inf")
        relative = difference / magnitude
        max_abs = max(max_abs, difference)
        if worst is None or relative > max_rel:
            max_rel, worst = relative, name
    result.max_abs, result.max_rel = max_abs, max_rel
    result.compared, result.worst = compared, worst
    if max_rel > tolerance:
        raise PrototxtError(f"the folded net differs from the original by {max_rel:.3g} "
                            f"(relative to the blob's largest magnitude) at blob '{worst}', over "
                            f"the tolerance {tolerance:g}; max abs difference {max_abs:.3g}")


def _median_seconds(executor: Any, inputs: dict, runs: int) -> Optional[float]:
    """The median wall time of ``runs`` forward passes (outputs only), or None."""
    if runs <= 0:
        return None
    import time

    times = []
    for _ in range(runs):
        start = time.perf_counter()
        executor.forward(inputs)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _random_inputs(executor: Any, seed: int) -> dict:
    """Standard normal values for every input; zeros for labels (data layers' later tops)."""
    shapes = executor.input_shapes()
    labels: dict = {}  # label top -> its data top
    for layer in executor.view.layers:
        if layer.spec is not None and layer.spec.is_data and layer.type != "Input":
            labels.update((top, layer.tops[0]) for top in layer.tops[1:])
    rng = np.random.default_rng(seed)
    inputs = {}
    for name, shape in shapes.items():
        if shape is None or any(d is None for d in shape):
            raise PrototxtError(f"input '{name}' has an unknown shape {shape}: give it in "
                                f"input_shapes (--input-shape {name}=N,C,H,W)")
        data = shapes.get(labels.get(name, ""))
        if data and shape and data[0] is not None:
            shape = (data[0], *shape[1:])  # labels follow the data's batch (--input-shape)
        inputs[name] = np.zeros(shape, np.float32) if name in labels else \
            rng.standard_normal(shape).astype(np.float32)
    return inputs
