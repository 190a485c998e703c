"""Binding the syntax tree to Caffe's messages, and printing messages back as text.

``bind`` reads a :class:`~prototxt_tools.syntax.tree.Document` into a ``NetParameter`` or
``SolverParameter`` the way protobuf's text parser would, but it never stops at the first
problem and it says where each one is: unknown fields (with a did-you-mean), values of the wrong
type, unknown enum values, integers out of range, singular fields given twice, bad string
escapes. A Caffe fork's own ``*_param`` block is a warning and the rest of the file still binds.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Callable, Optional, Union

from .._gc import gc_paused
from ..errors import ERROR, WARNING, Diagnostic, PrototxtError
from ..syntax.format import Line, render_lines
from ..syntax.tree import QUOTES, Document, Field, ListValue, Message, Node, Scalar
from ..syntax.values import (
    FALSE_WORDS, FLOAT32_MAX, INT32, INT64, TRUE_WORDS, UINT32, UINT64, EscapeError,
    escape_bytes, is_float_word, parse_float, parse_int, shortest_float32_repr,
    shortest_float64_repr, string_literal_bytes,
)
from . import caffe_pb2
from .forks import KNOWN_FORK_FIELDS, KNOWN_FORK_PARAMS

NET = "net"
SOLVER = "solver"

_INVALID = object()  # a conversion that failed (its diagnostic is already recorded)


class BindResult:
    """The message read from a document and every diagnostic found on the way."""

    __slots__ = ("message", "diagnostics")

    def __init__(self, message: Any, diagnostics: list[Diagnostic]):
        self.message = message
        self.diagnostics = diagnostics

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors


# -- which message a file holds ----------------------------------------------------------------

def _field_names(message_class: Any) -> frozenset:
    return frozenset(message_class.DESCRIPTOR.fields_by_name)


_NET_FIELDS = _field_names(caffe_pb2.NetParameter)
_SOLVER_FIELDS = _field_names(caffe_pb2.SolverParameter)
_NET_ONLY = _NET_FIELDS - _SOLVER_FIELDS
_SOLVER_ONLY = _SOLVER_FIELDS - _NET_FIELDS


def detect_kind(document: Document) -> str:
    """``"solver"`` when the top-level fields are mostly SolverParameter's, else ``"net"``."""
    net = solver = 0
    for field in document.fields:
        name = field.name
        if name in _NET_ONLY:
            net += 1
        elif name in _SOLVER_ONLY:
            solver += 1
    return SOLVER if solver > net else NET


def message_class_for(kind: Union[str, Any]) -> Any:
    if kind == NET:
        return caffe_pb2.NetParameter
    if kind == SOLVER:
        return caffe_pb2.SolverParameter
    if isinstance(kind, str):
        found = getattr(caffe_pb2, kind, None)
        if found is None or not hasattr(found, "DESCRIPTOR"):
            raise ValueError(f"unknown message type {kind!r}")
        return found
    return kind


# -- field tables ------------------------------------------------------------------------------

