"""prototxt-tools: parse, check, format and convert Caffe nets and weights.

The public API::

    doc = prototxt_tools.parse(text, path="net.prototxt")   # lossless tree
    doc.to_text() == text                                    # byte-exact when unmodified
    prototxt_tools.format_text(text)                         # canonical layout, comments kept
    net = prototxt_tools.to_message(doc)                     # caffe_pb2.NetParameter / SolverParameter
    weights = prototxt_tools.read_caffemodel("w.caffemodel")
    prototxt_tools.write_caffemodel(weights, "out.caffemodel")

Errors about input are :class:`PrototxtError` with ``path``, ``line`` and ``column``.
NumPy is imported only by the weights functions.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .errors import Diagnostic, PrototxtError
from .schema.binding import BindResult, bind, from_message, message_to_text, to_message
from .syntax.edits import TextEdit, apply_edits
from .syntax.format import format_document, format_text
from .syntax.parser import parse
from .syntax.tree import Document, Field, ListValue, Message, Position, Scalar, Span

__all__ = [
    "__version__", "BindResult", "Diagnostic", "Document", "Field", "ListValue", "Message",
    "Position", "PrototxtError", "Scalar", "Span", "TextEdit", "apply_edits", "bind",
    "format_document", "format_text", "from_message", "message_to_text", "parse",
    "read_caffemodel", "write_caffemodel", "read_binaryproto", "write_binaryproto",
    "read_weights", "to_message",
]

_WEIGHTS_API = {"read_caffemodel", "write_caffemodel", "read_binaryproto", "write_binaryproto",
                "read_weights"}


def __getattr__(name: str) -> Any:
    # The weights functions pull in NumPy; load them on first use only.
    if name in _WEIGHTS_API:
        from .schema import caffemodel

        return getattr(caffemodel, name)
    raise AttributeError(f"module 'prototxt_tools' has no attribute {name!r}")
