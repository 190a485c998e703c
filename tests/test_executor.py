"""The executor on whole nets: against OpenCV's dnn, memory, weights, plugins, the commands."""

from __future__ import annotations

import csv
import tracemalloc

import numpy as np
import pytest

from conftest import CORPUS, CORPUS_FILES, ROOT, SAMPLES
from oracle import compare_with_opencv, inference_prototxt
from prototxt_tools import PrototxtError, bind, parse
from prototxt_tools.layers.base import TEST, TRAIN
from prototxt_tools.net.model import Net
from prototxt_tools.run import Executor, init_weights, register_layer
from prototxt_tools.schema.caffemodel import read_weights, write_weights
from test_cli import run

RESNET_TINY = SAMPLES / "resnet_tiny_deploy.prototxt"
RESNET50 = SAMPLES / "resnet50_deploy.prototxt"


def test_resnet_tiny_deploy_matches_opencv():
    net = Net.from_document(parse(RESNET_TINY.read_text(), str(RESNET_TINY)))
    compare_with_opencv(RESNET_TINY.read_text(), net)


def test_resnet50_matches_opencv():
    net = Net.from_document(parse(RESNET50.read_text(), str(RESNET50)))
    compare_with_opencv(RESNET50.read_text(), net)


@pytest.mark.parametrize("name,shapes", [
    ("resnet_tiny_train_val.prototxt", {}),
    ("lenet_bn_train_val.prototxt", {"data": (64, 1, 28, 28)}),
    ("lenet_v1.prototxt", {"data": (100, 1, 28, 28)}),
])
def test_train_val_samples_match_opencv_in_test(name, shapes):
    path = SAMPLES / name
    net = Net.from_document(parse(path.read_text(), str(path)), input_shapes=shapes)
    text = inference_prototxt(net)
    inference = Net.from_document(parse(text))
    compare_with_opencv(text, inference)


def _bvlc_deploys() -> list:
    manifest = CORPUS / "manifest.tsv"
    if not manifest.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason="no corpus"))]
    with open(manifest, newline="") as handle:
        kinds = {row["file"]: row["kind"] for row in csv.DictReader(handle, delimiter="\t")}
    params = []
    for path in CORPUS_FILES:
        if kinds.get(path.name) != "deploy":
            continue
        document = parse(path.read_bytes(), str(path))
        if bind(document).diagnostics:
            continue  # fork fields (Intel's quantization_param...): not a BVLC net
        net = Net.from_document(document)
        view = net.view(TEST)
        if any(layer.spec is None for layer in view.layers):
            continue  # fork layers: OpenCV and we disagree on what they mean
        params.append(pytest.param(path, id=path.name[:80]))
    return params


#: Corpus deploy nets that need something before OpenCV reads them the way Caffe does.
_OPENCV_SKIP = {
    # OpenCV reads ceil_mode (a field BVLC lacks); BVLC rejects the file, so nothing to compare.
    "shicai__DenseNet-Caffe__DenseNet_121.prototxt": "ceil_mode",
    "shicai__DenseNet-Caffe__DenseNet_201.prototxt": "ceil_mode",
}


@pytest.mark.parametrize("path", _bvlc_deploys())
def test_corpus_deploy_nets_match_opencv(path):
    if path.name in _OPENCV_SKIP:
        pytest.skip(_OPENCV_SKIP[path.name])
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    net = Net.from_document(parse(text, str(path)))
    compare_with_opencv(text, net)


# -- memory ------------------------------------------------------------------------------------

def test_blobs_are_freed_after_their_last_reader():
    net = Net.from_document(parse(RESNET50.read_text()))
    executor = Executor(net)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    executor.forward({"data": x})  # warm up
    tracemalloc.start()
    executor.forward({"data": x})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    shapes = net.view(TEST).shapes.shapes
    sizes = sorted((int(np.prod(s)) * 4 for s in shapes.values() if s), reverse=True)
    everything = sum(sizes)
    # Far below keeping every blob; within twice the largest pair of live blobs plus the
    # im2col workspace of the largest 3x3 convolution.
    assert peak < everything / 4, (peak, everything)
    assert peak < 2 * (sizes[0] + sizes[1]) + 16 * 2**20, peak


