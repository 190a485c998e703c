"""OpenCV's dnn module as an independent implementation of Caffe nets, for tests.

``cv2_forward(prototxt, weights, inputs, outputs)`` writes the net and a .caffemodel holding
``weights`` ({layer name: [arrays]}) to a temporary folder, loads them with
``cv2.dnn.readNetFromCaffe`` and runs a forward pass on ``inputs`` ({input name: array}),
returning the requested output blobs. Tests skip cleanly when OpenCV is not installed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import pytest


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
