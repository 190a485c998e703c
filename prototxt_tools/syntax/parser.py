"""Text -> lossless tree.

Lexing is one ``re.findall`` of the token regex generated from the grammar's terminals, which
yields ``(trivia, token, error)`` triples in C. Parsing is a recursive descent over the token
texts that mirrors the grammar's rules (tests check it accepts exactly what lark's LALR parser
of the grammar accepts, with the same tree). Nodes record token index ranges only, so a 1 MB
file parses at several MB/s with every byte and position kept.
"""

from __future__ import annotations

import re
from operator import itemgetter
from typing import Optional, Union

from .._gc import gc_paused
from ..errors import PrototxtError
from ._tables import TOKEN_REGEX
from .tree import IDENT_START, QUOTES, Document, Field, ListValue, Message, Scalar

TOKEN_PATTERN = re.compile(TOKEN_REGEX)

#: Protobuf's text parser stops at 100 levels of nesting too; it keeps recursion bounded.
MAX_DEPTH = 100

_ERROR = itemgetter(2)
_TEXT = itemgetter(1)
_new = object.__new__

_DIGITS = frozenset("0123456789.")
_SCALAR_START = IDENT_START | _DIGITS | QUOTES | frozenset("-$")
_CLOSER = {"{": "}", "<": ">"}


