"""The lossless syntax tree.

A :class:`Document` holds the token stream: for every token its text and the trivia
(whitespace and comments) just before it; a final empty token carries the trivia at the end of
the file. Nodes are views over that stream: each covers a contiguous range of token indices
``[start, stop)`` and owns the trivia in front of each of its tokens. Printing the tokens of an
unmodified tree therefore reproduces the input byte for byte.

Positions: ``offset`` counts characters of the text (after a BOM, if any); ``line`` and
``column`` are 1-based and count characters (a tab is one column).
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate, chain
from operator import itemgetter
from typing import Iterator, NamedTuple, Optional, Union

_TRIVIA = itemgetter(0)
_TEXT = itemgetter(1)
_PAIR = itemgetter(0, 1)

QUOTES = frozenset("\"'")
IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")


class Position(NamedTuple):
    line: int
    column: int
    offset: int


class Span(NamedTuple):
    start: Position
    end: Position


class _Fields:
    """Lookup by name among ``self.fields`` (a document's, a message field's)."""

    __slots__ = ()
    fields: list

    def get(self, name: str) -> Optional["Field"]:
        """The first child field called ``name``, or None."""
        for field in self.fields:
            if field.name == name:
                return field
        return None

    def get_all(self, name: str) -> list["Field"]:
        """Every child field called ``name``, in order (repeated fields)."""
        return [field for field in self.fields if field.name == name]


class Document(_Fields):
    """A parsed file: top-level fields plus the token stream they are views of."""

    __slots__ = ("path", "bom", "fields", "_pairs", "_texts", "_trivia", "_ends",
                 "_line_starts", "_source")

    def __init__(self, source: str, pairs: list, texts: list, path: Optional[str], bom: bool):
        self.path = path
        self.bom = bom
        self.fields: list[Field] = []
        self._source = source
        self._pairs = pairs
        self._texts = texts
        self._trivia: Optional[list[str]] = None
        self._ends: Optional[list[int]] = None
        self._line_starts: Optional[list[int]] = None

    # -- the token stream -------------------------------------------------------------------
    @property
    def source(self) -> str:
        """The text that was parsed (without a BOM)."""
        return self._source

    @property
    def token_count(self) -> int:
        """Number of tokens, counting the final empty end-of-file token."""
        return len(self._texts)

    def token(self, index: int) -> "Token":
        if index < 0:
            index += len(self._texts)
        if not 0 <= index < len(self._texts):
            raise IndexError(index)
        return Token(self, index)

    def token_text(self, index: int) -> str:
        return self._texts[index]

    def token_trivia(self, index: int) -> str:
        return self.trivia_list()[index]

    def trivia_list(self) -> list[str]:
        if self._trivia is None:
            self._trivia = list(map(_TRIVIA, self._pairs))
        return self._trivia

    def token_offset(self, index: int) -> int:
        """Offset of the first character of token ``index`` (after its trivia)."""
        return self._token_ends()[2 * index]

    def token_end(self, index: int) -> int:
        return self._token_ends()[2 * index + 1]

    def trivia_offset(self, index: int) -> int:
        """Offset of the trivia in front of token ``index``."""
        return self._token_ends()[2 * index - 1] if index else 0

    def _token_ends(self) -> list[int]:
        if self._ends is None:
            # [end of trivia 0, end of token 0, end of trivia 1, ...], computed in C.
            self._ends = list(accumulate(map(len, chain.from_iterable(map(_PAIR, self._pairs)))))
        return self._ends

    # -- positions --------------------------------------------------------------------------
    def position(self, offset: int) -> Position:
        if self._line_starts is None:
            source = self._source
            starts = [0]
            find = source.find
            at = find("\n")
            while at >= 0:
                starts.append(at + 1)
                at = find("\n", at + 1)
            self._line_starts = starts
        line = bisect_right(self._line_starts, offset)
        return Position(line, offset - self._line_starts[line - 1] + 1, offset)

    def token_position(self, index: int) -> Position:
        return self.position(self.token_offset(index))

    @property
    def newline(self) -> str:
        """The file's line ending: CRLF if its first line ends so, else LF."""
        at = self._source.find("\n")
        return "\r\n" if at > 0 and self._source[at - 1] == "\r" else "\n"

    # -- printing ---------------------------------------------------------------------------
    def to_text(self) -> str:
        """Print the tree. For an unmodified tree this is exactly the parsed text (BOM included)."""
        out: list[str] = ["\ufeff"] if self.bom else []
        trivia = self.trivia_list()
        texts = self._texts
        for field in self.fields:
            _print_node(field, trivia, texts, out)
        last = len(texts) - 1
        out.append(trivia[last])
        return "".join(out)

    def to_bytes(self) -> bytes:
        """The printed tree as bytes; stray non-UTF-8 bytes come back unchanged."""
        return self.to_text().encode("utf-8", "surrogateescape")

    # -- navigation -------------------------------------------------------------------------
    def walk(self) -> Iterator["Field"]:
        """Every field, depth first, in file order."""
        return _walk(self.fields)

    @property
    def end_position(self) -> Position:
        return self.position(len(self._source))

    def __repr__(self) -> str:
        return f"<Document {self.path or '<text>'} fields={len(self.fields)}>"


