"""prototxt-tools: parse, check, format and convert Caffe nets and weights.

The public API::

    doc = prototxt_tools.parse(text, path="net.prototxt")   # lossless tree
    doc.to_text() == text                                    # byte-exact when unmodified
    prototxt_tools.format_text(text)                         # canonical layout, comments kept
    net = prototxt_tools.to_message(doc)                     # NetParameter or SolverParameter
    weights = prototxt_tools.read_caffemodel("w.caffemodel")
    prototxt_tools.write_caffemodel(weights, "out.caffemodel")

Errors about input are :class:`PrototxtError` with ``path``, ``line`` and ``column``.
NumPy is imported only by the weights functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import Diagnostic, PrototxtError

__all__ = [
    "__version__", "BindResult", "Diagnostic", "Document", "Field", "ListValue", "Message",
    "Position", "PrototxtError", "Scalar", "Span", "TextEdit", "apply_edits", "bind",
    "format_document", "format_text", "from_message", "message_to_text", "parse",
    "read_caffemodel", "write_caffemodel", "read_binaryproto", "write_binaryproto",
    "read_weights", "write_weights", "to_message", "Executor", "init_weights", "register_layer",
]

# Everything else loads on first use, so that `prototxt check` starts fast, the schema names
# (which need the generated module) do not load before the schema generator runs, and NumPy
# is imported only by the weights functions.
_LAZY = {
    "parse": "syntax.parser",
    "Document": "syntax.tree", "Field": "syntax.tree", "ListValue": "syntax.tree",
    "Message": "syntax.tree", "Position": "syntax.tree", "Scalar": "syntax.tree",
    "Span": "syntax.tree",
    "format_document": "syntax.format", "format_text": "syntax.format",
    "TextEdit": "syntax.edits", "apply_edits": "syntax.edits",
    "BindResult": "schema.binding", "bind": "schema.binding", "from_message": "schema.binding",
    "message_to_text": "schema.binding", "to_message": "schema.binding",
    "read_caffemodel": "schema.caffemodel", "write_caffemodel": "schema.caffemodel",
    "read_binaryproto": "schema.caffemodel", "write_binaryproto": "schema.caffemodel",
    "read_weights": "schema.caffemodel", "write_weights": "schema.caffemodel",
    "Executor": "run.executor", "init_weights": "run.fillers", "register_layer": "run.plugins",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on demand
    from .schema.binding import BindResult, bind, from_message, message_to_text, to_message
    from .schema.caffemodel import (
        read_binaryproto, read_caffemodel, read_weights, write_binaryproto, write_caffemodel,
        write_weights,
    )
    from .syntax.edits import TextEdit, apply_edits
    from .syntax.format import format_document, format_text
    from .syntax.parser import parse
    from .syntax.tree import Document, Field, ListValue, Message, Position, Scalar, Span
    from .run.executor import Executor
    from .run.fillers import init_weights
    from .run.plugins import register_layer


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'prototxt_tools' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