def test_in_place_layers_reuse_buffers():
    text = ('layer { name: "d" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'
            'layer { name: "r" type: "ReLU" bottom: "x" top: "y" }\n'
            'layer { name: "s" type: "Sigmoid" bottom: "y" top: "y" }\n')
    executor = Executor(text)
    x = np.array([[-1.0, 0.0, 2.0], [3.0, -4.0, 5.0]], np.float32)
    outputs = executor.forward({"x": x})
    expected = 1 / (1 + np.exp(-np.maximum(x, 0)))
    np.testing.assert_allclose(outputs["y"], expected, rtol=1e-6)
    assert x.tolist() == [[-1.0, 0.0, 2.0], [3.0, -4.0, 5.0]]  # the caller's input untouched


def test_keep_all_and_outputs():
    executor = Executor(RESNET_TINY.read_text())
    x = np.zeros((1, 3, 32, 32), np.float32)
    everything = executor.forward({"data": x}, keep="all")
    assert {"data", "conv1", "res2a", "res3a", "prob"} <= set(everything)
    only = executor.forward({"data": x}, outputs=["pool_global"])
    assert list(only) == ["pool_global"] and only["pool_global"].shape == (1, 32, 1, 1)
    with pytest.raises(PrototxtError, match="no blob named 'nope'"):
        executor.forward({"data": x}, outputs=["nope"])


def test_float64_on_request():
    executor = Executor(RESNET_TINY.read_text(), dtype=np.float64)
    out = executor.forward({"data": np.ones((1, 3, 32, 32))})
    assert out["prob"].dtype == np.float64


# -- weights -----------------------------------------------------------------------------------

def test_init_weights_is_deterministic_and_per_layer(tmp_path):
    net = Net.from_document(parse(RESNET_TINY.read_text()))
    first = init_weights(net, seed=3)
    second = init_weights(net, seed=3)
    assert [n for n, _, _ in first] == [n for n, _, _ in second]
    for (_, _, a), (_, _, b) in zip(first, second):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    other = init_weights(net, seed=4)
    assert not np.array_equal(first[0][2][0], other[0][2][0])
    bn = dict((n, arrays) for n, _, arrays in first)["bn2a_branch2a"]
    assert bn[2].tolist() == [1.0] and (bn[1] > 0).all()


def test_weights_match_by_name_and_shape(tmp_path):
    net = Net.from_document(parse(RESNET_TINY.read_text()))
    layers = init_weights(net, seed=1)
    path = tmp_path / "w.caffemodel"
    write_weights(layers, path)
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    from_file = Executor(net, path).forward({"data": x})["prob"]
    in_memory = Executor(net, {n: a for n, _, a in layers}).forward({"data": x})["prob"]
    np.testing.assert_array_equal(from_file, in_memory)
    partial = [layer for layer in layers if layer[0] != "fc10"]
    write_weights(partial, path)
    with pytest.raises(PrototxtError, match="'fc10'.*no weights"):
        Executor(net, path)
    Executor(net, path, init_missing=True)
    broken = [(n, t, [a[:1] if n == "conv1" else a for a in arrays]) for n, t, arrays in layers]
    write_weights(broken, path)
    with pytest.raises(PrototxtError, match="conv1.*shape"):
        Executor(net, path)


def test_legacy_4d_inner_product_weights_load():
    text = ('layer { name: "d" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'
            'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
            'inner_product_param { num_output: 4 } }\n')
    w = np.arange(12, dtype=np.float32).reshape(1, 1, 4, 3)
    b = np.ones((1, 1, 1, 4), np.float32)
    out = Executor(text, {"ip": [w, b]}).forward({"x": np.ones((2, 3), np.float32)})
    np.testing.assert_allclose(out["y"], np.ones((2, 3)) @ w.reshape(4, 3).T + 1)


# -- plugins and unknown layers ----------------------------------------------------------------

UPSAMPLE_NET = """\
layer { name: "d" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 dim: 3 dim: 3 } } }
layer { name: "up" type: "Upsample2x" bottom: "x" top: "y" }
layer { name: "relu" type: "ReLU" bottom: "y" top: "y" }
"""


def test_unknown_layer_is_a_located_error():
    with pytest.raises(PrototxtError) as caught:
        Executor(parse(UPSAMPLE_NET, "net.prototxt"))
    error = caught.value
    assert (error.path, error.line, error.column) == ("net.prototxt", 2, 1)
    assert "'up' (Upsample2x) has no forward pass" in error.message


