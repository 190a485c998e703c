"""Deploy from train_val: the TEST-phase net as inference needs it.

What changes, as text edits on the original file (everything else, comments included, stays):

- layers Caffe drops in TEST (include/exclude) are deleted, and include/exclude rules removed;
- data layers (Data, ImageData, HDF5Data, WindowData, MemoryData, DummyData, a Python data
  layer...) become one ``Input`` layer per top still used, batch 1, the shape from the data
  layer (crop_size or new_height/new_width, channels from the mean values; when its files
  are at hand, the first record of its LMDB or image list, or its mean_file) or
  ``input_shapes``;
- loss layers go; the main SoftmaxWithLoss (largest loss weight) becomes a Softmax with top
  ``prob``; Accuracy and Silence go, and so does any branch that only fed removed layers
  (auxiliary classifiers, label processing);
- Dropout goes (identity at TEST) unless kept; readers of a non-in-place Dropout read its input;
- BatchNorm loses an explicit ``use_global_stats: false``; ``param`` learning rates and decays,
  fillers, loss_weight, propagate_down and force_backward are stripped;
- layer names stay, so trained weights still load. A deploy net comes back unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

from ..errors import PrototxtError
from ..layers.base import TEST, TRAIN
from ..lint.fixes import block_text
from ..net.model import DEPLOY_INPUT_TYPES, Layer, Net, NetView
from ..syntax.edits import TextEdit, apply_edits, delete, indent_unit, replace, replace_value
from ..syntax.parser import parse
from ..syntax.tree import Document, Field, Message

FILLER_FIELDS = {
    "convolution_param": ("weight_filler", "bias_filler"),
    "inner_product_param": ("weight_filler", "bias_filler"),
    "embed_param": ("weight_filler", "bias_filler"),
    "recurrent_param": ("weight_filler", "bias_filler"),
    "scale_param": ("filler", "bias_filler"),
    "bias_param": ("filler",),
    "prelu_param": ("filler",),
}
TRAINING_ONLY_LAYER_FIELDS = ("include", "exclude", "loss_weight", "propagate_down")
# A loss whose first input is scores, and the layer computing its probabilities at deploy.
PROBABILITY_OF = {"SoftmaxWithLoss": "Softmax", "SigmoidCrossEntropyLoss": "Sigmoid"}


@dataclass
class DeployResult:
    text: str
    changed: bool
    notes: list = field(default_factory=list)
    inputs: dict = field(default_factory=dict)  # Input top -> shape


def deploy(source: Union[str, bytes, Document], *, input_shapes: Optional[dict] = None,
           keep_dropout: bool = False, softmax: bool = True, prob_top: str = "prob",
           stages: Sequence[str] = (), level: Optional[int] = None,
           path: Optional[str] = None) -> DeployResult:
    """The deploy net of a train_val (see the module docs)."""
    document = source if isinstance(source, Document) else parse(source, path)
    notes: list = []
    net = Net.from_document(document, input_shapes=input_shapes)
    if _already_deploy(net, level, tuple(stages)):
        notes.append("already a deploy net (no data, loss or accuracy layers, no phase rules): "
                     "left as it is")
        return DeployResult(document.to_text(), False, notes, {})
    if net.upgrade_steps and any(step in ("V0 -> V1", "V1 -> V2") for step in net.upgrade_steps):
        from ..net.upgrade import upgrade_text

        upgraded = upgrade_text(document)
        if upgraded.errors:
            raise PrototxtError.from_diagnostics(upgraded.errors)
        notes.append(f"upgraded from the legacy format first ({', '.join(upgraded.steps)})")
        legacy = net
        document = parse(upgraded.text, document.path)
        net = Net.from_document(document, input_shapes=input_shapes)
        written = _written_nodes(net, legacy)
    else:
        written = {}
    builder = _Deploy(net, net.view(TEST, level, tuple(stages)), dict(input_shapes or {}),
                      keep_dropout, softmax, prob_top, notes)
    builder.written = written
    edits = builder.edits()
    if not edits:
        return DeployResult(document.to_text(), False, notes, builder.inputs)
    text = apply_edits(document.source, edits)
    if document.bom:
        text = "\ufeff" + text
    result = parse(text, document.path)  # edits must leave valid syntax
    _check_wiring(result, stages, level)
    return DeployResult(text, True, notes, builder.inputs)


def _written_nodes(net: Net, legacy: Net) -> dict:
    """{upgraded layer index: the block as written in the legacy file}, so that errors point
    at the file the user has."""
    written: dict = {}
    for layer in legacy.layers:
        written.setdefault(layer.name, []).append(layer.node)
    seen: dict = {}
    found = {}
    for layer in net.layers:
        count = seen.get(layer.name, 0)
        seen[layer.name] = count + 1
        nodes = written.get(layer.name, [])
        if count < len(nodes) and nodes[count] is not None:
            found[layer.index] = nodes[count]
    return found


def _check_wiring(document: Document, stages: Sequence[str], level: Optional[int]) -> None:
    net = Net.from_document(document)
    view = net.view(TEST, level, tuple(stages))
    if not view.unknown_bottoms:
        return
    layer, index = view.unknown_bottoms[0]
    named = sorted({stage for other in net.layers
                    for rule in (*other.param.include, *other.param.exclude)
                    for stage in (*rule.stage, *rule.not_stage)} - set(stages))
    hint = (f" (layers are stage-specific: pass --stage, one of {', '.join(named)})" if named
            else "")
    raise PrototxtError(f"the deploy net's layer '{layer.name}' reads '{layer.bottoms[index]}', "
                        f"which nothing produces{hint}", document.path)


class _Deploy:
    def __init__(self, net: Net, view: NetView, input_shapes: dict, keep_dropout: bool,
                 softmax: bool, prob_top: str, notes: list):
        self.net = net
        self.view = view
        self.input_shapes = input_shapes
        self.keep_dropout = keep_dropout
        self.softmax = softmax
        self.prob_top = prob_top
        self.notes = notes
        self.inputs: dict = {}
        self.written: dict = {}  # layer index -> node as written (legacy files)
        document = net.document
        self.document = document
        self.unit = indent_unit(document) if document is not None else "  "

    # -- what goes -------------------------------------------------------------------------
    def edits(self) -> list:
        view = self.view
        active = view.layers
        sources = [layer for layer in active if _is_source(layer)]
        converted, removed, heads = self._losses(active)
        self.converted = {layer.index for layer in converted}
        removed |= {layer.index for layer in active if layer.type in ("Accuracy", "Silence")}
        dropouts = [] if self.keep_dropout else [layer for layer in active
                                                 if layer.type == "Dropout"]
        removed |= self._dead_branches(active, removed, sources, heads)
        revived = {layer.index for layer in converted if not view.is_active(layer)}
        train_sources = self._train_only_sources(removed)
        revived |= {layer.index for layer, _, _ in train_sources}
        edits: list = []
        for layer in self.net.layers:
            if layer.node is None or layer.index in revived:
                continue
            if not view.is_active(layer) or layer.index in removed:
                edits.append(delete(layer.node))
        for layer in dropouts:
            if layer.index not in removed:
                edits.append(delete(layer.node))
                edits += self._bypass(layer, removed)
        for layer in sources:
            if layer.index not in removed:
                edits.append(self._as_input(layer, self._used_tops(layer, removed), view))
        for layer, used, train_view in train_sources:
            edits.append(self._as_input(layer, used, train_view))
        sources = sources + [layer for layer, _, _ in train_sources]
        kept = [layer for layer in self.net.layers if layer.index in revived
                or (view.is_active(layer) and layer.index not in removed)]
        for layer in kept:
            if layer in sources or layer in dropouts:
                continue
            if layer.index in self.converted:
                edits += self._to_probabilities(layer)
            else:
                edits += self._strip(layer)
        python_layers = [layer.name for layer in kept
                         if layer.type == "Python" and layer not in sources]
        if python_layers:
            shown = ", ".join(f"'{name}'" for name in python_layers[:3])
            more = f" and {len(python_layers) - 3} more" if len(python_layers) > 3 else ""
            self.notes.append(f"Python layers kept as they are ({shown}{more}): what they do "
                              f"in TEST is their code's business")
        for name in ("force_backward",):
            found = self.document.get(name) if self.document is not None else None
            if found is not None:
                edits.append(delete(found))
        return edits

    def _losses(self, active: list) -> tuple:
        """(losses becoming Softmax/Sigmoid, indices of losses removed, indices of layers that
        stay whatever reads them: the producers of the main losses' predictions)."""
        losses = [layer for layer in active if _is_loss(layer)]
        main = _heaviest(losses)
        converted = [layer for layer in main if self.softmax and layer.type in PROBABILITY_OF
                     and not self._has_softmax(layer)]
        if not converted and self.softmax and not any(layer.type in PROBABILITY_OF
                                                      for layer in losses):
            # A classifier whose loss runs in TRAIN only (TEST has just Accuracy): the deploy
            # still wants its probabilities.
            converted = [layer for layer in _heaviest(self._train_only_losses())
                         if layer.type in PROBABILITY_OF]
        if len(converted) > 1:
            self.notes.append(f"{len(converted)} losses of equal weight become "
                              f"{' and '.join(sorted({PROBABILITY_OF[c.type] for c in converted}))}"
                              f" layers")
        heads: set = set()
        for layer in main + converted:
            producer = self._producer_of(layer)
            if producer is not None:
                heads.add(producer.index)
        if not losses:
            for layer in active:
                if layer.type == "Accuracy":
                    producer = self._producer_of(layer)
                    if producer is not None:
                        heads.add(producer.index)
        removed = {layer.index for layer in losses} - {layer.index for layer in converted}
        return converted, removed, heads

    def _train_only_losses(self) -> list:
        """Inactive SoftmaxWithLoss/SigmoidCrossEntropyLoss layers whose input exists in TEST."""
        available = {ref.name for ref in self.view.producer}
        return [layer for layer in self.net.layers
                if not self.view.is_active(layer) and layer.type in PROBABILITY_OF
                and layer.node is not None and layer.bottoms
                and layer.bottoms[0] in available]

    def _producer_of(self, reader: Layer) -> Optional[Layer]:
        """The layer writing what ``reader`` reads first (for an inactive reader: the last
        writer of that blob name)."""
        if self.view.is_active(reader):
            found = self.view.writer(reader, 0)
            return found[0] if found else None
        refs = [ref for ref in self.view.producer if ref.name == reader.bottoms[0]]
        if not refs:
            return None
        return self.view.producer[max(refs, key=lambda ref: ref.version)][0]

    def _has_softmax(self, loss: Layer) -> bool:
        """A Softmax already reads what this loss reads (no second one needed)."""
        source = self.view.writer(loss, 0)
        if source is None:
            return False
        return any(reader.type == "Softmax" for reader, _ in self.view.readers(*source))

    def _dead_branches(self, active: list, removed: set, sources: list, heads: set) -> set:
        """Layers whose every output is read only by removed layers (auxiliary branches)."""
        view = self.view
        dead: set = set()
        changed = True
        while changed:
            changed = False
            for layer in reversed(active):
                if (layer.index in removed or layer.index in dead or layer in sources
                        or layer.index in heads):
                    continue
                readers = [(reader, slot)
                           for index in range(len(view.outputs.get(layer.index, [])))
                           for reader, slot in view.readers(layer, index)]
                if readers and all(r.index in removed or r.index in dead
                                   or (r.index in self.converted and slot > 0)
                                   for r, slot in readers):
                    dead.add(layer.index)
                    changed = True
        return dead

    # -- rewrites of what stays -------------------------------------------------------------
    def _bypass(self, dropout: Layer, removed: set) -> list:
        """Readers of a non-in-place Dropout read its input instead."""
        if not dropout.tops or not dropout.bottoms or dropout.tops[0] == dropout.bottoms[0]:
            return []
        edits = []
        for reader, index in self.view.readers(dropout, 0):
            if reader.index in removed:
                continue
            node = reader.locate(("bottom", index))
            if node is None or reader.node is None:
                raise PrototxtError(f"cannot rewire '{reader.name}' around Dropout "
                                    f"'{dropout.name}'; use --keep-dropout")
            target = node.value if isinstance(node, Field) else node
            edits.append(replace(target, f'"{dropout.bottoms[0]}"'))
        return edits

    def _used_tops(self, layer: Layer, removed: set) -> list:
        """The tops of a data layer that layers staying in the deploy read."""
        view = self.view
        used = []
        for index, ref in enumerate(view.outputs.get(layer.index, [])):
            readers = [r for r, slot in view.readers(layer, index) if r.index not in removed
                       and not (r.index in self.converted and slot > 0)]  # a loss's labels
            if readers and ref.name:
                used.append(ref)
        return used

    def _train_only_sources(self, removed: set) -> list:
        """[(data layer, its used tops, TRAIN view)] for blobs TEST reads but nothing produces
        in TEST, when a TRAIN-only data layer produces them (a net written for training only)."""
        missing = {layer.bottoms[index] for layer, index in self.view.unknown_bottoms
                   if layer.index not in removed
                   and not (layer.index in self.converted and index > 0)}
        if not missing:
            return []
        train = self.net.view(TRAIN, self.view.state.level, self.view.state.stages)
        found = []
        for layer in train.layers:
            if self.view.is_active(layer) or not _is_source(layer) or layer.node is None:
                continue
            used = [ref for ref in train.outputs.get(layer.index, []) if ref.name in missing]
            if used:
                missing -= {ref.name for ref in used}
                found.append((layer, used, train))
        if missing:
            self._unresolved(missing, removed)
        if found:
            self.notes.append("no data layer runs in TEST; the TRAIN one"
                              f"{'s' if len(found) > 1 else ''} "
                              f"({', '.join(repr(layer.name) for layer, _, _ in found)}) "
                              f"gave the inputs")
        return found

    def _shape_from_files(self, layer: Layer) -> Optional[tuple]:
        """(1, C, H, W) of a Data or ImageData layer's images, read from its source's first
        record (or, for the channels, its mean_file) when those files are at hand."""
        if layer.type not in ("Data", "ImageData"):
            return None
        path = self.document.path if self.document is not None else None
        root = os.path.dirname(path) if path and os.path.exists(path) else None
        try:
            from ..data import Transformer, load_mean, source_for_layer
        except ImportError:
            return None
        try:
            transformer = Transformer.from_layer(layer, TEST, root=root)
            source = source_for_layer(layer, root=root)
            try:
                image, _ = next(iter(source))
            finally:
                source.close()
            channels, height, width = transformer.output_shape(image.shape)
        except (PrototxtError, ImportError, OSError, StopIteration):
            pass
        else:
            self.notes.append(f"input shape of '{layer.tops[0]}' read from the first record "
                              f"of {layer.name}'s source")
            return (1, channels, height, width)
        transform = layer.param.transform_param
        if not transform.mean_file:
            return None
        try:  # the mean image has the images' full size and channels
            mean = load_mean(transform.mean_file, root)
        except (PrototxtError, OSError):
            return None
        crop = transform.crop_size
        self.notes.append(f"input shape of '{layer.tops[0]}' from {layer.name}'s mean_file")
        return (1, mean.shape[0], crop or mean.shape[1], crop or mean.shape[2])

    def _unresolved(self, missing: set, removed: set) -> None:
        """Raise at the first kept layer reading a blob nothing produces."""
        net = self.net
        for reader, index in self.view.unknown_bottoms:
            name = reader.bottoms[index]
            if name not in missing or reader.index in removed:
                continue
            stages = sorted({stage for other in net.layers
                             for rule in (*other.param.include, *other.param.exclude)
                             for stage in (*rule.stage, *rule.not_stage)}
                            - set(self.view.state.stages))
            hint = (f" in TEST with stages {list(self.view.state.stages)}"
                    if self.view.state.stages else " in TEST")
            if stages:
                hint += f" (layers are stage-specific: pass --stage, one of {', '.join(stages)})"
            raise _located(reader, f"layer '{reader.name}' reads '{name}', which nothing "
                                   f"produces{hint}", self.written)

    def _as_input(self, layer: Layer, used: list, view: NetView) -> TextEdit:
        blocks = []
        for ref in used:
            shape = self._input_shape(layer, ref, view)
            self.inputs[ref.name] = shape
            dims = [f"dim: {d}" for d in shape]
            body = ["input_param {", *[self.unit + line for line in
                                       block_text("shape", dims, self.unit).split("\n")], "}"]
            lines = [f'name: "{ref.name}"', 'type: "Input"', f'top: "{ref.name}"', *body]
            blocks.append(block_text("layer", lines, self.unit))
        if not blocks:
            return delete(layer.node)
        indent = _line_indent(layer.node)
        newline = self.document.newline
        text = (newline + newline + indent).join(
            block.replace("\n", newline + indent) for block in blocks)
        return replace(layer.node, text)

    def _input_shape(self, layer: Layer, ref: Any, view: NetView) -> tuple:
        override = self.input_shapes.get(ref.name)
        if override is not None:
            return tuple(override)
        shape = view.shapes.shapes.get(ref)
        if shape is not None and len(shape) >= 1:
            shape = (1,) + tuple(shape[1:])
        if (shape is None or any(d is None for d in shape)) and ref.name == layer.tops[0]:
            shape = self._shape_from_files(layer) or shape
        if shape is None or any(d is None for d in shape):
            known = "x".join("?" if d is None else str(d) for d in shape) if shape else "?"
            raise _layer_error(layer, self.written,
                               f"cannot tell the shape of its top '{ref.name}' (known: "
                               f"{known}); give it with --input-shape {ref.name}=N,C,H,W")
        return shape

    def _to_probabilities(self, layer: Layer) -> list:
        """The loss becomes the layer computing its probabilities, top ``prob``."""
        edits = [replace_value(layer.field("type"), f'"{PROBABILITY_OF[layer.type]}"')]
        name_field = layer.field("name")
        taken = {other.name for other in self.view.layers if other is not layer}
        new_name = self.prob_top if self.prob_top not in taken else f"{layer.name}_prob"
        if name_field is not None:
            edits.append(replace_value(name_field, f'"{new_name}"'))
        bottoms = layer.node.get_all("bottom")
        if len(bottoms) > 1:
            edits.append(delete(bottoms[1], with_comments=False))
        tops = layer.node.get_all("top")
        if tops:
            edits.append(replace_value(tops[0], f'"{self.prob_top}"'))
            edits += [delete(extra, with_comments=False) for extra in tops[1:]]
        else:
            from ..syntax.edits import insert_field

            anchor = layer.node.fields.index(bottoms[0]) + 1 if bottoms else None
            edits.append(insert_field(layer.node, f'top: "{self.prob_top}"', anchor))
        loss_param = layer.field("loss_param")
        if loss_param is not None:
            edits.append(delete(loss_param))
        return edits + self._strip(layer)

    def _strip(self, layer: Layer) -> list:
        """Delete training-only settings inside a layer that stays."""
        if not layer.is_v2_syntax:
            return []
        node = layer.node
        edits = []
        for name in TRAINING_ONLY_LAYER_FIELDS:
            edits += [delete(found) for found in node.get_all(name)]
        for spec in node.get_all("param"):
            edits += _strip_param(spec)
        for block_name, fillers in FILLER_FIELDS.items():
            block = node.get(block_name)
            if block is None or not isinstance(block.value, Message):
                continue
            edits += [delete(found) for name in fillers for found in block.get_all(name)]
        if layer.type == "BatchNorm":
            stats = layer.field("batch_norm_param", "use_global_stats")
            if stats is not None and stats.value.text in ("false", "False", "f", "0"):
                edits.append(delete(stats))
        return edits


def _strip_param(spec: Field) -> list:
    """A ``param`` spec without its learning-rate settings (the whole block when nothing else
    is in it; a name for weight sharing stays)."""
    if not isinstance(spec.value, Message):
        return []
    inner = spec.fields
    training = [f for f in inner if f.name in ("lr_mult", "decay_mult")]
    if len(training) == len(inner):
        return [delete(spec)]
    return [delete(f) for f in training]


def _already_deploy(net: Net, level: Optional[int], stages: tuple) -> bool:
    if any(rule.HasField("phase") for layer in net.layers
           for rule in (*layer.param.include, *layer.param.exclude)):
        return False
    view = net.view(TEST, level, stages)
    # MemoryData and DummyData are fed by the application or benchmark: deploy inputs too.
    return not any((_is_source(layer) and layer.type not in DEPLOY_INPUT_TYPES)
                   or _is_loss(layer) or layer.type in ("Accuracy", "Silence")
                   for layer in view.layers) and not net.message.HasField("force_backward")


def _is_source(layer: Layer) -> bool:
    """A data layer: it produces tops from outside the net (never an Input layer)."""
    if layer.type == "Input" or layer.param.bottom or not layer.param.top:
        return False
    spec = layer.spec
    return spec is None or spec.is_data or layer.type == "Python"


def _is_loss(layer: Layer) -> bool:
    """A loss layer: known as one, or (a fork's or Python layer) by Caffe's naming convention
    or a loss weight."""
    if layer.spec is not None and layer.type != "Python":
        return layer.spec.is_loss
    return layer.type.endswith("Loss") or len(layer.param.loss_weight) > 0


def _heaviest(losses: list) -> list:
    """The losses of the largest weight (the main objective; auxiliary heads weigh less)."""
    if not losses:
        return []
    best = max(_loss_weight(layer) for layer in losses)
    return [layer for layer in losses if _loss_weight(layer) == best]


def _loss_weight(layer: Layer) -> float:
    weights = layer.param.loss_weight
    return float(weights[0]) if len(weights) else 1.0


def _line_indent(node: Field) -> str:
    source = node.document.source
    start = node.start_offset
    line_start = source.rfind("\n", 0, start) + 1
    return source[line_start:start] if not source[line_start:start].strip() else ""


def _layer_error(layer: Layer, written: dict, message: str) -> PrototxtError:
    return _located(layer, f"data layer '{layer.name}' ({layer.type}): {message}", written)


def _located(layer: Layer, text: str, written: Optional[dict] = None) -> PrototxtError:
    return PrototxtError.at((written or {}).get(layer.index) or layer.node, text)