def is_repeated(field: Any) -> bool:
    flag = getattr(field, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return field.label == field.LABEL_REPEATED  # protobuf < 5


class _FieldInfo:
    __slots__ = ("descriptor", "name", "repeated", "is_message", "type_name", "fast")

    def __init__(self, descriptor: Any):
        self.descriptor = descriptor
        self.name = descriptor.name
        self.repeated = is_repeated(descriptor)
        self.is_message = descriptor.type == descriptor.TYPE_MESSAGE
        self.type_name = _type_name(descriptor)
        self.fast: Optional[Callable[[Scalar], Any]] = _fast_converter(descriptor)


# Fast paths for the common spellings (one plain token); anything else returns _SLOW and takes
# the general path in _Binder.convert, which also explains what is wrong.
_SLOW = object()
_DIGITS = frozenset("0123456789.")


def _fast_converter(descriptor: Any) -> Optional[Callable[[Scalar], Any]]:
    field_type = descriptor.type
    if field_type in (9, 12):
        as_bytes = field_type == 12

        def string(node: Scalar) -> Any:
            if node.stop - node.start == 1:
                literal = node.document._texts[node.start]
                if literal[:1] in QUOTES and "\\" not in literal:
                    value = literal[1:-1]
                    if value.isascii():
                        return value.encode() if as_bytes else value
            return _SLOW
        return string
    if field_type in (1, 2):
        limit = FLOAT32_MAX if field_type == 2 else float("inf")

        def number(node: Scalar) -> Any:
            if node.stop - node.start == 1:
                text = node.document._texts[node.start]
                first = text[:1]
                # A leading 0 may mean octal (C++ reads "017" as 15), so leave those to parse_float.
                if first in _DIGITS and (first != "0" or len(text) == 1 or text[1] in ".eE"):
                    try:
                        value = float(text)
                    except ValueError:
                        return _SLOW
                    if value <= limit:
                        return value
            return _SLOW
        return number
    if field_type in _INT_RANGES:
        high = _INT_RANGES[field_type][1]

        def integer(node: Scalar) -> Any:
            if node.stop - node.start == 1:
                text = node.document._texts[node.start]
                if text.isdigit() and (text[0] != "0" or len(text) == 1):
                    value = int(text)
                    if value <= high:
                        return value
            return _SLOW
        return integer
    if field_type == 8:
        def boolean(node: Scalar) -> Any:
            if node.stop - node.start == 1:
                text = node.document._texts[node.start]
                if text in TRUE_WORDS:
                    return True
                if text in FALSE_WORDS:
                    return False
            return _SLOW
        return boolean
    if field_type == 14:
        numbers = {v.name: v.number for v in descriptor.enum_type.values}

        def enum(node: Scalar) -> Any:
            if node.stop - node.start == 1:
                found = numbers.get(node.document._texts[node.start])
                if found is not None:
                    return found
            return _SLOW
        return enum
    return None


_TYPE_NAMES = {1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64",
               7: "fixed32", 8: "bool", 9: "string", 12: "bytes", 13: "uint32", 15: "sfixed32",
               16: "sfixed64", 17: "sint32", 18: "sint64"}
_INT_RANGES = {3: INT64, 4: UINT64, 5: INT32, 6: UINT64, 7: UINT32, 13: UINT32, 15: INT32,
               16: INT64, 17: INT32, 18: INT64}


def _type_name(descriptor: Any) -> str:
    if descriptor.type == descriptor.TYPE_ENUM:
        return f"enum {descriptor.enum_type.name}"
    if descriptor.type == descriptor.TYPE_MESSAGE:
        return descriptor.message_type.name
    return _TYPE_NAMES.get(descriptor.type, "value")


_TABLES: dict[str, dict[str, _FieldInfo]] = {}


def _table(descriptor: Any) -> dict[str, _FieldInfo]:
    table = _TABLES.get(descriptor.full_name)
    if table is None:
        table = {f.name: _FieldInfo(f) for f in descriptor.fields}
        _TABLES[descriptor.full_name] = table
    return table


# -- the binder --------------------------------------------------------------------------------

def bind(document: Document, kind: Union[str, Any, None] = None) -> BindResult:
    """Read ``document`` into a message; ``kind`` is "net", "solver", a message class, or None
    to decide from the fields present."""
    message_class = message_class_for(kind if kind is not None else detect_kind(document))
    message = message_class()
    binder = _Binder(document)
    with gc_paused():
        binder.fields(document.fields, message)
    return BindResult(message, binder.diagnostics)


def to_message(document: Document, kind: Union[str, Any, None] = None) -> Any:
    """Like :func:`bind` but raises :class:`PrototxtError` if there is any error."""
    result = bind(document, kind)
    if not result.ok:
        raise PrototxtError.from_diagnostics(result.errors)
    return result.message


class _Binder:
    def __init__(self, document: Document):
        self.document = document
        self.diagnostics: list[Diagnostic] = []

    # -- diagnostics
    def report(self, code: str, node: Node, message: str, severity: str = ERROR,
               at_offset: int = 0) -> None:
        doc = self.document
        start = doc.position(doc.token_offset(node.start) + at_offset)
        end = doc.position(doc.token_end(node.stop - 1))
        self.diagnostics.append(Diagnostic(message, doc.path, start.line, start.column, severity,
                                           start.offset, end.line, end.column, code))

    def where(self, node: Node) -> str:
        line, column, _ = self.document.token_position(node.start)
        return f"line {line}, column {column}"

    # -- structure
    def fields(self, fields: list[Field], message: Any) -> None:
        descriptor = message.DESCRIPTOR
        table = _table(descriptor)
        seen: dict[str, Field] = {}
        pending: dict[str, list] = {}
        for field in fields:
            name = field.name
            info = table.get(name)
            if info is None:
                self.unknown_field(field, descriptor)
                continue
            value = field.value
            value_type = type(value)
            if info.repeated:
                if info.is_message:
                    container = getattr(message, name)
                    if value_type is Message:
                        self.fields(value.fields, container.add())
                    elif value_type is ListValue:
                        for item in value.items:
                            if type(item) is Message:
                                self.fields(item.fields, container.add())
                            else:
                                self.report("S003", item,
                                            f"'{name}' holds {info.type_name} messages; "
                                            f"expected '{{' in the list")
                    else:
                        self.report("S003", value, f"'{name}' is a {info.type_name} message; "
                                           f"expected '{name} {{ ... }}'")
                    continue
                if value_type is Scalar:
                    converted = self.convert(info, value)
                    if converted is not _INVALID:
                        pending.setdefault(name, []).append(converted)
                elif value_type is ListValue:
                    if not field.colon:
                        self.report("S003", value,
                                    f"expected ':' between '{name}' and its list of values")
                    values = pending.setdefault(name, [])
                    for item in value.items:
                        if type(item) is Scalar:
                            converted = self.convert(info, item)
                            if converted is not _INVALID:
                                values.append(converted)
                        else:
                            self.report("S003", item, f"'{name}' takes {info.type_name} values, "
                                              f"not messages")
                else:
                    self.report("S003", value,
                                f"'{name}' takes a {info.type_name} value, not a block")
                continue
            first = seen.get(name)
            if first is not None:
                self.report("S006", field,
                            f"'{name}' is given twice (first at {self.where(first)}); "
                            f"it is not a repeated field")
                continue
            seen[name] = field
            if value_type is ListValue:
                self.report("S003", value,
                            f"'{name}' is not a repeated field; a list is not allowed")
            elif info.is_message:
                if value_type is Message:
                    sub = getattr(message, name)
                    sub.SetInParent()
                    self.fields(value.fields, sub)
                else:
                    self.report("S003", value, f"'{name}' is a {info.type_name} message; "
                                       f"expected '{name} {{ ... }}'")
            elif value_type is Scalar:
                converted = self.convert(info, value)
                if converted is not _INVALID:
                    setattr(message, name, converted)
            else:
                self.report("S003", value, f"'{name}' takes a {info.type_name} value, not a block")
        for name, values in pending.items():
            if values:
                getattr(message, name).extend(values)

    def unknown_field(self, field: Field, descriptor: Any) -> None:
        name = field.name
        known = list(descriptor.fields_by_name)
        owner = descriptor.name
        fork_field = KNOWN_FORK_FIELDS.get((owner, name))
        if fork_field is not None:
            severity, explanation = fork_field
            self.report("S010", field, explanation, severity)
            return
        if name.endswith("_param") and type(field.value) is not Scalar:
            fork = KNOWN_FORK_PARAMS.get(name)
            if fork is not None:
                self.report("S009", field, f"'{name}' belongs to {fork}, not BVLC Caffe; ignored",
                            WARNING)
                return
            close = _close_names(name, known, strict=True)
            if not close:
                self.report("S009", field, f"'{name}' is not a {owner} field (a Caffe fork's "
                                   f"parameters?); ignored", WARNING)
                return
        suggestion = _close_names(name, known)
        hint = f"; did you mean '{suggestion[0]}'?" if suggestion else ""
        self.report("S002", field, f"unknown field '{name}' in {owner}{hint}")

    # -- scalars
    def convert(self, info: _FieldInfo, node: Scalar) -> Any:
        fast = info.fast
        if fast is not None:
            value = fast(node)
            if value is not _SLOW:
                return value
        kind = node.kind
        if kind == "template":
            self.report("S008", node,
                        f"template placeholder {node.body} must be substituted before "
                        f"'{info.name}' can be read")
            return _INVALID
        field_type = info.descriptor.type
        name = info.name
        if field_type in _INT_RANGES:
            if kind != "number":
                return self.wrong_type(info, node, "an integer")
            try:
                value = parse_int(node.body, node.negative)
            except ValueError:
                return self.wrong_type(info, node, "an integer")
            low, high = _INT_RANGES[field_type]
            if not low <= value <= high:
                self.report("S005", node, f"{value} is out of range for '{name}' "
                                  f"({info.type_name}: {low}..{high})")
                return _INVALID
            return value
        if field_type == 2 or field_type == 1:  # float, double
            body = node.body
            if kind == "number" or (kind == "identifier" and is_float_word(body)):
                try:
                    value = parse_float(body, node.negative)
                except ValueError:
                    return self.wrong_type(info, node, "a number")
                if field_type == 2 and math.isfinite(value) and abs(value) > FLOAT32_MAX:
                    self.report("S011", node, f"{node.text} does not fit in a float32 and becomes "
                                      f"infinity in '{name}'", WARNING)
                return value
            return self.wrong_type(info, node, "a number")
        if field_type == 8:  # bool
            body = node.body
            if not node.negative:
                if kind == "identifier":
                    if body in TRUE_WORDS:
                        return True
                    if body in FALSE_WORDS:
                        return False
                elif kind == "number" and body in ("0", "1"):
                    return body == "1"
            return self.wrong_type(info, node, "true or false")
        if field_type == 14:  # enum
            return self.convert_enum(info, node)
        # string and bytes
        if kind != "string":
            if kind == "identifier" and not node.negative:
                self.report("S003", node, f"'{name}' takes a quoted string; write \"{node.body}\"")
                return _INVALID
            return self.wrong_type(info, node, "a quoted string")
        data = self.string_bytes(node)
        if data is None:
            return _INVALID
        if field_type == 12:
            return data
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            self.report("S007", node, f"'{name}' must be valid UTF-8 text")
            return _INVALID

    def string_bytes(self, node: Scalar) -> Optional[bytes]:
        doc = self.document
        parts = []
        for index in range(node.start, node.stop):
            literal = doc._texts[index]
            try:
                parts.append(string_literal_bytes(literal))
            except EscapeError as exc:
                offset = doc.token_offset(index) - doc.token_offset(node.start) + exc.offset
                self.report("S007", node, str(exc), ERROR, at_offset=offset)
                return None
        return b"".join(parts)

    def convert_enum(self, info: _FieldInfo, node: Scalar) -> Any:
        enum = info.descriptor.enum_type
        kind = node.kind
        names = [v.name for v in enum.values]
        if kind == "identifier" and not node.negative:
            value = enum.values_by_name.get(node.body)
            if value is not None:
                return value.number
            close = _close_names(node.body, names) or _close_names(node.body.upper(), names)
            hint = f"did you mean '{close[0]}'? " if close else ""
            self.report("S004", node,
                        f"unknown value '{node.body}' for '{info.name}' ({enum.name}); "
                        f"{hint}expected one of {', '.join(names)}")
            return _INVALID
        if kind == "number":
            try:
                number = parse_int(node.body, node.negative)
            except ValueError:
                return self.wrong_type(info, node, f"one of {', '.join(names)}")
            if number in enum.values_by_number:
                return number
            choices = ", ".join(f"{v.name}={v.number}" for v in enum.values)
            self.report("S004", node, f"{number} is not a value of {enum.name} for '{info.name}' "
                              f"(expected one of {choices})")
            return _INVALID
        return self.wrong_type(info, node, f"one of {', '.join(names)}")

    def wrong_type(self, info: _FieldInfo, node: Scalar, expected: str) -> Any:
        self.report("S003", node, f"'{info.name}' takes {expected} ({info.type_name}), "
                          f"found {_describe(node)}")
        return _INVALID


def _describe(node: Scalar) -> str:
    text = node.text
    if len(text) > 40:
        text = text[:37] + "..."
    return text


def _close_names(name: str, candidates: list[str], strict: bool = False) -> list[str]:
    """Likely intended names. ``strict`` (for fork blocks) accepts only near-identical ones."""
    if strict:
        return [c for c in candidates if _edit_distance(name, c) <= 1]
    return difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


# -- messages back to text ---------------------------------------------------------------------

def message_to_text(message: Any, indent: str = "  ") -> str:
    """Canonical prototxt text for a message: fields in schema order, our formatter's layout.

    Floats print as the shortest decimal that reads back to the same float32.
    """
    lines: list[Line] = []
    layout_message(message, 0, (), lines, {})
    return "".join(text + "\n" for text in render_lines(lines, indent))


def layout_message(message: Any, depth: int, path: tuple, lines: list, index: dict) -> None:
    """Append the lines printing ``message`` (fields in schema order) to ``lines``, and record
    in ``index`` the (first, last) lines of each field by its path, a tuple of
    (field name, occurrence) pairs, so comments can be placed on them."""
    for info in _table(message.DESCRIPTOR).values():
        name = info.name
        if info.repeated:
            values = getattr(message, name)
            if not len(values):
                continue
        elif message.HasField(name):
            values = (getattr(message, name),)
        else:
            continue
        for position, value in enumerate(values):
            key = path + ((name, position),)
            if info.is_message:
                opening = Line(depth, f"{name} {{", "open")
                lines.append(opening)
                layout_message(value, depth + 1, key, lines, index)
                closing = Line(depth, "}", "close")
                lines.append(closing)
                index[key] = (opening, closing)
            else:
                line = Line(depth, f"{name}: {scalar_to_text(info.descriptor, value)}", "field")
                lines.append(line)
                index[key] = (line, line)


def scalar_to_text(descriptor: Any, value: Any) -> str:
    """The canonical text of one scalar value of a field."""
    field_type = descriptor.type
    if field_type == 2:
        return shortest_float32_repr(value)
    if field_type == 1:
        return shortest_float64_repr(value)
    if field_type == 8:
        return "true" if value else "false"
    if field_type == 14:
        found = descriptor.enum_type.values_by_number.get(value)
        return found.name if found is not None else str(value)
    if field_type == 9:
        return escape_bytes(value.encode("utf-8", "surrogateescape"))
    if field_type == 12:
        return escape_bytes(value)
    return str(value)


def from_message(message: Any, path: Optional[str] = None) -> Document:
    """A :class:`Document` holding the canonical text of ``message``."""
    from ..syntax.parser import parse

    return parse(message_to_text(message), path)
