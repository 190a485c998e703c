"""OpenCV's dnn module as an independent implementation of Caffe nets, for tests.

``cv2_forward(prototxt, weights, inputs, outputs)`` writes the net and a .caffemodel holding
``weights`` ({layer name: [arrays]}) to a temporary folder, loads them with
``cv2.dnn.readNetFromCaffe`` and runs a forward pass on ``inputs`` ({input name: array}),
returning the requested output blobs. Tests skip cleanly when OpenCV is not installed.
``compare_with_opencv(prototxt, net)`` runs a whole net both ways and compares every blob.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import pytest

from prototxt_tools import parse
from prototxt_tools.layers.base import TEST
from prototxt_tools.net.model import Net
from prototxt_tools.run import Executor, init_weights
from prototxt_tools.schema.binding import message_to_text


def cv2_module():
    return pytest.importorskip("cv2")


def cv2_forward(prototxt: str, weights: Optional[dict], inputs: dict,
                outputs: Iterable[str]) -> dict:
    cv2 = cv2_module()
    from prototxt_tools.schema.caffemodel import write_weights

    with tempfile.TemporaryDirectory() as folder:
        net_path = Path(folder) / "net.prototxt"
        net_path.write_text(prototxt)
        model_path = Path(folder) / "net.caffemodel"
        layers = [(name, "", [np.asarray(a, np.float32) for a in arrays])
                  for name, arrays in (weights or {}).items()]
        write_weights(layers, model_path)
        net = cv2.dnn.readNetFromCaffe(str(net_path), str(model_path))
    net.enableFusion(False)  # every layer's own output stays observable
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    for name, array in inputs.items():
        net.setInput(np.ascontiguousarray(array, np.float32), name)
    names = list(outputs)
    results = net.forward(names)
    return {name: np.asarray(result) for name, result in zip(names, results)}


def max_errors(actual: np.ndarray, expected: np.ndarray) -> tuple:
    """(max absolute error, max error relative to the largest expected magnitude)."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if actual.size == 0:
        return 0.0, 0.0
    absolute = float(np.max(np.abs(actual - expected)))
    scale = float(np.max(np.abs(expected))) or 1.0
    return absolute, absolute / scale


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-5) -> tuple:
    """Max abs error within ``rtol`` of the largest expected magnitude; returns the errors."""
    absolute, relative = max_errors(actual, expected)
    assert relative <= rtol, f"max abs error {absolute:.3g}, relative {relative:.3g} > {rtol}"
    return absolute, relative


def inference_prototxt(net: Net, phase: int = TEST) -> str:
    """The phase's net with data layers turned into Input layers and label-fed layers dropped
    (what OpenCV can read), for comparing train_val samples."""
    from prototxt_tools.schema import caffe_pb2

    view = net.view(phase)
    shapes = view.shapes
    message = caffe_pb2.NetParameter(name=net.upgraded.name)
    labels = set()
    for layer in view.layers:
        spec = layer.spec
        if spec.is_data and layer.type != "Input":
            tops = view.outputs[layer.index]
            data = message.layer.add(name=layer.name, type="Input", top=[tops[0].name])
            data.input_param.shape.add(dim=list(shapes.shapes[tops[0]]))
            labels.update(ref.name for ref in tops[1:])
            continue
        if spec.is_loss or layer.type == "Accuracy" or labels & set(layer.bottoms):
            continue
        copy = message.layer.add()
        copy.CopyFrom(layer.param)
        del copy.include[:]
        del copy.exclude[:]
    return message_to_text(message)


def compare_with_opencv(prototxt_text: str, net: Net, seed: int = 0, rtol: float = 1e-4):
    """Run ``net`` with init-weights values and random inputs, and OpenCV on the same text
    and weights; every blob's final value must agree (not only the outputs, which a softmax
    over random weights can saturate to one-hot vectors)."""
    weights = {name: arrays for name, _, arrays in init_weights(net, seed)}
    executor = Executor(net, weights)
    rng = np.random.default_rng(seed)
    inputs = {name: rng.standard_normal(shape).astype(np.float32)
              for name, shape in executor.input_shapes().items()}
    ours = executor.forward(inputs, keep="all")
    if net.has_data_layers or any(layer.type == "MemoryData" for layer in net.layers):
        prototxt_text = inference_prototxt(net)  # OpenCV takes inputs from Input layers
    view = executor.view
    last_writer = {}
    for layer in view.layers:
        for ref in view.outputs.get(layer.index, []):
            if ref.name:
                last_writer[ref.name] = layer
    # OpenCV names outputs by layer: ask each blob's last writer (data layers excluded).
    compared = {name: layer.name for name, layer in last_writer.items()
                if not layer.spec.is_data and name in ours}
    fed = Net.from_document(parse(prototxt_text)).view(TEST)
    accepted = {top for layer in fed.layers if layer.type == "Input" for top in layer.tops}
    theirs = cv2_forward(prototxt_text, weights,
                         {name: array for name, array in inputs.items() if name in accepted},
                         sorted(set(compared.values())))
    errors = {}
    for name, layer_name in compared.items():
        expected = theirs[layer_name].reshape(ours[name].shape)
        absolute, relative = max_errors(ours[name], expected)
        errors[name] = (absolute, relative)
        assert relative <= rtol, (name, absolute, relative)
    return errors
