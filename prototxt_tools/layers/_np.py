"""NumPy, imported on first use.

Layer modules hold every aspect of a layer type, its NumPy forward included, but shape
inference and linting must not pay NumPy's import time. Layer code writes ``np.dot(...)``
against this stand-in; the first attribute access imports NumPy and later ones go straight to
the module's attributes.
"""

from __future__ import annotations

from typing import Any


class _LazyNumpy:
    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        import numpy

        value = getattr(numpy, name)
        return value

    def __repr__(self) -> str:
        return "<numpy, imported on first use>"


np: Any = _LazyNumpy()
