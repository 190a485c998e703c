"""Caffe's layer types: one spec per type, the single home of each type's semantics.

``get_spec("Convolution")`` returns the spec; ``known_types()`` lists every BVLC type.
"""

from .base import (
    CHECK_CODES, TRAIN, TEST, CaffeCheckFailed, ForwardContext, LayerSpec, Problem, ShapeContext,
    get_spec, known_types, register,
)

__all__ = ["CHECK_CODES", "TRAIN", "TEST", "CaffeCheckFailed", "ForwardContext", "LayerSpec",
           "Problem", "ShapeContext", "get_spec", "known_types", "register"]
