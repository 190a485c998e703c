"""Lint reporters: SARIF 2.1.0, JSON, GitHub workflow commands and text.

SARIF logs are validated offline against tests/fixtures/sarif-2.1.0-constraints.schema.json, our
own statement of the SARIF 2.1.0 rules for every object and property the reporter writes (closed
objects, so a misspelt key fails), with URI formats checked.
"""

from __future__ import annotations

import copy
import io
import json
import re
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

from conftest import FIXTURES, ROOT, corpus_params, sample_params
from prototxt_tools.cli import main
from prototxt_tools.fileio import decode_text
from prototxt_tools.lint import Finding, Fix, all_rules, lint_text
from prototxt_tools.lint.reporters import finding_to_dict, github_line, render
from prototxt_tools.syntax.edits import TextEdit, apply_edits

SCHEMA_PATH = FIXTURES / "sarif-2.1.0-constraints.schema.json"
SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
GITHUB_COMMAND = {"error": "error", "warning": "warning", "info": "notice"}

# A net with findings of every severity: an info with an unsafe fix (BN007), an error with a safe
# fix (BN003), errors after non-ASCII and astral characters on their line (G001; SARIF columns
# count code points here), a warning (G007), and a layer name holding %, comma, colon and an
# escaped newline, which end up in messages.
SYNTHETIC = '''name: "réseau 網絡"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 }}}
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 }
}
layer {
  name: "bn1"
  type: "BatchNorm"
  bottom: "conv1"
  top: "conv1"
  param { lr_mult: 1 }
}
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "网络 ü 😀" type: "ReLU" bottom: "nowhere" top: "relu1" }
layer { name: "odd%1,2:3\\n4" type: "ReLU" bottom: "also:missing,50%" top: "relu2" }
layer { name: "frob" type: "Frobnicate" bottom: "conv1" top: "frob" }
'''


# -- schema and URI format checking ------------------------------------------------------------

_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"
_PCHAR = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT})"
_SEGMENT_NO_COLON = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}@]|{_PCT})"
_TAIL = rf"(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?"
_ABSOLUTE_URI = re.compile(rf"[A-Za-z][A-Za-z0-9+.\-]*:(?:{_PCHAR}|/)*{_TAIL}")
_RELATIVE_REF = re.compile(rf"(?:/(?:{_PCHAR}|/)*|{_SEGMENT_NO_COLON}+(?:/{_PCHAR}*)*|){_TAIL}")


def is_uri(text: str) -> bool:
    """RFC 3986 URI (absolute: a scheme, then only URI characters; IP-literal hosts aside)."""
    return _ABSOLUTE_URI.fullmatch(text) is not None


def is_uri_reference(text: str) -> bool:
    """RFC 3986 URI-reference: a URI or a relative reference."""
    return is_uri(text) or _RELATIVE_REF.fullmatch(text) is not None


def _format_checker():
    """jsonschema's FormatChecker; when no URI validator package is installed (jsonschema then
    silently accepts any 'uri'), our RFC 3986 checks stand in so the formats are never skipped."""
    jsonschema = pytest.importorskip("jsonschema")
    checker = jsonschema.FormatChecker()
    if checker.conforms("not a uri", "uri") or checker.conforms("a b", "uri-reference"):
        checker.checks("uri")(lambda value: not isinstance(value, str) or is_uri(value))
        checker.checks("uri-reference")(
            lambda value: not isinstance(value, str) or is_uri_reference(value))
    return checker


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=_format_checker())


def schema_errors(validator, log) -> list:
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(log)]


def test_constraints_schema_is_draft7_and_closed():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    open_objects = [name for name, definition in schema["definitions"].items()
                    if definition.get("type") == "object"
                    and definition.get("additionalProperties") is not False]
    assert open_objects == ["propertyBag"]  # SARIF's only open object
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("value, uri, reference", [
    ("https://github.com/o/r/blob/main/docs/rules.md#bn001", True, True),
    ("file:///C:/nets/a.prototxt", True, True),
    ("samples/lenet%20v1.prototxt", False, True),
    ("../shared/x.prototxt", False, True),
    ("%3Cstdin%3E", False, True),
    ("", False, True),
    ("a b.prototxt", False, False),
    ("na\u00efve.prototxt", False, False),
    ("C:\\nets\\a.prototxt", False, False),
    ("50%.prototxt", False, False),
    ("a:b/c.prototxt", True, True),  # parses as scheme "a"; our reporter never writes this
    ("dir/a:b.prototxt", False, True),
])
def test_uri_checks(value, uri, reference):
    assert is_uri(value) is uri
    assert is_uri_reference(value) is reference
    checker = _format_checker()
    assert checker.conforms(value, "uri") is uri
    assert checker.conforms(value, "uri-reference") is reference