class Token:
    """One token of a document, with the trivia in front of it."""

    __slots__ = ("document", "index")

    def __init__(self, document: Document, index: int):
        self.document = document
        self.index = index

    @property
    def text(self) -> str:
        return self.document._texts[self.index]

    @property
    def leading_trivia(self) -> str:
        return self.document.token_trivia(self.index)

    @property
    def offset(self) -> int:
        return self.document.token_offset(self.index)

    @property
    def span(self) -> Span:
        doc = self.document
        return Span(doc.position(doc.token_offset(self.index)),
                    doc.position(doc.token_end(self.index)))

    @property
    def kind(self) -> str:
        return token_kind(self.text)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Token) and other.document is self.document
                and other.index == self.index)

    def __hash__(self) -> int:
        return hash((id(self.document), self.index))

    def __repr__(self) -> str:
        return f"<Token {self.kind} {self.text!r} @{self.index}>"


def token_kind(text: str) -> str:
    """The grammar terminal a token's text belongs to (its first character decides)."""
    if not text:
        return "EOF"
    c = text[0]
    if c in IDENT_START:
        return "IDENT"
    if c in QUOTES:
        return "STRING"
    if c.isdigit() or c == ".":
        return "NUMBER"
    if c == "$":
        return "TEMPLATE"
    return _PUNCT_KIND[c]


_PUNCT_KIND = {":": "COLON", "{": "LBRACE", "}": "RBRACE", "<": "LANGLE", ">": "RANGLE",
               "[": "LSQB", "]": "RSQB", ",": "COMMA", ";": "SEMICOLON", "-": "MINUS"}


class Node:
    """A contiguous run of tokens ``[start, stop)`` of ``document``."""

    __slots__ = ("document", "start", "stop")

    @property
    def text(self) -> str:
        """The node's source text, from its first token to its last (no leading trivia)."""
        doc = self.document
        return doc._source[doc.token_offset(self.start):doc.token_end(self.stop - 1)]

    @property
    def leading_trivia(self) -> str:
        return self.document.token_trivia(self.start)

    @property
    def span(self) -> Span:
        doc = self.document
        return Span(doc.position(doc.token_offset(self.start)),
                    doc.position(doc.token_end(self.stop - 1)))

    @property
    def start_offset(self) -> int:
        return self.document.token_offset(self.start)

    @property
    def end_offset(self) -> int:
        return self.document.token_end(self.stop - 1)

    @property
    def tokens(self) -> list[Token]:
        return [Token(self.document, i) for i in range(self.start, self.stop)]

    def __repr__(self) -> str:
        text = self.text
        if len(text) > 40:
            text = text[:37] + "..."
        return f"<{type(self).__name__} {text!r}>"


