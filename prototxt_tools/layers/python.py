"""The Python layer: user code named by python_param (module, layer). This project never imports
it, so its counts are free and its tops unknown (unless given with --input-shape)."""

from __future__ import annotations

from typing import Any, Iterator

from ._util import with_overrides
from .base import IN_PLACE_OK, LayerSpec, Problem, ShapeContext, register


@register
class PythonSpec(LayerSpec):
    type = "Python"
    family = "python"
    param_field = "python_param"
    min_bottoms = 0
    max_bottoms = None
    min_tops = 0
    max_tops = None
    in_place = IN_PLACE_OK  # Caffe does not stop it; whether it is right depends on the code

    def check(self, layer: Any) -> Iterator[Problem]:
        for name in ("module", "layer"):
            if not getattr(layer.python_param, name):
                yield Problem("L120", f"python_param.{name} is missing; Caffe cannot import the "
                                      f"layer's class", ("python_param", name))

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        return with_overrides(layer, [None] * len(layer.top), context)