# -- helpers -----------------------------------------------------------------------------------

def sarif(findings) -> dict:
    """The log exactly as the CLI writes it (through JSON)."""
    return json.loads(render(findings, "sarif"))


def line_starts(text: str) -> list:
    starts = [0]
    starts.extend(i + 1 for i, char in enumerate(text) if char == "\n")
    return starts


def check_log(validator, log: dict, findings: list, text_by_path: dict = None) -> None:
    """Schema-valid, and consistent with the findings: rules, levels, regions and URIs."""
    assert schema_errors(validator, log) == []
    assert log["version"] == "2.1.0" and len(log["runs"]) == 1
    run = log["runs"][0]
    assert run["columnKind"] == "unicodeCodePoints"
    rules = run["tool"]["driver"]["rules"]
    ids = [rule["id"] for rule in rules]
    assert ids == [rule.code for rule in all_rules()]
    assert len(set(ids)) == len(ids)
    for descriptor, rule in zip(rules, all_rules()):
        assert descriptor["defaultConfiguration"]["level"] == SARIF_LEVEL[rule.severity]
        assert descriptor["defaultConfiguration"]["enabled"] is rule.enabled_by_default
    results = run["results"]
    assert len(results) == len(findings)
    for result, finding in zip(results, findings):
        assert result["ruleId"] == finding.code
        assert result["ruleId"] in ids
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] == SARIF_LEVEL[finding.severity]
        assert result["message"]["text"] == finding.message
        [location] = result["locations"]
        physical = location["physicalLocation"]
        region = physical["region"]
        assert region == {"startLine": finding.line, "startColumn": finding.column,
                          "endLine": finding.end_line, "endColumn": finding.end_column}
        assert (region["endLine"], region["endColumn"]) >= \
               (region["startLine"], region["startColumn"])
        uri = physical["artifactLocation"]["uri"]
        assert is_uri_reference(uri) and not is_uri(uri) and not uri.startswith("/")
        if finding.fix is None:
            assert "properties" not in result
        else:
            assert result["properties"] == {"fixable": True, "fixSafe": finding.fix.safe}
        text = (text_by_path or {}).get(finding.path)
        if text is not None:
            # 1-based code-point columns, end exclusive: the region is the finding's span.
            starts = line_starts(text)
            start = starts[region["startLine"] - 1] + region["startColumn"] - 1
            end = starts[region["endLine"] - 1] + region["endColumn"] - 1
            assert start == finding.offset
            if finding.end_offset > finding.offset:
                assert text[start:end] == text[finding.offset:finding.end_offset]
                assert end == finding.end_offset


@pytest.fixture
def synthetic(tmp_path, monkeypatch):
    """The synthetic net in a directory with spaces and non-ASCII, linted by absolute path from
    its parent directory; returns (findings, text, relative path)."""
    monkeypatch.chdir(tmp_path)
    relative = Path("nets with spaces") / "réseau 網絡.prototxt"
    path = tmp_path / relative
    path.parent.mkdir()
    path.write_text(SYNTHETIC, encoding="utf-8")
    findings = lint_text(SYNTHETIC, str(path)).findings
    assert {f.severity for f in findings} == {"error", "warning", "info"}
    assert any(f.fix is not None and f.fix.safe for f in findings)
    assert any(f.fix is not None and not f.fix.safe for f in findings)
    return findings, SYNTHETIC, relative


# -- SARIF -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", sample_params())
def test_sarif_for_samples(validator, path):
    text = path.read_text(encoding="utf-8")
    display = str(path.relative_to(ROOT))
    findings = lint_text(text, display).findings
    check_log(validator, sarif(findings), findings, {display: text})


def test_sarif_synthetic_every_severity(validator, synthetic):
    findings, text, relative = synthetic
    log = sarif(findings)
    check_log(validator, log, findings, {findings[0].path: text})
    results = log["runs"][0]["results"]
    assert {r["level"] for r in results} == {"error", "warning", "note"}
    expected_uri = "nets%20with%20spaces/r%C3%A9seau%20%E7%B6%B2%E7%B5%A1.prototxt"
    assert {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for r in results} == {expected_uri}
    assert unquote(expected_uri) == relative.as_posix()
    # The astral character before the bottom counts as one column (code points, not UTF-16).
    line = text.splitlines()[17]
    [region] = [r["locations"][0]["physicalLocation"]["region"] for r in results
                if "'nowhere'" in r["message"]["text"]]
    assert region["startLine"] == 18
    assert region["startColumn"] == line.index('bottom: "nowhere"') + 1
    assert region["endColumn"] == line.index(' top: "relu1"') + 1
    assert line[region["startColumn"] - 1:region["endColumn"] - 1] == 'bottom: "nowhere"'


