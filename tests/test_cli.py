"""The prototxt command: exit codes, messages, atomic outputs, no tracebacks."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from conftest import ROOT, SAMPLE_FILES
from prototxt_tools.cli import main


def run(args, stdin: bytes = b""):
    """Run the CLI in this process; returns (exit code, stdout, stderr)."""
    out, err = io.BytesIO(), io.StringIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    old = sys.stdout, sys.stderr, sys.stdin
    sys.stdout, sys.stderr = stdout, err
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        code = main(args)
    finally:
        stdout.flush()
        sys.stdout, sys.stderr, sys.stdin = old
    return code, out.getvalue().decode("utf-8", "surrogateescape"), err.getvalue()


def cli(*args, stdin: bytes = b"", cwd=None):
    """Run the installed command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "prototxt_tools", *args], input=stdin,
                          capture_output=True, cwd=cwd or ROOT, timeout=120)


@pytest.fixture
def bad_net(tmp_path):
    path = tmp_path / "bad.prototxt"
    path.write_text('layer {\n  name: "x"\n  typ: "ReLU"\n  pooling_param { pool: MAXX }\n}\n')
    return path


# -- check -------------------------------------------------------------------------------------

def test_check_samples_is_clean():
    code, out, err = run(["check", *map(str, SAMPLE_FILES)])
    assert code == 0 and out == ""
    assert f"checked {len(SAMPLE_FILES)} files: 0 errors, 0 warnings" in err


def test_check_reports_file_line_col(bad_net):
    code, out, err = run(["check", str(bad_net)])
    assert code == 1
    assert out.splitlines() == [
        f"{bad_net}:3:3: unknown field 'typ' in LayerParameter; did you mean 'type'?",
        f"{bad_net}:4:25: unknown value 'MAXX' for 'pool' (PoolMethod); did you mean 'MAX'? "
        f"expected one of MAX, AVE, STOCHASTIC",
    ]


def test_check_syntax_error_is_a_finding(tmp_path):
    path = tmp_path / "broken.prototxt"
    path.write_text("layer {\n  name: 'x'\n")
    code, out, _ = run(["check", str(path)])
    assert (code, out) == (1, f"{path}:1:7: '{{' is never closed (end of file reached)\n")


def test_check_missing_file_is_exit_2(tmp_path):
    code, out, _ = run(["check", str(tmp_path / "nope.prototxt"), *map(str, SAMPLE_FILES[:1])])
    assert code == 2 and f"{tmp_path / 'nope.prototxt'}: no such file" in out


def test_check_warnings_and_strict(tmp_path):
    path = tmp_path / "fork.prototxt"
    path.write_text("layer { name: 'b' type: 'BN' bn_param { frozen: true } }\n")
    code, out, _ = run(["check", str(path)])
    assert code == 0 and ": warning: 'bn_param' belongs to" in out
    assert run(["check", "--strict", str(path)])[0] == 1
    assert run(["check", "--quiet", str(path)])[1] == ""


def test_check_kind_and_stdin():
    code, out, _ = run(["check", "--kind", "solver", "-"], stdin=b"base_lr: 0.1\nlayer {}\n")
    assert code == 1 and out.startswith("<stdin>:2:1: unknown field 'layer' in SolverParameter")


def test_check_binary_files(tmp_path):
    from prototxt_tools.schema import caffe_pb2

    good = tmp_path / "w.caffemodel"
    net = caffe_pb2.NetParameter(name="n")
    net.layer.add(name="conv", type="Convolution")
    good.write_bytes(net.SerializeToString())
    bad = tmp_path / "junk.caffemodel"
    bad.write_bytes(b"\xff\xff\xff\xff not protobuf")
    assert run(["check", str(good)])[0] == 0
    code, out, _ = run(["check", str(bad)])
    assert code == 1 and out.startswith(f"{bad}: not a valid .caffemodel")


# -- fmt ---------------------------------------------------------------------------------------

UGLY = "layer{name:'a' type:\"ReLU\"   # relu\n  bottom:'x';top:'x'}\n"
PRETTY = 'layer {\n  name: "a"\n  type: "ReLU"  # relu\n  bottom: "x"\n  top: "x"\n}\n'


def test_fmt_prints_to_stdout(tmp_path):
    path = tmp_path / "a.prototxt"
    path.write_text(UGLY)
    assert run(["fmt", str(path)]) == (0, PRETTY, "")
    assert path.read_text() == UGLY  # never overwritten unless asked
    assert run(["fmt", "-"], stdin=UGLY.encode()) == (0, PRETTY, "")


