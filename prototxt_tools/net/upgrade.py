"""Legacy net upgrades, done the way Caffe does them, and the text of ``prototxt upgrade``.

Caffe (final master, ``src/caffe/util/upgrade_proto.cpp``) upgrades an old net in five steps,
each run only when the net needs it, in this order:

1. ``V0 -> V1``: ``layers { layer { type: "conv" ... } }``. "padding" layers are folded into the
   conv/pool layers that read them; every V0 field goes to the V1 ``*_param`` its layer type
   owns (a field the type does not own is logged and dropped); transformation fields go to
   ``transform_param``. Only ``name``, ``input``, ``input_dim`` and ``force_backward`` of the
   net survive this step.
2. ``data transformation``: ``scale``, ``mean_file``, ``crop_size`` and ``mirror`` of a V1 data
   layer's ``data_param``/``image_data_param``/``window_data_param`` move to ``transform_param``.
3. ``V1 -> V2``: ``layers { type: CONVOLUTION }`` become ``layer { type: "Convolution" }``;
   ``blobs_lr``/``weight_decay``/``param``/``blob_share_mode`` become ``param { ... }``.
4. ``input fields -> Input layer``: ``input`` with ``input_shape`` or ``input_dim`` becomes an
   Input layer named "input", placed first.
5. ``BatchNorm params``: a BatchNorm layer with exactly three ``param`` gets lr_mult and
   decay_mult 0 in each.

:func:`upgrade_net` works on messages and reports where Caffe would stop (``errors``) or lose
something (``notes``) instead of aborting. :func:`upgrade_text` produces the upgraded file:
canonical V2 text for V0/V1 files with every comment carried to the line its field became, and
minimal edits for files that are already V2 (only steps 4 and 5 can apply to those).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from ..errors import ERROR, WARNING, Diagnostic, PrototxtError
from ..schema import caffe_pb2
from ..schema.binding import is_repeated, bind, detect_kind, layout_message, scalar_to_text
from ..syntax.format import _BLANK, Line, render_lines, split_trivia
from ..syntax.edits import TextEdit, apply_edits, indent_unit, insert_field, replace_value
from ..syntax.parser import parse
from ..syntax.tree import Document, Field, ListValue, Message, Scalar
from ..syntax.values import (
    parse_float, shortest_float32_repr,
)

__all__ = [
    "STEP_V0", "STEP_DATA", "STEP_V1", "STEP_INPUT", "STEP_BATCHNORM", "STEPS",
    "UpgradeIssue", "UpgradeResult", "UpgradeTextResult",
    "needs_upgrade", "upgrade_net", "upgrade_text", "v1_type_name", "v0_type_name",
]

STEP_V0 = "V0 -> V1"
STEP_DATA = "data transformation"
STEP_V1 = "V1 -> V2"
STEP_INPUT = "input fields -> Input layer"
STEP_BATCHNORM = "BatchNorm params"
STEPS = (STEP_V0, STEP_DATA, STEP_V1, STEP_INPUT, STEP_BATCHNORM)

NetParameter = caffe_pb2.NetParameter
_V1 = caffe_pb2.V1LayerParameter

# -- Caffe's tables ----------------------------------------------------------------------------

# V0 type string -> V1 LayerType name (UpgradeV0LayerType). Anything else is fatal in Caffe.
_V0_TYPES = {
    "accuracy": "ACCURACY",
    "bnll": "BNLL",
    "concat": "CONCAT",
    "conv": "CONVOLUTION",
    "data": "DATA",
    "dropout": "DROPOUT",
    "euclidean_loss": "EUCLIDEAN_LOSS",
    "flatten": "FLATTEN",
    "hdf5_data": "HDF5_DATA",
    "hdf5_output": "HDF5_OUTPUT",
    "im2col": "IM2COL",
    "images": "IMAGE_DATA",
    "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT",
    "lrn": "LRN",
    "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS",
    "pool": "POOLING",
    "relu": "RELU",
    "sigmoid": "SIGMOID",
    "softmax": "SOFTMAX",
    "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT",
    "tanh": "TANH",
    "window_data": "WINDOW_DATA",
}

# V1 LayerType name -> V2 type string (UpgradeV1LayerType); it covers every value of the enum.
_V1_TYPES = {
    "NONE": "",
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution",
    "DATA": "Data",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}

# V0 fields Caffe maps only for some layer types: field -> {V0 type: (V1 block, V1 field)}.
# In Caffe's order (which is also the order it logs problems in).
_V0_TYPED_FIELDS: dict[str, dict[str, tuple[str, str]]] = {
    "num_output": {"conv": ("convolution_param", "num_output"),
                   "innerproduct": ("inner_product_param", "num_output")},
    "biasterm": {"conv": ("convolution_param", "bias_term"),
                 "innerproduct": ("inner_product_param", "bias_term")},
    "weight_filler": {"conv": ("convolution_param", "weight_filler"),
                      "innerproduct": ("inner_product_param", "weight_filler")},
    "bias_filler": {"conv": ("convolution_param", "bias_filler"),
                    "innerproduct": ("inner_product_param", "bias_filler")},
    "pad": {"conv": ("convolution_param", "pad"), "pool": ("pooling_param", "pad")},
    "kernelsize": {"conv": ("convolution_param", "kernel_size"),
                   "pool": ("pooling_param", "kernel_size")},
    "group": {"conv": ("convolution_param", "group")},
    "stride": {"conv": ("convolution_param", "stride"), "pool": ("pooling_param", "stride")},
    "pool": {"pool": ("pooling_param", "pool")},
    "dropout_ratio": {"dropout": ("dropout_param", "dropout_ratio")},
    "local_size": {"lrn": ("lrn_param", "local_size")},
    "alpha": {"lrn": ("lrn_param", "alpha")},
    "beta": {"lrn": ("lrn_param", "beta")},
    "k": {"lrn": ("lrn_param", "k")},
    "source": {"data": ("data_param", "source"),
               "hdf5_data": ("hdf5_data_param", "source"),
               "images": ("image_data_param", "source"),
               "window_data": ("window_data_param", "source"),
               "infogain_loss": ("infogain_loss_param", "source")},
    "scale": {},  # any type: transform_param (below)
    "meanfile": {},
    "batchsize": {"data": ("data_param", "batch_size"),
                  "hdf5_data": ("hdf5_data_param", "batch_size"),
                  "images": ("image_data_param", "batch_size"),
                  "window_data": ("window_data_param", "batch_size")},
    "cropsize": {},
    "mirror": {},
    "rand_skip": {"data": ("data_param", "rand_skip"),
                  "images": ("image_data_param", "rand_skip")},
    "shuffle_images": {"images": ("image_data_param", "shuffle")},
    "new_height": {"images": ("image_data_param", "new_height")},
    "new_width": {"images": ("image_data_param", "new_width")},
    "concat_dim": {"concat": ("concat_param", "concat_dim")},
    "det_fg_threshold": {"window_data": ("window_data_param", "fg_threshold")},
    "det_bg_threshold": {"window_data": ("window_data_param", "bg_threshold")},
    "det_fg_fraction": {"window_data": ("window_data_param", "fg_fraction")},
    "det_context_pad": {"window_data": ("window_data_param", "context_pad")},
    "det_crop_mode": {"window_data": ("window_data_param", "crop_mode")},
    "hdf5_output_param": {"hdf5_output": ("hdf5_output_param", "")},  # the whole block
}

# V0 fields Caffe moves to transform_param whatever the layer type.
_V0_TRANSFORM_FIELDS = {"scale": "scale", "meanfile": "mean_file", "cropsize": "crop_size",
                        "mirror": "mirror"}

# V0 fields Caffe's V0 upgrade never reads: they vanish silently.
_V0_IGNORED_FIELDS = ("new_num", "new_channels")

# V1 data layer type -> the block whose deprecated transformation fields move.
_DATA_BLOCKS = {"DATA": "data_param", "IMAGE_DATA": "image_data_param",
                "WINDOW_DATA": "window_data_param"}
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")

# The V1 blocks Caffe copies into the V2 layer (UpgradeV1LayerParameter), in its order.
_V1_BLOCKS = (
    "accuracy_param", "argmax_param", "concat_param", "contrastive_loss_param",
    "convolution_param", "data_param", "dropout_param", "dummy_data_param", "eltwise_param",
    "exp_param", "hdf5_data_param", "hdf5_output_param", "hinge_loss_param", "image_data_param",
    "infogain_loss_param", "inner_product_param", "lrn_param", "memory_data_param", "mvn_param",
    "pooling_param", "power_param", "relu_param", "sigmoid_param", "softmax_param",
    "slice_param", "tanh_param", "threshold_param", "window_data_param", "transform_param",
    "loss_param",
)

# V1 repeated fields that become one field of param[i] in V2.
_V1_PARAM_FIELDS = {"param": "name", "blob_share_mode": "share_mode", "blobs_lr": "lr_mult",
                    "weight_decay": "decay_mult"}

_INPUT_FIELDS = ("input", "input_shape", "input_dim")


def v1_type_name(layer_type: int) -> str:
    """The V2 type string for a V1 ``LayerType`` value (Caffe's table; NONE gives "")."""
    return _V1_TYPES[_V1.LayerType.Name(layer_type)]


def v0_type_name(v0_type: str) -> Optional[str]:
    """The V2 type string for a V0 type (``"conv"`` -> ``"Convolution"``), None if unknown."""
    v1 = _V0_TYPES.get(v0_type)
    return None if v1 is None else _V1_TYPES[v1]


# -- results -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class UpgradeIssue:
    """One problem met while upgrading.

    ``entry`` is the index of the source layer it concerns in the input's ``list_name``
    ("layers" or "layer"); ``field`` the field concerned (inside that entry, or at the top of
    the net when ``entry`` is None).
    """

    message: str
    list_name: Optional[str] = None
    entry: Optional[int] = None
    field: Optional[str] = None
    #: For notes: "warning" when something the author wrote is lost, "info" when the upgrade
    #: only restates it (a folded padding layer, zeroed BatchNorm rates, which BN003 reports).
    severity: str = WARNING

    def __str__(self) -> str:
        return self.message


@dataclass
class UpgradeResult:
    """A net upgraded to the current (V2) format.

    ``origins[k]`` is the index, in the input's ``layers`` list (V0/V1 input) or ``layer`` list
    (V2 input), of the entry output layer ``k`` came from; None for the synthesized Input layer.
    ``folded`` maps the index of each V0 padding layer folded away to the index of the first
    layer it was folded into.
    """

    net: Any
    steps: list[str] = field(default_factory=list)
    origins: list[Optional[int]] = field(default_factory=list)
    notes: list[UpgradeIssue] = field(default_factory=list)
    errors: list[UpgradeIssue] = field(default_factory=list)
    folded: dict[int, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class UpgradeTextResult:
    """The text of an upgraded file, the net it holds, and what happened on the way.

    ``text`` is the input unchanged (byte for byte) when nothing needed upgrading.
    """

    text: str
    net: Any
    steps: list[str] = field(default_factory=list)
    notes: list[Diagnostic] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)
    changed: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors


class _Issues:
    def __init__(self) -> None:
        self.notes: list[UpgradeIssue] = []
        self.errors: list[UpgradeIssue] = []

    def note(self, message: str, list_name: Optional[str] = None, entry: Optional[int] = None,
             field_name: Optional[str] = None, severity: str = WARNING) -> None:
        self.notes.append(UpgradeIssue(message, list_name, entry, field_name, severity))

    def error(self, message: str, list_name: Optional[str] = None, entry: Optional[int] = None,
              field_name: Optional[str] = None) -> None:
        self.errors.append(UpgradeIssue(message, list_name, entry, field_name))


# -- what a net needs --------------------------------------------------------------------------

def _needs_v0(net: Any) -> bool:
    return any(entry.HasField("layer") for entry in net.layers)


def _needs_data(net: Any) -> bool:
    for entry in net.layers:
        block = _DATA_BLOCKS.get(_V1.LayerType.Name(entry.type))
        if block is not None:
            params = getattr(entry, block)
            if any(params.HasField(name) for name in _TRANSFORM_FIELDS):
                return True
    return False


def _needs_batchnorm(net: Any) -> bool:
    return any(layer.type == "BatchNorm" and len(layer.param) == 3 for layer in net.layer)


def needs_upgrade(net: Any) -> list[str]:
    """The upgrade steps Caffe would run on ``net`` (a NetParameter), in its order.

    The checks are Caffe's own: ``layers`` present means ``V1 -> V2``; ``input`` present means
    ``input fields -> Input layer`` (even without shapes); a BatchNorm layer with exactly three
    ``param`` means ``BatchNorm params`` (even when they are already 0).
    """
    steps = []
    v0 = _needs_v0(net)
    if v0:
        steps.append(STEP_V0)
    # The V0 step writes transformation fields straight into transform_param (and keeps
    # nothing else of a V1 entry), so only a net without V0 layers can need the data step.
    if not v0 and _needs_data(net):
        steps.append(STEP_DATA)
    if v0:
        # A V0 net made only of padding layers has nothing left to upgrade to V2.
        v1_left = any(entry.layer.type != "padding" for entry in net.layers)
    else:
        v1_left = len(net.layers) > 0
    if v1_left:
        steps.append(STEP_V1)
    if len(net.input):
        steps.append(STEP_INPUT)
    # After a V1 -> V2 upgrade no layer is a BatchNorm (V1 had no such type) and the V2 layers
    # given alongside are gone, so only the V2 layers of a V2 net count.
    if not len(net.layers) and _needs_batchnorm(net):
        steps.append(STEP_BATCHNORM)
    return steps


# -- the message-level upgrade -----------------------------------------------------------------

def _copy_block(destination: Any, name: str, source: Any) -> None:
    """``destination.name = source`` for a message field, keeping presence when it is empty."""
    target = getattr(destination, name)
    target.SetInParent()
    target.CopyFrom(source)


def _layer_label(name: str, index: int, list_name: str = "layers") -> str:
    return f"{list_name}[{index}] '{name}'" if name else f"{list_name}[{index}]"


def upgrade_net(net: Any) -> UpgradeResult:
    """Upgrade a NetParameter to the current format the way Caffe does (``net`` is unchanged).

    Where Caffe would abort (a fatal check) the problem goes to ``errors`` and the upgrade
    carries on as sensibly as it can; whatever Caffe drops or changes silently or with a log
    line goes to ``notes``. Raises nothing but :class:`PrototxtError`.
    """
    if not isinstance(net, NetParameter):
        raise PrototxtError(f"upgrade_net needs a NetParameter, not {type(net).__name__}")
    issues = _Issues()
    work = NetParameter()
    work.CopyFrom(net)
    steps: list[str] = []
    origins: list[Optional[int]]
    if len(net.layers):
        origins = list(range(len(net.layers)))
    else:
        origins = list(range(len(net.layer)))
    folded: dict[int, int] = {}
    forced_types: dict[int, str] = {}  # position in work.layers -> V2 type (unknown V0 types)

    if _needs_v0(work):
        work, origins, folded, forced_types = _upgrade_v0(work, issues)
        steps.append(STEP_V0)
    if _needs_data(work):
        _upgrade_data(work, origins, issues)
        steps.append(STEP_DATA)
    if len(work.layers):
        work = _upgrade_v1(work, forced_types, origins, issues)
        steps.append(STEP_V1)
    if len(work.input):
        if _upgrade_input(work, issues):
            origins.insert(0, None)
        steps.append(STEP_INPUT)
    if _needs_batchnorm(work):
        _upgrade_batchnorm(work, origins, issues, "layers" if len(net.layers) else "layer")
        steps.append(STEP_BATCHNORM)
    return UpgradeResult(work, steps, origins, issues.notes, issues.errors, folded)


def _upgrade_v0(net: Any, issues: _Issues) -> tuple[Any, list[Optional[int]], dict, dict]:
    entries = net.layers
    # Padding layers first: each is removed, and a conv/pool layer reading its output reads
    # the padding layer's input instead, with the padding layer's pad.
    last_producer: dict[str, int] = {name: -1 for name in net.input}
    kept: list[tuple[int, Any]] = []
    folded: dict[int, int] = {}
    for i, entry in enumerate(entries):
        v0 = entry.layer
        label = _layer_label(v0.name, i)
        if v0.type != "padding":
            copy = _V1()
            copy.CopyFrom(entry)
            kept.append((i, copy))
        for j, blob in enumerate(entry.bottom):
            producer = last_producer.get(blob)
            if producer is None:
                issues.error(f"{label}: bottom '{blob}' is not produced by an earlier layer or "
                             f"an input; Caffe's V0 upgrade stops here ('Unknown blob input')",
                             "layers", i, "bottom")
                continue
            if producer == -1:
                continue
            source = entries[producer]
            if source.layer.type != "padding":
                continue
            pad_label = _layer_label(source.layer.name, producer)
            problems = []
            if v0.type not in ("conv", "pool"):
                problems.append(f"it feeds a '{v0.type}' layer, not a conv or pool layer")
            else:
                if len(entry.bottom) != 1:
                    problems.append(f"the layer it feeds has {len(entry.bottom)} bottoms, not 1")
                if len(source.bottom) != 1:
                    problems.append(f"it has {len(source.bottom)} bottoms, not 1")
                if len(source.top) != 1:
                    problems.append(f"it has {len(source.top)} tops, not 1")
            if problems:
                issues.error(f"V0 padding layer {pad_label} cannot be folded into {label}: "
                             f"{'; '.join(problems)} (a failed check in Caffe's V0 upgrade)",
                             "layers", i, "bottom")
                continue
            target = kept[-1][1]
            target.layer.pad = source.layer.pad
            target.bottom[j] = source.bottom[0]
            folded.setdefault(producer, i)
            issues.note(f"V0 padding layer {pad_label} folded into {label} (pad: "
                        f"{source.layer.pad}, bottom '{source.bottom[0]}')", "layers", producer,
                        severity="info")
        for blob in entry.top:
            last_producer[blob] = i
    for i, entry in enumerate(entries):
        if entry.layer.type == "padding" and i not in folded:
            issues.note(f"V0 padding layer {_layer_label(entry.layer.name, i)} feeds no conv or "
                        f"pool layer; it is dropped", "layers", i)

    upgraded = NetParameter()
    if net.HasField("name"):
        upgraded.name = net.name
    forced_types: dict[int, str] = {}
    for position, (i, entry) in enumerate(kept):
        layer = upgraded.layers.add()
        forced = _v0_layer_to_v1(entry, layer, i, issues)
        if forced is not None:
            forced_types[position] = forced
    upgraded.input.extend(net.input)
    upgraded.input_dim.extend(net.input_dim)
    if net.HasField("force_backward"):
        upgraded.force_backward = net.force_backward
    for name in ("input_shape", "state", "debug_info", "layer"):
        descriptor = NetParameter.DESCRIPTOR.fields_by_name[name]
        present = (len(getattr(net, name)) if is_repeated(descriptor)
                   else net.HasField(name))
        if present:
            issues.note(f"the V0 upgrade keeps only name, layers, input, input_dim and "
                        f"force_backward of the net: '{name}' is dropped", None, None, name)
    return upgraded, [i for i, _ in kept], folded, forced_types


def _v0_layer_to_v1(entry: Any, layer: Any, index: int, issues: _Issues) -> Optional[str]:
    """Fill ``layer`` (V1) from one V0 entry; returns a V2 type to force for an unknown type."""
    layer.bottom.extend(entry.bottom)
    layer.top.extend(entry.top)
    if not entry.HasField("layer"):
        dropped = [f.name for f, _ in entry.ListFields() if f.name not in ("bottom", "top")]
        if dropped:
            issues.note(f"{_layer_label(entry.name, index)} has no V0 'layer' block in a V0 net: "
                        f"Caffe's V0 upgrade keeps only its bottoms and tops and drops "
                        f"{', '.join(dropped)}", "layers", index)
        return None
    v0 = entry.layer
    label = _layer_label(v0.name, index)
    dropped_outside = [f.name for f, _ in entry.ListFields()
                       if f.name not in ("bottom", "top", "layer")]
    if dropped_outside:
        issues.note(f"{label}: fields beside the V0 'layer' block are dropped by Caffe's V0 "
                    f"upgrade: {', '.join(dropped_outside)}", "layers", index, dropped_outside[0])
    kind = v0.type
    forced = None
    if v0.HasField("name"):
        layer.name = v0.name
    if v0.HasField("type"):
        v1_type = _V0_TYPES.get(kind)
        if v1_type is None:
            issues.error(f"{label}: unknown V0 layer type '{kind}'; Caffe's V0 upgrade stops "
                         f"here ('Unknown layer name'); the type is kept as written",
                         "layers", index, "type")
            forced = kind
        else:
            layer.type = _V1.LayerType.Value(v1_type)
    for blob in v0.blobs:
        layer.blobs.add().CopyFrom(blob)
    layer.blobs_lr.extend(v0.blobs_lr)
    layer.weight_decay.extend(v0.weight_decay)
    for name, targets in _V0_TYPED_FIELDS.items():
        if not v0.HasField(name):
            continue
        value = getattr(v0, name)
        if name in _V0_TRANSFORM_FIELDS:
            setattr(layer.transform_param, _V0_TRANSFORM_FIELDS[name], value)
            continue
        target = targets.get(kind)
        if target is None:
            issues.note(f"{label}: V0 field '{name}' has no meaning for type '{kind}'; Caffe "
                        f"drops it (logging 'Unknown parameter {name}')", "layers", index, name)
            continue
        block_name, field_name = target
        block = getattr(layer, block_name)
        if not field_name:
            _copy_block(layer, block_name, value)
            continue
        block.SetInParent()
        descriptor = block.DESCRIPTOR.fields_by_name[field_name]
        if name == "pool":
            value = caffe_pb2.PoolingParameter.PoolMethod.Value(
                caffe_pb2.V0LayerParameter.PoolMethod.Name(value))
        if descriptor.type == descriptor.TYPE_MESSAGE:
            _copy_block(block, field_name, value)
        elif is_repeated(descriptor):
            getattr(block, field_name).append(value)
        else:
            setattr(block, field_name, value)
    for name in _V0_IGNORED_FIELDS:
        if v0.HasField(name):
            issues.note(f"{label}: V0 field '{name}' is ignored by Caffe's V0 upgrade; dropped",
                        "layers", index, name)
    return forced


def _upgrade_data(net: Any, origins: list[Optional[int]], issues: _Issues) -> None:
    for position, layer in enumerate(net.layers):
        block_name = _DATA_BLOCKS.get(_V1.LayerType.Name(layer.type))
        if block_name is None:
            continue
        # Caffe takes mutable pointers to both blocks: they exist afterwards even when empty.
        block = getattr(layer, block_name)
        block.SetInParent()
        transform = layer.transform_param
        transform.SetInParent()
        for name in _TRANSFORM_FIELDS:
            if not block.HasField(name):
                continue
            value = getattr(block, name)
            if transform.HasField(name) and getattr(transform, name) != value:
                descriptor = transform.DESCRIPTOR.fields_by_name[name]
                issues.note(f"{_layer_label(layer.name, origins[position] or 0)}: "
                            f"{block_name}.{name} ({scalar_to_text(descriptor, value)}) overrides "
                            f"transform_param.{name} "
                            f"({scalar_to_text(descriptor, getattr(transform, name))})",
                            "layers", origins[position], name)
            setattr(transform, name, value)
            block.ClearField(name)


def _upgrade_v1(net: Any, forced_types: dict[int, str], origins: list[Optional[int]],
                issues: _Issues) -> Any:
    if len(net.layer):
        issues.error(f"the net has both 'layer' ({len(net.layer)}) and 'layers' "
                     f"({len(net.layers)}) entries; Caffe refuses to upgrade it; the 'layer' "
                     f"entries are left out", "layer", 0)
    upgraded = NetParameter()
    upgraded.CopyFrom(net)
    upgraded.ClearField("layers")
    upgraded.ClearField("layer")
    for position, v1 in enumerate(net.layers):
        layer = upgraded.layer.add()
        _v1_layer_to_v2(v1, layer, forced_types.get(position))
    return upgraded


def _v1_layer_to_v2(v1: Any, layer: Any, forced_type: Optional[str]) -> None:
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    if v1.HasField("name"):
        layer.name = v1.name
    for rule in v1.include:
        layer.include.add().CopyFrom(rule)
    for rule in v1.exclude:
        layer.exclude.add().CopyFrom(rule)
    if forced_type is not None:
        layer.type = forced_type
    elif v1.HasField("type"):
        layer.type = v1_type_name(v1.type)
    for blob in v1.blobs:
        layer.blobs.add().CopyFrom(blob)
    for v1_name, spec_name in _V1_PARAM_FIELDS.items():
        for i, value in enumerate(getattr(v1, v1_name)):
            while len(layer.param) <= i:
                layer.param.add()
            setattr(layer.param[i], spec_name, value)  # DimCheckMode values are the same
    layer.loss_weight.extend(v1.loss_weight)
    for name in _V1_BLOCKS:
        if v1.HasField(name):
            _copy_block(layer, name, getattr(v1, name))
    # A V0 'layer' left in a V1 entry is ignored by Caffe; it cannot happen here, since the
    # V0 step runs first whenever any entry holds one.


def _upgrade_input(net: Any, issues: _Issues) -> bool:
    """Turn input fields into an Input layer; True when the layer was created."""
    inputs = list(net.input)
    has_shape = len(net.input_shape) > 0
    has_dim = len(net.input_dim) > 0
    created = False
    if has_shape or has_dim:
        layer = caffe_pb2.LayerParameter()
        layer.name = "input"
        layer.type = "Input"
        layer.input_param.SetInParent()
        for i, name in enumerate(inputs):
            layer.top.append(name)
            shape = layer.input_param.shape.add()
            if has_shape:
                if i < len(net.input_shape):
                    shape.CopyFrom(net.input_shape[i])
                else:
                    issues.error(f"input '{name}' has no input_shape ({len(net.input_shape)} "
                                 f"for {len(inputs)} inputs); Caffe reads past the end of "
                                 f"input_shape (undefined behaviour)", None, None, "input_shape")
            else:
                available = net.input_dim[4 * i:4 * i + 4]
                shape.dim.extend(available)
                if len(available) < 4:
                    issues.error(f"input '{name}' has {len(available)} of its 4 input_dim values "
                                 f"({len(net.input_dim)} for {len(inputs)} inputs); Caffe reads "
                                 f"past the end of input_dim (undefined behaviour)",
                                 None, None, "input_dim")
        if has_shape and len(net.input_shape) > len(inputs):
            issues.note(f"{len(net.input_shape) - len(inputs)} input_shape without an input "
                        f"dropped", None, None, "input_shape")
        if has_shape and has_dim:
            issues.note("input_dim is ignored because input_shape is given; dropped",
                        None, None, "input_dim")
        if not has_shape and len(net.input_dim) > 4 * len(inputs):
            issues.note(f"{len(net.input_dim) - 4 * len(inputs)} input_dim values beyond 4 per "
                        f"input dropped", None, None, "input_dim")
        layers = [copy for copy in net.layer]
        net.ClearField("layer")
        net.layer.add().CopyFrom(layer)
        for existing in layers:
            net.layer.add().CopyFrom(existing)
        created = True
    else:
        issues.note(f"no input_shape or input_dim for input {', '.join(repr(n) for n in inputs)}"
                    f": Caffe removes the input fields without creating an Input layer",
                    None, None, "input")
    net.ClearField("input")
    net.ClearField("input_shape")
    net.ClearField("input_dim")
    return created


def _upgrade_batchnorm(net: Any, origins: list[Optional[int]], issues: _Issues,
                       list_name: str) -> None:
    for position, layer in enumerate(net.layer):
        if layer.type != "BatchNorm" or len(layer.param) != 3:
            continue
        learning = [spec.lr_mult for spec in layer.param if spec.lr_mult != 0]
        for spec in layer.param:
            spec.lr_mult = 0
            spec.decay_mult = 0
        if learning:
            label = _layer_label(layer.name, origins[position] or 0, list_name)
            issues.note(f"BatchNorm layer {label}: its 3 param had lr_mult "
                        f"{', '.join(shortest_float32_repr(v) for v in learning)}; set to 0 "
                        f"(BatchNorm statistics are not learned)",
                        list_name, origins[position], "param", severity="info")


# -- printing ----------------------------------------------------------------------------------

_FieldPath = tuple  # ((field name, index), ...) from the net down to a field


# -- where each source token goes --------------------------------------------------------------

# A mapper takes (field name, occurrence index) of a source field and returns the output path
# it became (or None), the mapper for its children, and a line to use for whatever of it finds
# no place (None: inherit the parent's).
_Mapper = Callable[[str, int], tuple[Optional[_FieldPath], "_Mapper", Optional[Line]]]


def _nothing(name: str, index: int) -> tuple[Optional[_FieldPath], _Mapper, Optional[Line]]:
    return None, _nothing, None


def _identity(prefix: _FieldPath) -> _Mapper:
    def mapper(name: str, index: int) -> tuple[Optional[_FieldPath], _Mapper, Optional[Line]]:
        path = prefix + ((name, index),)
        return path, _identity(path), None
    return mapper


def _redirect(table: dict[str, _FieldPath], rest: _Mapper) -> _Mapper:
    """Fields named in ``table`` go to the given paths; the others to ``rest``."""
    def mapper(name: str, index: int) -> tuple[Optional[_FieldPath], _Mapper, Optional[Line]]:
        target = table.get(name)
        if target is not None and index == 0:
            return target, _identity(target), None
        return rest(name, index)
    return mapper


class _Owners:
    """Assigns every token of a document to the output line its comments belong to."""

    def __init__(self, document: Document, index: dict[_FieldPath, tuple[Line, Line]]):
        self.document = document
        self.index = index
        self.owner: list[Optional[Line]] = [None] * document.token_count
        # Tokens of fields that found no place: their comments go before the fallback line.
        self.homeless: set[int] = set()

    def own(self, start: int, stop: int, line: Optional[Line], placed: bool = True) -> None:
        self.owner[start:stop] = [line] * (stop - start)
        if not placed:
            self.homeless.update(range(start, stop))

    def children(self, fields: list[Field], mapper: _Mapper, fallback: Optional[Line]) -> None:
        counts: dict[str, int] = {}
        for source_field in fields:
            name = source_field.name
            value = source_field.value
            if type(value) is ListValue:
                items = value.items
                if not items:
                    self.own(source_field.start, source_field.stop, fallback)
                    continue
                previous_last: Optional[Line] = None
                previous_placed = True
                for k, item in enumerate(items):
                    position = counts.get(name, 0)
                    counts[name] = position + 1
                    first, last = self.value(item, name, position, mapper, fallback)
                    placed = item.start not in self.homeless
                    if k == 0:
                        self.own(source_field.start, item.start, first, placed)
                    else:
                        self.own(items[k - 1].stop, item.start, previous_last, previous_placed)
                    previous_last, previous_placed = last, placed
                self.own(items[-1].stop, source_field.stop, previous_last, previous_placed)
                continue
            position = counts.get(name, 0)
            counts[name] = position + 1
            first, last = self.value(value, name, position, mapper, fallback)
            placed = value.start not in self.homeless
            self.own(source_field.start, value.start, first, placed)
            self.own(value.stop, source_field.stop, last, placed)

    def value(self, value: Union[Scalar, Message], name: str, position: int, mapper: _Mapper,
              fallback: Optional[Line]) -> tuple[Optional[Line], Optional[Line]]:
        path, child_mapper, own_fallback = mapper(name, position)
        if own_fallback is not None:
            fallback = own_fallback
        entry = self.index.get(path) if path is not None else None
        if type(value) is Message:
            placed = entry is not None and entry[0].kind == "open"
            if placed:
                first, last = entry  # type: ignore[misc]
            else:
                first = last = fallback
            self.own(value.start, value.start + 1, first, placed)
            self.children(value.fields, child_mapper, first)
            self.own(value.stop - 1, value.stop, last, placed)
            return first, last
        placed = entry is not None and entry[0].kind == "field"
        line = entry[0] if placed else fallback  # type: ignore[index]
        self.own(value.start, value.stop, line, placed)
        return line, line

    def fill_forward(self, last: Line) -> None:
        """Tokens with no line take the line of the next token that has one."""
        owner = self.owner
        following = last
        for t in range(len(owner) - 1, -1, -1):
            if owner[t] is None:
                owner[t] = following
                self.homeless.add(t)
            else:
                following = owner[t]  # type: ignore[assignment]

    def place_comments(self, top: Line, start: int = 0, stop: Optional[int] = None) -> None:
        """Attach the comments in front of tokens ``start..stop-1`` to their lines."""
        trivia = self.document.trivia_list()
        owner = self.owner
        stop = len(trivia) if stop is None else stop
        for t in range(start, stop):
            text = trivia[t]
            if not text:
                continue
            trailing, entries = split_trivia(text)
            if t == 0:
                if trailing is not None:
                    top.before.append(trailing)
                top.before.extend(entries)
                continue
            line = owner[t]
            previous = owner[t - 1]
            if trailing is not None and previous is not None:
                if t - 1 in self.homeless:
                    previous.before.append(trailing)
                else:
                    previous.add_trailing(trailing)
            if line is None:
                continue
            if previous is line:
                line.before.extend(entry for entry in entries if entry is not _BLANK)
            else:
                line.before.extend(entries)


def _top_occurrences(document: Document, name: str,
                     with_fields: bool = False) -> list[Any]:
    """The values of the top-level field ``name``, one per occurrence (lists expanded); with
    ``with_fields``, (node to point at, value) pairs."""
    found: list[Any] = []
    for source_field in document.fields:
        if source_field.name != name:
            continue
        value = source_field.value
        if type(value) is ListValue:
            found.extend((item, item) if with_fields else item for item in value.items)
        else:
            found.append((source_field, value) if with_fields else value)
    return found


# -- upgrade_text ------------------------------------------------------------------------------

def upgrade_text(document: Document) -> UpgradeTextResult:
    """Upgrade a parsed net file; returns the new text (the old one, untouched, when Caffe
    would not change anything) plus the upgraded net, the steps run, notes and errors.

    V0/V1 files are printed in canonical V2 form (two-space indent, fields in schema order) with
    every comment kept: each one follows the field it was written at to the field that field
    became, or goes before the layer (or the next top-level item) when the field is gone. V2
    files that need an Input layer or BatchNorm fix are edited in place instead, so their
    layout, comments and any fork-specific fields survive. Raises nothing but PrototxtError.
    """
    original = document.to_text()
    path = document.path
    if detect_kind(document) == "solver":
        return UpgradeTextResult(original, None)
    bound = bind(document, "net")
    source = bound.message
    result = upgrade_net(source)
    errors = list(bound.errors)
    notes: list[Diagnostic] = []
    for issue in result.errors:
        errors.append(issue_diagnostic(document, issue, ERROR))
    for issue in result.notes:
        notes.append(issue_diagnostic(document, issue, WARNING))
    if not result.steps:
        return UpgradeTextResult(original, result.net, [], notes, errors, False)
    text: Optional[str] = None
    if not len(source.layers):
        text = _edit_v2(document, source, result)
        if text is None:
            notes.append(Diagnostic("the file could not be edited in place; it is printed in "
                                    "canonical form (fields unknown to Caffe are dropped)",
                                    path, severity=WARNING))
    if text is None:
        text = _canonical_text(document, source, result)
        notes.extend(d for d in bound.warnings)
        check = bind(parse(text, path), "net")
        if check.errors or check.message != result.net:
            errors.append(Diagnostic("internal error: the upgraded text does not read back as "
                                     "the upgraded net", path))
    return UpgradeTextResult(text, result.net, list(result.steps), notes, errors,
                             text != original)


def issue_diagnostic(document: Document, issue: UpgradeIssue, severity: str) -> Diagnostic:
    """An upgrade issue as a diagnostic located at the entry or field it concerns."""
    node = _locate(document, issue)
    if node is None:
        return Diagnostic(issue.message, document.path, severity=severity)
    start, end = node.span
    return Diagnostic(issue.message, document.path, start.line, start.column, severity,
                      start.offset, end.line, end.column)


def _locate(document: Document, issue: UpgradeIssue) -> Optional[Any]:
    if issue.list_name is None:
        if issue.field is None:
            return None
        return document.get(issue.field)
    entries = _top_occurrences(document, issue.list_name, with_fields=True)
    if issue.entry is None or not 0 <= issue.entry < len(entries):
        return None
    node, entry = entries[issue.entry]
    if issue.field is not None and type(entry) is Message:
        for scope in (entry, _v0_block(entry)):
            if scope is None:
                continue
            found = next((f for f in scope.fields if f.name == issue.field), None)
            if found is not None:
                return found
    return node


def _v0_block(entry: Message) -> Optional[Message]:
    for source_field in entry.fields:
        if source_field.name == "layer" and type(source_field.value) is Message:
            return source_field.value
    return None


def _canonical_text(document: Document, source: Any, result: UpgradeResult) -> str:
    net = result.net
    top = Line(0, None, "top")
    lines: list[Line] = [top]
    index: dict[_FieldPath, tuple[Line, Line]] = {}
    layout_message(net, 0, (), lines, index)
    end = Line(0, None, "end")
    lines.append(end)

    owners = _Owners(document, index)
    mapper = _net_mapper(source, result, index)
    owners.children(document.fields, mapper, None)
    owners.own(document.token_count - 1, document.token_count, end)
    owners.fill_forward(end)
    owners.place_comments(top)
    newline = document.newline
    out = render_lines(lines, inner_blank_lines=False)
    text = newline.join(out) + newline if out else ""
    return ("\ufeff" + text) if document.bom else text


def _net_mapper(source: Any, result: UpgradeResult,
                index: dict[_FieldPath, tuple[Line, Line]]) -> _Mapper:
    """Maps top-level source fields of ``source`` to the paths they have in ``result.net``."""
    list_name = "layers" if len(source.layers) else "layer"
    other_list = "layer" if list_name == "layers" else "layers"
    output_of = {origin: k for k, origin in enumerate(result.origins) if origin is not None}
    input_layer = bool(result.origins) and result.origins[0] is None
    shapes_given = len(source.input_shape) > 0 and not _needs_v0(source)
    ran_v0 = STEP_V0 in result.steps
    ran_data = STEP_DATA in result.steps
    input_prefix: _FieldPath = (("layer", 0),)
    shape_prefix: _FieldPath = input_prefix + (("input_param", 0),)
    net_fields = {f.name for f in result.net.DESCRIPTOR.fields}

    def entry_mapper(i: int, k: int) -> _Mapper:
        base: _FieldPath = (("layer", k),)
        if list_name == "layer":
            return _identity(base)
        entry = source.layers[i]
        if ran_v0:
            return _v0_entry_mapper(entry, base)
        return _v1_entry_mapper(entry, base, ran_data)

    def mapper(name: str, position: int) -> tuple[Optional[_FieldPath], _Mapper, Optional[Line]]:
        if name == list_name:
            k = output_of.get(position)
            if k is not None:
                return (("layer", k),), entry_mapper(position, k), None
            consumer = result.folded.get(position)
            if consumer is not None and consumer in output_of:
                k = output_of[consumer]
                opening = index[(("layer", k),)][0]
                return None, _padding_mapper(source.layers[consumer], k), opening
            return None, _nothing, None
        if name == other_list:
            return None, _nothing, None
        if name in _INPUT_FIELDS:
            if not input_layer:
                return None, _nothing, None
            if name == "input":
                path = input_prefix + (("top", position),)
                return path, _nothing, None
            if name == "input_shape":
                if not shapes_given:
                    return None, _nothing, None
                path = shape_prefix + (("shape", position),)
                return path, _identity(path), None
            if shapes_given:
                return None, _nothing, None
            path = shape_prefix + (("shape", position // 4), ("dim", position % 4))
            return path, _nothing, None
        if name not in net_fields:
            return None, _nothing, None
        path = ((name, position),)
        return path, _identity(path), None

    return mapper


def _v1_entry_mapper(entry: Any, base: _FieldPath, ran_data: bool) -> _Mapper:
    block = _DATA_BLOCKS.get(_V1.LayerType.Name(entry.type)) if ran_data else None
    identity = _identity(base)

    def mapper(name: str, position: int) -> tuple[Optional[_FieldPath], _Mapper, Optional[Line]]:
        spec_field = _V1_PARAM_FIELDS.get(name)
        if spec_field is not None:
            return base + (("param", position), (spec_field, 0)), _nothing, None
        if name == "layer":
            return None, _nothing, None
        if name == block and position == 0:
            path = base + ((name, 0),)
            moved = {f: base + (("transform_param", 0), (f, 0)) for f in _TRANSFORM_FIELDS}
            return path, _redirect(moved, _identity(path)), None
        return identity(name, position)

    return mapper


def _v0_entry_mapper(entry: Any, base: _FieldPath) -> _Mapper:
    """A ``layers`` entry of a V0 net: only bottom, top and the V0 block survive."""
    v0_mapper = _v0_block_mapper(entry.layer.type, base)
    identity = _identity(base)

    def mapper(name: str, position: int) -> tuple[Optional[_FieldPath], _Mapper, Optional[Line]]:
        if name in ("bottom", "top"):
            return identity(name, position)
        if name == "layer" and position == 0 and entry.HasField("layer"):
            return base, v0_mapper, None
        return None, _nothing, None

    return mapper


def _v0_block_mapper(kind: str, base: _FieldPath) -> _Mapper:
    def mapper(name: str, position: int) -> tuple[Optional[_FieldPath], _Mapper, Optional[Line]]:
        if name in ("name", "type"):
            return base + ((name, 0),), _nothing, None
        if name == "blobs":
            path = base + (("blobs", position),)
            return path, _identity(path), None
        if name == "blobs_lr":
            return base + (("param", position), ("lr_mult", 0)), _nothing, None
        if name == "weight_decay":
            return base + (("param", position), ("decay_mult", 0)), _nothing, None
        if position != 0:
            return None, _nothing, None
        if name in _V0_TRANSFORM_FIELDS:
            path = base + (("transform_param", 0), (_V0_TRANSFORM_FIELDS[name], 0))
            return path, _nothing, None
        target = _V0_TYPED_FIELDS.get(name, {}).get(kind)
        if target is None:
            return None, _nothing, None
        block_name, field_name = target
        path = base + ((block_name, 0),)
        if field_name:
            path += ((field_name, 0),)
        return path, _identity(path), None

    return mapper


def _padding_mapper(consumer: Any, k: int) -> _Mapper:
    """A folded padding entry: its pad goes to the consumer's pad, the rest before it."""
    kind = consumer.layer.type
    block = "convolution_param" if kind == "conv" else "pooling_param"
    pad_path: _FieldPath = (("layer", k), (block, 0), ("pad", 0))

    def v0(name: str, position: int) -> tuple[Optional[_FieldPath], _Mapper, Optional[Line]]:
        if name == "pad" and position == 0:
            return pad_path, _nothing, None
        return None, _nothing, None

    def mapper(name: str, position: int) -> tuple[Optional[_FieldPath], _Mapper, Optional[Line]]:
        if name == "layer" and position == 0:
            return None, v0, None
        return None, _nothing, None

    return mapper


# -- in-place edits for V2 files ---------------------------------------------------------------

_LINE_SPACE = re.compile(r"[ \t\f\v]*")


def _edit_v2(document: Document, source: Any, result: UpgradeResult) -> Optional[str]:
    """The upgrade of a V2 file as edits of its text, or None when that is not possible."""
    edits: list[TextEdit] = []
    if STEP_INPUT in result.steps:
        edit = _input_edit(document, source, result)
        if edit is None:
            return None
        edits.append(edit)
    if STEP_BATCHNORM in result.steps:
        batchnorm = _batchnorm_edits(document, source)
        if batchnorm is None:
            return None
        edits.extend(batchnorm)
    if not edits:
        return document.to_text()
    try:
        text = apply_edits(document.source, edits)
        check = bind(parse(text, document.path), "net")
    except (PrototxtError, ValueError):
        return None
    if check.message != result.net:
        return None
    return ("\ufeff" + text) if document.bom else text


def _input_edit(document: Document, source: Any, result: UpgradeResult) -> Optional[TextEdit]:
    """Replace the run of input fields with the Input layer (their comments moved into it)."""
    fields = document.fields
    positions = [k for k, f in enumerate(fields) if f.name in _INPUT_FIELDS]
    if not positions or positions[-1] - positions[0] + 1 != len(positions):
        return None
    input_layer = bool(result.origins) and result.origins[0] is None
    first_layer = next((k for k, f in enumerate(fields) if f.name == "layer"), None)
    if input_layer and first_layer is not None and first_layer < positions[0]:
        return None  # the Input layer has to come first
    first, last = fields[positions[0]], fields[positions[-1]]
    src = document.source
    start = document.token_offset(first.start)
    end = document.token_end(last.stop - 1)
    head = document.token_trivia(last.stop).split("\n")[0]
    if "#" in head:
        end += len(head.rstrip("\r"))

    holder = Line(0, None, "top")
    lines: list[Line] = [holder]
    index: dict[_FieldPath, tuple[Line, Line]] = {}
    if input_layer:
        layout_message(result.net.layer[0], 1, (("layer", 0),), lines, index)
        opening = Line(0, "layer {", "open")
        closing = Line(0, "}", "close")
        lines.insert(1, opening)
        lines.append(closing)
        index[(("layer", 0),)] = (opening, closing)
        fallback = opening
    else:
        fallback = holder
    owners = _Owners(document, index)
    run = fields[positions[0]:positions[-1] + 1]
    owners.children(run, _net_mapper(source, result, index), fallback)
    for t in range(first.start, last.stop):
        if owners.owner[t] is None:
            owners.owner[t] = fallback
            owners.homeless.add(t)
    owners.place_comments(holder, first.start + 1, last.stop)
    trailing, _ = split_trivia(document.token_trivia(last.stop))
    if trailing is not None:
        line = owners.owner[last.stop - 1]
        if line is not None and last.stop - 1 in owners.homeless:
            line.before.append(trailing)
        elif line is not None:
            line.add_trailing(trailing)

    line_start = src.rfind("\n", 0, start) + 1
    prefix = src[line_start:start]
    base = prefix if not prefix.strip() else ""
    newline = document.newline
    rendered = render_lines(lines, indent_unit(document), base, inner_blank_lines=False)
    if rendered:
        rendered[0] = rendered[0][len(base):] if rendered[0].startswith(base) else rendered[0]
        return TextEdit(start, end, newline.join(rendered))
    # Nothing to put back: remove the lines the fields stood on.
    after = _LINE_SPACE.match(src, end).end()  # type: ignore[union-attr]
    if not prefix.strip() and (after == len(src) or src[after] in "\r\n"):
        stop = src.find("\n", after)
        return TextEdit(line_start, len(src) if stop < 0 else stop + 1, "")
    return TextEdit(start, end, "")


def _batchnorm_edits(document: Document, source: Any) -> Optional[list[TextEdit]]:
    occurrences = _top_occurrences(document, "layer")
    if len(occurrences) != len(source.layer):
        return None
    edits: list[TextEdit] = []
    for node, layer in zip(occurrences, source.layer):
        if layer.type != "BatchNorm" or len(layer.param) != 3:
            continue
        if type(node) is not Message:
            return None
        specs: list[Message] = []
        for source_field in node.fields:
            if source_field.name != "param":
                continue
            value = source_field.value
            items = value.items if type(value) is ListValue else [value]
            for item in items:
                if type(item) is not Message:
                    return None
                specs.append(item)
        if len(specs) != 3:
            return None
        for spec in specs:
            found = _spec_edits(spec)
            if found is None:
                return None
            edits.extend(found)
    return edits


def _spec_edits(spec: Message) -> Optional[list[TextEdit]]:
    present = {}
    for position, source_field in enumerate(spec.fields):
        if source_field.name in ("lr_mult", "decay_mult"):
            if source_field.name in present or type(source_field.value) is not Scalar:
                return None
            present[source_field.name] = (position, source_field)
    edits: list[TextEdit] = []
    for _, source_field in present.values():
        if not _is_zero(source_field.value):
            edits.append(replace_value(source_field, "0"))
    if "lr_mult" in present and "decay_mult" in present:
        return edits
    if "lr_mult" not in present and "decay_mult" not in present:
        edit = insert_field(spec, "lr_mult: 0")
        replacement = edit.replacement
        if "\n" in replacement:
            replacement += replacement.replace("lr_mult", "decay_mult")
        else:
            replacement = replacement.replace("lr_mult: 0", "lr_mult: 0 decay_mult: 0")
        edits.append(TextEdit(edit.start, edit.end, replacement))
        return edits
    if "lr_mult" in present:
        edits.append(insert_field(spec, "decay_mult: 0", present["lr_mult"][0] + 1))
    else:
        edits.append(insert_field(spec, "lr_mult: 0"))  # after the others: order is free
    return edits


def _is_zero(value: Scalar) -> bool:
    if value.kind != "number":
        return False
    try:
        return parse_float(value.body, value.negative) == 0
    except ValueError:
        return False
