"""Legacy upgrades: the message-level upgrade against Caffe's semantics, and the upgrade text.

The expected nets below are what Caffe's own upgrade (``upgrade_net_proto_text``, final master)
produces for each input; they were derived by hand from ``upgrade_proto.cpp`` and checked
against a build of that code.
"""

from __future__ import annotations

import csv
import re
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from prototxt_tools.errors import PrototxtError
from prototxt_tools.net.upgrade import (
    STEP_BATCHNORM, STEP_DATA, STEP_INPUT, STEP_V0, STEP_V1, needs_upgrade, upgrade_net,
    upgrade_text, v0_type_name, v1_type_name,
)
from prototxt_tools.schema import caffe_pb2
from prototxt_tools.schema.binding import bind, detect_kind, message_to_text
from prototxt_tools.syntax.parser import parse

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def net_of(text: str):
    result = bind(parse(textwrap.dedent(text)), "net")
    assert not result.errors, [str(d) for d in result.errors]
    return result.message


def upgrade(text: str):
    return upgrade_net(net_of(text))


def comments(text: str) -> Counter:
    document = parse(text)
    found: Counter = Counter()
    for trivia in document.trivia_list():
        for comment in re.findall(r"#[^\n]*", trivia):
            found[comment.rstrip()] += 1
    return found


def without_comments(text: str) -> str:
    """Comment lines, end-of-line comments and blank lines removed (no '#' in strings here)."""
    lines = [re.sub(r"\s+#.*$", "", line) for line in text.splitlines()]
    kept = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return "".join(line + "\n" for line in kept)


# -- V0 -> V1 -> V2 ----------------------------------------------------------------------------

V0_ALL = """\
name: "v0_all"
force_backward: true
layers { layer { name: "d" type: "data" source: "train_db" batchsize: 64 rand_skip: 5
  scale: 0.00390625 meanfile: "mean.binaryproto" cropsize: 227 mirror: true }
  top: "data" top: "label" }
layers { layer { name: "img" type: "images" source: "list.txt" batchsize: 8 rand_skip: 1
  shuffle_images: true new_height: 256 new_width: 256 } top: "img" top: "img_label" }
layers { layer { name: "win" type: "window_data" source: "windows.txt" batchsize: 128
  det_fg_threshold: 0.6 det_bg_threshold: 0.4 det_fg_fraction: 0.3 det_context_pad: 16
  det_crop_mode: "square" mirror: true } top: "win" top: "win_label" }
layers { layer { name: "h5" type: "hdf5_data" source: "h5.txt" batchsize: 2 } top: "h5" }
layers { layer { name: "pad1" type: "padding" pad: 2 } bottom: "data" top: "pad1" }
layers { layer { name: "conv1" type: "conv" num_output: 96 biasterm: false kernelsize: 11
  stride: 4 group: 2 weight_filler { type: "gaussian" std: 0.01 }
  bias_filler { type: "constant" value: 0.1 } blobs_lr: 1 blobs_lr: 2 weight_decay: 1
  weight_decay: 0 } bottom: "pad1" top: "conv1" }
layers { layer { name: "relu1" type: "relu" } bottom: "conv1" top: "conv1" }
layers { layer { name: "pad2" type: "padding" pad: 1 } bottom: "conv1" top: "pad2" }
layers { layer { name: "pool1" type: "pool" pool: AVE kernelsize: 3 stride: 2 }
  bottom: "pad2" top: "pool1" }
layers { layer { name: "pool2" type: "pool" pool: STOCHASTIC kernelsize: 2 }
  bottom: "pool1" top: "pool2" }
layers { layer { name: "norm1" type: "lrn" local_size: 5 alpha: 0.0001 beta: 0.75 k: 2 }
  bottom: "pool2" top: "norm1" }
layers { layer { name: "ip1" type: "innerproduct" num_output: 10 biasterm: true
  weight_filler { type: "xavier" } bias_filler { type: "constant" } }
  bottom: "norm1" top: "ip1" }
layers { layer { name: "drop1" type: "dropout" dropout_ratio: 0.25 } bottom: "ip1" top: "ip1" }
layers { layer { name: "cat" type: "concat" concat_dim: 1 } bottom: "ip1" bottom: "ip1"
  top: "cat" }
layers { layer { name: "flat" type: "flatten" } bottom: "cat" top: "flat" }
layers { layer { name: "split" type: "split" } bottom: "flat" top: "s1" top: "s2" }
layers { layer { name: "sig" type: "sigmoid" } bottom: "s1" top: "sig" }
layers { layer { name: "tanh" type: "tanh" } bottom: "sig" top: "tanh" }
layers { layer { name: "bnll" type: "bnll" } bottom: "tanh" top: "bnll" }
layers { layer { name: "i2c" type: "im2col" } bottom: "data" top: "cols" }
layers { layer { name: "prob" type: "softmax" } bottom: "s2" top: "prob" }
layers { layer { name: "acc" type: "accuracy" } bottom: "prob" bottom: "label" top: "acc" }
layers { layer { name: "loss" type: "softmax_loss" } bottom: "s2" bottom: "label" }
layers { layer { name: "l2" type: "euclidean_loss" } bottom: "s2" bottom: "label" }
layers { layer { name: "mlog" type: "multinomial_logistic_loss" } bottom: "prob"
  bottom: "label" }
layers { layer { name: "info" type: "infogain_loss" source: "H.binaryproto" } bottom: "prob"
  bottom: "label" }
layers { layer { name: "out" type: "hdf5_output" hdf5_output_param { file_name: "out.h5" } }
  bottom: "prob" bottom: "label" }
"""

