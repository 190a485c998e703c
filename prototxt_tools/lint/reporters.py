"""Output formats for lint findings: text, json, sarif (2.1.0) and github (workflow commands)."""

from __future__ import annotations

import json
import os
from pathlib import PurePath
from typing import Sequence
from urllib.parse import quote

from .._version import __version__
from ..errors import ERROR, INFO, WARNING
from .rule import Finding, all_rules

FORMATS = ("text", "json", "sarif", "github")
INFORMATION_URI = "https://github.com/prototxt-tools/prototxt-tools"


def render(findings: Sequence[Finding], fmt: str) -> str:
    if fmt == "text":
        return "".join(finding.format() + "\n" for finding in findings)
    if fmt == "json":
        return json.dumps([finding_to_dict(f) for f in findings], indent=2) + "\n"
    if fmt == "sarif":
        return json.dumps(to_sarif(findings), indent=2) + "\n"
    if fmt == "github":
        return "".join(github_line(finding) + "\n" for finding in findings)
    raise ValueError(f"unknown format {fmt!r}")


def finding_to_dict(finding: Finding) -> dict:
    fix = None
    if finding.fix is not None:
        fix = {"safe": finding.fix.safe, "description": finding.fix.description,
               "edits": [{"start": e.start, "end": e.end, "replacement": e.replacement}
                         for e in finding.fix.edits]}
    return {"code": finding.code, "name": finding.name, "severity": finding.severity,
            "message": finding.message, "path": finding.path, "line": finding.line,
            "column": finding.column, "end_line": finding.end_line,
            "end_column": finding.end_column, "layer": finding.layer, "fix": fix}


# -- SARIF -------------------------------------------------------------------------------------

_SARIF_LEVEL = {ERROR: "error", WARNING: "warning", INFO: "note"}


def _artifact_uri(path: str) -> str:
    """A relative URI reference for a path (forward slashes, percent-encoded)."""
    if os.path.isabs(path):
        try:
            path = os.path.relpath(path)
        except ValueError:  # another drive on Windows
            return PurePath(path).as_uri()
    return quote(PurePath(path).as_posix(), safe="/")


def to_sarif(findings: Sequence[Finding]) -> dict:
    """A SARIF 2.1.0 log with one run: every rule as a reportingDescriptor, every finding as a
    result with its region (1-based lines and columns counted in Unicode code points, end
    column exclusive)."""
    rules = all_rules()
    index = {rule.code: position for position, rule in enumerate(rules)}
    descriptors = []
    for rule in rules:
        descriptor = {
            "id": rule.code,
            "name": rule.name,
            "shortDescription": {"text": rule.summary},
            "fullDescription": {"text": rule.why or rule.summary},
            "defaultConfiguration": {"level": _SARIF_LEVEL[rule.severity],
                                     "enabled": rule.enabled_by_default},
            "helpUri": f"{INFORMATION_URI}/blob/main/docs/rules.md#{rule.code.lower()}",
            "properties": {"tags": [rule.code.rstrip("0123456789")]},
        }
        descriptors.append(descriptor)
    results = []
    for finding in findings:
        result = {
            "ruleId": finding.code,
            "level": _SARIF_LEVEL[finding.severity],
            "message": {"text": finding.message},
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": {"uri": _artifact_uri(finding.path or "<stdin>")},
                    "region": {
                        "startLine": finding.line,
                        "startColumn": finding.column,
                        "endLine": max(finding.end_line, finding.line),
                        "endColumn": max(finding.end_column, 1),
                    },
                },
            }],
        }
        if finding.code in index:
            result["ruleIndex"] = index[finding.code]
        if finding.fix is not None:
            result["properties"] = {"fixable": True, "fixSafe": finding.fix.safe}
        results.append(result)
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "prototxt-tools", "version": __version__,
                                "informationUri": INFORMATION_URI, "rules": descriptors}},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    }


# -- GitHub Actions ----------------------------------------------------------------------------

_GITHUB_COMMAND = {ERROR: "error", WARNING: "warning", INFO: "notice"}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_line(finding: Finding) -> str:
    """A workflow command that GitHub shows as an annotation on the file and line."""
    properties = [
        f"file={_escape_property(finding.path or '<stdin>')}",
        f"line={finding.line}", f"col={finding.column}",
        f"endLine={max(finding.end_line, finding.line)}",
        f"endColumn={max(finding.end_column, 1)}",
        f"title={_escape_property(f'{finding.code} {finding.name}')}",
    ]
    return f"::{_GITHUB_COMMAND[finding.severity]} {','.join(properties)}::" \
           f"{_escape_data(finding.message)}"