def test_sarif_empty_run(validator):
    log = sarif([])
    check_log(validator, log, [])
    assert log["runs"][0]["results"] == []
    assert len(log["runs"][0]["tool"]["driver"]["rules"]) == len(all_rules())
    clean = lint_text('name: "empty"\n', "clean.prototxt").findings
    assert clean == [] and sarif(clean) == log


def test_sarif_syntax_error(validator):
    text = 'name: "x"\nlayer {\n  name: "a"\n  type: "ReLU"\n'
    findings = lint_text(text, "broken net.prototxt").findings
    assert [f.code for f in findings] == ["S001"]
    log = sarif(findings)
    check_log(validator, log, findings, {"broken net.prototxt": text})
    [result] = log["runs"][0]["results"]
    assert result["level"] == "error"
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == \
        "broken%20net.prototxt"


@pytest.mark.parametrize("path", corpus_params())
def test_sarif_for_corpus(validator, path):
    text = decode_text(path.read_bytes())
    findings = lint_text(text, str(path)).findings
    check_log(validator, sarif(findings), findings, {str(path): text})


@pytest.mark.parametrize("path, uri", [
    ("samples/lenet.prototxt", "samples/lenet.prototxt"),
    ("dir with spaces/a b.prototxt", "dir%20with%20spaces/a%20b.prototxt"),
    ("na\u00efve/r\u00e9seau.prototxt", "na%C3%AFve/r%C3%A9seau.prototxt"),
    ("\u65e5\u672c\u8a9e.prototxt", "%E6%97%A5%E6%9C%AC%E8%AA%9E.prototxt"),
    ("\U0001f600.prototxt", "%F0%9F%98%80.prototxt"),
    ("50% #1?.prototxt", "50%25%20%231%3F.prototxt"),
    ("a:b,c;d.prototxt", "a%3Ab%2Cc%3Bd.prototxt"),
    ("./x/../y.prototxt", "x/../y.prototxt"),
])
def test_sarif_uris_relative_slashed_encoded(validator, path, uri):
    finding = Finding("S001", "syntax-error", "error", "m", path, 1, 1, 1, 1)
    log = sarif([finding])
    assert schema_errors(validator, log) == []
    written = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"][
        "artifactLocation"]["uri"]
    assert written == uri
    assert is_uri_reference(written) and not is_uri(written)


def test_sarif_absolute_paths_become_relative(validator, tmp_path, monkeypatch):
    inside = tmp_path / "work dir" / "nets" / "a b.prototxt"
    outside = tmp_path / "other" / "ünï.prototxt"
    inside.parent.mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work dir")
    findings = [Finding("S001", "syntax-error", "error", "m", str(path), 1, 1, 1, 1)
                for path in (inside, outside)]
    log = sarif(findings)
    assert schema_errors(validator, log) == []
    uris = [r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for r in log["runs"][0]["results"]]
    assert uris == ["nets/a%20b.prototxt", "../other/%C3%BCn%C3%AF.prototxt"]
    for uri in uris:
        assert "\\" not in uri and not uri.startswith("/") and not is_uri(uri)


def _run_cli(args) -> tuple:
    out = io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = stdout, io.StringIO()
    try:
        code = main(args)
    finally:
        stdout.flush()
        sys.stdout, sys.stderr = old
    return code, out.getvalue().decode("utf-8")


def test_cli_sarif_output(validator, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    odd = Path("dir with spaces") / "ünï 網絡.prototxt"
    odd.parent.mkdir()
    odd.write_text(SYNTHETIC, encoding="utf-8")
    clean = Path("clean.prototxt")
    clean.write_text('name: "empty"\n', encoding="utf-8")
    broken = tmp_path / "broken.prototxt"  # absolute
    broken.write_text("layer {\n", encoding="utf-8")
    code, out = _run_cli(["lint", "--format", "sarif", str(odd), str(clean), str(broken)])
    assert code == 1
    log = json.loads(out)
    findings = (lint_text(SYNTHETIC, str(odd)).findings
                + lint_text("layer {\n", str(broken)).findings)
    check_log(validator, log, findings, {str(odd): SYNTHETIC, str(broken): "layer {\n"})
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for r in log["runs"][0]["results"]}
    assert uris == {"dir%20with%20spaces/%C3%BCn%C3%AF%20%E7%B6%B2%E7%B5%A1.prototxt",
                    "broken.prototxt"}
    code, out = _run_cli(["lint", "--format", "sarif", str(clean)])
    assert code == 0 and json.loads(out) == sarif([])


