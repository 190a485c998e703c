"""The lint engine and command: selection, configuration, suppressions, fixes, exit codes, and
the whole corpus."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CORPUS, CORPUS_FILES, ROOT, SAMPLE_FILES, corpus_params, sample_params
from prototxt_tools import bind, parse
from prototxt_tools.layers.base import TEST, TRAIN
from prototxt_tools.lint import LintConfig, LintOptions, all_rules, fix_text, get_rule, lint_text
from prototxt_tools.lint.config import load_config, parse_option
from prototxt_tools.errors import PrototxtError
from test_cli import run

BN_NET = """\
layer { name: "data" type: "Data" top: "data" data_param { source: "db" batch_size: 8 } }
layer {
  name: "conv"
  type: "Convolution"
  bottom: "data"
  top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 }
}
layer {
  name: "bn"
  type: "BatchNorm"
  bottom: "conv"
  top: "conv"
  param { lr_mult: 1 }
  param { lr_mult: 1 }
  param { lr_mult: 1 }
  batch_norm_param { use_global_stats: false }
}
"""


def codes(text: str, **config) -> list:
    return sorted({f.code for f in lint_text(text, "t.prototxt", LintConfig(**config)).findings})


# -- selection ---------------------------------------------------------------------------------

def test_default_selection_and_prefixes():
    # G008: the convolution's output is never read in TRAIN.
    assert codes(BN_NET) == ["BN001", "BN003", "BN005", "BN007", "G008"]
    assert codes(BN_NET, select=("BN00",)) == ["BN001", "BN003", "BN005", "BN007"]
    assert codes(BN_NET, ignore=("BN",)) == ["G008"]
    assert codes(BN_NET, select=("BN003",), ignore=("BN",)) == ["BN003"]  # longest match wins
    assert codes(BN_NET, ignore=("BN001", "BN007", "G")) == ["BN003", "BN005"]


def test_rules_off_by_default_need_selecting():
    net = 'layer { name: "relu" type: "ReLU" bottom: "c" top: "c" }\n' \
          'layer { name: "bn" type: "BatchNorm" bottom: "c" top: "c" }\n'
    assert "BN009" not in codes(net)
    assert "BN009" in codes(net, extend_select=("BN009",))
    assert "BN009" in codes(net, select=("BN009",))
    assert get_rule("BN009").enabled_by_default is False


def test_config_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.prototxt-tools.lint]\nignore = ["BN007"]\nfail-on = "warning"\n'
        '[tool.prototxt-tools.lint.options.BN006]\nthreshold = 32\n')
    config = load_config()
    assert config.ignore == ("BN007",) and config.fail_on == "warning"
    assert config.options == {"BN006": {"threshold": 32}}
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    (tmp_path / "a" / ".prototxt-tools.toml").write_text('[lint]\nselect = ["G"]\n')
    monkeypatch.chdir(nested)
    assert load_config().select == ("G",)  # the nearest file wins
    (tmp_path / "a" / ".prototxt-tools.toml").write_text('[lint]\nselct = ["G"]\n')
    with pytest.raises(PrototxtError, match="unknown lint setting"):
        load_config()


def test_option_parsing():
    assert parse_option("BN006.threshold=32") == ("BN006", "threshold", 32)
    assert parse_option('bn009.preferred="after-activation"') == ("BN009", "preferred",
                                                                  "after-activation")
    assert parse_option("BN009.preferred=after-activation")[2] == "after-activation"
    with pytest.raises(PrototxtError):
        parse_option("threshold")


# -- suppressions ------------------------------------------------------------------------------

@pytest.mark.parametrize("comment,where,suppressed", [
    ("# prototxt: disable=BN001", "inside", True),
    ("# prototxt: disable=BN001", "above", True),
    ("# prototxt: disable=BN", "inside", True),
    ("# prototxt: disable=all", "inside", True),
    ("# prototxt: disable=BN002", "inside", False),
    ("# prototxt: disable=BN001", "detached", False),
    ("# prototxt: disable-file=BN001", "detached", True),
])
def test_inline_suppression(comment, where, suppressed):
    layer = 'layer {\n  name: "bn"\n  type: "BatchNorm"\n  bottom: "c"\n  top: "c"\n}\n'
    if where == "inside":
        text = layer.replace('  top: "c"\n', f'  top: "c"  {comment}\n')
    elif where == "above":
        text = f"{comment}\n" + layer
    else:
        text = f"{comment}\n\n" + layer
    result = lint_text(text, "t.prototxt", LintConfig(select=("BN001",)))
    assert bool(result.findings) != suppressed
    assert result.suppressed == (1 if suppressed else 0)


def test_suppression_applies_to_its_own_layer_only():
    text = ('layer { name: "bn1" type: "BatchNorm" bottom: "a" top: "a" }'
            '  # prototxt: disable=BN001\n'
            'layer { name: "bn2" type: "BatchNorm" bottom: "b" top: "b" }\n')
    result = lint_text(text, "t.prototxt", LintConfig(select=("BN001",)))
    assert [f.layer for f in result.findings] == ["bn2"]


# -- fixes -------------------------------------------------------------------------------------

def test_fix_applies_safe_fixes_only_and_settles():
    outcome = fix_text(BN_NET, "t.prototxt")
    assert outcome.converged
    assert sorted({f.code for f in outcome.applied}) == ["BN003", "BN005"]
    assert "lr_mult: 1" not in outcome.text and "use_global_stats" not in outcome.text
    remaining = sorted({f.code for f in outcome.result.findings})
    assert remaining == ["BN001", "BN007", "G008"]  # unsafe fixes wait for --unsafe-fixes
    assert fix_text(outcome.text, "t.prototxt").text == outcome.text


def test_unsafe_fixes_apply_everything():
    outcome = fix_text(BN_NET, "t.prototxt", unsafe=True)
    assert sorted({f.code for f in outcome.applied}) == ["BN001", "BN003", "BN005", "BN007"]
    assert codes(outcome.text, select=("BN",)) == []
    assert 'type: "Scale"' in outcome.text and "bias_term: false" in outcome.text


def test_fixes_keep_comments_and_untouched_bytes():
    text = "# header\n" + BN_NET.replace('name: "conv"', 'name: "conv"  # keep me') + "\n# tail\n"
    outcome = fix_text(text, "t.prototxt", unsafe=True)
    assert outcome.text.startswith("# header\nlayer {")
    assert '  name: "conv"  # keep me\n' in outcome.text and outcome.text.endswith("# tail\n")


# -- the command -------------------------------------------------------------------------------

@pytest.fixture
def bn_file(tmp_path):
    path = tmp_path / "train_val.prototxt"
    path.write_text(BN_NET)
    return path


def test_lint_command_output_and_exit_codes(bn_file):
    code, out, err = run(["lint", str(bn_file)])
    assert code == 1  # BN003 is an error
    lines = out.splitlines()
    assert lines[0].startswith(f"{bn_file}:")
    assert all(re.match(r".+:\d+:\d+: [A-Z]+\d{3} \[(error|warning|info)\] ", line)
               for line in lines)
    assert "fixable with --fix" in err
    assert run(["lint", "--ignore", "BN003", str(bn_file)])[0] == 0
    assert run(["lint", "--ignore", "BN003", "--fail-on", "warning", str(bn_file)])[0] == 1
    assert run(["lint", str(bn_file.with_name("missing.prototxt"))])[0] == 2
    assert run(["lint", "--select", "D", str(bn_file)])[1] == ""


def test_lint_fix_writes_atomically_and_diff_does_not(bn_file, tmp_path):
    original = bn_file.read_text()
    code, out, _ = run(["lint", "--diff", str(bn_file)])
    assert code == 1 and out.startswith(f"--- {bn_file} (original)")
    assert bn_file.read_text() == original
    code, out, err = run(["lint", "--fix", str(bn_file)])
    assert "fixed 2 findings in 1 file" in err
    assert "BN003" not in out and bn_file.read_text() != original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_val.prototxt"]
    assert run(["lint", "--diff", str(bn_file)])[1] == ""  # nothing left to fix safely


@pytest.mark.parametrize("fmt", ["json", "sarif", "github"])
def test_lint_formats(bn_file, fmt):
    code, out, _ = run(["lint", "--format", fmt, str(bn_file)])
    assert code == 1 and "BN003" in out


def test_rules_command():
    code, out, _ = run(["rules"])
    assert code == 0 and all(rule.code in out for rule in all_rules())
    code, out, _ = run(["rules", "bn001"])
    assert code == 0 and "BN001 bn-missing-scale" in out and "Fix safety." in out
    code, _, err = run(["rules", "BN100"])
    assert code == 2 and "did you mean" in err


def test_upgrade_command(tmp_path):
    v1 = SAMPLE_FILES[[p.name for p in SAMPLE_FILES].index("lenet_v1.prototxt")]
    code, out, _ = run(["upgrade", str(v1)])
    assert code == 0 and "layers {" not in out and 'type: "Convolution"' in out
    assert "# A prototxt-tools sample" in out  # comments survive
    target = tmp_path / "up.prototxt"
    assert run(["upgrade", str(v1), "-o", str(target)])[0] == 0
    assert target.read_text() == out
    assert bind(parse(out), "net").ok


def test_lint_never_imports_torch():
    code = ("import sys\nfrom prototxt_tools.cli import main\n"
            f"main(['lint', '-q', *{[str(p) for p in SAMPLE_FILES]!r}])\n"
            "assert 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr.decode()


def test_rules_docs_are_current():
    from prototxt_tools.lint.docs import DOCS_PATH, rules_markdown

    assert DOCS_PATH.read_text(encoding="utf-8") == rules_markdown(), \
        "run: python -m prototxt_tools.lint.docs"


# -- samples and corpus ------------------------------------------------------------------------

@pytest.mark.parametrize("path", sample_params())
def test_samples_lint_clean(path):
    result = lint_text(path.read_text(), str(path))
    assert not result.internal_errors
    assert [f.format() for f in result.findings] == []


def _manifest_kinds() -> dict:
    manifest = CORPUS / "manifest.tsv"
    if not manifest.exists():
        return {}
    with open(manifest, newline="") as handle:
        return {row["file"]: row["kind"] for row in csv.DictReader(handle, delimiter="\t")}


#: Error findings on corpus deploy nets that are true: the file really is rejected by BVLC Caffe.
TRUE_DEPLOY_ERRORS = {
    # ceil_mode is a fork/OpenCV field; BVLC Caffe rejects the file (and would round up).
    ("shicai__DenseNet-Caffe__DenseNet_121.prototxt", "S010"),
    ("shicai__DenseNet-Caffe__DenseNet_201.prototxt", "S010"),
}


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_lints_without_internal_errors(path):
    result = lint_text(path.read_bytes(), str(path))
    assert not result.internal_errors, result.internal_errors
    if _manifest_kinds().get(path.name) == "deploy":
        errors = {(path.name, f.code) for f in result.findings if f.severity == "error"}
        assert errors <= TRUE_DEPLOY_ERRORS, errors


def _comments(text: str) -> list:
    document = parse(text)
    return sorted(c.rstrip() for t in document.trivia_list() for c in re.findall(r"#[^\n]*", t))


# Fields the safe fixes may change, per layer type.
_FIXABLE = {"BatchNorm": ("param", "batch_norm_param"), "Pooling": ("pooling_param",)}


def _normalised_layers(text: str) -> list:
    message = bind(parse(text), "net").message
    layers = []
    for layer in message.layer:
        copy = type(layer)()
        copy.CopyFrom(layer)
        for name in _FIXABLE.get(copy.type, ()):
            copy.ClearField(name)
        layers.append(copy)
    return layers


@pytest.mark.parametrize("path", corpus_params())
def test_fix_on_corpus(path):
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    outcome = fix_text(text, str(path))
    assert outcome.converged
    again = lint_text(outcome.text, str(path))
    assert not [f.format() for f in again.findings if f.fix is not None and f.fix.safe]
    assert fix_text(outcome.text, str(path)).text == outcome.text
    assert _comments(outcome.text) == _comments(text)
    if outcome.text != text and bind(parse(text)).message.DESCRIPTOR.name == "NetParameter":
        assert _normalised_layers(outcome.text) == _normalised_layers(text)


def _legacy_params() -> list:
    kinds = _manifest_kinds()
    legacy = [p for p in CORPUS_FILES if kinds.get(p.name) == "v1_legacy"]
    if not legacy:
        return [pytest.param(None, marks=pytest.mark.skip(reason="no corpus"))]
    return [pytest.param(p, id=p.name[:90]) for p in legacy]


@pytest.mark.parametrize("path", _legacy_params())
def test_upgrade_on_legacy_corpus_files(path):
    from prototxt_tools.net.upgrade import upgrade_text

    result = upgrade_text(parse(path.read_bytes(), str(path)))
    document = parse(result.text)
    assert not document.get_all("layers")
    lint = lint_text(result.text, "up.prototxt", LintConfig(select=("S",)))
    # The template file keeps its placeholder error (S008); nothing else may remain.
    schema_errors = [f for f in lint.findings if f.severity == "error" and f.code != "S008"]
    assert schema_errors == [], [f.format() for f in schema_errors]


# -- shapes -----------------------------------------------------------------------------------

def _net(name: str, **input_shapes):
    from prototxt_tools.net.model import Net

    path = ROOT / "samples" / name
    return Net.from_document(parse(path.read_text(), str(path)), input_shapes=input_shapes)


def _shape(view, blob: str):
    refs = [ref for ref in view.producer if ref.name == blob]
    return view.shapes.shapes[max(refs, key=lambda ref: ref.version)]


def test_sample_shapes_by_hand():
    deploy = _net("resnet_tiny_deploy.prototxt").view(TEST)
    assert _shape(deploy, "data") == (1, 3, 32, 32)
    assert _shape(deploy, "res2a") == (1, 16, 32, 32)
    assert _shape(deploy, "res3a") == (1, 32, 16, 16)  # floor((32 + 2 - 3) / 2) + 1
    assert _shape(deploy, "pool_global") == (1, 32, 1, 1)
    assert _shape(deploy, "prob") == (1, 10)
    train = _net("resnet_tiny_train_val.prototxt")
    test_view = train.view(TEST)
    assert _shape(test_view, "data") == (100, 3, 32, 32)  # crop 32, three mean values
    assert _shape(test_view, "label") == (100,)
    assert _shape(test_view, "loss") == ()
    assert _shape(train.view(TRAIN), "fc10") == (128, 10)
    # MNIST's size comes from the database, so it is given here as --input-shape would.
    assert _shape(_net("lenet_bn_train_val.prototxt").view(TRAIN), "conv1") == (64, 20, None, None)
    lenet = _net("lenet_bn_train_val.prototxt", data=(64, 1, 28, 28)).view(TRAIN)
    assert _shape(lenet, "conv1") == (64, 20, 24, 24)
    assert _shape(lenet, "pool1") == (64, 20, 12, 12)
    assert _shape(lenet, "pool2") == (64, 50, 4, 4)
    assert _shape(lenet, "ip2") == (64, 10)


def test_input_shape_override_feeds_unknown_data():
    text = ('layer { name: "d" type: "Data" top: "data" '
            'data_param { source: "db" batch_size: 2 } }\n'
            'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
            'convolution_param { num_output: 4 kernel_size: 3 } }\n')
    from prototxt_tools.net.model import Net

    net = Net.from_document(parse(text), input_shapes={"data": (2, 3, 9, 9)})
    assert _shape(net.view(TRAIN), "c") == (2, 4, 7, 7)
    options = LintOptions(input_shapes={"data": (1, 3, 9, 9)}, phases=(TRAIN,))
    bn = text + 'layer { name: "bn" type: "BatchNorm" bottom: "c" top: "c" }\n'
    result = lint_text(bn, "t.prototxt", LintConfig(select=("BN006",)), options)
    assert [f.code for f in result.findings] == []  # 1 * 7 * 7 = 49 values per channel


def test_corpus_present_or_skipped():
    if not CORPUS_FILES:
        pytest.skip("no corpus")
    assert len(CORPUS_FILES) > 50
    assert Path(CORPUS / "manifest.tsv").exists()
