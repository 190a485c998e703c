"""Exports: a Caffe net as PyTorch code (:func:`to_pytorch`), checked by :func:`verify`."""

from __future__ import annotations

from .pytorch import PyTorchExport, load_module, to_pytorch, verify

__all__ = ["PyTorchExport", "load_module", "to_pytorch", "verify"]
