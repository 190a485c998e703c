"""Text edits over a document: replace, insert or delete one node, leaving every other byte.

Fixes and rewrites are lists of :class:`TextEdit` (a character range of the document's source
and its replacement), applied together by :func:`apply_edits` and re-parsed. Nothing is
re-printed, so comments, spacing and line endings outside the edited ranges survive untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Optional, Union

from .parser import parse
from .tree import Document, Field, Message, Node

_COMMENT_OR_SPACE = re.compile(r"[ \t\f\v\r]*(?:#[^\n]*)?")
_SPACE = re.compile(r"[ \t\f\v]*")


@dataclass(frozen=True)
class TextEdit:
    """Replace ``source[start:end]`` with ``replacement`` (an insertion when start == end)."""

    start: int
    end: int
    replacement: str

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"bad edit range {self.start}..{self.end}")


def apply_edits(text: str, edits: Iterable[TextEdit]) -> str:
    """Apply non-overlapping edits to ``text`` (insertions at one offset keep their order).

    Deletions may overlap each other (two neighbouring fields deleted with their blank lines
    both claim the line between them): they merge into one.
    """
    ordered = _merge_deletions(sorted(edits, key=lambda edit: (edit.start, edit.end)))
    if ordered and not ordered[-1].replacement and ordered[-1].end == len(text):
        # A deletion that ends the file takes the blank lines before it along.
        start = ordered[-1].start
        kept = text[:start].rstrip(" \t\r\n")
        newline_at = text.find("\n", len(kept))
        previous_end = ordered[-2].end if len(ordered) > 1 else 0
        if 0 <= newline_at < start and newline_at + 1 >= previous_end:
            ordered[-1] = TextEdit(newline_at + 1, len(text), "")
    out: list[str] = []
    position = 0
    for edit in ordered:
        if edit.start < position or edit.end > len(text):
            raise ValueError(f"edits overlap or run past the end at offset {edit.start}")
        out.append(text[position:edit.start])
        out.append(edit.replacement)
        position = edit.end
    out.append(text[position:])
    return "".join(out)


def _merge_deletions(ordered: list) -> list:
    merged: list = []
    for edit in ordered:
        last = merged[-1] if merged else None
        if (last is not None and not edit.replacement and not last.replacement
                and edit.start < last.end):
            merged[-1] = TextEdit(last.start, max(last.end, edit.end), "")
        else:
            merged.append(edit)
    return merged


def apply_to_document(document: Document, edits: Iterable[TextEdit]) -> Document:
    """Apply edits to a document's source and parse the result (BOM and path kept)."""
    text = apply_edits(document.source, edits)
    return parse(("\ufeff" + text) if document.bom else text, document.path)


def replace(node: Node, text: str) -> TextEdit:
    """Replace a node's text (its leading trivia stays)."""
    return TextEdit(node.start_offset, node.end_offset, text)


def replace_value(field: Field, text: str) -> TextEdit:
    """Replace the value of ``name: value`` (or the whole ``{ ... }`` block) with ``text``."""
    return replace(field.value, text)


def delete(field: Field, with_comments: bool = True) -> TextEdit:
    """Remove a field.

    A field on lines of its own goes with those lines, its end-of-line comment and (when
    ``with_comments``) the comment lines directly above it; a blank line left doubled is removed
    too. A field sharing its line with others goes with the spaces that separate it.
    """
    source = field.document.source
    start, end = field.start_offset, field.end_offset
    line_start = source.rfind("\n", 0, start) + 1
    after = _COMMENT_OR_SPACE.match(source, end).end()  # type: ignore[union-attr]
    owns_lines = not source[line_start:start].strip() and (after == len(source)
                                                           or source[after] == "\n")
    if not owns_lines:
        following = _SPACE.match(source, end).end()  # type: ignore[union-attr]
        if following > end and following < len(source) and source[following] != "\n":
            return TextEdit(start, following, "")
        preceding = start
        while preceding > line_start and source[preceding - 1] in " \t\f\v":
            preceding -= 1
        return TextEdit(preceding, end, "")
    cut_start = line_start
    if with_comments:
        while cut_start > 0:
            previous_start = source.rfind("\n", 0, cut_start - 1) + 1
            if source[previous_start:cut_start].strip().startswith("#"):
                cut_start = previous_start
            else:
                break
    cut_end = after + 1 if after < len(source) else after
    # Don't leave two blank lines where the field sat between two blank lines.
    previous_line = source.rfind("\n", 0, cut_start - 1) + 1 if cut_start else 0
    before_blank = cut_start == 0 or _line_is_blank(source, previous_line)
    if before_blank and cut_end < len(source) and _line_is_blank(source, cut_end):
        next_newline = source.find("\n", cut_end)
        cut_end = len(source) if next_newline < 0 else next_newline + 1
    elif before_blank and cut_start and cut_end >= len(source):
        cut_start = previous_line  # the field ended the file: no blank line left at the end
    return TextEdit(cut_start, cut_end, "")


