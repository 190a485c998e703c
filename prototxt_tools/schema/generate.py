"""Generate ``caffe_pb2.py`` from ``caffe.proto`` without protoc.

Usage::

    python -m prototxt_tools.schema.generate           # rewrite caffe_pb2.py
    python -m prototxt_tools.schema.generate --check   # exit 1 if caffe_pb2.py is stale

The parser reads the proto2 subset that ``caffe.proto`` uses (``syntax``, ``package``, comments,
nested ``message`` and ``enum``, ``optional|required|repeated`` fields with the ``default``,
``packed`` and ``deprecated`` options) and builds the same ``FileDescriptorProto`` protoc builds,
so the tests can compare the two field by field.

The module it writes differs from protoc's in two ways, both on purpose:

* no runtime-version check, so one generated file works on protobuf 3.20 through 7.x;
* the file is added to a private ``DescriptorPool``, not the default one, so it never clashes
  with a user's own pycaffe ``caffe_pb2`` (same file name, same package) in the same process.
"""

from __future__ import annotations

import argparse
import math
import re
import struct
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Optional

from google.protobuf import descriptor_pb2

from ..errors import PrototxtError
from ..fileio import atomic_write, read_text

FileDescriptorProto = descriptor_pb2.FileDescriptorProto
FieldDescriptorProto = descriptor_pb2.FieldDescriptorProto

SCHEMA_DIR = Path(__file__).resolve().parent
PROTO_PATH = SCHEMA_DIR / "caffe.proto"
MODULE_PATH = SCHEMA_DIR / "caffe_pb2.py"
MODULE_NAME = "prototxt_tools.schema.caffe_pb2"

_T = FieldDescriptorProto
SCALAR_TYPES = {
    "double": _T.TYPE_DOUBLE, "float": _T.TYPE_FLOAT,
    "int32": _T.TYPE_INT32, "int64": _T.TYPE_INT64,
    "uint32": _T.TYPE_UINT32, "uint64": _T.TYPE_UINT64,
    "sint32": _T.TYPE_SINT32, "sint64": _T.TYPE_SINT64,
    "fixed32": _T.TYPE_FIXED32, "fixed64": _T.TYPE_FIXED64,
    "sfixed32": _T.TYPE_SFIXED32, "sfixed64": _T.TYPE_SFIXED64,
    "bool": _T.TYPE_BOOL, "string": _T.TYPE_STRING, "bytes": _T.TYPE_BYTES,
}
LABELS = {
    "optional": _T.LABEL_OPTIONAL,
    "required": _T.LABEL_REQUIRED,
    "repeated": _T.LABEL_REPEATED,
}
# Inclusive (min, max) of the values an integer field's default may take.
_INT_RANGES = {
    _T.TYPE_INT32: (-(2**31), 2**31 - 1), _T.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _T.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _T.TYPE_INT64: (-(2**63), 2**63 - 1), _T.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _T.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _T.TYPE_UINT32: (0, 2**32 - 1), _T.TYPE_FIXED32: (0, 2**32 - 1),
    _T.TYPE_UINT64: (0, 2**64 - 1), _T.TYPE_FIXED64: (0, 2**64 - 1),
}
# Wire types that cannot be packed (length-delimited ones).
_UNPACKABLE = {_T.TYPE_STRING, _T.TYPE_BYTES, _T.TYPE_MESSAGE, _T.TYPE_GROUP}
_MAX_FIELD_NUMBER = 2**29 - 1
_RESERVED_FIELD_NUMBERS = range(19000, 20000)  # reserved for the protobuf implementation

_TYPE_KINDS = {"message", "enum"}
_AGGREGATE_KINDS = {"package", "message", "enum"}
_UNSUPPORTED = {"import", "option", "service", "extend", "extensions", "reserved", "oneof",
                "map", "group", "stream", "rpc", "edition"}


class ProtoError(PrototxtError):
    """A syntax or schema error in a .proto file; ``str()`` is ``file:line:col: message``."""


# --------------------------------------------------------------------------------------------
# Tokens