V0_ALL_EXPECTED = """\
name: "v0_all"
force_backward: true
layer { name: "d" type: "Data" top: "data" top: "label"
  transform_param { scale: 0.00390625 mirror: true crop_size: 227
                    mean_file: "mean.binaryproto" }
  data_param { source: "train_db" batch_size: 64 rand_skip: 5 } }
layer { name: "img" type: "ImageData" top: "img" top: "img_label"
  image_data_param { source: "list.txt" batch_size: 8 rand_skip: 1 shuffle: true
                     new_height: 256 new_width: 256 } }
layer { name: "win" type: "WindowData" top: "win" top: "win_label"
  transform_param { mirror: true }
  window_data_param { source: "windows.txt" batch_size: 128 fg_threshold: 0.6
                      bg_threshold: 0.4 fg_fraction: 0.3 context_pad: 16 crop_mode: "square" } }
layer { name: "h5" type: "HDF5Data" top: "h5"
  hdf5_data_param { source: "h5.txt" batch_size: 2 } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 96 bias_term: false pad: 2 kernel_size: 11 group: 2
    stride: 4 weight_filler { type: "gaussian" std: 0.01 }
    bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "pool2" type: "Pooling" bottom: "pool1" top: "pool2"
  pooling_param { pool: STOCHASTIC kernel_size: 2 } }
layer { name: "norm1" type: "LRN" bottom: "pool2" top: "norm1"
  lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 k: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "norm1" top: "ip1"
  inner_product_param { num_output: 10 bias_term: true weight_filler { type: "xavier" }
                        bias_filler { type: "constant" } } }
layer { name: "drop1" type: "Dropout" bottom: "ip1" top: "ip1"
  dropout_param { dropout_ratio: 0.25 } }
layer { name: "cat" type: "Concat" bottom: "ip1" bottom: "ip1" top: "cat"
  concat_param { concat_dim: 1 } }
layer { name: "flat" type: "Flatten" bottom: "cat" top: "flat" }
layer { name: "split" type: "Split" bottom: "flat" top: "s1" top: "s2" }
layer { name: "sig" type: "Sigmoid" bottom: "s1" top: "sig" }
layer { name: "tanh" type: "TanH" bottom: "sig" top: "tanh" }
layer { name: "bnll" type: "BNLL" bottom: "tanh" top: "bnll" }
layer { name: "i2c" type: "Im2col" bottom: "data" top: "cols" }
layer { name: "prob" type: "Softmax" bottom: "s2" top: "prob" }
layer { name: "acc" type: "Accuracy" bottom: "prob" bottom: "label" top: "acc" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "s2" bottom: "label" }
layer { name: "l2" type: "EuclideanLoss" bottom: "s2" bottom: "label" }
layer { name: "mlog" type: "MultinomialLogisticLoss" bottom: "prob" bottom: "label" }
layer { name: "info" type: "InfogainLoss" bottom: "prob" bottom: "label"
  infogain_loss_param { source: "H.binaryproto" } }
layer { name: "out" type: "HDF5Output" bottom: "prob" bottom: "label"
  hdf5_output_param { file_name: "out.h5" } }
"""


def test_v0_every_mapped_type_and_padding_layers():
    source = net_of(V0_ALL)
    before = source.SerializeToString()
    result = upgrade_net(source)
    assert source.SerializeToString() == before  # the input is left alone
    assert result.steps == [STEP_V0, STEP_V1] == needs_upgrade(source)
    assert result.net == net_of(V0_ALL_EXPECTED)
    assert result.errors == []
    # pad1 (entry 4) and pad2 (entry 7) are gone; each output layer knows its source entry.
    assert result.origins == [0, 1, 2, 3, 5, 6] + list(range(8, 27))
    assert result.folded == {4: 5, 7: 8}
    assert [n.message for n in result.notes] == [
        "V0 padding layer layers[4] 'pad1' folded into layers[5] 'conv1' (pad: 2, bottom 'data')",
        "V0 padding layer layers[7] 'pad2' folded into layers[8] 'pool1' (pad: 1, bottom 'conv1')",
    ]


def test_v0_type_table():
    expected = {
        "accuracy": "Accuracy", "bnll": "BNLL", "concat": "Concat", "conv": "Convolution",
        "data": "Data", "dropout": "Dropout", "euclidean_loss": "EuclideanLoss",
        "flatten": "Flatten", "hdf5_data": "HDF5Data", "hdf5_output": "HDF5Output",
        "im2col": "Im2col", "images": "ImageData", "infogain_loss": "InfogainLoss",
        "innerproduct": "InnerProduct", "lrn": "LRN",
        "multinomial_logistic_loss": "MultinomialLogisticLoss", "pool": "Pooling",
        "relu": "ReLU", "sigmoid": "Sigmoid", "softmax": "Softmax",
        "softmax_loss": "SoftmaxWithLoss", "split": "Split", "tanh": "TanH",
        "window_data": "WindowData",
    }
    for v0, v2 in expected.items():
        assert v0_type_name(v0) == v2
        net = upgrade(f'layers {{ layer {{ name: "x" type: "{v0}" }} }}').net
        assert [layer.type for layer in net.layer] == [v2]
    for unknown in ("padding", "locally_connected", "Convolution", "CONV", ""):
        assert v0_type_name(unknown) is None


V0_WRONG = """\
name: "v0_wrong"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 5 input_dim: 5
input_shape { dim: 1 }
state { phase: TRAIN }
debug_info: true
layer { name: "v2" type: "ReLU" }
layers {
  layer {
    name: "relu" type: "relu"
    num_output: 3 biasterm: false weight_filler { type: "xavier" } bias_filler { type: "xavier" }
    pad: 1 kernelsize: 2 group: 2 stride: 2 pool: AVE dropout_ratio: 0.1 local_size: 3
    alpha: 2 beta: 3 k: 4 source: "x" batchsize: 3 rand_skip: 1 shuffle_images: true
    new_height: 1 new_width: 1 concat_dim: 2 det_fg_threshold: 0.1 det_bg_threshold: 0.1
    det_fg_fraction: 0.1 det_context_pad: 1 det_crop_mode: "square"
    hdf5_output_param { file_name: "x" } new_num: 1 new_channels: 2
    scale: 0.5 meanfile: "m" cropsize: 3 mirror: false
    blobs { num: 1 channels: 1 height: 1 width: 2 data: 1 data: 2 }
  }
  bottom: "data" top: "r"
  name: "outside" blobs_lr: 5
}
layers { name: "v1_in_v0_net" type: RELU bottom: "r" top: "r2" }
"""

