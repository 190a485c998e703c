"""The Net model: a net's layers in V2 form, each linked to where it is written in the file.

``Net.from_document`` binds a parsed file, upgrades legacy forms in Caffe's order (V0, V1,
``input:`` fields, BatchNorm params) so every consumer sees one form, and keeps for each layer
the syntax node it came from, for spans and fixes.

``Net.view(phase, level, stages)`` is the net Caffe would instantiate in that state
(Net::FilterNet with StateMeetsRule), wired exactly as Net::Init wires it: a top equal to the
bottom at the same index is computed in place; a blob name written again creates a new
version of that blob, so "the layer that reads what this layer wrote" is always exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple, Optional, Sequence

from ..layers.base import TEST, TRAIN, LayerSpec, get_spec
from ..schema import caffe_pb2
from ..syntax.tree import Document, Field, ListValue, Message, Node

PHASE_NAMES = {TRAIN: "TRAIN", TEST: "TEST"}

#: Data layer types a deploy net may use to receive its input from the caller.
DEPLOY_INPUT_TYPES = frozenset({"Input", "MemoryData", "DummyData"})

# Where a layer was written.
ORIGIN_V2 = "layer"
ORIGIN_V1 = "layers"
ORIGIN_V0 = "V0"
ORIGIN_INPUT = "input"


class Layer:
    """One layer of the net, in V2 form, with a link to its text."""

    __slots__ = ("index", "param", "node", "origin", "source", "_spec", "_spec_loaded")

    def __init__(self, index: int, param: Any, node: Optional[Field], origin: str,
                 source: Any = None):
        self.index = index
        self.param = param  # caffe_pb2.LayerParameter, upgraded as Caffe upgrades on load
        self.node = node  # the `layer`/`layers` field (or the first `input` field)
        self.origin = origin
        self.source = source if source is not None else param  # the message as written
        self._spec: Optional[LayerSpec] = None
        self._spec_loaded = False

    @property
    def name(self) -> str:
        return self.param.name

    @property
    def type(self) -> str:
        return self.param.type

    @property
    def bottoms(self) -> Sequence[str]:
        return self.param.bottom

    @property
    def tops(self) -> Sequence[str]:
        return self.param.top

    @property
    def spec(self) -> Optional[LayerSpec]:
        """Caffe's semantics for this layer's type; None for a type BVLC Caffe lacks."""
        if not self._spec_loaded:
            self._spec = get_spec(self.param.type)
            self._spec_loaded = True
        return self._spec

    @property
    def in_place_tops(self) -> list[int]:
        """Indices of tops computed in place (top[i] == bottom[i], as Caffe decides)."""
        bottoms = self.param.bottom
        return [i for i, top in enumerate(self.param.top) if i < len(bottoms) and bottoms[i] == top]

    @property
    def is_v2_syntax(self) -> bool:
        """Whether the text is a V2 `layer` block (so fixes can edit it directly)."""
        return self.origin == ORIGIN_V2 and self.node is not None

    def locate(self, path: Sequence = ()) -> Optional[Node]:
        """The node for ``path`` inside this layer (e.g. ("convolution_param", "kernel_size", 1)),
        or the deepest enclosing node that exists in the file."""
        node = self.node
        if node is None:
            return None
        if self.origin != ORIGIN_V2:
            path = _v1_path(path) if self.origin == ORIGIN_V1 else ()
        return _resolve(node, path)

    def field(self, *path: Any) -> Optional[Field]:
        """The tree field at exactly ``path``, or None when the file does not spell it out."""
        if self.node is None or (self.origin != ORIGIN_V2 and path):
            return None
        found = _resolve(self.node, path, exact=True)
        return found if isinstance(found, Field) else None

    def __repr__(self) -> str:
        return f"<Layer {self.index} {self.name!r} {self.type}>"


def _v1_path(path: Sequence) -> Sequence:
    """A V2 path inside a layer, as the V1 text spells it (best effort)."""
    if len(path) >= 3 and path[0] == "param" and isinstance(path[1], int):
        renamed = {"lr_mult": "blobs_lr", "decay_mult": "weight_decay"}.get(path[2])
        if renamed:
            return (renamed, path[1])
    if path and path[0] in ("param", "type"):
        return path[:1] if path[0] == "type" else ()
    return path


def _resolve(node: Field, path: Sequence, exact: bool = False) -> Optional[Node]:
    current: Node = node
    position = 0
    while position < len(path):
        step = path[position]
        if not isinstance(current, Field) or not isinstance(step, str):
            return None if exact else current
        value = current.value
        index = path[position + 1] if position + 1 < len(path) and isinstance(
            path[position + 1], int) else None
        siblings = value.fields if isinstance(value, Message) else ()
        children = [f for f in siblings if f.name == step]
        if not children:
            return None if exact else current
        if index is None:
            current = children[0]
            position += 1
            continue
        # A repeated field: count items across `name: a` lines and `name: [a, b]` lists.
        flat: list[Node] = []
        for child in children:
            if isinstance(child.value, ListValue):
                flat.extend(child.value.items)
            else:
                flat.append(child)
        if index >= len(flat):
            return None if exact else children[-1]
        current = flat[index]
        position += 2
        if not isinstance(current, Field):
            if position < len(path):
                return None if exact else current
            return current
    return current


# -- states and filtering ----------------------------------------------------------------------

@dataclass(frozen=True)
class State:
    """A NetState: the phase, level and stages a net is instantiated with."""

    phase: int = TEST
    level: int = 0
    stages: tuple = ()

    def describe(self) -> str:
        text = PHASE_NAMES.get(self.phase, str(self.phase))
        if self.level:
            text += f" level {self.level}"
        if self.stages:
            text += " stages " + ",".join(self.stages)
        return text


def state_meets_rule(state: State, rule: Any) -> bool:
    """Caffe's Net::StateMeetsRule: every condition the rule sets must hold."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    for stage in rule.stage:
        if stage not in state.stages:
            return False
    for stage in rule.not_stage:
        if stage in state.stages:
            return False
    return True