@dataclass(frozen=True)
class _Token:
    kind: str   # "ident", "int", "float", "string", "symbol" or "eof"
    text: str
    line: int   # 1-based
    col: int    # 1-based, in characters


_TOKEN_RE = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>//[^\n]*|/\*[\s\S]*?\*/)
  | (?P<float>(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
  | (?P<int>0[xX][0-9A-Fa-f]+|\d+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>"(?:[^"\\\n]|\\[^\n])*"|'(?:[^'\\\n]|\\[^\n])*')
  | (?P<symbol>[{}\[\]();=,.<>+-])
""", re.VERBOSE | re.ASCII)


def _tokenize(text: str) -> Iterator[_Token]:
    line, line_start, pos = 1, 0, 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        col = pos - line_start + 1
        if match is None:
            if text.startswith("/*", pos):
                message = "unterminated /* comment"
            elif text[pos] in "\"'":
                message = "unterminated string (or a newline inside it)"
            else:
                message = f"unexpected character {text[pos]!r}"
            raise ProtoError(message, None, line, col)
        kind = match.lastgroup or ""
        value = match.group()
        if kind in ("int", "float") and re.match(r"[\w.]", text[match.end():match.end() + 1]):
            # protoc refuses `1.5f` and `12abc` too, rather than splitting them.
            raise ProtoError("a number must not run into a name; put a space between",
                             None, line, col)
        if kind not in ("space", "comment"):
            yield _Token(kind, value, line, col)
        newlines = value.count("\n")
        if newlines:
            line += newlines
            line_start = match.start() + value.rindex("\n") + 1
        pos = match.end()
    yield _Token("eof", "", line, pos - line_start + 1)


# --------------------------------------------------------------------------------------------
# Literals

_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11,
                   "\\": 92, "?": 63, "'": 39, '"': 34}
_ESCAPE_RE = re.compile(r"\\(?:([0-7]{1,3})|[xX]([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{4})"
                        r"|U([0-9A-Fa-f]{8})|(.))")


def _unescape(token: _Token) -> bytes:
    """The bytes a string literal stands for, with protoc's C-style escapes."""
    body = token.text[1:-1]
    out = bytearray()
    pos = 0
    for match in _ESCAPE_RE.finditer(body):
        out += body[pos:match.start()].encode("utf-8", "surrogateescape")
        octal, hexa, u4, u8, simple = match.groups()
        if octal is not None:
            out.append(int(octal, 8) & 0xFF)
        elif hexa is not None:
            out.append(int(hexa, 16))
        elif u4 is not None or u8 is not None:
            try:
                out += chr(int(u4 or u8, 16)).encode("utf-8")
            except (ValueError, UnicodeEncodeError):
                raise ProtoError("invalid \\u or \\U escape", None, token.line,
                                 token.col + 1 + match.start()) from None
        elif simple in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[simple])
        else:
            raise ProtoError(f"invalid escape sequence \\{simple} in string literal", None,
                             token.line, token.col + 1 + match.start())
        pos = match.end()
    out += body[pos:].encode("utf-8", "surrogateescape")
    return bytes(out)


def _c_escape(data: bytes) -> str:
    """absl::CEscape, which protoc uses to write a bytes field's default."""
    named = {10: "\\n", 13: "\\r", 9: "\\t", 34: '\\"', 39: "\\'", 92: "\\\\"}
    return "".join(named.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\{b:03o}") for b in data)


def _parse_int(token: _Token) -> int:
    """An integer literal: decimal, 0x hexadecimal or 0 octal, as protoc reads them."""
    text = token.text
    if text[:2] in ("0x", "0X"):
        return int(text, 16)
    if len(text) > 1 and text[0] == "0":
        if not set(text) <= set("01234567"):
            raise ProtoError("numbers starting with 0 must be octal", None, token.line,
                             token.col)
        return int(text, 8)
    return int(text)


_FLT_MAX = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]
_FLT_MAX_PRINTED = 3.4028235e38  # FLT_MAX as printed; protoc reads up to it as FLT_MAX