V0_WRONG_EXPECTED = """\
name: "v0_wrong"
layer { name: "input" type: "Input" top: "data"
  input_param { shape { dim: 1 dim: 3 dim: 5 dim: 5 } } }
layer { name: "relu" type: "ReLU" bottom: "data" top: "r"
  blobs { num: 1 channels: 1 height: 1 width: 2 data: 1 data: 2 }
  transform_param { scale: 0.5 mirror: false crop_size: 3 mean_file: "m" } }
layer { bottom: "r" top: "r2" }
"""


def test_v0_fields_a_type_does_not_own_are_dropped_with_notes():
    result = upgrade(V0_WRONG)
    assert result.errors == []
    assert result.net == net_of(V0_WRONG_EXPECTED)
    notes = [n.message for n in result.notes]
    for field in ("num_output", "biasterm", "weight_filler", "bias_filler", "pad", "kernelsize",
                  "group", "stride", "pool", "dropout_ratio", "local_size", "alpha", "beta", "k",
                  "source", "batchsize", "rand_skip", "shuffle_images", "new_height",
                  "new_width", "concat_dim", "det_fg_threshold", "det_bg_threshold",
                  "det_fg_fraction", "det_context_pad", "det_crop_mode", "hdf5_output_param"):
        assert any(f"'{field}' has no meaning for type 'relu'" in n for n in notes), field
    assert any("'new_num' is ignored" in n for n in notes)
    assert any("'new_channels' is ignored" in n for n in notes)
    assert any("beside the V0 'layer' block" in n and "name, blobs_lr" in n for n in notes)
    assert any("'v1_in_v0_net' has no V0 'layer' block" in n for n in notes)
    for dropped in ("input_shape", "state", "debug_info", "layer"):
        assert any(f"'{dropped}' is dropped" in n for n in notes), dropped
    # Transformation fields go to transform_param whatever the type: no note for them.
    assert not any(f"'{f}'" in n for f in ("scale", "meanfile", "cropsize", "mirror")
                   for n in notes)


def test_v0_padding_feeding_two_layers_and_unused_padding():
    result = upgrade("""\
        input: "data"
        layers { layer { name: "pad" type: "padding" pad: 3 } bottom: "data" top: "padded" }
        layers { layer { name: "convA" type: "conv" num_output: 1 kernelsize: 3 pad: 9 }
                 bottom: "padded" top: "a" }
        layers { layer { name: "poolB" type: "pool" kernelsize: 3 } bottom: "padded" top: "b" }
        layers { layer { name: "unused" type: "padding" } bottom: "a" top: "unused" }
        layers { layer { name: "pad0" type: "padding" } bottom: "b" top: "b0" }
        layers { layer { name: "convC" type: "conv" } bottom: "b0" top: "c" }
        """)
    # The padding's pad replaces the conv's own; an unset pad still sets pad: 0; an input
    # without shape is simply removed.
    assert result.net == net_of("""\
        layer { name: "convA" type: "Convolution" bottom: "data" top: "a"
                convolution_param { num_output: 1 pad: 3 kernel_size: 3 } }
        layer { name: "poolB" type: "Pooling" bottom: "data" top: "b"
                pooling_param { kernel_size: 3 pad: 3 } }
        layer { name: "convC" type: "Convolution" bottom: "b" top: "c"
                convolution_param { pad: 0 } }
        """)
    assert result.errors == []
    assert result.steps == [STEP_V0, STEP_V1, STEP_INPUT]
    assert result.origins == [1, 2, 5]
    assert result.folded == {0: 1, 4: 5}
    notes = [n.message for n in result.notes]
    assert any("'unused' feeds no conv or pool layer" in n for n in notes)
    assert any("no input_shape or input_dim for input 'data'" in n for n in notes)


@pytest.mark.parametrize("text, expected", [
    ("""input: "data"
        layers { layer { name: "pad" type: "padding" pad: 1 } bottom: "data" top: "p" }
        layers { layer { name: "relu" type: "relu" } bottom: "p" top: "r" }""",
     "it feeds a 'relu' layer, not a conv or pool layer"),
    ("""input: "data"
        layers { layer { name: "pad" type: "padding" pad: 1 } bottom: "data" top: "p" top: "q" }
        layers { layer { name: "conv" type: "conv" } bottom: "p" top: "c" }""",
     "it has 2 tops, not 1"),
    ("""input: "data" input: "more"
        layers { layer { name: "pad" type: "padding" pad: 1 } bottom: "data" bottom: "more"
                 top: "p" }
        layers { layer { name: "conv" type: "conv" } bottom: "p" top: "c" }""",
     "it has 2 bottoms, not 1"),
    ("""input: "data"
        layers { layer { name: "pad" type: "padding" pad: 1 } bottom: "data" top: "p" }
        layers { layer { name: "conv" type: "conv" } bottom: "p" bottom: "data" top: "c" }""",
     "the layer it feeds has 2 bottoms, not 1"),
    ("""layers { layer { name: "conv" type: "conv" num_output: 2 } bottom: "nowhere" top: "c" }""",
     "bottom 'nowhere' is not produced by an earlier layer or an input"),
    ("""input: "data"
        layers { layer { name: "lc" type: "locally_connected" num_output: 2 }
                 bottom: "data" top: "lc" }""",
     "unknown V0 layer type 'locally_connected'"),
])
def test_v0_conditions_where_caffe_stops_are_errors(text, expected):
    result = upgrade(text)
    assert any(expected in e.message for e in result.errors), [str(e) for e in result.errors]
    assert len(result.net.layers) == 0 and len(result.net.input) == 0  # still a V2 net


