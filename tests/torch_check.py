"""Every one-layer forward test doubles as a PyTorch export test.

The one-layer helpers of test_forward_layers.py and test_forward_vision.py call
:func:`compare_with_torch` with the layer, its bottoms, its blobs and the tops the executor's
kernel computed: the layer is wrapped in a net (one Input per bottom), exported with
``to_pytorch``, the emitted module runs on the same bottoms, and every top must match within
1e-5 of its largest magnitude (float32; 1e-4 where the case says so). TRAIN-phase cases are not
compared (the export computes TEST). Layer types without PyTorch code are recorded in
:data:`MISSING`, which test_export.py reports.

Set TORCH_LAYERS_REPORT=path to write every comparison's error to a table.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from prototxt_tools.layers.base import TEST
from prototxt_tools.schema import caffe_pb2

try:
    import torch
except ImportError:  # torch is a test dependency; without it these comparisons are skipped
    torch = None

RTOL = 1e-5
MISSING: set = set()  # layer types whose torch() is the base default
RESULTS: list = []  # (type, name, top, max abs, max rel)


def compare_with_torch(layer: "caffe_pb2.LayerParameter", bottoms: list, blobs: list,
                       tops: list, *, rtol: float = RTOL, phase: int = TEST,
                       inputs_are_ints: Optional[set] = None) -> None:
    """Export ``layer`` alone and compare its tops with ``tops`` (see the module docs)."""
    if torch is None or phase != TEST:
        return
    from prototxt_tools.export import load_module, to_pytorch
    from prototxt_tools.layers import get_spec
    from prototxt_tools.layers.base import LayerSpec

    spec = get_spec(layer.type)
    if spec is None or type(spec).torch is LayerSpec.torch:
        MISSING.add(layer.type)
        return
    net = caffe_pb2.NetParameter(name="one_layer")
    seen: dict = {}
    for name, array in zip(layer.bottom, bottoms):
        if name in seen:
            continue
        seen[name] = array
        data = net.layer.add(name=f"input_{name}", type="Input", top=[name])
        data.input_param.shape.add(dim=list(np.shape(array)))
    copy = net.layer.add()
    copy.CopyFrom(layer)
    if not copy.name:
        copy.name = "layer"
    copy.ClearField("include")
    copy.ClearField("exclude")
    weights = {copy.name: [np.asarray(b) for b in blobs]} if blobs else None
    export = to_pytorch(net, weights)
    model = load_module(export)
    with torch.no_grad():
        result = model(*[torch.from_numpy(np.array(seen[name], np.float32))
                         for name in export.inputs])
    if not isinstance(result, dict):
        result = {export.outputs[0]: result}
    names = list(layer.top)
    for name, expected in zip(names, tops):
        if name not in result:
            continue  # a top later overwritten in place by another top of the same name
        actual = np.asarray(result[name].detach().numpy(), np.float64)
        expected = np.asarray(expected, np.float64)
        assert actual.shape == expected.shape, (layer.type, name, actual.shape, expected.shape)
        if not expected.size:
            continue
        both_nan = np.isnan(actual) & np.isnan(expected)
        same_inf = np.isinf(expected) & (actual == expected)
        ok = both_nan | same_inf
        difference = np.where(ok, 0.0, np.abs(actual - expected))
        finite = expected[np.isfinite(expected)]
        scale = float(np.max(np.abs(finite))) if finite.size else 1.0
        absolute = float(np.max(difference)) if difference.size else 0.0
        relative = absolute / (scale or 1.0)
        RESULTS.append((layer.type, layer.name, name, absolute, relative))
        assert relative <= rtol, (layer.type, name, absolute, relative)


def write_report() -> None:
    path = os.environ.get("TORCH_LAYERS_REPORT")
    if not path or not RESULTS:
        return
    with open(path, "a") as out:
        for kind, name, top, absolute, relative in RESULTS:
            out.write(f"| {kind} | {name} | {top} | {absolute:.3g} | {relative:.3g} |\n")
    RESULTS.clear()