def _to_float32(value: float) -> float:
    """protoc's SafeDoubleToFloat: round to float32, saturating to +-inf beyond its range."""
    if abs(value) > _FLT_MAX:
        if abs(value) <= _FLT_MAX_PRINTED:
            return math.copysign(_FLT_MAX, value)
        return math.copysign(math.inf, value)
    return struct.unpack("<f", struct.pack("<f", value))[0]


def _simple_ftoa(value: float) -> str:
    """protoc's SimpleFtoa: `%.6g` if it reads back as the same float32, else `%.9g`."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = format(value, ".6g")
    # float32(float(text)) rounds twice, unlike strtof; the two can only differ for a decimal
    # within 2**-53 of a float32 rounding midpoint, which a 6-digit decimal never is in practice.
    return text if _to_float32(float(text)) == value else format(value, ".9g")


def _simple_dtoa(value: float) -> str:
    """protoc's SimpleDtoa: `%.15g` if it reads back as the same double, else `%.17g`."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = format(value, ".15g")
    return text if float(text) == value else format(value, ".17g")


# --------------------------------------------------------------------------------------------
# Parser

@dataclass
class _Default:
    tokens: list[_Token]  # the literal's token(s); several for adjacent strings "a" "b"
    negative: bool
    at: _Token    # where the value starts, for errors


@dataclass
class _PendingField:
    """A field whose type name and default can only be settled once the whole file is read."""
    proto: FieldDescriptorProto
    scope: str    # full name of the message holding the field, e.g. "caffe.NetParameter"
    type_token: _Token
    type_name: Optional[str]  # as written, for message and enum types
    default: Optional[_Default] = None
    packed_at: Optional[_Token] = None