def test_v0_unknown_type_is_kept_as_written():
    result = upgrade("""\
        input: "data"
        layers { layer { name: "lc" type: "locally_connected" num_output: 2 kernelsize: 3 }
                 bottom: "data" top: "lc" }
        layers { layer { name: "relu" type: "relu" } bottom: "lc" top: "lc" }
        """)
    assert [layer.type for layer in result.net.layer] == ["locally_connected", "ReLU"]
    assert result.errors[0].entry == 0 and result.errors[0].field == "type"
    assert sum("has no meaning for type 'locally_connected'" in n.message
               for n in result.notes) == 2


def test_v0_only_padding_layers_has_nothing_to_upgrade_to_v2():
    net = net_of('input: "d" layers { layer { name: "p" type: "padding" } bottom: "d" top: "x" }')
    result = upgrade_net(net)
    assert result.steps == [STEP_V0, STEP_INPUT] == needs_upgrade(net)
    assert len(result.net.layer) == 0


# -- V1 -> V2 ----------------------------------------------------------------------------------

V1_TYPES = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax",
    "BNLL": "BNLL", "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution", "DATA": "Data", "DECONVOLUTION": "Deconvolution",
    "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct", "LRN": "LRN", "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss", "MVN": "MVN",
    "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split",
    "SLICE": "Slice", "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}


def test_v1_type_table_covers_every_layer_type():
    assert sorted(V1_TYPES) == sorted(caffe_pb2.V1LayerParameter.LayerType.keys())


@pytest.mark.parametrize("v1, v2", sorted(V1_TYPES.items()))
def test_v1_layer_type(v1, v2):
    assert v1_type_name(caffe_pb2.V1LayerParameter.LayerType.Value(v1)) == v2
    result = upgrade(f'layers {{ name: "x" type: {v1} }}')
    assert result.steps == [STEP_V1]
    (layer,) = result.net.layer
    assert layer.HasField("type") and layer.type == v2  # NONE gives an explicit type: ""


V1_PARAMS = """\
name: "v1"
force_backward: true
state { phase: TRAIN level: 2 }
debug_info: true
layers {
  name: "conv" type: CONVOLUTION bottom: "data" top: "conv"
  blobs_lr: 1 blobs_lr: 2 blobs_lr: 3
  weight_decay: 0.5
  param: "w" param: "b"
  blob_share_mode: PERMISSIVE blob_share_mode: STRICT
  loss_weight: 0.25
  include { phase: TRAIN }
  exclude { stage: "deploy" }
  blobs { shape { dim: 1 } data: 7 }
  convolution_param { num_output: 2 kernel_size: 1 }
}
layers { type: NONE name: "none" }
layers { name: "untyped" }
layers { name: "silence" type: SILENCE bottom: "conv" }
"""

V1_PARAMS_EXPECTED = """\
name: "v1"
force_backward: true
state { phase: TRAIN level: 2 }
debug_info: true
layer {
  name: "conv" type: "Convolution" bottom: "data" top: "conv"
  loss_weight: 0.25
  param { name: "w" share_mode: PERMISSIVE lr_mult: 1 decay_mult: 0.5 }
  param { name: "b" share_mode: STRICT lr_mult: 2 }
  param { lr_mult: 3 }
  blobs { data: 7 shape { dim: 1 } }
  include { phase: TRAIN }
  exclude { stage: "deploy" }
  convolution_param { num_output: 2 kernel_size: 1 }
}
layer { name: "none" type: "" }
layer { name: "untyped" }
layer { name: "silence" type: "Silence" bottom: "conv" }
"""


def test_v1_params_rules_blobs_and_net_fields():
    result = upgrade(V1_PARAMS)
    assert result.net == net_of(V1_PARAMS_EXPECTED)
    assert result.steps == [STEP_V1] and result.errors == [] and result.notes == []
    assert result.origins == [0, 1, 2, 3]


def test_v1_every_param_block_is_carried_even_empty():
    blocks = [f.name for f in caffe_pb2.V1LayerParameter.DESCRIPTOR.fields
              if f.name.endswith("_param")]
    assert len(blocks) == 30
    net = caffe_pb2.NetParameter()
    layer = net.layers.add()
    layer.type = caffe_pb2.V1LayerParameter.RELU
    for name in blocks:
        getattr(layer, name).SetInParent()
    layer.convolution_param.num_output = 3
    (upgraded,) = upgrade_net(net).net.layer
    for name in blocks:
        assert upgraded.HasField(name), name
        assert getattr(upgraded, name) == getattr(layer, name)


def test_data_transformation_fields_move_to_transform_param():
    result = upgrade("""\
        layers { name: "d" type: DATA top: "data"
                 data_param { source: "db" scale: 0.5 mean_file: "m" crop_size: 3 mirror: true } }
        layers { name: "d2" type: DATA top: "data2" }
        layers { name: "img" type: IMAGE_DATA top: "i"
                 image_data_param { source: "l" mirror: false }
                 transform_param { mirror: true scale: 2 } }
        layers { name: "win" type: WINDOW_DATA top: "w" window_data_param { crop_size: 10 } }
        layers { name: "odd" type: DATA top: "o" image_data_param { scale: 0.25 } }
        layers { name: "conv" type: CONVOLUTION bottom: "data" top: "c" data_param { scale: 3 } }
        """)
    assert result.steps == [STEP_DATA, STEP_V1]
    # Caffe touches both blocks of every data layer, so they exist afterwards even empty;
    # only the block matching the layer type is upgraded.
    assert result.net == net_of("""\
        layer { name: "d" type: "Data" top: "data"
                transform_param { scale: 0.5 mirror: true crop_size: 3 mean_file: "m" }
                data_param { source: "db" } }
        layer { name: "d2" type: "Data" top: "data2" transform_param { } data_param { } }
        layer { name: "img" type: "ImageData" top: "i"
                transform_param { scale: 2 mirror: false } image_data_param { source: "l" } }
        layer { name: "win" type: "WindowData" top: "w"
                transform_param { crop_size: 10 } window_data_param { } }
        layer { name: "odd" type: "Data" top: "o" transform_param { } data_param { }
                image_data_param { scale: 0.25 } }
        layer { name: "conv" type: "Convolution" bottom: "data" top: "c"
                data_param { scale: 3 } }
        """)
    assert len(result.net.layer[1].transform_param.ListFields()) == 0
    assert result.net.layer[1].HasField("transform_param")
    assert [n.message for n in result.notes] == [
        "layers[2] 'img': image_data_param.mirror (false) overrides transform_param.mirror (true)"]


