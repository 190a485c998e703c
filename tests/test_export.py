"""PyTorch export of whole nets: samples and corpus deploys against the executor, readable and
lint-clean code, torch.export and ONNX, the command.

(Every one-layer case of test_forward_layers.py / test_forward_vision.py is also exported and
compared, through tests/torch_check.py.)
"""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

from conftest import CORPUS, CORPUS_FILES, SAMPLES
from prototxt_tools import PrototxtError, parse
from prototxt_tools.export import load_module, to_pytorch, verify
from prototxt_tools.layers import TEST, get_spec, known_types
from prototxt_tools.layers.base import LayerSpec
from prototxt_tools.net.model import Net
from prototxt_tools.run import init_weights
from test_cli import run

torch = pytest.importorskip("torch")

RTOL = 1e-4  # whole nets: float32 sums in another order over dozens of layers

#: Input shapes the train_val samples need (their data layers do not say).
SAMPLE_SHAPES = {"lenet_bn_train_val.prototxt": {"data": (4, 1, 28, 28), "label": (4,)},
                 "lenet_v1.prototxt": {"data": (4, 1, 28, 28), "label": (4,)}}


def _net(path, shapes=None) -> Net:
    return Net.from_document(parse(path.read_bytes(), str(path)), input_shapes=shapes)


def _weights(net: Net, seed: int = 1) -> dict:
    return {name: arrays for name, _, arrays in init_weights(net, seed)}


def _compared_blobs(net: Net) -> list:
    """The net's outputs and, for an output a Softmax or Sigmoid computes, its input as well:
    with random weights a softmax saturates to exact 0s and 1s, which would hide errors."""
    view = net.view(TEST)
    names = [ref.name for ref in view.net_outputs if ref.name]
    for layer in view.layers:
        if layer.type in ("Softmax", "Sigmoid") and set(layer.tops) & set(names):
            names += [name for name in layer.bottoms if name not in names]
    return names


def _check_whole_net(path, shapes=None) -> dict:
    net = _net(path, shapes)
    weights = _weights(net)
    export = to_pytorch(net, weights, outputs=_compared_blobs(net))
    errors = verify(export, net, weights, input_shapes=shapes)
    for name, (absolute, relative) in errors.items():
        assert relative <= RTOL, (name, absolute, relative)
    return errors


# -- coverage ------------------------------------------------------------------------------------

def test_every_layer_type_the_executor_runs_has_torch_code():
    no_code = [kind for kind in known_types()
               if not get_spec(kind).is_data and kind != "Python"
               and type(get_spec(kind)).torch is LayerSpec.torch]
    assert no_code == []


# -- samples and corpus ---------------------------------------------------------------------------

def _sample_nets() -> list:
    return [pytest.param(path, SAMPLE_SHAPES.get(path.name), id=path.name)
            for path in sorted(SAMPLES.glob("*.prototxt")) if path.name != "solver.prototxt"]


@pytest.mark.parametrize("path,shapes", _sample_nets())
def test_samples_convert_and_match_the_executor(path, shapes):
    _check_whole_net(path, shapes)


def _corpus_deploys() -> list:
    manifest = CORPUS / "manifest.tsv"
    if not manifest.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no corpus at {CORPUS}"))]
    with manifest.open() as handle:
        kinds = {row["file"]: row["kind"] for row in csv.DictReader(handle, delimiter="\t")}
    params = []
    for path in CORPUS_FILES:
        if kinds.get(path.name) != "deploy":
            continue
        params.append(pytest.param(path, id=path.name[:80]))
    return params


@pytest.mark.parametrize("path", _corpus_deploys())
def test_corpus_deploys_of_bvlc_layers_convert_and_match(path):
    net = _net(path)
    view = net.view(TEST)
    foreign = sorted({layer.type for layer in view.layers if layer.spec is None
                      or layer.type == "Python"})
    if foreign:
        with pytest.raises(PrototxtError, match="cannot export to PyTorch"):
            to_pytorch(net)
        pytest.skip(f"not BVLC layers: {', '.join(foreign)} (refused with one error)")
    unsized = [layer.name for layer in view.layers
               if any(view.shapes.shapes.get(ref) is None for ref in view.outputs[layer.index])]
    if unsized:
        pytest.skip(f"BVLC Caffe cannot size it (first: {unsized[0]})")
    _check_whole_net(path)