def _line_is_blank(source: str, line_start: int) -> bool:
    line_end = source.find("\n", line_start)
    return not source[line_start:(len(source) if line_end < 0 else line_end)].strip()


def insert_field(parent: Union[Document, Field, Message], text: str,
                 index: Optional[int] = None) -> TextEdit:
    """Insert ``text`` (one or more fields, possibly several lines) as child ``index`` of
    ``parent`` (default: last), indented like its siblings."""
    if isinstance(parent, Field):
        if not isinstance(parent.value, Message):
            raise ValueError(f"'{parent.name}' is not a message field")
        parent = parent.value
    document = parent if isinstance(parent, Document) else parent.document
    source = document.source
    newline = document.newline
    fields = parent.fields
    index = len(fields) if index is None else index
    if not 0 <= index <= len(fields):
        raise IndexError(index)
    indent = _child_indent(parent, fields, index)
    body = text.strip("\n").replace("\r\n", "\n").replace("\n", newline + indent)

    if index > 0:
        previous = fields[index - 1]
        end = previous.end_offset
        line_end = _COMMENT_OR_SPACE.match(source, end).end()  # type: ignore[union-attr]
        if line_end == len(source) or source[line_end] == "\n":
            line_end = _before_cr(source, line_end)
            return TextEdit(line_end, line_end, newline + indent + body)
        return TextEdit(end, end, " " + body)
    if isinstance(parent, Message):
        brace_end = document.token_end(parent.start)
        line_end = _COMMENT_OR_SPACE.match(source, brace_end).end()  # type: ignore[union-attr]
        if line_end < len(source) and source[line_end] == "\n":
            line_end = _before_cr(source, line_end)
            return TextEdit(line_end, line_end, newline + indent + body)
        return TextEdit(brace_end, brace_end, " " + body + ("" if fields else " "))
    if fields:
        first_start = fields[0].start_offset
        line_start = source.rfind("\n", 0, first_start) + 1
        return TextEdit(line_start, line_start, indent + body + newline)
    if not source or source.endswith("\n"):
        return TextEdit(len(source), len(source), body + newline)
    return TextEdit(len(source), len(source), newline + body + newline)


def _before_cr(source: str, newline_at: int) -> int:
    return newline_at - 1 if newline_at > 0 and source[newline_at - 1] == "\r" else newline_at


def _line_indent(source: str, offset: int) -> str:
    line_start = source.rfind("\n", 0, offset) + 1
    return _SPACE.match(source, line_start).group(0)  # type: ignore[union-attr]


def indent_unit(document: Document) -> str:
    """The file's indentation step: the indent of its first indented line, else two spaces."""
    for match in re.finditer(r"\n([ \t]+)\S", document.source):
        return match.group(1)
    return "  "


def _child_indent(parent: Union[Document, Message], fields: list[Field], index: int) -> str:
    source = (parent if isinstance(parent, Document) else parent.document).source
    if fields:
        sibling = fields[index - 1] if index > 0 else fields[0]
        start = sibling.start_offset
        line_start = source.rfind("\n", 0, start) + 1
        if not source[line_start:start].strip():
            return source[line_start:start]
    if isinstance(parent, Document):
        return ""
    return _line_indent(source, parent.start_offset) + indent_unit(parent.document)  # type: ignore[union-attr]