def test_data_step_only_when_a_data_layer_needs_it():
    result = upgrade("""\
        layers { name: "d" type: DATA top: "data" data_param { source: "db" } }
        layers { name: "odd" type: DATA top: "o" image_data_param { scale: 0.25 } }
        """)
    assert result.steps == [STEP_V1]
    assert not result.net.layer[0].HasField("transform_param")


def test_layer_and_layers_together_is_an_error():
    net = net_of('layer { name: "v2" type: "ReLU" } layers { name: "v1" type: RELU }')
    result = upgrade_net(net)
    assert len(result.errors) == 1 and "both 'layer' (1) and 'layers' (1)" in str(result.errors[0])
    assert [layer.name for layer in result.net.layer] == ["v1"]
    assert result.origins == [0]


# -- input fields and BatchNorm ----------------------------------------------------------------

def test_input_dim_becomes_an_input_layer_placed_first():
    result = upgrade("""\
        name: "in"
        input: "data"
        input: "label"
        input_dim: 10 input_dim: 3 input_dim: 227 input_dim: 227
        input_dim: 10 input_dim: 1 input_dim: 1 input_dim: 1
        input_dim: 99
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" }
        """)
    assert result.steps == [STEP_INPUT]
    assert result.net == net_of("""\
        name: "in"
        layer { name: "input" type: "Input" top: "data" top: "label"
                input_param { shape { dim: 10 dim: 3 dim: 227 dim: 227 }
                              shape { dim: 10 dim: 1 dim: 1 dim: 1 } } }
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" }
        """)
    assert result.origins == [None, 0]
    assert [n.message for n in result.notes] == ["1 input_dim values beyond 4 per input dropped"]


def test_input_shape_wins_over_input_dim():
    result = upgrade("""\
        input: "data"
        input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
        input: "im_info"
        input_shape { dim: 1 dim: 3 }
        input_shape { dim: 5 }
        input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 4
        layer { name: "relu" type: "ReLU" bottom: "data" top: "data" }
        """)
    assert result.net == net_of("""\
        layer { name: "input" type: "Input" top: "data" top: "im_info"
                input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } shape { dim: 1 dim: 3 } } }
        layer { name: "relu" type: "ReLU" bottom: "data" top: "data" }
        """)
    assert len(result.notes) == 2 and result.errors == []


def test_input_without_shape_is_just_removed():
    result = upgrade('input: "data" layer { name: "relu" type: "ReLU" bottom: "data" }')
    assert result.steps == [STEP_INPUT]
    assert result.net == net_of('layer { name: "relu" type: "ReLU" bottom: "data" }')
    assert result.origins == [0]


def test_input_shape_without_input_is_not_upgraded():
    net = net_of('input_shape { dim: 1 } layer { name: "relu" type: "ReLU" }')
    assert needs_upgrade(net) == []
    assert upgrade_net(net).net == net


@pytest.mark.parametrize("text", [
    'input: "a" input: "b" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 4 input_dim: 5',
    'input: "a" input: "b" input_shape { dim: 1 }',
])
def test_too_few_input_shapes_is_an_error(text):
    result = upgrade(text)
    assert len(result.errors) == 1 and "undefined behaviour" in result.errors[0].message
    (layer,) = result.net.layer
    assert list(layer.top) == ["a", "b"] and len(layer.input_param.shape) == 2


BATCHNORM = """\
layer { name: "bn3" type: "BatchNorm" bottom: "x" top: "x"
        param { lr_mult: 1 } param { decay_mult: 5 name: "s" } param { } }
layer { name: "bn2" type: "BatchNorm" bottom: "x" top: "x" param { lr_mult: 1 } param { } }
layer { name: "bn0" type: "BatchNorm" bottom: "x" top: "x" }
layer { name: "sc" type: "Scale" bottom: "x" top: "x"
        param { lr_mult: 1 } param { lr_mult: 1 } param { lr_mult: 1 } }
"""


def test_batchnorm_with_exactly_three_params_is_frozen():
    result = upgrade(BATCHNORM)
    assert result.steps == [STEP_BATCHNORM]
    assert result.net == net_of("""\
        layer { name: "bn3" type: "BatchNorm" bottom: "x" top: "x"
                param { lr_mult: 0 decay_mult: 0 } param { name: "s" lr_mult: 0 decay_mult: 0 }
                param { lr_mult: 0 decay_mult: 0 } }
        layer { name: "bn2" type: "BatchNorm" bottom: "x" top: "x" param { lr_mult: 1 }
                param { } }
        layer { name: "bn0" type: "BatchNorm" bottom: "x" top: "x" }
        layer { name: "sc" type: "Scale" bottom: "x" top: "x"
                param { lr_mult: 1 } param { lr_mult: 1 } param { lr_mult: 1 } }
        """)
    assert [n.message for n in result.notes] == [
        "BatchNorm layer layer[0] 'bn3': its 3 param had lr_mult 1, 1, 1; set to 0 "
        "(BatchNorm statistics are not learned)"]