class _Parser:
    def __init__(self, text: str, name: str) -> None:
        self.tokens = list(_tokenize(text))
        self.pos = 0
        self.file = FileDescriptorProto(name=name)
        # Full name -> "package", "message", "enum", "field" or "enum value": protoc keeps all
        # of them in one namespace.
        self.symbols: dict[str, str] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.fields: list[_PendingField] = []

    # -- token helpers -----------------------------------------------------------------------

    @property
    def tok(self) -> _Token:
        return self.tokens[self.pos]

    def error(self, message: str, token: Optional[_Token] = None) -> ProtoError:
        token = token or self.tok
        return ProtoError(message, None, token.line, token.col)

    def at(self, text: str) -> bool:
        return self.tok.kind in ("ident", "symbol") and self.tok.text == text

    def take(self) -> _Token:
        token = self.tok
        if token.kind != "eof":
            self.pos += 1
        return token

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.take()
            return True
        return False

    def expect(self, text: str, what: Optional[str] = None) -> _Token:
        if not self.at(text):
            raise self.error(f"expected {what or repr(text)}, found {self._describe()}")
        return self.take()

    def expect_kind(self, kind: str, what: str) -> _Token:
        if self.tok.kind != kind:
            raise self.error(f"expected {what}, found {self._describe()}")
        return self.take()

    def _describe(self) -> str:
        return "end of file" if self.tok.kind == "eof" else repr(self.tok.text)

    def define(self, full_name: str, kind: str, token: _Token) -> None:
        """Enter a name in the file's one namespace; protoc rejects any duplicate."""
        if full_name in self.symbols:
            raise self.error(f'"{full_name}" is already defined', token)
        self.symbols[full_name] = kind

    # -- grammar -----------------------------------------------------------------------------

    def parse_file(self) -> FileDescriptorProto:
        if self.at("syntax"):
            self.take()
            self.expect("=")
            syntax = self.expect_kind("string", 'a string such as "proto2"')
            if _unescape(syntax) != b"proto2":
                raise self.error("only proto2 files are supported", syntax)
            self.expect(";")
            # protoc leaves FileDescriptorProto.syntax unset for proto2.
        while self.tok.kind != "eof":
            if self.accept(";"):
                continue
            if self.at("package"):
                self.parse_package()
            elif self.at("message"):
                self.take()
                self.parse_message(self.file.message_type.add(), self.file.package)
            elif self.at("enum"):
                self.take()
                self.parse_enum(self.file.enum_type.add(), self.file.package)
            else:
                self.unexpected('a top-level statement ("message", "enum" or "package")')
        return self.file

    def unexpected(self, what: str) -> NoReturn:
        if self.tok.kind == "ident" and self.tok.text in _UNSUPPORTED:
            raise self.error(f'"{self.tok.text}" is not supported by this generator')
        raise self.error(f"expected {what}, found {self._describe()}")

    def parse_package(self) -> None:
        start = self.take()
        if self.file.HasField("package"):
            raise self.error("more than one package statement", start)
        if self.file.message_type or self.file.enum_type:
            # Names defined so far were made without the package; protoc's layout rule anyway.
            raise self.error("the package statement must come before messages and enums", start)
        self.file.package = self.parse_dotted_name()
        if self.file.package.startswith("."):
            raise self.error("a package name cannot start with '.'", start)
        parts = self.file.package.split(".")
        for i in range(1, len(parts) + 1):
            self.symbols.setdefault(".".join(parts[:i]), "package")
        self.expect(";")

    def parse_dotted_name(self) -> str:
        name = "." if self.accept(".") else ""
        name += self.expect_kind("ident", "a name").text
        while self.accept("."):
            name += "." + self.expect_kind("ident", "a name").text
        return name

    def parse_message(self, message: descriptor_pb2.DescriptorProto, scope: str) -> None:
        name = self.expect_kind("ident", "a message name")
        message.name = name.text
        full_name = f"{scope}.{name.text}" if scope else name.text
        self.define(full_name, "message", name)
        self.expect("{")
        numbers: dict[int, str] = {}
        while not self.accept("}"):
            if self.tok.kind == "eof":
                raise self.error("end of file inside message (missing '}')")
            if self.accept(";"):
                continue
            if self.at("message"):
                self.take()
                self.parse_message(message.nested_type.add(), full_name)
            elif self.at("enum"):
                self.take()
                self.parse_enum(message.enum_type.add(), full_name)
            elif self.tok.kind == "ident" and self.tok.text in LABELS:
                self.parse_field(message.field.add(), full_name, numbers)
            else:
                self.unexpected('"optional", "required", "repeated", "message" or "enum"')

    def parse_field(self, proto: FieldDescriptorProto, scope: str,
                    numbers: dict[int, str]) -> None:
        proto.label = LABELS[self.take().text]
        type_token = self.tok
        if type_token.kind == "ident" and type_token.text in ("group", "map"):
            self.unexpected("a field type")
        type_name = self.parse_dotted_name()
        pending = _PendingField(proto, scope, type_token, None)
        if type_name in SCALAR_TYPES:
            proto.type = SCALAR_TYPES[type_name]
        else:
            pending.type_name = type_name
        name = self.expect_kind("ident", "a field name")
        proto.name = name.text
        self.define(f"{scope}.{name.text}", "field", name)
        self.expect("=")
        number_token = self.expect_kind("int", "a field number")
        number = _parse_int(number_token)
        if not 1 <= number <= _MAX_FIELD_NUMBER:
            raise self.error(f"field numbers must be 1 to {_MAX_FIELD_NUMBER}", number_token)
        if number in _RESERVED_FIELD_NUMBERS:
            raise self.error("field numbers 19000 to 19999 are reserved for protobuf",
                             number_token)
        if number in numbers:
            raise self.error(f'field number {number} is already used by "{numbers[number]}"',
                             number_token)
        numbers[number] = name.text
        proto.number = number
        if self.accept("["):
            seen: set[str] = set()
            self.parse_field_option(pending, seen)
            while self.accept(","):
                self.parse_field_option(pending, seen)
            self.expect("]")
        self.expect(";")
        self.fields.append(pending)

    def parse_field_option(self, pending: _PendingField, seen: set[str]) -> None:
        option = self.expect_kind("ident", "an option name")
        if option.text not in ("default", "packed", "deprecated"):
            raise self.error(f'option "{option.text}" is not supported by this generator',
                             option)
        if option.text in seen:
            raise self.error(f'option "{option.text}" is set twice', option)
        seen.add(option.text)
        self.expect("=")
        if option.text == "default":
            pending.default = self.parse_default()
        elif option.text == "packed":
            pending.proto.options.packed = self.parse_bool()
            pending.packed_at = option
        else:
            pending.proto.options.deprecated = self.parse_bool()

    def parse_default(self) -> _Default:
        at = self.tok
        negative = self.accept("-")
        if self.tok.kind == "string" and not negative:
            tokens = [self.take()]
            while self.tok.kind == "string":  # protoc joins adjacent literals, as C does
                tokens.append(self.take())
            return _Default(tokens, negative, at)
        if self.tok.kind in ("int", "float", "ident"):
            return _Default([self.take()], negative, at)
        raise self.error(f"expected a default value, found {self._describe()}")

    def parse_bool(self) -> bool:
        token = self.tok
        if token.kind == "ident" and token.text in ("true", "false"):
            self.take()
            return token.text == "true"
        raise self.error(f"expected true or false, found {self._describe()}")

    def parse_enum(self, enum: descriptor_pb2.EnumDescriptorProto, scope: str) -> None:
        name = self.expect_kind("ident", "an enum name")
        enum.name = name.text
        full_name = f"{scope}.{name.text}" if scope else name.text
        self.define(full_name, "enum", name)
        self.enums[full_name] = enum
        self.expect("{")
        numbers: dict[int, str] = {}
        while not self.accept("}"):
            if self.tok.kind == "eof":
                raise self.error("end of file inside enum (missing '}')")
            if self.accept(";"):
                continue
            if self.tok.kind != "ident" or self.tok.text in ("option", "reserved"):
                self.unexpected("an enum value name")
            value_name = self.take()
            # Enum values are siblings of their enum (C++ scoping), not children of it.
            self.define(f"{scope}.{value_name.text}" if scope else value_name.text,
                        "enum value", value_name)
            self.expect("=")
            negative = self.accept("-")
            number_token = self.expect_kind("int", "an enum value number")
            number = -_parse_int(number_token) if negative else _parse_int(number_token)
            if not -(2**31) <= number < 2**31:
                raise self.error("enum values must fit in int32", number_token)
            if number in numbers:
                # protoc allows this only with `option allow_alias = true;`.
                raise self.error(f'"{value_name.text}" reuses the number {number} of '
                                 f'"{numbers[number]}"', number_token)
            numbers[number] = value_name.text
            enum.value.add(name=value_name.text, number=number)
            self.expect(";")
        if not enum.value:
            raise self.error(f'enum "{enum.name}" must have at least one value', name)

    # -- second pass: types and defaults -----------------------------------------------------

    def resolve(self) -> None:
        for pending in self.fields:
            proto = pending.proto
            if pending.type_name is not None:
                full_name = self.lookup_type(pending)
                proto.type_name = "." + full_name
                kind = self.symbols[full_name]
                proto.type = _T.TYPE_MESSAGE if kind == "message" else _T.TYPE_ENUM
            if pending.default is not None:
                proto.default_value = self.default_string(pending)
            if proto.options.packed and (
                    proto.label != _T.LABEL_REPEATED or proto.type in _UNPACKABLE):
                raise self.error("[packed = true] needs a repeated field of a numeric, bool "
                                 "or enum type", pending.packed_at)

    def lookup_type(self, pending: _PendingField) -> str:
        """Resolve a type name as protoc does: innermost scope first, then outward."""
        name = pending.type_name
        assert name is not None
        if name.startswith("."):
            found: Optional[str] = name[1:]
        else:
            found = None
            first, _, rest = name.partition(".")
            scope = pending.scope.split(".")
            for depth in range(len(scope), -1, -1):
                candidate = ".".join(scope[:depth] + [first])
                kind = self.symbols.get(candidate)
                if kind is None:
                    continue
                if rest:
                    # The first part decides: if it names a message, enum or package, the
                    # rest must be inside it; protoc does not look further out.
                    if kind in _AGGREGATE_KINDS:
                        found = f"{candidate}.{rest}"
                        break
                elif kind in _TYPE_KINDS:
                    found = candidate
                    break
        if found is None or found not in self.symbols:
            raise self.error(f'"{name}" is not defined', pending.type_token)
        if self.symbols[found] not in _TYPE_KINDS:
            raise self.error(f'"{name}" is not a message or enum type', pending.type_token)
        return found

    def default_string(self, pending: _PendingField) -> str:
        """The default as protoc's FieldDescriptor::DefaultValueAsString() writes it."""
        proto, default = pending.proto, pending.default
        assert default is not None
        token = default.tokens[0]
        kind, text = token.kind, token.text
        if proto.label == _T.LABEL_REPEATED:
            raise self.error("repeated fields cannot have default values", default.at)
        if proto.type == _T.TYPE_MESSAGE:
            raise self.error("message fields cannot have default values", default.at)
        if proto.type == _T.TYPE_ENUM:
            enum = self.enums[proto.type_name[1:]]
            if default.negative or kind != "ident":
                raise self.error("expected an enum value name", default.at)
            if text not in {value.name for value in enum.value}:
                raise self.error(f'enum "{enum.name}" has no value named "{text}"', token)
            return text
        if proto.type in (_T.TYPE_STRING, _T.TYPE_BYTES):
            if kind != "string":
                raise self.error("expected a string", default.at)
            data = b"".join(_unescape(t) for t in default.tokens)
            if proto.type == _T.TYPE_BYTES:
                return _c_escape(data)
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                raise self.error("a string default must be valid UTF-8", token) from None
        if proto.type == _T.TYPE_BOOL:
            if default.negative or kind != "ident" or text not in ("true", "false"):
                raise self.error("expected true or false", default.at)
            return text
        if proto.type in (_T.TYPE_FLOAT, _T.TYPE_DOUBLE):
            value = self.float_value(token)
            value = -value if default.negative else value
            if proto.type == _T.TYPE_FLOAT:
                return _simple_ftoa(_to_float32(value))
            return _simple_dtoa(value)
        # Integer types: protoc checks the range and rewrites hex and octal in decimal.
        if kind != "int":
            raise self.error("expected an integer", default.at)
        value = _parse_int(token)
        value = -value if default.negative else value
        low, high = _INT_RANGES[proto.type]
        if not low <= value <= high:
            raise self.error(f"default {value} is out of range for this field's type",
                             default.at)
        return str(value)

    def float_value(self, token: _Token) -> float:
        if token.kind == "float":
            return float(token.text)
        if token.kind == "ident" and token.text in ("inf", "nan"):
            return float(token.text)
        if token.kind == "int":
            value = _parse_int(token)
            if value < 2**64:
                return float(value)
            if token.text[0] != "0":
                return float(token.text)  # protoc reads a huge decimal integer as a float
            raise self.error("integer out of range", token)
        raise self.error("expected a number", token)