# -- the constraints schema rejects bad SARIF ---------------------------------------------------

def _result(log):
    return log["runs"][0]["results"][0]


def _region(log):
    return _result(log)["locations"][0]["physicalLocation"]["region"]


def _rule(log):
    return log["runs"][0]["tool"]["driver"]["rules"][0]


BAD_SARIF = {
    "result level info": lambda log: _result(log).update(level="info"),
    "result without message": lambda log: _result(log).pop("message"),
    "message without text": lambda log: _result(log).update(message={"markdown": "m"}),
    "message text not a string": lambda log: _result(log)["message"].update(text=1),
    "unknown property in result": lambda log: _result(log).update(rule_id="BN001"),
    "ruleIndex below -1": lambda log: _result(log).update(ruleIndex=-2),
    "ruleIndex not an integer": lambda log: _result(log).update(ruleIndex=1.5),
    "startLine 0": lambda log: _region(log).update(startLine=0),
    "startColumn 0": lambda log: _region(log).update(startColumn=0),
    "endColumn 0": lambda log: _region(log).update(endColumn=0),
    "endLine as text": lambda log: _region(log).update(endLine="3"),
    "misspelt region key": lambda log: _region(log).update(startcolumn=_region(log)["startColumn"]),
    "uri with a space": lambda log: _result(log)["locations"][0]["physicalLocation"][
        "artifactLocation"].update(uri="a b.prototxt"),
    "uri with backslashes": lambda log: _result(log)["locations"][0]["physicalLocation"][
        "artifactLocation"].update(uri="C:\\nets\\a.prototxt"),
    "physicalLocation without artifactLocation": lambda log: _result(log)["locations"][0][
        "physicalLocation"].pop("artifactLocation"),
    "version 2.1": lambda log: log.update(version="2.1"),
    "no runs": lambda log: log.pop("runs"),
    "unknown top-level property": lambda log: log.update(sarifVersion="2.1.0"),
    "bad $schema": lambda log: log.update({"$schema": "sarif schema"}),
    "run without tool": lambda log: log["runs"][0].pop("tool"),
    "columnKind in bytes": lambda log: log["runs"][0].update(columnKind="bytes"),
    "driver without name": lambda log: log["runs"][0]["tool"]["driver"].pop("name"),
    "relative informationUri": lambda log: log["runs"][0]["tool"]["driver"].update(
        informationUri="docs/index.html"),
    "rule without id": lambda log: _rule(log).pop("id"),
    "relative helpUri": lambda log: _rule(log).update(helpUri="docs/rules.md#bn001"),
    "shortDescription without text": lambda log: _rule(log).update(shortDescription={}),
    "default level info": lambda log: _rule(log)["defaultConfiguration"].update(level="info"),
    "enabled as text": lambda log: _rule(log)["defaultConfiguration"].update(enabled="yes"),
    "duplicate tags": lambda log: _rule(log)["properties"].update(tags=["BN", "BN"]),
    "duplicate rules": lambda log: log["runs"][0]["tool"]["driver"]["rules"].append(
        copy.deepcopy(_rule(log))),
}


@pytest.mark.parametrize("mutation", BAD_SARIF, ids=list(BAD_SARIF))
def test_constraints_schema_rejects_bad_sarif(validator, synthetic, mutation):
    findings, _, _ = synthetic
    log = sarif(findings)
    assert schema_errors(validator, log) == []
    BAD_SARIF[mutation](log)
    assert schema_errors(validator, log) != [], mutation


# -- JSON --------------------------------------------------------------------------------------

def test_json_round_trips_with_fixes(synthetic):
    findings, text, _ = synthetic
    data = json.loads(render(findings, "json"))
    assert data == [finding_to_dict(f) for f in findings]
    assert json.loads(json.dumps(data)) == data
    assert render([], "json") == "[]\n"
    keys = {"code", "name", "severity", "message", "path", "line", "column", "end_line",
            "end_column", "layer", "fix"}
    for entry, finding in zip(data, findings):
        assert set(entry) == keys
        rebuilt = Finding(entry["code"], entry["name"], entry["severity"], entry["message"],
                          entry["path"], entry["line"], entry["column"], entry["end_line"],
                          entry["end_column"])
        assert rebuilt.format().removesuffix(" [*]") == finding.format().removesuffix(" [*]")
        assert entry["layer"] == finding.layer
        if finding.fix is None:
            assert entry["fix"] is None
            continue
        fix = entry["fix"]
        assert fix["safe"] is finding.fix.safe
        assert fix["description"] == finding.fix.description
        edits = [TextEdit(e["start"], e["end"], e["replacement"]) for e in fix["edits"]]
        assert edits == list(finding.fix.edits)
        # The JSON carries everything needed to apply the fix.
        assert apply_edits(text, edits) == apply_edits(text, finding.fix.edits) != text
    assert any(entry["fix"] and entry["fix"]["safe"] for entry in data)
    assert any(entry["fix"] and not entry["fix"]["safe"] for entry in data)