def test_fmt_check_and_diff(tmp_path):
    ugly, pretty = tmp_path / "u.prototxt", tmp_path / "p.prototxt"
    ugly.write_text(UGLY)
    pretty.write_text(PRETTY)
    code, out, err = run(["fmt", "--check", str(ugly), str(pretty)])
    assert code == 1 and out == ""
    assert err == f"would reformat {ugly}\n1 of 2 files would be reformatted\n"
    assert run(["fmt", "--check", str(pretty)]) == (0, "", "1 file already formatted\n")
    code, out, _ = run(["fmt", "--diff", str(ugly)])
    assert code == 1 and out.startswith(f"--- {ugly} (original)\n+++ {ugly} (formatted)\n")
    assert "+  type: \"ReLU\"  # relu\n" in out


def test_fmt_in_place_is_atomic_and_keeps_mode(tmp_path):
    path = tmp_path / "a.prototxt"
    path.write_text(UGLY)
    os.chmod(path, 0o640)
    code, _, err = run(["fmt", "--in-place", str(path)])
    assert code == 0 and err == f"reformatted {path}\n"
    assert path.read_text() == PRETTY
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.prototxt"]  # no temp files left


def test_fmt_bad_input_leaves_files_alone(tmp_path):
    path = tmp_path / "a.prototxt"
    path.write_text("layer { name: 'a'\n")
    code, out, err = run(["fmt", "--in-place", str(path)])
    assert code == 2 and out == ""
    assert err == f"{path}:1:7: '{{' is never closed (end of file reached)\n"
    assert path.read_text() == "layer { name: 'a'\n"


def test_fmt_usage_errors(tmp_path):
    assert run(["fmt", "a", "b"])[0] == 2
    assert run(["fmt", "--in-place", "-"])[0] == 2


# -- weights, help, version, robustness --------------------------------------------------------

def test_weights_lists_blobs(tmp_path):
    np = pytest.importorskip("numpy")
    from prototxt_tools.schema.caffemodel import write_weights

    path = tmp_path / "w.caffemodel"
    rng = np.random.default_rng(0)
    write_weights([("conv1", "Convolution", [rng.standard_normal((4, 3, 3, 3), dtype=np.float32),
                                             np.zeros(4, np.float32)])], path)
    code, out, _ = run(["weights", str(path)])
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["layer", "type", "blob", "shape", "dtype", "count",
                                              "sha256"]
    assert lines[1].split()[:6] == ["conv1", "Convolution", "0", "4x3x3x3", "float32", "108"]
    assert lines[2].split()[:6] == ["conv1", "Convolution", "1", "4", "float32", "4"]
    assert lines[-1] == "1 layer with blobs, 2 blobs, 112 values"


@pytest.mark.parametrize("command", ["check", "fmt", "weights"])
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0
    assert "examples:\n  prototxt " + command in capsys.readouterr().out


def test_version_and_no_command():
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.decode().startswith("prototxt-tools ")
    assert cli().returncode == 2


@pytest.mark.parametrize("content", [b"\x00\x01\x02garbage", b"layer { name: \xff\xfe }",
                                     b"\x89PNG\r\n\x1a\n", b"}" * 3, b"a { " * 500])
def test_garbage_never_gives_a_traceback(tmp_path, content):
    path = tmp_path / "junk.prototxt"
    path.write_bytes(content)
    for args in (["check", str(path)], ["fmt", str(path)]):
        result = cli(*args)
        stderr = result.stderr.decode()
        assert result.returncode in (1, 2), stderr
        assert "Traceback" not in stderr
        combined = (result.stdout + result.stderr).decode().strip().splitlines()
        assert combined and combined[0].startswith(f"{path}:")


def test_directory_argument_is_a_clean_error(tmp_path):
    result = cli("check", str(tmp_path))
    assert result.returncode == 2 and b"is a directory" in result.stdout
    assert b"Traceback" not in result.stderr


def test_check_does_not_import_numpy_or_torch():
    code = ("import sys\n"
            "from prototxt_tools.cli import main\n"
            f"rc = main(['check', *{[str(p) for p in SAMPLE_FILES]!r}])\n"
            "assert rc == 0, rc\n"
            "bad = [m for m in ('numpy', 'torch') if m in sys.modules]\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr.decode()
