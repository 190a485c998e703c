"""Every lint rule's cases, from tests/rules/*.toml, plus checks over the rule set itself.

A case is a table in a ``[[case]]`` array::

    [[case]]
    rule = "BN001"                 # the rule under test (only it is selected)
    name = "BatchNorm without Scale"
    text = '''...prototxt...'''
    expect = ["5:1"]               # line:col of each finding of that rule ([] = passes)
    fixed = '''...'''              # optional: the text after --fix (--unsafe-fixes if unsafe)
    unsafe = true                  # optional
    path = "deploy.prototxt"       # optional file name the text is linted under
    phase = "TRAIN"                # optional: lint only this phase
    options = { threshold = 8 }    # optional rule options
    severity = "error"             # optional: the severity every finding must have
    message = "substring"          # optional: text every finding's message must contain
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from prototxt_tools.layers.base import TEST, TRAIN
from prototxt_tools.lint import LintConfig, LintOptions, all_rules, fix_text, lint_text

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

CASES_DIR = Path(__file__).resolve().parent / "rules"


def _load_cases() -> list:
    cases = []
    for path in sorted(CASES_DIR.glob("*.toml")):
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
        for number, case in enumerate(data.get("case", []), 1):
            case["_where"] = f"{path.name}#{number}"
            cases.append(case)
    return cases


CASES = _load_cases()


def _config(case: dict) -> LintConfig:
    options = {case["rule"]: case["options"]} if "options" in case else {}
    return LintConfig(select=(case["rule"],), options=options)


def _options(case: dict) -> LintOptions:
    phases = {"TRAIN": (TRAIN,), "TEST": (TEST,)}.get(case.get("phase"), (TRAIN, TEST))
    return LintOptions(phases=phases)


@pytest.mark.parametrize("case", CASES, ids=[f"{c['rule']}-{c['name']}" for c in CASES])
def test_rule_case(case):
    path = case.get("path", "case.prototxt")
    result = lint_text(case["text"], path, _config(case), _options(case))
    assert not result.internal_errors, result.internal_errors
    found = [f for f in result.findings if f.code == case["rule"]]
    assert [f"{f.line}:{f.column}" for f in found] == case["expect"], \
        [f.format() for f in result.findings]
    for finding in found:
        if "severity" in case:
            assert finding.severity == case["severity"], finding.format()
        if "message" in case:
            assert case["message"] in finding.message, finding.format()
    if "fixed" in case:
        outcome = fix_text(case["text"], path, _config(case), _options(case),
                           unsafe=case.get("unsafe", False))
        assert outcome.converged
        assert outcome.text == case["fixed"]
        again = lint_text(outcome.text, path, _config(case), _options(case))
        assert not [f for f in again.findings if f.fix is not None and (
            f.fix.safe or case.get("unsafe", False))], [f.format() for f in again.findings]


RULES = all_rules()


@pytest.mark.parametrize("rule", RULES, ids=[r.code for r in RULES])
def test_every_rule_has_cases_and_docs(rule):
    cases = [c for c in CASES if c["rule"] == rule.code]
    failing = [c for c in cases if c["expect"]]
    passing = [c for c in cases if not c["expect"]]
    assert len(failing) >= 2, f"{rule.code} needs at least 2 failing cases"
    assert len(passing) >= 2, f"{rule.code} needs at least 2 passing cases"
    if rule.fix_description:
        assert any("fixed" in c for c in cases), f"{rule.code} has a fix but no fixed case"
    assert rule.name == rule.name.lower() and " " not in rule.name
    assert rule.summary and rule.why and rule.example and rule.use_instead, rule.code
    if rule.fix_description:
        assert rule.fix_safety, f"{rule.code}: say whether the fix is safe"


@pytest.mark.parametrize("rule", RULES, ids=[r.code for r in RULES])
def test_documented_examples_behave(rule):
    """The docs' example triggers the rule and its 'use instead' does not."""
    config = LintConfig(select=(rule.code,), extend_select=(rule.code,))
    bad = lint_text(rule.example, "example.prototxt", config)
    assert any(f.code == rule.code for f in bad.findings), rule.example
    good = lint_text(rule.use_instead, "example.prototxt", config)
    assert not [f for f in good.findings if f.code == rule.code], \
        [f.format() for f in good.findings]


def test_codes_are_unique_and_grouped():
    codes = [rule.code for rule in RULES]
    assert len(codes) == len(set(codes))
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names))
    for code in ["BN001", "BN002", "BN003", "BN004", "BN005", "BN006", "BN007", "BN008", "BN009",
                 "BN010", "BN011"]:
        assert code in codes