class Field(Node, _Fields):
    """``name: value``, ``name { ... }`` or ``name: [ ... ]``, with an optional ``,``/``;``."""

    __slots__ = ("colon", "value", "separator")

    colon: bool
    value: "Value"
    separator: bool

    @property
    def name(self) -> str:
        return self.document._texts[self.start]

    @property
    def name_token(self) -> Token:
        return Token(self.document, self.start)

    @property
    def name_span(self) -> Span:
        return self.name_token.span

    @property
    def is_message(self) -> bool:
        return type(self.value) is Message

    @property
    def fields(self) -> list["Field"]:
        """Fields of a message-valued field (empty for scalars and lists)."""
        value = self.value
        return value.fields if type(value) is Message else []


class Scalar(Node):
    """A scalar value: a number, an identifier, one or more adjacent strings, a template."""

    __slots__ = ()

    @property
    def kind(self) -> str:
        """``"string"``, ``"number"``, ``"identifier"`` or ``"template"``."""
        texts = self.document._texts
        first = texts[self.start]
        if first == "-":
            first = texts[self.start + 1]
        kind = token_kind(first)
        return _SCALAR_KIND[kind]

    @property
    def negative(self) -> bool:
        return self.document._texts[self.start] == "-"

    @property
    def body(self) -> str:
        """The number or identifier without its minus sign (the first literal for strings)."""
        return self.document._texts[self.start + 1 if self.negative else self.start]

    @property
    def literals(self) -> list[str]:
        """The token texts making up the value (several for concatenated strings)."""
        return self.document._texts[self.start:self.stop]


_SCALAR_KIND = {"STRING": "string", "NUMBER": "number", "IDENT": "identifier",
                "TEMPLATE": "template"}


class Message(Node):
    """``{ fields }`` or ``< fields >``."""

    __slots__ = ("fields",)

    fields: list[Field]

    @property
    def open_token(self) -> Token:
        return Token(self.document, self.start)

    @property
    def close_token(self) -> Token:
        return Token(self.document, self.stop - 1)


class ListValue(Node):
    """``[item, item, ...]``: scalars or messages."""

    __slots__ = ("items",)

    items: list[Union[Scalar, Message]]


Value = Union[Scalar, Message, ListValue]


def _walk(fields: list[Field]) -> Iterator[Field]:
    for field in fields:
        yield field
        value = field.value
        if type(value) is Message:
            yield from _walk(value.fields)
        elif type(value) is ListValue:
            for item in value.items:
                if type(item) is Message:
                    yield from _walk(item.fields)


def _emit(start: int, stop: int, trivia: list[str], texts: list[str], out: list[str]) -> None:
    for i in range(start, stop):
        out.append(trivia[i])
        out.append(texts[i])


def _print_node(node: Node, trivia: list[str], texts: list[str], out: list[str]) -> None:
    """Append the node's tokens, each after its trivia, walking children for their own tokens."""
    kind = type(node)
    if kind is Field:
        value = node.value
        _emit(node.start, value.start, trivia, texts, out)  # name and colon
        _print_node(value, trivia, texts, out)
        _emit(value.stop, node.stop, trivia, texts, out)  # separator
    elif kind is Message:
        _emit(node.start, node.start + 1, trivia, texts, out)
        for field in node.fields:
            _print_node(field, trivia, texts, out)
        _emit(node.stop - 1, node.stop, trivia, texts, out)
    elif kind is ListValue:
        position = node.start
        _emit(position, position + 1, trivia, texts, out)  # [
        position += 1
        for item in node.items:
            _emit(position, item.start, trivia, texts, out)  # the comma before the item
            _print_node(item, trivia, texts, out)
            position = item.stop
        _emit(position, node.stop, trivia, texts, out)  # ]
    else:
        _emit(node.start, node.stop, trivia, texts, out)