# -- the code ------------------------------------------------------------------------------------

def _ruff(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", "--select",
                           "E,F,W,B", "--line-length", "100", str(path)],
                          capture_output=True, text=True)


@pytest.mark.parametrize("path,shapes", _sample_nets() + [
    pytest.param(p, None, id=p.name[:60]) for p in CORPUS_FILES
    if p.name.endswith(("googlenet__deploy.prototxt", "DenseNet_121.prototxt",
                        "mobilenet_v2_deploy.prototxt", "SqueezeNet_v1.1__deploy.prototxt"))])
def test_emitted_code_passes_ruff(path, shapes, tmp_path):
    pytest.importorskip("ruff")
    export = to_pytorch(_net(path, shapes))
    target = tmp_path / "model.py"
    target.write_text(export.source)
    result = _ruff(target)
    assert result.returncode == 0, result.stdout + result.stderr


def test_resnet50_code_reads_like_hand_written_pytorch():
    net = _net(SAMPLES / "resnet50_deploy.prototxt")
    export = to_pytorch(net)
    source = export.source
    assert "self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)" in source
    assert "self.bn_conv1 = nn.BatchNorm2d(64" in source  # the Scale merged into it
    assert "scale_conv1" not in source.split("def forward")[1]
    forward = source.split("def forward(self, data):")[1]
    assert "conv1 = torch.relu_(conv1)" in forward  # in place where safe
    assert "res2a = res2a_branch1 + res2a_branch2c" in forward
    assert forward.rstrip().endswith("return prob")
    # Plain imports only: the file needs nothing but torch.
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["import torch", "import torch.nn.functional as F", "from torch import nn"]


def test_names_are_sanitised_unique_and_mapped():
    text = '''name: "odd names"
layer { name: "in" type: "Input" top: "data/0"
  input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }
layer { name: "conv/1" type: "Convolution" bottom: "data/0" top: "conv/1"
  convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "conv_1" type: "Convolution" bottom: "conv/1" top: "class"
  convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "3x3" type: "Convolution" bottom: "class" top: "3x3"
  convolution_param { num_output: 2 kernel_size: 1 } }
'''
    export = to_pytorch(text)
    assert export.names == {"conv_1": "conv/1", "conv_1_2": "conv_1", "l3x3": "3x3"}
    assert "conv_1 <- 'conv/1'" in export.source and "l3x3 <- '3x3'" in export.source
    assert export.variables["class"] == "class_" and export.inputs == ["data/0"]
    compile(export.source, "model.py", "exec")


def test_any_batch_size_and_several_outputs():
    text = '''name: "two"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 1 dim: 3 dim: 6 dim: 6 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "flat" type: "Flatten" bottom: "pool" top: "flat" }
layer { name: "fc" type: "InnerProduct" bottom: "flat" top: "fc"
  inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
layer { name: "side" type: "Sigmoid" bottom: "conv" top: "side" }
'''
    net = Net.from_document(parse(text))
    weights = _weights(net)
    export = to_pytorch(net, weights)
    assert export.outputs == ["prob", "side"]
    model = load_module(export)
    x = np.random.default_rng(0).standard_normal((3, 3, 6, 6)).astype(np.float32)
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    assert set(out) == {"prob", "side"} and out["prob"].shape == (3, 5)
    from prototxt_tools.run import Executor

    expected = Executor(net, weights, input_shapes={"data": x.shape}).forward({"data": x})
    for name in ("prob", "side"):
        np.testing.assert_allclose(out[name].numpy(), expected[name], rtol=1e-5, atol=1e-6)


