"""prototxt summary: per-layer shapes, parameters, MACs and memory, checked against counts made
by hand from each net's architecture (independent arithmetic, not the layer specs)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from conftest import SAMPLES, corpus_net_params
from prototxt_tools import parse
from prototxt_tools.layers import TEST, TRAIN
from prototxt_tools.net.model import Net
from prototxt_tools.summary import summarize
from test_cli import run


def _summary(path, shapes=None, phase=None):
    net = Net.from_document(parse(path.read_bytes(), str(path)), input_shapes=shapes)
    return summarize(net) if phase is None else summarize(net, phase)


def _rows(summary) -> dict:
    return {row.name: row for row in summary.layers}


# -- hand counts -----------------------------------------------------------------------------

def test_lenet_counts_by_hand():
    """LeNet on one 28x28 image: conv 20@5x5 -> 24x24, pool -> 12, conv 50@5x5 -> 8x8,
    pool -> 4, ip 500, ip 10."""
    summary = _summary(SAMPLES / "lenet_v1.prototxt", {"data": (1, 1, 28, 28)})
    rows = _rows(summary)
    assert rows["conv1"].params == 20 * 1 * 25 + 20
    assert rows["conv1"].macs == 20 * 24 * 24 * (1 * 25)
    assert rows["conv2"].params == 50 * 20 * 25 + 50
    assert rows["conv2"].macs == 50 * 8 * 8 * (20 * 25)
    assert rows["ip1"].params == 500 * 800 + 500 and rows["ip1"].macs == 500 * 800
    assert rows["ip2"].params == 10 * 500 + 10 and rows["ip2"].macs == 10 * 500
    assert rows["pool1"].macs == 0 and rows["pool1"].params == 0
    assert summary.params == 431_080  # LeNet's well-known count
    assert summary.macs == 288_000 + 1_600_000 + 400_000 + 5_000
    assert rows["conv1"].memory == 20 * 24 * 24 * 4
    assert rows["conv1"].tops == [["conv1", [1, 20, 24, 24]]]
    assert summary.complete


def test_lenet_bn_counts_by_hand():
    """LeNet with BatchNorm + Scale after each convolution (no conv biases): Scale adds 2 per
    channel, BatchNorm and Scale one MAC per value each; the losses' tops are scalars."""
    summary = _summary(SAMPLES / "lenet_bn_train_val.prototxt", {"data": (1, 1, 28, 28)})
    assert summary.params == 20 * 25 + 2 * 20 + 50 * 20 * 25 + 2 * 50 + 400_500 + 5_010
    assert summary.macs == (288_000 + 2 * 20 * 24 * 24 + 1_600_000 + 2 * 50 * 8 * 8
                            + 400_000 + 5_000)
    assert summary.statistics == (2 * 20 + 1) + (2 * 50 + 1)  # mean, variance, factor
    assert _rows(summary)["loss"].tops == [["loss", []]]
    code, text, _ = run(["summary", str(SAMPLES / "lenet_bn_train_val.prototxt"),
                         "--input-shape", "data=1,1,28,28"])
    assert "scalar" in text


def test_train_val_batch_scales_macs_not_parameters():
    deploy = _summary(SAMPLES / "resnet_tiny_deploy.prototxt")
    train_val = _summary(SAMPLES / "resnet_tiny_train_val.prototxt")  # batch 100 at TEST
    assert train_val.params == deploy.params
    assert train_val.macs == 100 * deploy.macs


def _resnet50_by_hand() -> tuple:
    """(parameters, MACs, BatchNorm statistics) of Caffe's ResNet-50 (v1: stride 2 in the
    first 1x1 of a stage) on 1x3x224x224; BatchNorm and Scale each count one MAC per value."""
    params, macs, stats = 0, 0, 0

    def conv(cin, cout, k, size):
        nonlocal params, macs, stats
        params += cout * cin * k * k + 2 * cout  # weights (no bias) + Scale gamma, beta
        macs += cout * size * size * cin * k * k + 2 * cout * size * size
        stats += 2 * cout + 1

    conv(3, 64, 7, 112)
    cin = 64
    for blocks, mid, out, size in ((3, 64, 256, 56), (4, 128, 512, 28), (6, 256, 1024, 14),
                                   (3, 512, 2048, 7)):
        for block in range(blocks):
            if block == 0:
                conv(cin, out, 1, size)
            conv(cin if block == 0 else out, mid, 1, size)
            conv(mid, mid, 3, size)
            conv(mid, out, 1, size)
        cin = out
    params += 2048 * 1000 + 1000
    macs += 2048 * 1000
    return params, macs, stats


def test_resnet50_counts_by_hand():
    summary = _summary(SAMPLES / "resnet50_deploy.prototxt")
    params, macs, stats = _resnet50_by_hand()
    assert (summary.params, summary.macs, summary.statistics) == (params, macs, stats)
    assert summary.params == 25_557_032  # the count torchvision and the paper's 25.6M give
    rows = _rows(summary)
    assert rows["pool1"].tops == [["pool1", [1, 64, 56, 56]]]  # Caffe's ceil rounding
    assert rows["bn_conv1"].host == "conv1" and rows["conv1_relu"].host == "conv1"
    assert rows["bn_conv1"].memory == 0 and rows["conv1"].memory == 64 * 112 * 112 * 4