def test_plugins_run_and_infer_shapes():
    def forward(layer, bottoms, blobs, context):
        return [bottoms[0].repeat(2, axis=2).repeat(2, axis=3)]

    def shape(layer, bottoms, context):
        n, c, h, w = bottoms[0]
        return [(n, c, 2 * h, 2 * w)]

    register_layer("Upsample2x", forward, shape=shape)
    try:
        executor = Executor(UPSAMPLE_NET)
        x = np.arange(18, dtype=np.float32).reshape(1, 2, 3, 3) - 9
        y = executor.forward({"x": x})["y"]
        assert y.shape == (1, 2, 6, 6) and y.min() == 0
        assert executor.view.shapes.shapes[executor.view.net_outputs[0]] == (1, 2, 6, 6)
    finally:
        from prototxt_tools.layers import base

        base._REGISTRY.pop("Upsample2x", None)
    with pytest.raises(PrototxtError, match="BVLC Caffe type"):
        register_layer("ReLU", forward)


def test_python_layers_never_run():
    text = 'layer { name: "py" type: "Python" top: "x" python_param { module: "os" layer: "L" } }\n'
    with pytest.raises(PrototxtError, match="never imported"):
        Executor(text)


# -- TRAIN phase -------------------------------------------------------------------------------

def test_train_phase_updates_batch_norm_statistics():
    net = Net.from_document(parse((SAMPLES / "lenet_bn_train_val.prototxt").read_text()),
                            input_shapes={"data": (8, 1, 28, 28)})
    executor = Executor(net, phase=TRAIN, seed=2)
    bn = next(layer.name for layer in net.layers if layer.type == "BatchNorm")
    before = executor.blobs[bn][2].copy()
    rng = np.random.default_rng(0)
    feed = {"data": rng.random((8, 1, 28, 28), np.float32),
            "label": rng.integers(0, 10, 8).astype(np.float32)}
    loss = executor.forward(feed, outputs=["loss"])["loss"]
    assert loss.shape == () and np.isfinite(loss)
    after = executor.blobs[bn][2]
    assert after[0] == pytest.approx(0.999 * before[0] + 1)


# -- the commands ------------------------------------------------------------------------------

def test_init_weights_and_run_commands(tmp_path):
    weights = tmp_path / "w.caffemodel"
    code, _, err = run(["init-weights", str(RESNET_TINY), "-o", str(weights), "--seed", "5"])
    assert code == 0 and "wrote" in err
    assert [layer.name for layer in read_weights(weights)][:2] == ["conv1", "conv1_bn"]
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npz"
    code, stdout, _ = run(["run", str(RESNET_TINY), "--weights", str(weights), "--input",
                           f"data={tmp_path / 'x.npy'}", "-o", str(out)])
    assert code == 0 and stdout.splitlines()[1].split()[:2] == ["prob", "1x10"]
    with np.load(out, allow_pickle=False) as saved:
        expected = Executor(str(RESNET_TINY), str(weights)).forward({"data": x})["prob"]
        np.testing.assert_array_equal(saved["prob"], expected)
    code, stdout, _ = run(["run", str(RESNET_TINY), "--blobs", "all", "--seed", "1"])
    assert code == 0 and "res3a " in stdout


def test_run_command_errors(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(UPSAMPLE_NET)
    code, _, err = run(["run", str(path)])
    assert code == 2 and err.startswith(f"{path}:2:1: layer 'up' (Upsample2x) has no forward")
    code, _, err = run(["run", str(RESNET_TINY), "--input", "nope=random"])
    assert code == 2 and "has no input 'nope'" in err
    code, _, err = run(["run", str(RESNET_TINY), "--input", f"data={tmp_path / 'x.npy'}"])
    assert code == 2 and "cannot read the array" in err
    plugin = tmp_path / "plugin.py"
    plugin.write_text("from prototxt_tools.run import register_layer\n"
                      "register_layer('Upsample2x', lambda l, b, w, c: "
                      "[b[0].repeat(2, 2).repeat(2, 3)])\n")
    try:
        code, stdout, _ = run(["run", str(path), "--plugin", str(plugin)])
        assert code == 0 and "1x2x6x6" in stdout
    finally:
        from prototxt_tools.layers import base

        base._REGISTRY.pop("Upsample2x", None)


def test_resnet50_sample_is_current():
    import importlib.util

    spec = importlib.util.spec_from_file_location("nets", ROOT / "benchmarks" / "nets.py")
    nets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nets)
    assert RESNET50.read_text() == nets.resnet50_prototxt(), "run: python benchmarks/nets.py"