def test_torch_export_and_onnx(tmp_path):
    net = _net(SAMPLES / "resnet_tiny_deploy.prototxt")
    weights = _weights(net)
    model = load_module(to_pytorch(net, weights))
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 3, 32, 32))
                         .astype(np.float32))
    with torch.no_grad():
        expected = model(x).numpy()
    program = torch.export.export(model, (x,))
    np.testing.assert_allclose(program.module()(x).detach().numpy(), expected, rtol=1e-5,
                               atol=1e-6)
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "model.onnx"
    torch.onnx.export(model, (x,), str(onnx_path), dynamo=True)
    session = ort.InferenceSession(str(onnx_path))
    (result,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)


def test_state_dict_maps_caffe_blobs():
    net = _net(SAMPLES / "resnet_tiny_deploy.prototxt")
    weights = _weights(net)
    export = to_pytorch(net, weights)
    np.testing.assert_array_equal(export.state["conv1.weight"], weights["conv1"][0])
    mean, variance, factor = weights["conv1_bn"]
    np.testing.assert_allclose(export.state["conv1_bn.running_mean"], mean / factor[0])
    np.testing.assert_array_equal(export.state["conv1_bn.weight"], weights["conv1_scale"][0])
    np.testing.assert_array_equal(export.state["conv1_bn.bias"], weights["conv1_scale"][1])


# -- errors and plugins --------------------------------------------------------------------------

def test_unsupported_layers_are_listed_in_one_error():
    text = '''name: "n"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 } } }
layer { name: "py" type: "Python" bottom: "data" top: "a" python_param { module: "m" layer: "L" } }
layer { name: "fork" type: "Interp" bottom: "a" top: "b" }
'''
    with pytest.raises(PrototxtError) as caught:
        to_pytorch(text, path="net.prototxt")
    message = str(caught.value)
    assert message.startswith("net.prototxt:3:1: cannot export to PyTorch: layer 'py' (Python)")
    assert "and 1 more: 'fork' (Interp at 4:1)" in message and "\n" not in message


def test_a_plugin_provides_torch_code():
    from prototxt_tools.layers import TorchCode
    from prototxt_tools.layers import base
    from prototxt_tools.run import register_layer

    def double(layer, bottoms, blobs, context):
        return [bottoms[0] * 2]

    register_layer("Double", double, shape=lambda layer, bottoms, context: [bottoms[0]],
                   torch=lambda layer, context: TorchCode("{b0} * 2"))
    try:
        text = '''name: "n"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "d" type: "Double" bottom: "data" top: "d" }
'''
        export = to_pytorch(text)
        assert "d = data * 2" in export.source
        assert verify(export, Net.from_document(parse(text)), {})["d"][1] == 0.0
    finally:
        base._REGISTRY.pop("Double", None)


# -- the command ---------------------------------------------------------------------------------

def test_command_writes_module_and_state_dict(tmp_path):
    source = SAMPLES / "resnet_tiny_deploy.prototxt"
    weights = tmp_path / "w.caffemodel"
    assert run(["init-weights", str(source), "-o", str(weights)])[0] == 0
    out = tmp_path / "model.py"
    code, stdout, stderr = run(["to-pytorch", str(source), "--weights", str(weights), "-o",
                                str(out), "--class-name", "ResNetTiny"])
    assert code == 0, stderr
    assert "verify prob: max abs error" in stdout
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    namespace: dict = {}
    exec(compile(out.read_text(), str(out), "exec"), namespace)
    model = namespace["ResNetTiny"]()
    model.load_state_dict(state)
    assert f"wrote {out}" in stderr and "model.pt" in stderr


def test_command_without_weights_verifies_on_init_weights(tmp_path):
    out = tmp_path / "model.py"
    code, stdout, stderr = run(["to-pytorch", str(SAMPLES / "lenet_bn_train_val.prototxt"),
                                "--input-shape", "data=2,1,28,28", "-o", str(out)])
    assert code == 0, stderr
    assert "verify" in stdout and not (tmp_path / "model.pt").exists()
    code, _, stderr = run(["to-pytorch", str(SAMPLES / "resnet_tiny_deploy.prototxt"), "-o",
                           str(out), "--state-dict", str(tmp_path / "x.pt")])
    assert code == 2 and "--state-dict needs --weights" in stderr