def parse_proto(text: str, *, name: str = "caffe.proto") -> FileDescriptorProto:
    """Parse proto2 source into the FileDescriptorProto protoc would build for it.

    Raises :class:`ProtoError` (``<input>:line:col: message``) on a syntax or schema error.
    """
    parser = _Parser(text, name)
    parser.parse_file()
    parser.resolve()
    return parser.file


# --------------------------------------------------------------------------------------------
# Module rendering

_MODULE_TEMPLATE = '''\
# Generated by prototxt_tools.schema.generate from {source}. Do not edit.
# Regenerate with: python -m prototxt_tools.schema.generate
"""Caffe's protobuf message classes, from prototxt_tools/schema/{source}.

The schema sits in a private descriptor pool, so that a pycaffe caffe_pb2
(same file name, same package) can be imported in the same process.
"""
from google.protobuf import descriptor_pool as _descriptor_pool
from google.protobuf import message as _message
from google.protobuf import reflection as _reflection
from google.protobuf.internal import builder as _builder
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper

_POOL = _descriptor_pool.DescriptorPool()
DESCRIPTOR = _POOL.AddSerializedFile(
{literal}
)
_builder.BuildMessageAndEnumDescriptors(DESCRIPTOR, globals())


# Below is _builder.BuildTopDescriptorsAndMessages without its registration in
# the default symbol database: under the pure-Python protobuf runtime (the only
# one protobuf 3.20 has on Python 3.11+) that registration copies every
# descriptor into the default pool, where it would shadow pycaffe's caffe_pb2.
def _message_class(descriptor, qualname):
    attributes = {{
        "DESCRIPTOR": descriptor,
        "__module__": "{module}",
        "__qualname__": qualname,
    }}
    for nested in descriptor.nested_types:
        attributes[nested.name] = _message_class(
            nested, qualname + "." + nested.name
        )
    return _reflection.GeneratedProtocolMessageType(
        descriptor.name, (_message.Message,), attributes
    )


def _build_top_level(namespace):
    for enum in DESCRIPTOR.enum_types_by_name.values():
        namespace["_" + enum.name.upper()] = enum
        namespace[enum.name] = _enum_type_wrapper.EnumTypeWrapper(enum)
        for value in enum.values:
            namespace[value.name] = value.number
    for message in DESCRIPTOR.message_types_by_name.values():
        namespace[message.name] = _message_class(message, message.name)


_build_top_level(globals())
'''

