"""Running the rules: one file in, findings out; and the fix loop.

``lint_text`` parses and binds the text, builds the Net model (upgrading legacy forms),
runs every enabled rule, drops findings silenced by ``# prototxt: disable=CODE`` comments and
returns them sorted. ``fix_text`` applies fixes (safe ones, or all with ``unsafe``), re-lints and
repeats until nothing changes, so fixes that enable other fixes settle; it stops and says so if
the text starts cycling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

from ..errors import ERROR, PrototxtError
from ..layers.base import TEST, TRAIN
from ..syntax.edits import apply_edits
from ..syntax.tree import Document
from .config import LintConfig
from .context import LintContext
from .rule import SEVERITY_RANK, Finding, Fix, all_rules

MAX_FIX_ROUNDS = 20

_SUPPRESS = re.compile(r"#\s*prototxt:\s*disable(-file)?\s*=\s*([A-Za-z0-9_, ]+)")


@dataclass
class LintResult:
    path: Optional[str]
    findings: list = field(default_factory=list)
    suppressed: int = 0
    document: Optional[Document] = None
    kind: Optional[str] = None
    internal_errors: list = field(default_factory=list)  # (rule code, message): bugs

    def failing(self, fail_on: str) -> list:
        threshold = SEVERITY_RANK[fail_on]
        return [f for f in self.findings if SEVERITY_RANK[f.severity] >= threshold]


@dataclass
class FixResult:
    text: str
    applied: list = field(default_factory=list)  # Findings whose fixes were applied
    rounds: int = 0
    converged: bool = True
    result: Optional[LintResult] = None  # lint of the final text


@dataclass
class LintOptions:
    """The net state(s) to lint and known input shapes."""

    phases: Sequence[int] = (TRAIN, TEST)
    level: Optional[int] = None
    stages: Sequence[str] = ()
    input_shapes: dict = field(default_factory=dict)
    kind: Optional[str] = None  # "net" / "solver"; None: decide from the fields


def lint_text(text: Union[str, bytes], path: Optional[str] = None,
              config: Optional[LintConfig] = None,
              options: Optional[LintOptions] = None) -> LintResult:
    """Lint one file's text."""
    from ..net.model import Net
    from ..schema.binding import bind, detect_kind
    from ..syntax.parser import parse

    config = config or LintConfig()
    options = options or LintOptions()
    result = LintResult(path)
    try:
        document = parse(text, path)
    except PrototxtError as exc:
        # Nothing else can be checked; a syntax error is always reported.
        result.findings.append(Finding("S001", "syntax-error", ERROR, exc.message, path,
                                       exc.line or 1, exc.column or 1, exc.line or 1,
                                       exc.column or 1, exc.offset or 0, exc.offset or 0))
        return result
    result.document = document
    kind = options.kind or detect_kind(document)
    result.kind = kind
    bound = bind(document, kind)
    net = None
    if kind == "net":
        net = Net.from_document(document, bound.message, options.input_shapes)
    context = LintContext(document, kind, bound.diagnostics, net, config, options.phases,
                          options.level, options.stages)
    findings: list[Finding] = []
    for rule in all_rules():
        if not config.enabled(rule) or (rule.needs_net and net is None):
            continue
        try:
            findings.extend(rule.check(context))
        except Exception as exc:  # noqa: BLE001 - one broken rule must not hide the others
            result.internal_errors.append((rule.code, f"{type(exc).__name__}: {exc}"))
    kept, suppressed = _apply_suppressions(document, findings)
    result.findings = sorted(_dedupe(kept), key=lambda f: f.sort_key)
    result.suppressed = suppressed
    return result


def _dedupe(findings: Iterable[Finding]) -> list:
    """The same finding from the TRAIN and TEST views is reported once."""
    seen = set()
    unique = []
    for finding in findings:
        key = (finding.code, finding.line, finding.column, finding.message)
        if key not in seen:
            seen.add(key)
            unique.append(finding)
    return unique


# -- inline suppression ------------------------------------------------------------------------

