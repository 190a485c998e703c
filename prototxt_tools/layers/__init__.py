"""Caffe's layer types: one spec per type, the single home of each type's semantics.

``get_spec("Convolution")`` returns the spec; ``known_types()`` lists every BVLC type.
"""

from .base import (
    CHECK_CODES, TRAIN, TEST, CaffeCheckFailed, ForwardContext, LayerSpec, Problem, ShapeContext,
    TorchCode, TorchContext, TorchUnsupported, get_spec, known_types, register, torch_helper,
)

__all__ = ["CHECK_CODES", "TRAIN", "TEST", "CaffeCheckFailed", "ForwardContext", "LayerSpec",
           "Problem", "ShapeContext", "TorchCode", "TorchContext", "TorchUnsupported", "get_spec",
           "known_types", "register", "torch_helper"]