def test_command_fold_bn_verified_against_the_original(tmp_path):
    source = SAMPLES / "resnet_tiny_deploy.prototxt"
    weights = tmp_path / "w.caffemodel"
    run(["init-weights", str(source), "-o", str(weights)])
    out = tmp_path / "model.py"
    code, stdout, stderr = run(["to-pytorch", str(source), "--weights", str(weights), "-o",
                                str(out), "--fold-bn"])
    assert code == 0, stderr
    assert "BatchNorm" not in out.read_text() and "folded 6 BatchNorm" in stderr


def test_command_verification_failure_writes_nothing(tmp_path):
    from prototxt_tools.layers import TorchCode
    from prototxt_tools.layers import base
    from prototxt_tools.run import register_layer

    register_layer("Wrong", lambda layer, bottoms, blobs, context: [bottoms[0] * 2],
                   shape=lambda layer, bottoms, context: [bottoms[0]],
                   torch=lambda layer, context: TorchCode("{b0} * 3"))
    try:
        source = tmp_path / "net.prototxt"
        source.write_text('layer { name: "data" type: "Input" top: "data" '
                          'input_param { shape { dim: 2 dim: 3 } } }\n'
                          'layer { name: "w" type: "Wrong" bottom: "data" top: "w" }\n')
        out = tmp_path / "model.py"
        code, _, stderr = run(["to-pytorch", str(source), "-o", str(out)])
        assert code == 1 and "over the tolerance" in stderr and not out.exists()
    finally:
        base._REGISTRY.pop("Wrong", None)


def test_stochastic_pooling_samples_cells_of_their_windows_in_train_mode():
    """TEST computes Caffe's sum(x^2) / sum(x) (the one-layer tests compare it); in train mode
    the module samples as Caffe's TRAIN does, as SPP does at TEST: every value is a cell of
    its window (windows of one positive cell give that cell)."""
    text = ('layer { name: "data" type: "Input" top: "data" '
            'input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }\n'
            'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
            'pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 } }\n'
            'layer { name: "spp" type: "SPP" bottom: "data" top: "spp" '
            'spp_param { pool: STOCHASTIC pyramid_height: 2 } }\n')
    model = load_module(to_pytorch(parse(text)))
    x = torch.from_numpy(np.abs(np.random.default_rng(3).standard_normal((2, 3, 8, 8)))
                         .astype(np.float32))
    x[0, 0, :2, :2] = torch.tensor([[0.0, 0.0], [0.0, 5.0]])
    windows = x.unfold(2, 2, 2).unfold(3, 2, 2).reshape(2, 3, 4, 4, 4)
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        result = model(x)
    pooled = result["pool"]
    assert ((windows == pooled[..., None]).any(-1)).all()
    assert pooled[0, 0, 0, 0] == 5.0
    spp = result["spp"]  # level 0 (one 8x8 bin per channel), then level 1 (2x2 bins of 4x4)
    assert ((x.flatten(2) == spp[:, :3, None]).any(-1)).all()
    quarters = x.unfold(2, 4, 4).unfold(3, 4, 4).reshape(2, 3, 4, 16)
    assert ((quarters == spp[:, 3:].reshape(2, 3, 4, 1)).any(-1)).all()
    model.eval()
    with torch.no_grad():
        again = model(x)["pool"]
    expected = (windows * windows).sum(-1) / windows.sum(-1)
    torch.testing.assert_close(again, expected)


def test_command_outputs_chosen_blobs(tmp_path):
    out = tmp_path / "model.py"
    code, stdout, stderr = run(["to-pytorch", str(SAMPLES / "resnet_tiny_deploy.prototxt"),
                                "-o", str(out), "--outputs", "fc10,prob"])
    assert code == 0, stderr
    assert "verify fc10:" in stdout and "verify prob:" in stdout
    assert "return {'fc10': fc10, 'prob': prob}" in out.read_text()
    code, _, stderr = run(["to-pytorch", str(SAMPLES / "resnet_tiny_deploy.prototxt"),
                           "-o", str(tmp_path / "other.py"), "--outputs", "fc11"])
    assert code == 2 and "no blob named 'fc11'" in stderr
    assert not (tmp_path / "other.py").exists()