def _apply_suppressions(document: Document, findings: list) -> tuple:
    rules = _suppressions(document)
    if not rules:
        return findings, 0
    kept = []
    for finding in findings:
        if any(_matches(rule, finding) for rule in rules):
            continue
        kept.append(finding)
    return kept, len(findings) - len(kept)


@dataclass
class _Suppression:
    codes: tuple
    whole_file: bool
    line: int
    scope: Optional[tuple]  # character range of the layer the comment sits on or in


def _suppressions(document: Document) -> list:
    found = []
    trivia = document.trivia_list()
    for index, text in enumerate(trivia):
        if "prototxt" not in text:
            continue
        base = document.trivia_offset(index)
        for match in _SUPPRESS.finditer(text):
            offset = base + match.start()
            codes = tuple(c.strip().upper() for c in match.group(2).split(",") if c.strip())
            line = document.position(offset).line
            found.append(_Suppression(codes, bool(match.group(1)), line,
                                      _layer_scope(document, offset)))
    return found


def _layer_scope(document: Document, offset: int) -> Optional[tuple]:
    """The top-level block a comment at ``offset`` belongs to: one it is inside, on the line of,
    or in the comment lines directly above."""
    source = document.source
    for field_node in document.fields:
        start, end = field_node.start_offset, field_node.end_offset
        line_start = source.rfind("\n", 0, start) + 1
        line_end = source.find("\n", end)
        line_end = len(source) if line_end < 0 else line_end
        if line_start <= offset <= line_end:
            return (start, end)
        if offset < line_start:
            between = source[offset:line_start]
            # Only comment lines (no blank line) between the comment and the block.
            lines = between.split("\n")[1:-1]
            if all(line.strip().startswith("#") for line in lines):
                return (start, end)
            return None
    return None


def _matches(rule: _Suppression, finding: Finding) -> bool:
    if not any(code == "ALL" or finding.code.startswith(code) for code in rule.codes):
        return False
    if rule.whole_file or rule.line == finding.line:
        return True
    if rule.scope is None:
        return False
    start, end = rule.scope
    if finding.scope is not None:
        return finding.scope[0] < end and start < finding.scope[1]
    return start <= finding.offset <= end


# -- fixes -------------------------------------------------------------------------------------

def fix_text(text: str, path: Optional[str] = None, config: Optional[LintConfig] = None,
             options: Optional[LintOptions] = None, unsafe: bool = False) -> FixResult:
    """Apply fixes until the text stops changing."""
    config = config or LintConfig()
    outcome = FixResult(text)
    seen = {text}
    for round_number in range(1, MAX_FIX_ROUNDS + 1):
        result = lint_text(outcome.text, path, config, options)
        outcome.result = result
        chosen = _choose_fixes(result.findings, unsafe)
        if not chosen:
            return outcome
        edits = [edit for finding in chosen for edit in finding.fix.edits]
        new_text = apply_edits(result.document.source if result.document else outcome.text,
                               edits)
        if result.document is not None and result.document.bom:
            new_text = "\ufeff" + new_text
        outcome.rounds = round_number
        if new_text in seen:
            outcome.converged = False
            return outcome
        seen.add(new_text)
        outcome.applied.extend(chosen)
        outcome.text = new_text
    outcome.converged = False
    outcome.result = lint_text(outcome.text, path, config, options)
    return outcome


def _choose_fixes(findings: Sequence[Finding], unsafe: bool) -> list:
    """Fixes whose edits do not touch each other's (the rest wait for the next round)."""
    taken: list[tuple] = []
    chosen = []
    for finding in sorted(findings, key=lambda f: f.offset):
        fix: Optional[Fix] = finding.fix
        if fix is None or not fix.edits or not (fix.safe or unsafe):
            continue
        ranges = [(edit.start, edit.end) for edit in fix.edits]
        if any(_conflict(a, b) for a in ranges for b in taken):
            continue
        taken.extend(ranges)
        chosen.append(finding)
    return chosen


def _conflict(a: tuple, b: tuple) -> bool:
    return max(a[0], b[0]) < min(a[1], b[1]) or a[0] == b[0] or (
        a[0] == a[1] and b[0] < a[0] < b[1]) or (b[0] == b[1] and a[0] < b[0] < a[1])
