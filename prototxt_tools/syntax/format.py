"""The canonical formatter.

Output: two-space indentation, one field per line, ``name: value`` and ``name {`` ... ``}``;
``name: {``, ``name < >``, separators and lists are rewritten (a list becomes one repeated
field per item, which protobuf reads identically); strings are double-quoted with adjacent
literals joined. Every comment is kept: an own-line comment stays before the field it precedes,
an end-of-line comment stays at the end of its line. Blank lines between fields are kept (at
most one). The file's line ending and BOM are kept. Formatting is idempotent.

How comments find their place: every token is owned by one output line; the trivia in front of
token ``t`` splits into the rest of the previous token's line (its comment trails the line that
owns token ``t - 1``) and whole lines (their comments go before the line that owns ``t``).
"""

from __future__ import annotations

from typing import Optional, Union

from .parser import parse
from .tree import Document, Field, ListValue, Message, Scalar
from .values import EscapeError, escape_bytes, string_literal_bytes

INDENT = "  "
_BLANK = None  # a blank-line marker among a line's leading entries


class Line:
    """One output line with the comments that go before, on and after it (also used by the
    upgrade, which prints a net and carries the source's comments onto these lines)."""

    __slots__ = ("depth", "text", "kind", "before", "trailing", "after")

    def __init__(self, depth: int, text: Optional[str], kind: str):
        self.depth = depth
        self.text = text
        # "field", "open", "close", "end", or a comment holder with no text of its own
        self.kind = kind
        self.before: list[Optional[str]] = []  # comments and _BLANK markers
        self.trailing: Optional[str] = None
        self.after: list[str] = []

    def add_trailing(self, comment: str) -> None:
        if self.trailing is None and self.text is not None:
            self.trailing = comment
        else:
            self.after.append(comment)


def format_text(text: Union[str, bytes], path: Optional[str] = None) -> str:
    """Parse ``text`` and return it in canonical form (raises PrototxtError on bad syntax)."""
    return format_document(parse(text, path))


def format_document(document: Document) -> str:
    """The canonical text of a parsed document."""
    lines: list[Line] = []
    owner: list[Optional[Line]] = [None] * document.token_count
    _Layout(document, lines, owner).fields(document.fields, 0)
    end = Line(0, None, "end")
    lines.append(end)
    owner[-1] = end
    _place_comments(document, owner)
    text = _render(lines, document.newline)
    return ("\ufeff" + text) if document.bom else text


class _Layout:
    """Builds the output lines and records which line owns each token."""

    def __init__(self, document: Document, lines: list[Line], owner: list[Optional[Line]]):
        self.texts = document._texts
        self.lines = lines
        self.owner = owner

    def own(self, start: int, stop: int, line: Line) -> None:
        self.owner[start:stop] = [line] * (stop - start)

    def fields(self, fields: list[Field], depth: int) -> None:
        for field in fields:
            self.field(field, depth)

    def field(self, field: Field, depth: int) -> None:
        name = field.name
        value = field.value
        if type(value) is ListValue:
            self.list_field(field, value, name, depth)
            return
        first, last = self.value(value, name, depth)
        self.own(field.start, value.start, first)
        self.own(value.stop, field.stop, last)

    def list_field(self, field: Field, value: ListValue, name: str, depth: int) -> None:
        items = value.items
        if not items:
            line = Line(depth, None, "comments")
            self.lines.append(line)
            self.own(field.start, field.stop, line)
            return
        previous_last: Optional[Line] = None
        for k, item in enumerate(items):
            first, last = self.value(item, name, depth)
            if k == 0:
                self.own(field.start, item.start, first)  # name, colon, '['
            else:
                self.own(items[k - 1].stop, item.start, previous_last)  # the comma
            previous_last = last
        self.own(items[-1].stop, field.stop, previous_last)  # ']' and a separator

    def value(self, value: Union[Scalar, Message], name: str, depth: int) -> tuple[Line, Line]:
        """Emit one ``name: value`` or ``name { ... }``; returns its first and last lines."""
        if type(value) is Message:
            opening = Line(depth, f"{name} {{", "open")
            self.lines.append(opening)
            self.own(value.start, value.start + 1, opening)
            self.fields(value.fields, depth + 1)
            closing = Line(depth, "}", "close")
            self.lines.append(closing)
            self.own(value.stop - 1, value.stop, closing)
            return opening, closing
        line = Line(depth, f"{name}: {scalar_text(value)}", "field")
        self.lines.append(line)
        self.own(value.start, value.stop, line)
        return line, line


