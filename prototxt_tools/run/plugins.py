"""Plugins: forward passes (and shape rules) for layer types prototxt-tools does not know.

A Caffe fork's layer (Interp, Upsample, ROIPooling...) becomes runnable by registering it::

    from prototxt_tools.run import register_layer

    def upsample(layer, bottoms, blobs, context):
        scale = 2
        return [bottoms[0].repeat(scale, axis=2).repeat(scale, axis=3)]

    def upsample_shape(layer, bottoms, context):
        n, c, h, w = bottoms[0]
        return [(n, c, None if h is None else 2 * h, None if w is None else 2 * w)]

    def upsample_torch(layer, context):  # for `prototxt to-pytorch`
        return TorchCode("F.interpolate({b0}, scale_factor=2, mode='nearest')")

    register_layer("Upsample", upsample, shape=upsample_shape, torch=upsample_torch)

(``TorchCode`` comes from ``prototxt_tools.layers``.) ``prototxt run --plugin my_layers.py``
imports such a file (your own code, run because you asked; layers' python_param modules named
in a prototxt are never imported). A registered type also takes part in shape inference,
linting and the PyTorch export like a built-in one.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Callable, Optional

from ..errors import PrototxtError
from ..layers.base import IN_PLACE_OK, LayerSpec, ShapeContext, get_spec, register

Forward = Callable[[Any, list, list, Any], list]
ShapeRule = Callable[[Any, list, ShapeContext], list]

__all__ = ["register_layer", "load_plugin"]


def register_layer(layer_type: str, forward: Forward, *, shape: Optional[ShapeRule] = None,
                   blob_count: int = 0, blob_shapes: Optional[Callable] = None,
                   is_data: bool = False, replace: bool = False,
                   torch: Optional[Callable] = None) -> LayerSpec:
    """Make ``layer_type`` runnable: ``forward(layer, bottoms, blobs, context) -> tops``.

    ``shape(layer, bottom_shapes, context) -> top shapes`` (default: tops unknown) lets shape
    inference continue past the layer; ``blob_count``/``blob_shapes(layer, bottom_shapes)``
    describe learnable blobs read from the weights by layer name; ``torch(layer, context) ->
    TorchCode`` lets the PyTorch export write the layer (see ``LayerSpec.torch``). Registering
    a type BVLC Caffe already has is refused unless ``replace`` is true.
    """
    existing = get_spec(layer_type)
    if existing is not None and not replace and not getattr(existing, "plugin", False):
        raise PrototxtError(f"layer type '{layer_type}' is a BVLC Caffe type; pass replace=True "
                            f"to override its forward")

    def _shape(self: LayerSpec, layer: Any, bottoms: list, context: ShapeContext) -> list:
        if shape is None:
            return [None] * len(layer.top)
        return list(shape(layer, bottoms, context))

    def _forward(self: LayerSpec, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        return list(forward(layer, bottoms, blobs, context))

    def _blob_shapes(self: LayerSpec, layer: Any, bottoms: list) -> Optional[list]:
        if blob_shapes is not None:
            return list(blob_shapes(layer, bottoms))
        return [] if blob_count == 0 else None

    members = {
        "type": layer_type, "family": "plugin", "plugin": True, "in_place": IN_PLACE_OK,
        "is_data": is_data, "min_bottoms": 0, "min_tops": 0,
        "shape": _shape, "forward": _forward, "blob_shapes": _blob_shapes,
        "blob_count": lambda self, layer: blob_count,
    }
    if torch is not None:
        members["torch"] = lambda self, layer, context: torch(layer, context)
    spec_class = type(f"Plugin_{layer_type}", (LayerSpec,), members)
    from ..layers import base

    base._load_all()
    base._REGISTRY.pop(layer_type, None)
    register(spec_class)
    return base._REGISTRY[layer_type]


def load_plugin(path: str) -> None:
    """Import a plugin file (it calls ``register_layer``)."""
    name = f"prototxt_plugin_{abs(hash(os.path.abspath(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PrototxtError("cannot load the plugin (not a Python file?)", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except FileNotFoundError:
        raise PrototxtError("no such file", path) from None
    except Exception as exc:  # noqa: BLE001 - the user's code: report, don't crash
        raise PrototxtError(f"the plugin failed while loading: {type(exc).__name__}: {exc}",
                            path) from None
