"""Rules, findings and fixes.

A rule is one small class: a code (``BN001``), a kebab-case name, a default severity, its
documentation (what it does, why it matters, an example and what to write instead, how the fix
works and whether it is safe) and a ``check`` that yields :class:`Finding` objects. A finding
points at a node of the file and may carry a :class:`Fix`: text edits that leave every other
byte alone. Rules register themselves with :func:`register_rule`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Iterator, Optional, Sequence, Union

from ..errors import ERROR, INFO, WARNING
from ..syntax.edits import TextEdit
from ..syntax.tree import Node

if TYPE_CHECKING:
    from ..net.model import Layer
    from .context import LintContext

SEVERITIES = (INFO, WARNING, ERROR)
SEVERITY_RANK = {INFO: 0, WARNING: 1, ERROR: 2}


@dataclass(frozen=True)
class Fix:
    """Edits that resolve a finding. ``safe`` fixes keep the net's meaning as its author
    intended; unsafe ones change the model (e.g. add parameters) and run only when asked."""

    edits: tuple
    safe: bool
    description: str


@dataclass
class Finding:
    """One problem in one file."""

    code: str
    name: str
    severity: str
    message: str
    path: Optional[str]
    line: int
    column: int
    end_line: int
    end_column: int
    offset: int = 0
    end_offset: int = 0
    fix: Optional[Fix] = None
    layer: Optional[str] = None
    #: Character range of the layer the finding belongs to (for inline suppressions).
    scope: Optional[tuple] = None

    def format(self) -> str:
        """``file:line:col: CODE [severity] message``."""
        path = self.path if self.path is not None else "<input>"
        marker = " [*]" if self.fix is not None and self.fix.safe else ""
        message = self.message.replace("\r", "\\r").replace("\n", "\\n")  # one line each
        return f"{path}:{self.line}:{self.column}: {self.code} [{self.severity}] {message}" \
               f"{marker}"

    @property
    def sort_key(self) -> tuple:
        return (self.path or "", self.line, self.column, self.code, self.message)


Where = Union["Layer", Node, None]


class Rule:
    """Base class of every lint rule; subclasses set the class attributes and ``check``."""

    code: ClassVar[str] = ""
    name: ClassVar[str] = ""
    severity: ClassVar[str] = WARNING
    summary: ClassVar[str] = ""  # one line: what it reports
    why: ClassVar[str] = ""  # why it matters
    example: ClassVar[str] = ""  # prototxt that triggers the rule
    use_instead: ClassVar[str] = ""  # prototxt that does not
    fix_description: ClassVar[str] = ""  # what --fix does ("" when there is no fix)
    fix_safety: ClassVar[str] = ""  # why the fix is safe, or why it is marked unsafe
    options: ClassVar[dict] = {}  # option name -> default value
    option_docs: ClassVar[dict] = {}  # option name -> explanation
    enabled_by_default: ClassVar[bool] = True
    needs_net: ClassVar[bool] = True  # False for rules that also apply to solvers

    def check(self, context: "LintContext") -> Iterator[Finding]:
        raise NotImplementedError

    # -- helpers for subclasses --------------------------------------------------------------
    def option(self, context: "LintContext", name: str) -> Any:
        return context.option(self.code, name, self.options[name])

    def finding(self, context: "LintContext", where: Where, message: str, *,
                path: Sequence = (), fix: Optional[Fix] = None,
                severity: Optional[str] = None) -> Finding:
        """A finding located at ``where``: a Layer (at ``path`` inside it, or the nearest
        enclosing field the file spells out), a syntax node, or the file start (None)."""
        return context.make_finding(self, where, message, path=path, fix=fix,
                                    severity=severity or self.severity)

    @staticmethod
    def make_fix(edits: Iterable[TextEdit], safe: bool, description: str) -> Fix:
        return Fix(tuple(edits), safe, description)


_RULES: dict[str, Rule] = {}


def register_rule(rule_class: type) -> type:
    """Class decorator: register a rule (its code must be unique)."""
    rule = rule_class()
    if not rule.code or not rule.name:
        raise ValueError(f"{rule_class.__name__} needs a code and a name")
    if rule.code in _RULES:
        raise ValueError(f"rule code {rule.code} registered twice")
    if rule.severity not in SEVERITIES:
        raise ValueError(f"{rule.code}: bad severity {rule.severity!r}")
    _RULES[rule.code] = rule
    return rule_class


def all_rules() -> list[Rule]:
    """Every rule, by code."""
    _load_rules()
    return [_RULES[code] for code in sorted(_RULES, key=_code_key)]


def get_rule(code: str) -> Optional[Rule]:
    _load_rules()
    return _RULES.get(code.upper())


def _code_key(code: str) -> tuple:
    prefix = code.rstrip("0123456789")
    return (prefix, int(code[len(prefix):] or 0))


_LOADED = False


def _load_rules() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from . import rules  # noqa: F401  (each rules module registers its rules)