def test_batchnorm_already_frozen_still_counts_as_caffe_says():
    net = net_of('layer { type: "BatchNorm" param { lr_mult: 0 decay_mult: 0 } '
                 'param { lr_mult: 0 decay_mult: 0 } param { lr_mult: 0 decay_mult: 0 } }')
    assert needs_upgrade(net) == [STEP_BATCHNORM]
    result = upgrade_net(net)
    assert result.net == net and result.notes == []


def test_batchnorm_layers_beside_v1_layers_are_dropped_with_them():
    net = net_of('layers { name: "a" type: RELU } layer { type: "BatchNorm" param {} param {} '
                 'param {} }')
    assert needs_upgrade(net) == [STEP_V1]
    assert upgrade_net(net).errors


def test_all_steps_in_caffe_order():
    net = net_of("""\
        input: "data" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1
        layers { name: "d" type: DATA top: "x" data_param { mirror: true } }
        """)
    assert needs_upgrade(net) == [STEP_DATA, STEP_V1, STEP_INPUT]
    result = upgrade_net(net)
    assert result.steps == needs_upgrade(net)
    assert [layer.type for layer in result.net.layer] == ["Input", "Data"]
    assert needs_upgrade(caffe_pb2.NetParameter()) == []


def test_upgrade_net_takes_only_a_net():
    with pytest.raises(PrototxtError):
        upgrade_net(caffe_pb2.SolverParameter())


# -- upgrade_text ------------------------------------------------------------------------------

def upgrade_source(text: str, path: str = "net.prototxt"):
    return upgrade_text(parse(text, path))


def assert_reads_back(result, text: str) -> None:
    """The output binds to the upgraded net, and upgrading it again changes nothing."""
    check = bind(parse(result.text), "net")
    assert not check.errors, [str(d) for d in check.errors]
    assert check.message == result.net == upgrade_net(bind(parse(text), "net").message).net
    again = upgrade_source(result.text)
    assert again.text == result.text and not again.changed


V1_COMMENTED = """\
# A V1 net with comments everywhere.
name: "commented"  # net name
# input blob, 4-D
input: "data"
input_dim: 1  # batch
input_dim: 3
input_dim: 32
input_dim: 32

# first convolution
layers {
  name: "conv1"  # conv name
  type: CONVOLUTION
  bottom: "data"
  top: "conv1"
  # learning rates
  blobs_lr: 1  # weights
  blobs_lr: 2  # bias
  weight_decay: 1
  weight_decay: 0  # no decay on the bias
  convolution_param {
    # how many filters
    num_output: 8
    kernel_size: 3  # 3x3
    mem_group_size: 2  # a fork field
    # end of convolution_param
  }
  # end of conv1
}  # conv1 done
layers {
  name: "relu1"
  type: RELU
  bottom: "conv1"
  top: "conv1"
}
# the end
"""

V1_COMMENTED_UPGRADED = """\
# A V1 net with comments everywhere.
name: "commented"  # net name
layer {
  name: "input"
  type: "Input"
  # input blob, 4-D
  top: "data"
  input_param {
    shape {
      dim: 1  # batch
      dim: 3
      dim: 32
      dim: 32
    }
  }
}

# first convolution
layer {
  name: "conv1"  # conv name
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  param {
    # learning rates
    lr_mult: 1  # weights
    decay_mult: 1
  }
  param {
    lr_mult: 2  # bias
    decay_mult: 0  # no decay on the bias
  }
  # a fork field
  convolution_param {
    # how many filters
    num_output: 8
    kernel_size: 3  # 3x3
    # end of convolution_param
  }
  # end of conv1
}  # conv1 done
layer {
  name: "relu1"
  type: "ReLU"
  bottom: "conv1"
  top: "conv1"
}
# the end
"""


def test_text_v1_comments_follow_their_fields():
    result = upgrade_source(V1_COMMENTED)
    assert result.text == V1_COMMENTED_UPGRADED
    assert result.changed and result.errors == []
    assert result.steps == [STEP_V1, STEP_INPUT]
    # The fork field is dropped and said so, at its place in the source.
    assert [(d.line, d.severity) for d in result.notes] == [(25, "warning")]
    assert comments(result.text) == comments(V1_COMMENTED)
    assert_reads_back(result, V1_COMMENTED)
    assert without_comments(result.text) == message_to_text(result.net)


V0_COMMENTED = """\
name: "V0"  # v0 net
input: "data"
input_dim: 1
input_dim: 3
input_dim: 8
input_dim: 8
# padding layer
layers {
  layer {
    name: "pad1"
    type: "padding"
    pad: 2  # two pixels
  }
  bottom: "data"
  top: "pad1"  # padded
}
# conv after padding
layers {
  # the V0 block
  layer {
    name: "conv1"
    type: "conv"
    # filters
    num_output: 4  # four
    kernelsize: 3
    biasterm: false
    weight_filler { type: "gaussian" std: 0.01 }  # filler
    blobs_lr: 1.
    weight_decay: 1.
    dropout_ratio: 0.5  # wrong type
    scale: 0.5  # a transformation field
    # end of V0 block
  }  # V0 close
  bottom: "pad1"
  top: "conv1"
}
layers {
  layer { name: "pool1" type: "pool" pool: AVE kernelsize: 2 stride: 2 }
  bottom: "conv1" top: "pool1"  # pooled
}
"""

V0_COMMENTED_UPGRADED = """\
name: "V0"  # v0 net
layer {
  name: "input"
  type: "Input"
  top: "data"
  input_param {
    shape {
      dim: 1
      dim: 3
      dim: 8
      dim: 8
    }
  }
}
# padding layer
# padded
# conv after padding
# the V0 block
# wrong type
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  param {
    lr_mult: 1
    decay_mult: 1
  }
  transform_param {
    scale: 0.5  # a transformation field
  }
  convolution_param {
    # filters
    num_output: 4  # four
    bias_term: false
    pad: 2  # two pixels
    kernel_size: 3
    weight_filler {
      type: "gaussian"
      std: 0.01
    }  # filler
  }
  # end of V0 block
}  # V0 close
layer {
  name: "pool1"
  type: "Pooling"
  bottom: "conv1"
  top: "pool1"  # pooled
  pooling_param {
    pool: AVE
    kernel_size: 2
    stride: 2
  }
}
"""