_BYTE_ESCAPES = {9: "\\t", 10: "\\n", 13: "\\r", 39: "\\'", 92: "\\\\"}


def _bytes_literal(data: bytes, indent: str = "    ", width: int = 79) -> str:
    """`data` as adjacent b'...' literals, one per line, each line at most `width` long."""
    room = width - len(indent) - len("b''")
    lines: list[str] = []
    chunk: list[str] = []
    size = 0
    for byte in data:
        piece = _BYTE_ESCAPES.get(byte) or (chr(byte) if 0x20 <= byte < 0x7F
                                            else f"\\x{byte:02x}")
        if size + len(piece) > room:
            lines.append(f"{indent}b'{''.join(chunk)}'")
            chunk, size = [], 0
        chunk.append(piece)
        size += len(piece)
    lines.append(f"{indent}b'{''.join(chunk)}'")
    return "\n".join(lines)


def render_module(fdp: FileDescriptorProto, module: str = MODULE_NAME) -> str:
    """Python source of a ``caffe_pb2``-style module for ``fdp`` (deterministic)."""
    data = fdp.SerializeToString(deterministic=True)
    return _MODULE_TEMPLATE.format(source=fdp.name, literal=_bytes_literal(data), module=module)


# --------------------------------------------------------------------------------------------
# Command line

def generate(proto_path: Path = PROTO_PATH) -> str:
    """Parse ``proto_path`` and render the module text."""
    try:
        fdp = parse_proto(read_text(proto_path), name=proto_path.name)
    except PrototxtError as exc:
        raise exc.with_path(str(proto_path)) from None
    return render_module(fdp)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Rewrite caffe_pb2.py from caffe.proto, or with --check report whether it is stale."""
    parser = argparse.ArgumentParser(
        prog="python -m prototxt_tools.schema.generate",
        description="Generate caffe_pb2.py from caffe.proto (no protoc needed).")
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the generated module is out of date")
    parser.add_argument("--proto", type=Path, default=PROTO_PATH,
                        help="the schema to read (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=MODULE_PATH,
                        help="the module to write or check (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        text = generate(args.proto)
    except PrototxtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        try:
            current = args.output.read_text(encoding="utf-8")
        except OSError:
            current = None
        if current != text:
            print(f"{args.output} is stale; run: python -m prototxt_tools.schema.generate",
                  file=sys.stderr)
            return 1
        return 0
    try:
        atomic_write(args.output, text)  # a temporary file, then os.replace
    except PrototxtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