def layer_included(layer_param: Any, state: State) -> bool:
    """Caffe's Net::FilterNet decision for one layer (a layer with both include and exclude
    rules is an error Caffe reports; its include rules decide here)."""
    if layer_param.include:
        return any(state_meets_rule(state, rule) for rule in layer_param.include)
    return not any(state_meets_rule(state, rule) for rule in layer_param.exclude)


# -- the net -----------------------------------------------------------------------------------

class BlobRef(NamedTuple):
    """One version of a named blob: version 0 is the first write, each later write (in place or
    not) makes the next version."""

    name: str
    version: int


@dataclass(eq=False)
class NetView:
    """The net Caffe builds for one state: active layers and their exact wiring."""

    net: "Net"
    state: State
    layers: list
    excluded: list
    inputs: dict = field(default_factory=dict)  # layer index -> [BlobRef | None]
    outputs: dict = field(default_factory=dict)  # layer index -> [BlobRef] (anonymous: name "")
    producer: dict = field(default_factory=dict)  # BlobRef -> (Layer, top index)
    consumers: dict = field(default_factory=dict)  # BlobRef -> [(Layer, bottom index)]
    net_outputs: list = field(default_factory=list)  # BlobRefs never read afterwards
    unknown_bottoms: list = field(default_factory=list)  # (Layer, bottom index)
    duplicate_tops: list = field(default_factory=list)  # (Layer, top index, first producer)
    _shapes: Any = None

    def readers(self, layer: Layer, top_index: int = 0) -> list:
        """The (layer, bottom index) pairs that read what ``layer`` wrote to top ``top_index``."""
        refs = self.outputs.get(layer.index, [])
        if top_index >= len(refs):
            return []
        return self.consumers.get(refs[top_index], [])

    def writer(self, layer: Layer, bottom_index: int = 0) -> Optional[tuple]:
        """The (layer, top index) that wrote what ``layer`` reads at ``bottom_index``."""
        refs = self.inputs.get(layer.index, [])
        if bottom_index >= len(refs) or refs[bottom_index] is None:
            return None
        return self.producer.get(refs[bottom_index])

    def is_active(self, layer: Layer) -> bool:
        return layer.index in self.outputs

    @property
    def shapes(self) -> Any:
        """Shape inference for this view (computed on first use)."""
        if self._shapes is None:
            from .shapes import infer_shapes

            self._shapes = infer_shapes(self, self.net.input_shapes)
        return self._shapes