def test_text_v0_comments_follow_fields_and_folded_padding():
    result = upgrade_source(V0_COMMENTED)
    assert result.text == V0_COMMENTED_UPGRADED
    assert result.steps == [STEP_V0, STEP_V1, STEP_INPUT]
    assert [(d.line, d.column) for d in result.notes] == [(8, 1), (30, 5)]
    assert "folded into" in result.notes[0].message
    assert comments(result.text) == comments(V0_COMMENTED)
    assert_reads_back(result, V0_COMMENTED)
    assert without_comments(result.text) == message_to_text(result.net)


def test_text_keeps_crlf_and_bom():
    source = "\ufeff# top\r\nlayers {\r\n  name: \"r\"  # relu\r\n  type: RELU\r\n}\r\n"
    result = upgrade_source(source)
    assert result.text == "\ufeff# top\r\nlayer {\r\n  name: \"r\"  # relu\r\n" \
                          "  type: \"ReLU\"\r\n}\r\n"


def test_text_comments_at_the_top_stay_above_a_new_input_layer():
    source = "# header\n\n# more\nlayers { name: \"r\" type: RELU }\ninput: \"d\"\n" \
             "input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 4\n# tail\n"
    result = upgrade_source(source)
    assert result.text.startswith("# header\n\n# more\nlayer {\n  name: \"input\"\n")
    assert result.text.endswith("}\n# tail\n")


def test_text_comments_of_dropped_layers_are_kept():
    source = textwrap.dedent("""\
        # V2 layer, dropped by Caffe next to V1 layers
        layer { name: "v2" type: "ReLU" }  # gone
        layers { name: "v1" type: RELU }
        """)
    result = upgrade_source(source)
    assert len(result.errors) == 1 and result.errors[0].line == 2
    assert comments(result.text) == comments(source)
    assert result.text == ("# V2 layer, dropped by Caffe next to V1 layers\n# gone\nlayer {\n"
                           "  name: \"v1\"\n  type: \"ReLU\"\n}\n")


def test_text_without_upgrade_is_returned_byte_for_byte():
    source = ("\ufeffname:'x'  # odd spacing\r\nlayer < name: \"a\" type: \"ReLU\" >;"
              "layer { name: \"b\" type: 'Scale' fork_param { a: 1 } }")
    result = upgrade_source(source)
    assert result.text == source and not result.changed and result.steps == []


V2_INPUT_AND_BATCHNORM = """\
name: "v2"
# the input
input: "data"  # image
# shape follows
input_shape {
  dim: 1  # batch
  dim: 3
}
layer {
  name: "bn"
  type: "BatchNorm"
  bottom: "data"
  top: "bn"
  param { lr_mult: 0 }
  param {}
  param {
    lr_mult: 1  # learned?
    decay_mult: 0
  }
  batch_norm_param { use_global_stats: true }
}
layer {
    name:   "scale"   type: "Scale"   bottom: "bn" top: "bn"   # odd layout stays
    scale_param { bias_term: true }
}
"""

V2_INPUT_AND_BATCHNORM_UPGRADED = """\
name: "v2"
# the input
layer {
  name: "input"
  type: "Input"
  top: "data"  # image
  input_param {
    # shape follows
    shape {
      dim: 1  # batch
      dim: 3
    }
  }
}
layer {
  name: "bn"
  type: "BatchNorm"
  bottom: "data"
  top: "bn"
  param { lr_mult: 0 decay_mult: 0 }
  param { lr_mult: 0 decay_mult: 0 }
  param {
    lr_mult: 0  # learned?
    decay_mult: 0
  }
  batch_norm_param { use_global_stats: true }
}
layer {
    name:   "scale"   type: "Scale"   bottom: "bn" top: "bn"   # odd layout stays
    scale_param { bias_term: true }
}
"""


def test_text_v2_file_is_edited_in_place():
    result = upgrade_source(V2_INPUT_AND_BATCHNORM)
    assert result.text == V2_INPUT_AND_BATCHNORM_UPGRADED
    assert result.steps == [STEP_INPUT, STEP_BATCHNORM]
    assert comments(result.text) == comments(V2_INPUT_AND_BATCHNORM)
    assert_reads_back(result, V2_INPUT_AND_BATCHNORM)


def test_text_v2_edit_keeps_fork_fields_and_indentation():
    source = ("input: \"data\"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 4\ninput_dim: 4\n"
              "layer {\n    name: \"p\"\n    type: \"Pooling\"\n"
              "    pooling_param {\n        pool: MAX\n        ceil_mode: false\n    }\n}\n")
    result = upgrade_source(source)
    assert result.text == (
        "layer {\n    name: \"input\"\n    type: \"Input\"\n    top: \"data\"\n"
        "    input_param {\n        shape {\n            dim: 1\n            dim: 3\n"
        "            dim: 4\n            dim: 4\n        }\n    }\n}\n"
        "layer {\n    name: \"p\"\n    type: \"Pooling\"\n"
        "    pooling_param {\n        pool: MAX\n        ceil_mode: false\n    }\n}\n")


def test_text_v2_list_forms_are_edited_in_place():
    source = ('input: ["a", "b"]  # two\ninput_dim: [1, 3, 4, 4,  # first\n 1, 1, 1, 1]\n'
              'layer: [ { name: "bn" type: "BatchNorm" '
              'param: [{}, {lr_mult: 1}, {decay_mult: 2}] } ]\n')
    result = upgrade_source(source)
    assert result.text.endswith(
        'layer: [ { name: "bn" type: "BatchNorm" param: [{ lr_mult: 0 decay_mult: 0 }, '
        '{lr_mult: 0 decay_mult: 0}, {decay_mult: 0 lr_mult: 0}] } ]\n')
    assert 'top: "b"  # two\n' in result.text and "dim: 4  # first\n" in result.text
    assert comments(result.text) == comments(source)
    assert not any("canonical form" in d.message for d in result.notes)
    assert_reads_back(result, source)