def parse(text: Union[str, bytes], path: Optional[str] = None) -> Document:
    """Parse protobuf text into a lossless :class:`Document`.

    ``text`` may be bytes (decoded as UTF-8, stray bytes kept). A leading BOM is remembered and
    printed back. Raises :class:`PrototxtError` with ``path:line:col`` on a syntax error.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("utf-8", "surrogateescape")
    bom = text.startswith("\ufeff")
    if bom:
        text = text[1:]
    with gc_paused():
        pairs = TOKEN_PATTERN.findall(text)
        if len(pairs) > 1 and not pairs[-2][1]:
            # Trailing trivia makes a non-empty end-of-input match; findall then adds an empty one.
            pairs.pop()
        texts = list(map(_TEXT, pairs))
        document = Document(text, pairs, texts, path, bom)
        if any(map(_ERROR, pairs)):
            _raise_lexer_error(document)
        document.fields = _Parser(document).top_level()
    return document


class _Parser:
    __slots__ = ("doc", "texts")

    def __init__(self, document: Document):
        self.doc = document
        self.texts = document._texts

    def top_level(self) -> list[Field]:
        fields, _ = self.fields(0, "", 0)
        return fields

    def fields(self, i: int, closer: str, depth: int) -> tuple[list[Field], int]:
        """Parse fields from token ``i`` up to ``closer`` ('' = end of file).

        Returns the fields and the index of the closing token.
        """
        texts = self.texts
        doc = self.doc
        fields: list[Field] = []
        append = fields.append
        while True:
            text = texts[i]
            if text[:1] in IDENT_START:
                field = _new(Field)
                field.document = doc
                field.start = i
                i += 1
                text = texts[i]
                if text == ":":
                    field.colon = True
                    i += 1
                    text = texts[i]
                else:
                    field.colon = False
                first = text[:1]
                if first == "{" or first == "<":
                    if depth >= MAX_DEPTH:
                        self.fail(i, f"nesting deeper than {MAX_DEPTH} levels")
                    message = _new(Message)
                    message.document = doc
                    message.start = i
                    message.fields, i = self.fields(i + 1, _CLOSER[first], depth + 1)
                    i += 1
                    message.stop = i
                    field.value = message
                elif first == "[":
                    field.value, i = self.list_value(i, depth)
                elif first in _SCALAR_START:
                    if not field.colon:
                        self.fail(i, f"expected ':' between field name '{texts[field.start]}' "
                                     f"and its value")
                    field.value, i = self.scalar(i)
                elif field.colon:
                    self.fail(i, f"expected a value after '{texts[field.start]}:', "
                                 f"found {self.describe(i)}")
                else:
                    self.fail(i, f"expected ':' or '{{' after field name '{texts[field.start]}', "
                                 f"found {self.describe(i)}")
                text = texts[i]
                if text == "," or text == ";":
                    field.separator = True
                    i += 1
                else:
                    field.separator = False
                field.stop = i
                append(field)
            elif text == closer:
                return fields, i
            else:
                self.unexpected_in_fields(i, closer)

    def scalar(self, i: int) -> tuple[Scalar, int]:
        texts = self.texts
        node = _new(Scalar)
        node.document = self.doc
        node.start = i
        first = texts[i][:1]
        if first == "-":
            after = texts[i + 1][:1]
            if not (after in _DIGITS or after in IDENT_START):
                self.fail(i + 1, f"expected a number after '-', found {self.describe(i + 1)}")
            i += 2
        elif first in QUOTES:
            i += 1
            while texts[i][:1] in QUOTES:
                i += 1
        else:
            i += 1
        node.stop = i
        return node, i

    def list_value(self, i: int, depth: int) -> tuple[ListValue, int]:
        texts = self.texts
        node = _new(ListValue)
        node.document = self.doc
        node.start = i
        items: list[Union[Scalar, Message]] = []
        node.items = items
        opened = i
        i += 1
        if texts[i] == "]":
            node.stop = i + 1
            return node, i + 1
        while True:
            first = texts[i][:1]
            if first == "{" or first == "<":
                if depth >= MAX_DEPTH:
                    self.fail(i, f"nesting deeper than {MAX_DEPTH} levels")
                message = _new(Message)
                message.document = self.doc
                message.start = i
                message.fields, i = self.fields(i + 1, _CLOSER[first], depth + 1)
                i += 1
                message.stop = i
                items.append(message)
            elif first in _SCALAR_START:
                item, i = self.scalar(i)
                items.append(item)
            else:
                self.fail(i, f"expected a value in the list, found {self.describe(i)}")
            text = texts[i]
            if text == ",":
                i += 1
            elif text == "]":
                node.stop = i + 1
                return node, i + 1
            else:
                line, column, _ = self.doc.token_position(opened)
                self.fail(i, f"expected ',' or ']' in the list opened at line {line}, "
                             f"column {column}, found {self.describe(i)}")

    # -- errors -----------------------------------------------------------------------------
    def unexpected_in_fields(self, i: int, closer: str) -> None:
        text = self.texts[i]
        if text == "":
            opener = self.innermost_unclosed(i)
            if opener is not None:
                self.fail(opener, f"'{self.texts[opener]}' is never closed "
                                  f"(end of file reached)")
        if text in ("}", ">"):
            if not closer:
                self.fail(i, f"unmatched '{text}'")
            opener = self.innermost_unclosed(i)
            where = ""
            if opener is not None:
                line, column, _ = self.doc.token_position(opener)
                where = f" opened at line {line}, column {column}"
            self.fail(i, f"expected '{closer}' to close the '{_OPENER[closer]}'{where}, "
                         f"found '{text}'")
        self.fail(i, f"expected a field name, found {self.describe(i)}")

    def innermost_unclosed(self, i: int) -> Optional[int]:
        """The index of the innermost bracket still open at token ``i`` (errors only)."""
        stack: list[int] = []
        for index, text in enumerate(self.texts[:i]):
            if text in ("{", "<", "["):
                stack.append(index)
            elif text in ("}", ">", "]") and stack:
                stack.pop()
        return stack[-1] if stack else None

    def describe(self, i: int) -> str:
        return describe_token(self.texts[i])

    def fail(self, i: int, message: str) -> None:
        line, column, offset = self.doc.token_position(i)
        raise PrototxtError(message, self.doc.path, line, column, offset=offset)


_OPENER = {"}": "{", ">": "<"}


def describe_token(text: str) -> str:
    """How an error message names a token."""
    if text == "":
        return "end of file"
    if len(text) > 30:
        text = text[:27] + "..."
    return f"'{text}'"


def _raise_lexer_error(document: Document) -> None:
    pairs = document._pairs
    index = next(i for i, pair in enumerate(pairs) if pair[2])
    offset = document.token_offset(index)
    source = document.source
    char = source[offset]
    rest = source[offset:offset + 40].split("\n", 1)[0]
    if char in QUOTES:
        message = "unterminated string (a string must end on the line it starts)"
    elif char in _DIGITS:
        bad = re.match(r"[0-9A-Za-z_.+\-]*", rest).group(0)  # type: ignore[union-attr]
        message = f"invalid number '{bad}'"
    elif char == "$":
        message = "invalid template placeholder (expected ${name})"
    elif "\udc80" <= char <= "\udcff":
        message = (f"invalid UTF-8 byte 0x{ord(char) - 0xDC00:02X} "
                   f"(only comments may hold bytes that are not UTF-8)")
    elif char.isprintable() and not char.isspace():
        message = f"unexpected character '{char}'"
    else:
        message = f"unexpected character U+{ord(char):04X}"
    line, column, _ = document.position(offset)
    raise PrototxtError(message, document.path, line, column, offset=offset)
