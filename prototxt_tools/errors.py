"""Errors and diagnostics: everything the user sees about bad input points at file:line:col."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

ERROR = "error"
WARNING = "warning"
INFO = "info"


@dataclass(frozen=True)
class Diagnostic:
    """One finding about an input file.

    ``line`` and ``column`` are 1-based (columns count characters; a tab is one); they are
    ``None`` for binary inputs, where ``offset`` is a byte offset instead.
    """

    message: str
    path: Optional[str] = None
    line: Optional[int] = None
    column: Optional[int] = None
    severity: str = ERROR
    offset: Optional[int] = None
    end_line: Optional[int] = None
    end_column: Optional[int] = None
    code: Optional[str] = None

    @property
    def location(self) -> str:
        path = self.path if self.path is not None else "<input>"
        if self.line is None:
            return path
        return f"{path}:{self.line}:{self.column}"

    def format(self, show_severity: bool = True) -> str:
        """``file:line:col: message``, with ``warning: `` before warnings."""
        prefix = f"{self.severity}: " if show_severity and self.severity != ERROR else ""
        return f"{self.location}: {prefix}{self.message}"

    def __str__(self) -> str:
        return self.format()


class PrototxtError(Exception):
    """Bad input: a syntax error, a schema error, an unreadable or malformed file.

    ``path``, ``line`` and ``column`` locate the first problem; ``diagnostics`` holds every
    error found when more than one was collected. ``str(error)`` is ``file:line:col: message``.
    """

    def __init__(
        self,
        message: str,
        path: Optional[str] = None,
        line: Optional[int] = None,
        column: Optional[int] = None,
        *,
        offset: Optional[int] = None,
        diagnostics: Optional[list[Diagnostic]] = None,
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.column = column
        self.offset = offset
        first = Diagnostic(message, path, line, column, ERROR, offset)
        self.diagnostics: list[Diagnostic] = list(diagnostics) if diagnostics else [first]
        super().__init__(first.format())

    @classmethod
    def from_diagnostics(cls, diagnostics: list[Diagnostic]) -> "PrototxtError":
        errors = [d for d in diagnostics if d.severity == ERROR] or list(diagnostics)
        first = errors[0]
        return cls(first.message, first.path, first.line, first.column,
                   offset=first.offset, diagnostics=errors)

    @classmethod
    def at(cls, node: Any, message: str) -> "PrototxtError":
        """An error located at the start of a syntax ``node`` (a layer's block, a field), or
        unlocated when there is no node (a layer built from a message, not from text)."""
        if node is None:
            return cls(message)
        start = node.span.start
        return cls(message, node.document.path, start.line, start.column, offset=start.offset)

    def with_path(self, path: Optional[str]) -> "PrototxtError":
        """The same error, attributed to ``path`` (for errors raised before the path was known)."""
        if path is None or self.path == path:
            return self
        diagnostics = [replace(d, path=path) for d in self.diagnostics]
        return PrototxtError(self.message, path, self.line, self.column,
                             offset=self.offset, diagnostics=diagnostics)
