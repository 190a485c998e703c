"""Reading scalar tokens as values, the way protobuf's text format reads them.

These functions take token text and raise :class:`ValueError` with a short reason; callers turn
that into a ``file:line:col`` error. ``offset`` on :class:`EscapeError` locates a bad escape
inside a string literal.
"""

from __future__ import annotations

import math
import re
import struct

_SIMPLE_ESCAPES = {
    "a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11,
    "\\": 92, "'": 39, '"': 34, "?": 63,
}
_ESCAPE = re.compile(
    r"\\(?:([0-7]{1,3})|[xX]([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))",
    re.DOTALL)
_INT = re.compile(r"0[xX][0-9A-Fa-f]+|0[0-7]*|[1-9][0-9]*")
_FLOAT_WORD = re.compile(r"(?i)(inf(?:inity)?|nan)f?")
TRUE_WORDS = frozenset({"true", "True", "t"})
FALSE_WORDS = frozenset({"false", "False", "f"})

INT32 = (-(2**31), 2**31 - 1)
UINT32 = (0, 2**32 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT64 = (0, 2**64 - 1)
FLOAT32_MAX = 3.4028234663852886e38


class EscapeError(ValueError):
    """A bad escape sequence; ``offset`` is its position within the literal (quotes included)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def string_literal_bytes(literal: str) -> bytes:
    """The bytes of one quoted literal (``"..."`` or ``'...'``), escapes decoded.

    Characters outside escapes are UTF-8 encoded; stray bytes that were decoded with
    ``surrogateescape`` come back as the original bytes.
    """
    body = literal[1:-1]
    if "\\" not in body:
        return body.encode("utf-8", "surrogateescape")
    out = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(body):
        out += body[pos:match.start()].encode("utf-8", "surrogateescape")
        octal, hexa, u4, u8, other = match.groups()
        if octal is not None:
            value = int(octal, 8)
            if value > 255:
                raise EscapeError(f"octal escape '\\{octal}' is above \\377", match.start() + 1)
            out.append(value)
        elif hexa is not None:
            out.append(int(hexa, 16))
        elif u4 is not None or u8 is not None:
            code = int(u4 or u8, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise EscapeError(f"'\\{'u' if u4 else 'U'}{u4 or u8}' is not a Unicode character",
                                  match.start() + 1)
            out += chr(code).encode("utf-8")
        elif other in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[other])
        else:
            raise EscapeError(f"unknown escape '\\{other}'", match.start() + 1)
        pos = match.end()
    out += body[pos:].encode("utf-8", "surrogateescape")
    return bytes(out)


def escape_bytes(data: bytes) -> str:
    """A double-quoted literal for ``data``: printable text kept, UTF-8 kept, the rest escaped."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    out = ['"']
    if text is not None:
        for ch in text:
            code = ord(ch)
            if ch == '"':
                out.append('\\"')
            elif ch == "\\":
                out.append("\\\\")
            elif ch == "\n":
                out.append("\\n")
            elif ch == "\t":
                out.append("\\t")
            elif ch == "\r":
                out.append("\\r")
            elif code < 32 or code == 127:
                out.append(f"\\{code:03o}")
            else:
                out.append(ch)
    else:
        for byte in data:
            if byte == 34:
                out.append('\\"')
            elif byte == 92:
                out.append("\\\\")
            elif byte == 10:
                out.append("\\n")
            elif byte == 9:
                out.append("\\t")
            elif byte == 13:
                out.append("\\r")
            elif 32 <= byte < 127:
                out.append(chr(byte))
            else:
                out.append(f"\\{byte:03o}")
    out.append('"')
    return "".join(out)


def parse_int(text: str, negative: bool = False) -> int:
    """An integer token: decimal, hex (``0x1F``) or octal (``017``)."""
    if not _INT.fullmatch(text):
        raise ValueError("not an integer")
    if text[:2] in ("0x", "0X"):
        value = int(text[2:], 16)
    elif len(text) > 1 and text[0] == "0":
        value = int(text[1:], 8)
    else:
        value = int(text)
    return -value if negative else value


def is_float_word(text: str) -> bool:
    return _FLOAT_WORD.fullmatch(text) is not None


def parse_float(text: str, negative: bool = False) -> float:
    """A float token or word: ``1.``, ``.5``, ``1e-5``, ``1.5f``, ``inf``, ``nan``, ``0x10``."""
    word = _FLOAT_WORD.fullmatch(text)
    if word:
        value = math.nan if word.group(1).lower() == "nan" else math.inf
    elif text[:2] in ("0x", "0X") or (len(text) > 1 and text[0] == "0" and text.isdigit()):
        value = float(parse_int(text))
    else:
        body = text[:-1] if text[-1:] in ("f", "F") and not text.startswith(("0x", "0X")) else text
        try:
            value = float(body)
        except ValueError:
            raise ValueError("not a number") from None
    return -value if negative else value


def shortest_float32_repr(value: float) -> str:
    """The shortest decimal text that reads back as the same float32 (``0.1``, not 0.100000001)."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    target = struct.pack("<f", value)
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if struct.pack("<f", float(text)) == target:
            return _tidy_float(text)
    return _tidy_float(repr(value))


def shortest_float64_repr(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return _tidy_float(repr(value))


def _tidy_float(text: str) -> str:
    # Python writes 1e-05; protobuf files conventionally read 1e-05 too, so only strip a ".0".
    if text.endswith(".0"):
        return text[:-2]
    return text