# -- GitHub workflow commands ------------------------------------------------------------------

GITHUB_LINE = re.compile(
    r"::(?P<command>error|warning|notice) file=(?P<file>[^,:]*),line=(?P<line>\d+),"
    r"col=(?P<col>\d+),endLine=(?P<endLine>\d+),endColumn=(?P<endColumn>\d+),"
    r"title=(?P<title>[^,:]*)::(?P<message>.*)")


def unescape_data(text: str) -> str:
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def unescape_property(text: str) -> str:
    return unescape_data(text.replace("%3A", ":").replace("%2C", ","))


def test_github_lines(synthetic):
    findings, _, _ = synthetic
    output = render(findings, "github")
    lines = output.split("\n")
    assert lines.pop() == "" and len(lines) == len(findings)
    for line, finding in zip(lines, findings):
        assert "\r" not in line
        match = GITHUB_LINE.fullmatch(line)
        assert match, line
        assert match["command"] == GITHUB_COMMAND[finding.severity]
        assert unescape_property(match["file"]) == finding.path
        assert (int(match["line"]), int(match["col"]), int(match["endLine"]),
                int(match["endColumn"])) == (finding.line, finding.column, finding.end_line,
                                             finding.end_column)
        assert unescape_property(match["title"]) == f"{finding.code} {finding.name}"
        assert unescape_data(match["message"]) == finding.message
    assert {line.split(" ", 1)[0] for line in lines} == {"::error", "::warning", "::notice"}
    [odd] = [line for line in lines if "also:missing" in line]
    assert odd.endswith("::layer 'odd%251,2:3%0A4' reads bottom 'also:missing,50%25' in TRAIN "
                        "and TEST, but no layer produces it")


def test_github_escaping_properties_and_data():
    finding = Finding("G001", "unknown-bottom", "info", "50% done\r\nnext: a, b",
                      "dir,1/a:b%c.prototxt", 3, 4, 5, 6)
    assert github_line(finding) == (
        "::notice file=dir%2C1/a%3Ab%25c.prototxt,line=3,col=4,endLine=5,endColumn=6,"
        "title=G001 unknown-bottom::50%25 done%0D%0Anext: a, b")
    assert render([finding], "github") == github_line(finding) + "\n"
    stdin = Finding("S001", "syntax-error", "error", "m", None, 1, 1, 1, 1)
    assert github_line(stdin).startswith("::error file=<stdin>,line=1,col=1,")


# -- text --------------------------------------------------------------------------------------

def test_text_lines(synthetic):
    findings, _, _ = synthetic
    output = render(findings, "text")
    assert output == "".join(f.format() + "\n" for f in findings)
    assert output.count("\n") == len(findings)  # one line per finding, whatever the message
    for finding in findings:
        message = finding.message.replace("\r", "\\r").replace("\n", "\\n")
        line = (f"{finding.path}:{finding.line}:{finding.column}: {finding.code} "
                f"[{finding.severity}] {message}")
        safe = finding.fix is not None and finding.fix.safe
        assert finding.format() == line + (" [*]" if safe else "")
        assert output.count(line + " [*]\n") == (1 if safe else 0)
    assert render([], "text") == ""


def test_text_marks_only_safe_fixes():
    base = ("BN003", "bn-trainable-stats", "error", "msg", "n.prototxt", 2, 3, 2, 9)
    plain = Finding(*base)
    safe = Finding(*base, fix=Fix((), True, "fix"))
    unsafe = Finding(*base, fix=Fix((), False, "fix"))
    assert plain.format() == "n.prototxt:2:3: BN003 [error] msg"
    assert safe.format() == "n.prototxt:2:3: BN003 [error] msg [*]"
    assert unsafe.format() == plain.format()
    nameless = Finding("S001", "syntax-error", "error", "m", None, 1, 1, 1, 1)
    assert nameless.format() == "<input>:1:1: S001 [error] m"


def test_unknown_format():
    with pytest.raises(ValueError):
        render([], "xml")