class Net:
    """A bound, upgraded net and its layers."""

    def __init__(self, document: Optional[Document], message: Any, upgraded: Any,
                 layers: list, upgrade_steps: Sequence[str] = (),
                 upgrade_notes: Sequence[str] = (), upgrade_errors: Sequence[str] = (),
                 input_shapes: Optional[dict] = None):
        self.document = document
        self.message = message  # as written (bound), V0/V1/V2
        self.upgraded = upgraded  # V2 NetParameter
        self.layers: list[Layer] = layers
        self.upgrade_steps = list(upgrade_steps)
        self.upgrade_notes = list(upgrade_notes)
        self.upgrade_errors = list(upgrade_errors)
        self.input_shapes = dict(input_shapes or {})
        self._views: dict = {}

    @classmethod
    def from_document(cls, document: Document, message: Any = None,
                      input_shapes: Optional[dict] = None) -> "Net":
        """Build the model of a parsed net (``message``: its bound NetParameter, if at hand)."""
        if message is None:
            from ..schema.binding import bind

            message = bind(document, "net").message
        return cls.from_message(message, document, input_shapes)

    @classmethod
    def from_message(cls, message: Any, document: Optional[Document] = None,
                     input_shapes: Optional[dict] = None) -> "Net":
        from .upgrade import needs_upgrade, upgrade_net

        v2_nodes = document.get_all("layer") if document is not None else []
        v1_nodes = document.get_all("layers") if document is not None else []
        input_node = document.get("input") if document is not None else None
        if input_node is None and document is not None:
            input_node = document.get("input_shape") or document.get("input_dim")
        if needs_upgrade(message):
            result = upgrade_net(message)
            upgraded = result.net
            steps, notes, errors = result.steps, result.notes, result.errors
            origins = list(result.origins)
        else:
            upgraded = message
            steps, notes, errors = [], [], []
            origins = list(range(len(message.layer)))
        layers = []
        uses_v1 = len(message.layers) > 0
        for index, layer_param in enumerate(upgraded.layer):
            origin_index = origins[index] if index < len(origins) else None
            if origin_index is None:
                layers.append(Layer(index, layer_param, input_node, ORIGIN_INPUT))
            elif uses_v1:
                node = v1_nodes[origin_index] if origin_index < len(v1_nodes) else None
                is_v0 = origin_index < len(message.layers) and message.layers[
                    origin_index].HasField("layer")
                source = message.layers[origin_index] if origin_index < len(message.layers) \
                    else None
                layers.append(Layer(index, layer_param, node, ORIGIN_V0 if is_v0 else ORIGIN_V1,
                                    source))
            else:
                node = v2_nodes[origin_index] if origin_index < len(v2_nodes) else None
                source = message.layer[origin_index] if origin_index < len(message.layer) \
                    else None
                layers.append(Layer(index, layer_param, node, ORIGIN_V2, source))
        return cls(document, message, upgraded, layers, steps, notes, errors, input_shapes)

    # -- states --------------------------------------------------------------------------------
    def state(self, phase: int, level: Optional[int] = None,
              stages: Iterable[str] = ()) -> State:
        """The state Caffe uses for ``phase``: the file's own `state` stages plus ``stages``,
        and ``level`` (default: the file's, else 0)."""
        own = self.upgraded.state
        merged = tuple(dict.fromkeys([*own.stage, *stages]))
        return State(phase, own.level if level is None else level, merged)

    def view(self, phase: int = TEST, level: Optional[int] = None,
             stages: Iterable[str] = ()) -> NetView:
        state = self.state(phase, level, stages)
        view = self._views.get(state)
        if view is None:
            view = build_view(self, state)
            self._views[state] = view
        return view

    @property
    def has_data_layers(self) -> bool:
        """Whether layers read training data (databases, image lists, HDF5, windows)."""
        return any(layer.spec is not None and layer.spec.is_data
                   and layer.type not in DEPLOY_INPUT_TYPES for layer in self.layers)

    @property
    def is_deploy(self) -> bool:
        """A deploy net: named like one (deploy.prototxt), or fed by Input layers (or legacy
        input fields, or MemoryData) and free of phase rules (a train_val net selects its
        data per phase; a deploy net has one phase only)."""
        path = (self.document.path or "") if self.document is not None else ""
        filename = path.replace("\\", "/").rsplit("/", 1)[-1].lower()
        if "deploy" in filename:
            return True
        fed = any(layer.type in ("Input", "MemoryData") for layer in self.layers)
        phase_specific = any(rule.HasField("phase") for layer in self.layers
                             for rule in (*layer.param.include, *layer.param.exclude))
        return fed and not phase_specific

    def layer_named(self, name: str) -> list:
        return [layer for layer in self.layers if layer.name == name]


def build_view(net: Net, state: State) -> NetView:
    """Filter and wire the net for ``state`` as Net::FilterNet and Net::Init do."""
    active, excluded = [], []
    for layer in net.layers:
        (active if layer_included(layer.param, state) else excluded).append(layer)
    view = NetView(net, state, active, excluded)
    latest: dict[str, BlobRef] = {}  # blob name -> newest version written so far
    versions: dict[str, int] = {}
    available: dict[BlobRef, None] = {}  # ordered set, as Caffe's available_blobs
    for layer in active:
        refs_in: list[Optional[BlobRef]] = []
        for bottom_index, name in enumerate(layer.param.bottom):
            ref = latest.get(name)
            refs_in.append(ref)
            if ref is None:
                view.unknown_bottoms.append((layer, bottom_index))
                continue
            view.consumers.setdefault(ref, []).append((layer, bottom_index))
            available.pop(ref, None)
        view.inputs[layer.index] = refs_in
        refs_out: list[BlobRef] = []
        bottoms = layer.param.bottom
        for top_index, name in enumerate(layer.param.top):
            in_place = top_index < len(bottoms) and bottoms[top_index] == name
            if not in_place and name in latest:
                first = view.producer.get(BlobRef(name, 0))
                view.duplicate_tops.append((layer, top_index, first[0] if first else None))
            version = versions.get(name, -1) + 1
            versions[name] = version
            ref = BlobRef(name, version)
            latest[name] = ref
            view.producer[ref] = (layer, top_index)
            refs_out.append(ref)
            available[ref] = None
        spec = layer.spec
        if spec is not None and spec.auto_tops:
            needed = max(spec.top_range(layer.param)[0], 0)
            for top_index in range(len(refs_out), needed):
                ref = BlobRef("", len(view.producer))  # anonymous: nothing can read it
                view.producer[ref] = (layer, top_index)
                refs_out.append(ref)
        view.outputs[layer.index] = refs_out
    view.net_outputs = [ref for ref in available if ref.name]
    return view


def empty_net() -> Net:
    message = caffe_pb2.NetParameter()
    return Net(None, message, message, [])
