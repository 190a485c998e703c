"""The Net model: Caffe's filtering (StateMeetsRule), wiring with blob versions, upgrades."""

from __future__ import annotations

import pytest

from prototxt_tools import parse
from prototxt_tools.layers.base import TEST, TRAIN
from prototxt_tools.net.model import (
    ORIGIN_INPUT, ORIGIN_V1, ORIGIN_V2, BlobRef, Net, State, layer_included, state_meets_rule,
)
from prototxt_tools.schema import caffe_pb2
from google.protobuf import text_format


def rule(text: str):
    return text_format.Parse(text, caffe_pb2.NetStateRule())


@pytest.mark.parametrize("rule_text,state,meets", [
    ("", State(TRAIN), True),
    ("phase: TRAIN", State(TRAIN), True),
    ("phase: TRAIN", State(TEST), False),
    ("min_level: 1", State(TEST, 0), False),
    ("min_level: 1", State(TEST, 1), True),
    ("max_level: 1", State(TEST, 2), False),
    ("min_level: 1 max_level: 2", State(TEST, 2), True),
    ("stage: 'a'", State(TEST, 0, ("a", "b")), True),
    ("stage: 'a' stage: 'c'", State(TEST, 0, ("a", "b")), False),  # every stage needed
    ("not_stage: 'b'", State(TEST, 0, ("a", "b")), False),
    ("not_stage: 'c'", State(TEST, 0, ("a", "b")), True),
    ("phase: TEST stage: 'a' not_stage: 'c'", State(TEST, 0, ("a",)), True),
])
def test_state_meets_rule(rule_text, state, meets):
    assert state_meets_rule(state, rule(rule_text)) is meets


def layer(text: str):
    return text_format.Parse(text, caffe_pb2.LayerParameter())


@pytest.mark.parametrize("layer_text,phase,included", [
    ("name: 'a'", TRAIN, True),
    ("include { phase: TRAIN }", TRAIN, True),
    ("include { phase: TRAIN }", TEST, False),
    ("include { phase: TRAIN } include { phase: TEST }", TEST, True),  # any include rule
    ("exclude { phase: TEST }", TRAIN, True),
    ("exclude { phase: TEST }", TEST, False),
    ("exclude { stage: 'x' } exclude { phase: TRAIN }", TRAIN, False),  # any exclude rule
])
def test_layer_included(layer_text, phase, included):
    assert layer_included(layer(layer_text), State(phase)) is included


NET = """\
state { stage: "always" }
layer { name: "data" type: "Data" top: "data" top: "label" data_param { source: "db" batch_size: 4 } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" include { phase: TRAIN } }
layer { name: "extra" type: "ReLU" bottom: "fc" top: "fc2" include { stage: "always" } }
layer { name: "never" type: "ReLU" bottom: "fc" top: "fc3" include { stage: "never" } }
"""


def test_wiring_follows_blob_versions():
    net = Net.from_document(parse(NET))
    view = net.view(TRAIN)
    names = [layer.name for layer in view.layers]
    # 'extra' needs stage "always", which the file's own state gives; nothing gives "never".
    assert names == ["data", "conv", "bn", "relu", "fc", "loss", "extra"]
    conv, bn, relu, fc = (net.layer_named(n)[0] for n in ("conv", "bn", "relu", "fc"))
    assert view.outputs[conv.index] == [BlobRef("conv", 0)]
    assert view.inputs[bn.index] == [BlobRef("conv", 0)]
    assert view.outputs[bn.index] == [BlobRef("conv", 1)]  # in place: a new version
    assert view.inputs[fc.index] == [BlobRef("conv", 2)]  # reads what ReLU wrote
    assert [reader.name for reader, _ in view.readers(bn)] == ["relu"]
    assert view.writer(fc)[0] is relu
    assert bn.in_place_tops == [0] and fc.in_place_tops == []


def test_auto_tops_and_outputs():
    net = Net.from_document(parse(NET))
    train = net.view(TRAIN)
    loss = net.layer_named("loss")[0]
    assert len(train.outputs[loss.index]) == 1 and train.outputs[loss.index][0].name == ""
    assert [ref.name for ref in train.net_outputs] == ["fc2"]  # the loss top is anonymous
    test = net.view(TEST)
    assert [ref.name for ref in test.net_outputs] == ["label", "fc2"]


def test_file_stages_join_the_state():
    net = Net.from_document(parse(NET))
    assert net.state(TEST).stages == ("always",)
    assert net.view(TEST, stages=("x",)).state.stages == ("always", "x")
    assert "never" in [layer.name for layer in net.view(TEST, stages=("never",)).layers]
    assert "never" not in [layer.name for layer in net.view(TEST).layers]


def test_unknown_bottoms_and_duplicate_tops():
    text = ('layer { name: "a" type: "ReLU" bottom: "missing" top: "x" }\n'
            'layer { name: "b" type: "ReLU" bottom: "x" top: "x" }\n'
            'layer { name: "c" type: "Sigmoid" bottom: "missing" top: "x" }\n')
    view = Net.from_document(parse(text)).view(TEST)
    assert [(layer.name, index) for layer, index in view.unknown_bottoms] == [("a", 0), ("c", 0)]
    assert [(layer.name, first.name) for layer, _, first in view.duplicate_tops] == [("c", "a")]


def test_legacy_nets_are_upgraded_into_the_model():
    text = ('input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\ninput_dim: 8\n'
            'layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv" blobs_lr: 1 '
            'convolution_param { num_output: 2 kernel_size: 3 } }\n')
    document = parse(text)
    net = Net.from_document(document)
    assert [(layer.name, layer.type, layer.origin) for layer in net.layers] == [
        ("input", "Input", ORIGIN_INPUT), ("conv", "Convolution", ORIGIN_V1)]
    conv = net.layers[1]
    assert conv.node is document.get("layers")
    assert conv.locate(("param", 0, "lr_mult")).name == "blobs_lr"
    view = net.view(TEST)
    refs = view.outputs[conv.index]
    assert view.shapes.shapes[refs[0]] == (1, 2, 6, 6)


def test_locate_points_at_the_deepest_written_field():
    text = 'layer {\n  name: "p"\n  type: "Pooling"\n  pooling_param { kernel_size: [2, 3] }\n}\n'
    net = Net.from_document(parse(text))
    pool = net.layers[0]
    assert pool.origin == ORIGIN_V2
    assert pool.locate(("pooling_param", "kernel_size", 1)).text == "3"
    assert pool.locate(("pooling_param", "stride")).name == "pooling_param"
    assert pool.field("pooling_param", "stride") is None
    assert pool.locate(()).name == "layer"