def scalar_text(value: Scalar) -> str:
    """The canonical spelling of a scalar: one double-quoted string, or ``-`` joined to a number."""
    literals = value.literals
    kind = value.kind
    if kind == "string":
        try:
            data = b"".join(string_literal_bytes(literal) for literal in literals)
        except EscapeError:
            return " ".join(literals)  # left as written; binding reports the bad escape
        return escape_bytes(data)
    if value.negative:
        return "-" + literals[1]
    return literals[0]


def split_trivia(trivia: str) -> tuple[Optional[str], list[Optional[str]]]:
    """(comment ending the previous token's line, [own-line comments and blank markers])."""
    if "#" not in trivia and trivia.count("\n") < 2:
        return None, []
    lines = trivia.split("\n")
    head = lines[0].strip()
    trailing = head.rstrip() if head.startswith("#") else None
    entries: list[Optional[str]] = []
    rest = lines[1:]
    for k, line in enumerate(rest):
        stripped = line.strip()
        if stripped.startswith("#"):
            entries.append(stripped)
        elif k < len(rest) - 1:  # a whole empty line; the last piece is the next token's indent
            entries.append(_BLANK)
    return trailing, entries


def _place_comments(document: Document, owner: list[Optional[Line]]) -> None:
    trivia = document.trivia_list()
    for t, text in enumerate(trivia):
        if not text:
            continue
        trailing, entries = split_trivia(text)
        line = owner[t]
        assert line is not None
        if t == 0:
            if trailing is not None:
                line.before.append(trailing)
            line.before.extend(entries)
            continue
        if trailing is not None:
            owner[t - 1].add_trailing(trailing)  # type: ignore[union-attr]
        if owner[t - 1] is line:
            # Comments inside a field's own tokens move in front of its line.
            line.before.extend(entry for entry in entries if entry is not _BLANK)
        else:
            line.before.extend(entries)


def _render(lines: list[Line], newline: str) -> str:
    out = render_lines(lines)
    if not out:
        return ""
    return newline.join(out) + newline


def render_lines(lines: list[Line], indent: str = INDENT, base: str = "",
                 inner_blank_lines: bool = True) -> list[str]:
    """The text lines for ``lines``: comments before each line at its indentation (one step
    in before a closing brace), trailing comments two spaces after, at most one blank line
    where the source had blank lines (never right after an opening brace, nor before a
    closing one; with ``inner_blank_lines`` false, only between top-level items)."""
    out: list[str] = []
    previous = None  # kind of the last line written, "comment" for a comment line

    def blank_allowed(line: Line) -> bool:
        return previous not in (None, "open") and (inner_blank_lines or line.depth == 0)

    for line in lines:
        comment_depth = line.depth + 1 if line.kind == "close" else line.depth
        pad = base + indent * comment_depth
        blank = False
        for entry in line.before:
            if entry is _BLANK:
                blank = True
                continue
            if blank and blank_allowed(line):
                out.append("")
            blank = False
            out.append(pad + entry)
            previous = "comment"
        if line.text is not None:
            if blank and blank_allowed(line) and line.kind not in ("close", "end"):
                out.append("")
            text = base + indent * line.depth + line.text
            if line.trailing is not None:
                text += "  " + line.trailing
            out.append(text)
            previous = line.kind
        elif line.trailing is not None:
            out.append(pad + line.trailing)
            previous = "comment"
        for comment in line.after:
            out.append(base + indent * line.depth + comment)
            previous = "comment"
    return out