def test_resnet_tiny_counts_by_hand():
    """3x32x32: conv1 16@3x3, a residual block of 16, a projection block to 32 (stride 2 in
    the branch), global pooling, fc 10; BatchNorm + Scale after every convolution."""
    summary = _summary(SAMPLES / "resnet_tiny_deploy.prototxt")
    rows = _rows(summary)
    convs = {row.name: row for row in summary.layers if row.type == "Convolution"}
    assert rows["conv1"].params == 16 * 3 * 9 and rows["conv1"].macs == 16 * 32 * 32 * 27
    assert rows["res2a_branch2a"].macs == 16 * 32 * 32 * 16 * 9
    assert rows["res3a_branch1"].macs == 32 * 16 * 16 * 16 * 1
    conv_params = sum(row.params for row in convs.values())
    scales = sum(row.params for row in summary.layers if row.type == "Scale")
    fc = rows["fc10"]
    assert fc.params == 10 * 32 + 10 and fc.macs == 10 * 32
    assert summary.params == conv_params + scales + fc.params
    assert scales == 2 * sum(row.tops[0][1][1] for row in convs.values())


def test_train_phase_and_input_shape_batch():
    summary = _summary(SAMPLES / "lenet_v1.prototxt", {"data": (8, 1, 28, 28)}, TRAIN)
    rows = _rows(summary)
    assert rows["conv1"].macs == 8 * 20 * 24 * 24 * 25
    assert rows["mnist"].tops[1] == ["label", [8]]  # labels follow the data's batch
    assert "accuracy" not in rows  # TEST only


def test_shared_weights_count_once():
    text = b'''
layer { name: "in" type: "Input" top: "a" top: "b"
        input_param { shape { dim: 1 dim: 4 } shape { dim: 1 dim: 4 } } }
layer { name: "fa" type: "InnerProduct" bottom: "a" top: "fa"
        param { name: "w" } param { name: "bias" } inner_product_param { num_output: 3 } }
layer { name: "fb" type: "InnerProduct" bottom: "b" top: "fb"
        param { name: "w" } param { name: "bias" } inner_product_param { num_output: 3 } }
'''
    summary = summarize(Net.from_document(parse(text)))
    rows = _rows(summary)
    assert rows["fa"].params == 15 and rows["fb"].params == 0
    assert rows["fa"].macs == rows["fb"].macs == 12 and summary.params == 15


def test_unknown_shapes_are_reported_not_guessed():
    text = b'''
layer { name: "data" type: "Data" top: "data" data_param { source: "nowhere" batch_size: 4 } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 8 kernel_size: 3 } }
'''
    summary = summarize(Net.from_document(parse(text)))
    assert not summary.complete and "conv" in summary.unknown
    assert _rows(summary)["conv"].macs is None


# -- formats and the command -----------------------------------------------------------------

def test_formats():
    path = str(SAMPLES / "resnet_tiny_deploy.prototxt")
    code, text, _ = run(["summary", path])
    assert code == 0
    assert "conv1_bn" in text and "(in place, conv1)" in text and text.rstrip().splitlines()[
        -1].startswith("total: ")
    code, out, _ = run(["summary", path, "--format", "json"])
    data = json.loads(out)
    assert data["totals"]["params"] == sum(layer["params"] for layer in data["layers"])
    code, out, _ = run(["summary", path, "--format", "csv"])
    table = list(csv.DictReader(io.StringIO(out)))
    assert table[-1]["layer"] == "TOTAL" and int(table[-1]["params"]) == data["totals"]["params"]
    assert {row["layer"] for row in table[:-1]} == {layer["name"] for layer in data["layers"]}
    code, out, _ = run(["summary", path, "--format", "markdown"])
    assert out.count("\n| ") == len(data["layers"]) + 1


def test_command_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text('layer { name: "x" type: "Input" top: "x" input_param { shap { } } }\n')
    code, _, stderr = run(["summary", str(bad)])
    assert code == 2 and stderr.count("\n") == 1 and "bad.prototxt:1:" in stderr
    code, _, stderr = run(["summary", str(SAMPLES / "resnet_tiny_deploy.prototxt"),
                           "--input-shape", "data=1,3"])
    assert code == 2 and stderr.count("\n") == 1


@pytest.mark.parametrize("path", corpus_net_params())
def test_corpus_nets_summarise(path):
    """One row per active layer, totals that add up, and a count wherever the layer's type
    and input shapes are known."""
    net = Net.from_document(parse(path.read_bytes(), str(path)))
    view = net.view(TEST)
    summary = summarize(net)
    assert [row.name for row in summary.layers] == [layer.name for layer in view.layers]
    assert summary.params == sum(row.params or 0 for row in summary.layers)
    assert summary.macs == sum(row.macs or 0 for row in summary.layers)
    for row, layer in zip(summary.layers, view.layers):
        bottoms = view.shapes.bottom_shapes(view, layer)
        tops = view.shapes.top_shapes(view, layer)
        known = all(shape is not None and None not in shape for shape in bottoms + tops)
        if layer.spec is not None and known:
            assert row.macs is not None and row.params is not None, row.name
        if layer.spec is None:
            assert row.name in summary.unknown


def test_a_solver_is_refused():
    code, _, stderr = run(["summary", str(SAMPLES / "solver.prototxt")])
    assert code == 2 and "solver, not a net" in stderr