def test_text_v2_inputs_without_shape_are_deleted():
    result = upgrade_source('input: "a"\ninput: "b"\nlayer { name: "r" type: "ReLU" }\n')
    assert result.text == 'layer { name: "r" type: "ReLU" }\n'
    result = upgrade_source('input: "a"  # keep me\nlayer { name: "r" type: "ReLU" }\n')
    assert result.text == '# keep me\nlayer { name: "r" type: "ReLU" }\n'


def test_text_v2_inputs_after_layers_fall_back_to_canonical_text():
    source = ('layer { name: "r" type: "ReLU" bottom: "a" }  # relu\n'
              'input: "a" input_shape { dim: 2 }\n')
    result = upgrade_source(source)
    assert result.text == ('layer {\n  name: "input"\n  type: "Input"\n  top: "a"\n'
                           '  input_param {\n    shape {\n      dim: 2\n    }\n  }\n}\n'
                           'layer {\n  name: "r"\n  type: "ReLU"\n  bottom: "a"\n}  # relu\n')
    assert any("canonical form" in d.message for d in result.notes)
    assert_reads_back(result, source)


def test_text_template_placeholder_is_a_binding_error_not_an_exception():
    source = 'layers { name: "ip" type: INNER_PRODUCT inner_product_param { num_output: ${n} } }'
    result = upgrade_source(source)
    assert len(result.errors) == 1 and "${n}" in result.errors[0].message
    assert result.text == ('layer {\n  name: "ip"\n  type: "InnerProduct"\n'
                           '  inner_product_param {\n  }\n}\n')


def test_text_solver_is_left_alone():
    source = 'net: "train.prototxt"\nbase_lr: 0.01\nsolver_type: SGD\n'
    result = upgrade_source(source)
    assert result.text == source and result.net is None and result.steps == []


def test_text_error_locations():
    source = textwrap.dedent("""\
        input: "data"
        layers {
          layer { name: "pad" type: "padding" pad: 1 }
          bottom: "data"
          top: "p"
        }
        layers {
          layer { name: "relu" type: "relu" }
          bottom: "p"
          top: "r"
        }
        """)
    result = upgrade_source(source, "old.prototxt")
    assert [(d.path, d.line, d.column, d.severity) for d in result.errors] == [
        ("old.prototxt", 9, 3, "error")]
    assert "cannot be folded" in result.errors[0].message


# -- the corpus --------------------------------------------------------------------------------

def _corpus_rows() -> list:
    manifest = CORPUS / "manifest.tsv"
    if not manifest.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no corpus at {CORPUS}"))]
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [pytest.param(row, id=row["file"][:80]) for row in rows]


_INPUT_OR_BATCHNORM_LINE = re.compile(
    r"^\s*(input(_dim|_shape)?\s*[:{]|dim\s*:|\}|param\s*\{|lr_mult\s*:|decay_mult\s*:)")


@pytest.mark.parametrize("row", _corpus_rows())
def test_corpus(row):
    path = CORPUS / "files" / row["file"]
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    document = parse(text, str(path))
    result = upgrade_text(document)
    if detect_kind(document) == "solver":
        assert result.text == text
        return
    source = bind(document, "net").message
    expected = upgrade_net(source)
    assert result.steps == expected.steps == needs_upgrade(source)
    assert comments(result.text) == comments(text)
    again = upgrade_text(parse(result.text, str(path)))
    assert again.text == result.text and not again.changed

    out = bind(parse(result.text, str(path)), "net")
    assert out.message == expected.net
    assert not out.message.layers and not out.message.input and not out.message.input_dim
    if row["kind"] == "v1_legacy":
        assert result.changed
        assert not out.errors, [str(d) for d in out.errors]
        assert not out.warnings
        # Where Caffe would stop, we say so (the fork layer type of the deepface net).
        assert bool(result.errors) == ("deepface" in row["file"] or "${" in text)
        return
    if not result.steps:
        assert result.text == text and not result.changed
        return
    # A current file that still has input fields or BatchNorm params to fix is edited in
    # place: only those lines change, and fields from Caffe forks stay.
    untouched = [line for line in text.splitlines()
                 if line.strip() and not _INPUT_OR_BATCHNORM_LINE.match(line)]
    remaining = iter(result.text.splitlines())
    assert all(line in remaining for line in untouched)  # in order, every one
    assert len(out.warnings) == len(bind(document, "net").warnings)


def _sprinkle_comments(text: str, seed: int) -> str:
    """``text`` with end-of-line and own-line comments after random tokens."""
    import random

    rng = random.Random(seed)
    document = parse(text)
    trivia = document.trivia_list()
    out = []
    for t in range(document.token_count - 1):
        out.append(trivia[t])
        out.append(document.token_text(t))
        roll = rng.random()
        if roll < 0.15:
            out.append(f"  # eol {t}\n")
        elif roll < 0.25:
            out.append(f"\n# own {t}\n")
    out.append(trivia[-1])
    return "".join(out)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("name", ["V0_ALL", "V0_WRONG", "V0_COMMENTED", "V1_PARAMS",
                                  "V1_COMMENTED", "BATCHNORM", "V2_INPUT_AND_BATCHNORM"])
def test_text_every_comment_survives_anywhere(name, seed):
    source = _sprinkle_comments(globals()[name], seed)
    result = upgrade_source(source)
    assert comments(result.text) == comments(source)
    check = bind(parse(result.text), "net")
    assert check.message == result.net == upgrade_net(bind(parse(source), "net").message).net
    again = upgrade_source(result.text)
    assert again.text == result.text
