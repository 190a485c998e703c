"""prototxt_tools.schema.generate: our proto2 parser against protoc, the TSV and the runtime."""

from __future__ import annotations

import ast
import os
import pickle
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, text_format

from prototxt_tools.schema import generate
from prototxt_tools.schema.generate import ProtoError, main, parse_proto, render_module

REPO = Path(__file__).resolve().parents[1]
SCHEMA_TSV = Path(__file__).resolve().parents[2] / "shared" / "caffe-schema.tsv"
F = descriptor_pb2.FieldDescriptorProto


def _caffe_fdp() -> descriptor_pb2.FileDescriptorProto:
    return parse_proto(generate.PROTO_PATH.read_text(encoding="utf-8"))


def _protoc_fdp(proto: Path, tmp_path: Path) -> descriptor_pb2.FileDescriptorProto:
    """What protoc itself builds for ``proto``, json_name cleared (we never set it)."""
    out = tmp_path / "descriptor.pb"
    result = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto.parent}",
         f"--descriptor_set_out={out}", str(proto)],
        check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    assert len(files) == 1
    return _without_json_names(files[0])


def _without_json_names(fdp: descriptor_pb2.FileDescriptorProto):
    """Drop what protoc and the runtime add but a generated module never embeds."""
    def clear(messages) -> None:
        for message in messages:
            for field in message.field:
                field.ClearField("json_name")
            clear(message.nested_type)

    clear(fdp.message_type)
    fdp.ClearField("source_code_info")
    return fdp


def _assert_same(ours: descriptor_pb2.FileDescriptorProto,
                 theirs: descriptor_pb2.FileDescriptorProto) -> None:
    if ours != theirs:  # show a readable diff rather than two 15 kB reprs
        import difflib
        diff = difflib.unified_diff(str(theirs).splitlines(), str(ours).splitlines(),
                                    "protoc", "parse_proto", lineterm="", n=4)
        pytest.fail("\n".join(list(diff)[:120]))


# --------------------------------------------------------------------------------------------
# The committed module

def test_committed_module_is_current():
    committed = generate.MODULE_PATH.read_text(encoding="utf-8")
    assert committed == render_module(_caffe_fdp()), (
        "caffe_pb2.py is stale: run python -m prototxt_tools.schema.generate")


def test_render_is_deterministic_and_wrapped():
    first, second = render_module(_caffe_fdp()), render_module(_caffe_fdp())
    assert first == second
    assert "runtime_version" not in first  # works on protobuf 3.20 through 7.x
    assert "Default()" not in first        # private pool, never the default one
    assert max(len(line) for line in first.splitlines()) <= 79
    compile(first, "caffe_pb2.py", "exec")


def test_embedded_descriptor_round_trips():
    from prototxt_tools.schema import caffe_pb2

    fdp = descriptor_pb2.FileDescriptorProto()
    caffe_pb2.DESCRIPTOR.CopyToProto(fdp)  # the runtime's view of what it loaded
    ours = _caffe_fdp()
    # upb writes float defaults back with %.9g ("9.99999994e-09" for protoc's "1e-08"):
    # compare those by value, everything else as text.
    for runtime_message, message in zip(fdp.message_type, ours.message_type):
        for runtime_field, field in zip(runtime_message.field, message.field):
            if field.type == F.TYPE_FLOAT and field.HasField("default_value"):
                assert _f32(runtime_field.default_value) == _f32(field.default_value)
                runtime_field.default_value = field.default_value
    _assert_same(_without_json_names(fdp), ours)
    assert fdp.name == "caffe.proto" and fdp.package == "caffe"


def test_check_and_write(tmp_path, capsys):
    target = tmp_path / "caffe_pb2.py"
    assert main(["--output", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == generate.MODULE_PATH.read_text(encoding="utf-8")
    assert main(["--check", "--output", str(target)]) == 0
    assert capsys.readouterr().err == ""

    target.write_text(target.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    assert main(["--check", "--output", str(target)]) == 1
    err = capsys.readouterr().err
    assert "stale" in err and err.count("\n") == 1
    assert target.read_text(encoding="utf-8").endswith("# edited\n")  # --check never writes

    assert main(["--output", str(target)]) == 0
    assert main(["--check", "--output", str(target)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["caffe_pb2.py"]  # no temp file left


def test_check_when_module_is_missing(tmp_path, capsys):
    assert main(["--check", "--output", str(tmp_path / "absent.py")]) == 1
    assert "stale" in capsys.readouterr().err


def test_cli_reports_proto_errors_with_location(tmp_path, capsys):
    bad = tmp_path / "bad.proto"
    bad.write_text('syntax = "proto2";\nmessage A {\n  optional int32 x = 1 [default = "1"];\n}\n',
                   encoding="utf-8")
    assert main(["--proto", str(bad), "--output", str(tmp_path / "out.py")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3:35:" in err and err.count("\n") == 1
    assert not (tmp_path / "out.py").exists()


# --------------------------------------------------------------------------------------------
# Against protoc

def test_caffe_proto_matches_protoc(tmp_path):
    pytest.importorskip("grpc_tools")
    _assert_same(_caffe_fdp(), _protoc_fdp(generate.PROTO_PATH, tmp_path))


# Everything the parser claims to handle, beyond what caffe.proto happens to use: scoping,
# shadowing, every scalar type, default formatting (float/double rounding, hex and octal,
# escapes, adjacent strings, inf/nan, -0), packed/deprecated, comments.
SUBSET_PROTO = r"""
// A line comment.
syntax = "proto2";
package demo.sub;
/* A block
   comment. */
enum Top { A = 0; B = -1; C = 0x10; }
message Outer {
  enum Kind { X = 1; Y = 2; }
  message Inner {
    enum Kind { P = 0; Q = 1; }
    optional Kind k = 1 [default = Q];
    optional Outer.Kind ok = 2 [default = Y];
    optional .demo.sub.Top t = 3 [default = B];
    optional sub.Top t2 = 4;
    optional demo.sub.Outer o = 5;
  }
  optional Inner inner = 1;
  optional Kind kind = 2 [default = X, deprecated = true];
  optional float f1 = 3 [default = 0.1];
  optional float f2 = 4 [default = 1e-5];
  optional float f3 = 5 [default = 16777217];
  optional float f4 = 6 [default = -inf];
  optional float f5 = 7 [default = nan];
  optional float f6 = 8 [default = 3.4028235e38];
  optional float f7 = 9 [default = 1e39];
  optional float f8 = 10 [default = 1.];
  optional float f9 = 11 [default = 0.3333333333];
  optional double d1 = 12 [default = 0.1];
  optional double d2 = 13 [default = 1e300];
  optional double d3 = 14 [default = 0x10];
  optional double d4 = 15 [default = -0.0];
  optional double d5 = 16 [default = 123456789012345678];
  optional double d6 = 17 [default = .5e1];
  optional double d7 = 18 [default = 0.30000000000000004];
  optional int32 i1 = 19 [default = -2147483648];
  optional int64 i2 = 20 [default = 0x7fffffffffffffff];
  optional uint32 i3 = 21 [default = 017];
  optional uint64 i4 = 22 [default = 18446744073709551615];
  optional sint32 i5 = 23 [default = -0];
  optional sint64 i6 = 24 [default = -5];
  optional fixed32 i7 = 25 [default = 0xFFFFFFFF];
  optional fixed64 i8 = 26 [default = 7];
  optional sfixed32 i9 = 27 [default = -7];
  optional sfixed64 i10 = 28 [default = -9223372036854775808];
  optional bool b1 = 29 [default = true];
  optional bool b2 = 30 [default = false];
  optional string s1 = 31 [default = "tab\there \"q\" \x41\101 \u00e9 caf\303\251 \?"];
  optional string s2 = 32 [default = 'single' "joined"];
  optional string s3 = 33 [default = "é"];
  optional bytes y1 = 34 [default = "\000\001\xff\n'\"\\ok\t\r"];
  repeated int32 r1 = 35 [packed = false];
  repeated Kind r2 = 36 [packed = true];
  required string req = 37;
  repeated double r3 = 38 [packed = true, deprecated = false];
  ;
}
message Empty {}
message SameNames {
  optional int32 Outer = 1;
  optional Outer x = 2;
}
"""


def test_subset_matches_protoc(tmp_path):
    pytest.importorskip("grpc_tools")
    proto = tmp_path / "demo.proto"
    proto.write_text(SUBSET_PROTO, encoding="utf-8")
    _assert_same(parse_proto(SUBSET_PROTO, name="demo.proto"), _protoc_fdp(proto, tmp_path))


def test_subset_defaults_are_normalised_like_protoc():
    # The same facts as test_subset_matches_protoc, readable, and checked without protoc.
    fdp = parse_proto(SUBSET_PROTO, name="demo.proto")
    outer = next(m for m in fdp.message_type if m.name == "Outer")
    defaults = {f.name: f.default_value for f in outer.field if f.HasField("default_value")}
    assert defaults == {
        "kind": "X", "f1": "0.1", "f2": "1e-05", "f3": "16777216", "f4": "-inf", "f5": "nan",
        "f6": "3.40282347e+38", "f7": "inf", "f8": "1", "f9": "0.333333343",
        "d1": "0.1", "d2": "1e+300", "d3": "16", "d4": "-0", "d5": "1.2345678901234568e+17",
        "d6": "5", "d7": "0.30000000000000004",
        "i1": "-2147483648", "i2": "9223372036854775807", "i3": "15",
        "i4": "18446744073709551615", "i5": "0", "i6": "-5", "i7": "4294967295", "i8": "7",
        "i9": "-7", "i10": "-9223372036854775808", "b1": "true", "b2": "false",
        "s1": 'tab\there "q" AA é café ?', "s2": "singlejoined", "s3": "é",
        "y1": "\\000\\001\\377\\n\\'\\\"\\\\ok\\t\\r",
    }
    inner = outer.nested_type[0]
    assert [(f.name, f.type_name) for f in inner.field] == [
        ("k", ".demo.sub.Outer.Inner.Kind"), ("ok", ".demo.sub.Outer.Kind"),
        ("t", ".demo.sub.Top"), ("t2", ".demo.sub.Top"), ("o", ".demo.sub.Outer")]
    same_names = fdp.message_type[-1]
    assert same_names.field[1].type_name == ".demo.sub.Outer"  # the field "Outer" is skipped
    fields = {f.name: f for f in outer.field}
    assert fields["kind"].options.deprecated
    assert fields["r1"].options.HasField("packed") and not fields["r1"].options.packed
    assert fields["r2"].options.packed and fields["r2"].type == F.TYPE_ENUM


# --------------------------------------------------------------------------------------------
# Errors

@pytest.mark.parametrize("source, line, column, words", [
    ("message A {\n  optional int32 x = 1\n  optional int32 y = 2;\n}", 3, 3, "expected ';'"),
    ("message A {\n  optional int32 x = 1;\n", 3, 1, "missing '}'"),
    ("message A {\n  /* never closed\n}", 2, 3, "unterminated /* comment"),
    ('message A {\n  optional string s = 1 [default = "abc];\n}', 2, 36, "unterminated string"),
    ("message A {\n  optional Missing m = 1;\n}", 2, 12, '"Missing" is not defined'),
    ("message A {\n  optional int32 x = 1;\n  optional int32 y = 1;\n}", 3, 22,
     "field number 1 is already used"),
    ("message A {\n  optional int32 x = 1;\n  optional bool x = 2;\n}", 3, 17,
     "already defined"),
    ("message A {\n  optional int32 x = 1 [default = 1.5];\n}", 2, 35, "expected an integer"),
    ("message A {\n  optional uint32 x = 1 [default = -1];\n}", 2, 36, "out of range"),
    ("message A {\n  optional int32 x = 1 [default = 2147483648];\n}", 2, 35, "out of range"),
    ("message A {\n  optional E e = 1 [default = C];\n  enum E { A = 0; B = 1; }\n}", 2, 31,
     'has no value named "C"'),
    ("message A {\n  optional A a = 1 [default = 1];\n}", 2, 31, "message fields cannot"),
    ("message A {\n  repeated int32 x = 1 [default = 1];\n}", 2, 35, "repeated fields cannot"),
    ("message A {\n  optional int32 x = 1 [packed = true];\n}", 2, 25, "[packed = true]"),
    ("message A {\n  optional int32 x = 1 [json_name = \"y\"];\n}", 2, 25, "not supported"),
    ("message A {\n  oneof o { int32 x = 1; }\n}", 2, 3, '"oneof" is not supported'),
    ("message A {\n  int32 x = 1;\n}", 2, 3, '"optional", "required", "repeated"'),
    ("enum E { A = 0; B = 0; }", 1, 21, "reuses the number 0"),
    ("enum E { A = 0; }\nenum F { A = 1; }", 2, 10, '"A" is already defined'),
    ("enum E {}", 1, 6, "at least one value"),
    ('syntax = "proto3";', 1, 10, "only proto2"),
    ("message A {\n  optional float f = 1 [default = 1.5f];\n}", 2, 35, "space between"),
    ("message A {\n  optional int32 x = 19000;\n}", 2, 22, "reserved"),
    ('message A {\n  optional string s = 1 [default = "\\q"];\n}', 2, 37, "invalid escape"),
    ("message A {}\npackage p;", 2, 1, "package statement must come before"),
    ("message A { optional int32 x = 1; } $", 1, 37, "unexpected character '$'"),
])
def test_errors_name_line_and_column(source, line, column, words):
    with pytest.raises(ProtoError) as caught:
        parse_proto(source)
    error = caught.value
    assert (error.line, error.column) == (line, column), str(error)
    assert words in error.message
    assert str(error).startswith(f"<input>:{line}:{column}: ")


def test_caffe_proto_errors_point_into_the_file():
    text = generate.PROTO_PATH.read_text(encoding="utf-8")
    broken = text.replace("optional RoundMode round_mode = 13 [default = CEIL];",
                          "optional RoundMode round_mode = 13 [default = ROUND];")
    line = broken[:broken.index("ROUND]")].count("\n") + 1
    with pytest.raises(ProtoError, match=rf"^<input>:{line}:\d+: .*ROUND"):
        parse_proto(broken)


# --------------------------------------------------------------------------------------------
# caffe.proto against the shared field list

def _tsv_rows() -> list[dict[str, str]]:
    if not SCHEMA_TSV.is_file():
        pytest.skip(f"no schema TSV at {SCHEMA_TSV}")
    lines = SCHEMA_TSV.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    assert header == ["scope", "name", "number", "label", "type", "default", "packed"]
    return [dict(zip(header, line.split("\t"))) for line in lines[1:] if line.strip()]


def _f32(text: str) -> float:
    return struct.unpack("<f", struct.pack("<f", float(text)))[0]


_SCALARS = generate.SCALAR_TYPES


def _walk(fdp: descriptor_pb2.FileDescriptorProto):
    """(relative name, DescriptorProto or EnumDescriptorProto, kind) for the whole file."""
    def messages(items, prefix):
        for message in items:
            name = prefix + message.name
            yield name, message, "message"
            for enum in message.enum_type:
                yield f"{name}.{enum.name}", enum, "enum"
            yield from messages(message.nested_type, name + ".")
    for enum in fdp.enum_type:
        yield enum.name, enum, "enum"
    yield from messages(fdp.message_type, "")


def test_caffe_proto_agrees_with_schema_tsv():
    rows = _tsv_rows()
    fdp = _caffe_fdp()
    assert fdp.package == "caffe"
    ours = {f"{kind} {name}": proto for name, proto, kind in _walk(fdp)}
    tsv_scopes: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        tsv_scopes.setdefault(row["scope"], []).append(row)
    assert sorted(ours) == sorted(tsv_scopes)

    for scope, scope_rows in tsv_scopes.items():
        proto = ours[scope]
        if scope.startswith("enum "):
            assert [(v.name, v.number) for v in proto.value] == [
                (r["name"], int(r["number"])) for r in scope_rows], scope
            continue
        # Same fields in the same order as Caffe declares them.
        assert [f.name for f in proto.field] == [r["name"] for r in scope_rows], scope
        for field, row in zip(proto.field, scope_rows):
            where = f"{scope}.{field.name}"
            assert field.number == int(row["number"]), where
            assert field.label == {"optional": F.LABEL_OPTIONAL, "required": F.LABEL_REQUIRED,
                                   "repeated": F.LABEL_REPEATED}[row["label"]], where
            kind = row["type"]
            if kind in _SCALARS:
                assert (field.type, field.type_name) == (_SCALARS[kind], ""), where
            elif kind.startswith("enum "):
                assert (field.type, field.type_name) == (F.TYPE_ENUM, ".caffe." + kind[5:]), where
            else:
                assert (field.type, field.type_name) == (F.TYPE_MESSAGE, ".caffe." + kind), where
            assert field.options.packed == (row["packed"] == "true"), where
            assert field.options.HasField("packed") == (row["packed"] != ""), where
            _assert_default(field, row["default"], where)


def _assert_default(field: descriptor_pb2.FieldDescriptorProto, tsv: str, where: str) -> None:
    """Compare a TSV default (Python-style: True, 'text', 1e-08) with protoc's string."""
    assert field.HasField("default_value") == (tsv != ""), where
    if tsv == "":
        return
    ours = field.default_value
    if field.type == F.TYPE_BOOL:
        assert ours == {"True": "true", "False": "false"}[tsv], where
    elif field.type in (F.TYPE_STRING, F.TYPE_BYTES):
        assert ours == ast.literal_eval(tsv), where
    elif field.type == F.TYPE_FLOAT:
        assert _f32(ours) == _f32(tsv), where
        assert ours == generate._simple_ftoa(_f32(tsv)), where
    elif field.type == F.TYPE_DOUBLE:
        assert float(ours) == float(tsv), where
    elif field.type == F.TYPE_ENUM:
        assert ours == tsv, where
    else:
        assert ours == str(int(tsv)), where


# --------------------------------------------------------------------------------------------
# The generated module at run time

def test_module_api():
    from prototxt_tools.schema import caffe_pb2

    assert (caffe_pb2.TRAIN, caffe_pb2.TEST) == (0, 1)
    assert caffe_pb2.Phase.Name(1) == "TEST" and caffe_pb2._PHASE.full_name == "caffe.Phase"
    assert caffe_pb2.PoolingParameter.AVE == 1
    assert caffe_pb2.PoolingParameter.RoundMode.Value("FLOOR") == 1
    assert caffe_pb2.V1LayerParameter.CONVOLUTION == 4
    assert caffe_pb2._FILLERPARAMETER_VARIANCENORM.full_name == "caffe.FillerParameter.VarianceNorm"
    assert caffe_pb2.NetParameter.__module__ == "prototxt_tools.schema.caffe_pb2"
    assert caffe_pb2.DESCRIPTOR.pool is not descriptor_pool.Default()

    filler, solver = caffe_pb2.FillerParameter(), caffe_pb2.SolverParameter()
    assert (filler.type, filler.std, filler.variance_norm) == ("constant", 1.0, filler.FAN_IN)
    assert solver.delta == pytest.approx(1e-8) and solver.solver_mode == solver.GPU
    assert caffe_pb2.NetState().phase == caffe_pb2.TEST
    assert not caffe_pb2.BatchNormParameter().HasField("use_global_stats")

    net = text_format.Parse("""
        name: "n"  input: "data"  input_dim: 1  input_dim: 3
        layer { name: "c" type: "Convolution" bottom: "data" top: "c"
                convolution_param { num_output: 8 kernel_size: 3 weight_filler { type: "xavier" } }
                include { phase: TRAIN } }
        layer { name: "p" type: "Pooling" pooling_param { pool: AVE round_mode: FLOOR } }
        layers { type: CONVOLUTION blobs_lr: 1 }
        layer { blobs { shape { dim: 2 dim: 3 } data: 1.5 data: 2.5 } }
    """, caffe_pb2.NetParameter())
    back = caffe_pb2.NetParameter.FromString(net.SerializeToString())
    assert back == net
    assert back.layer[0].include[0].phase == caffe_pb2.TRAIN
    assert back.layer[1].pooling_param.round_mode == caffe_pb2.PoolingParameter.FLOOR
    assert back.layers[0].type == caffe_pb2.V1LayerParameter.CONVOLUTION
    assert caffe_pb2.BlobShape(dim=[2, 3]).SerializeToString() == b"\n\x02\x02\x03"  # packed
    assert pickle.loads(pickle.dumps(back)) == back


# The protoc-generated "pycaffe" module is built from a fork of our schema (OpenCV's
# `bool ceil_mode = 13` instead of BVLC's `round_mode`), so each side can tell whose
# descriptors it got.
_COEXIST = textwrap.dedent("""
    import importlib, sys
    from google.protobuf import descriptor_pool

    def load(what):
        if what == "ours":
            import prototxt_tools.schema.caffe_pb2 as module
        else:
            import caffe_pb2 as module
        return module

    modules = {what: load(what) for what in sys.argv[1].split(",")}
    ours, theirs = modules.get("ours"), modules.get("theirs")
    default = descriptor_pool.Default()
    if ours is not None:
        fields = ours.PoolingParameter.DESCRIPTOR.fields_by_name
        assert "round_mode" in fields and "ceil_mode" not in fields
        assert ours.PoolingParameter(round_mode=1).round_mode == 1
        again = importlib.reload(ours)  # a second import builds a second private pool
        assert again.NetParameter(name="x").SerializeToString() == b"\\n\\x01x"
    if theirs is not None:
        fields = theirs.PoolingParameter.DESCRIPTOR.fields_by_name
        assert "ceil_mode" in fields and "round_mode" not in fields
        fields = default.FindMessageTypeByName("caffe.PoolingParameter").fields_by_name
        assert "ceil_mode" in fields, "our schema replaced pycaffe's in the default pool"
    else:
        for find, name in [(default.FindFileByName, "caffe.proto"),
                           (default.FindMessageTypeByName, "caffe.NetParameter")]:
            try:
                find(name)
            except KeyError:
                continue
            raise AssertionError(name + " leaked into the default descriptor pool")
    print("ok")
""")


@pytest.mark.parametrize("implementation", ["default", "python"])
@pytest.mark.parametrize("order", ["ours", "ours,theirs", "theirs,ours"])
def test_coexists_with_protoc_generated_caffe_pb2(tmp_path, order, implementation):
    if "theirs" in order:
        pytest.importorskip("grpc_tools")
        fork = tmp_path / "proto" / "caffe.proto"
        fork.parent.mkdir()
        text = generate.PROTO_PATH.read_text(encoding="utf-8")
        old = "optional RoundMode round_mode = 13 [default = CEIL];"
        assert old in text
        fork.write_text(text.replace(old, "optional bool ceil_mode = 13 [default = true];"),
                        encoding="utf-8")
        result = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{fork.parent}",
                                 f"--python_out={tmp_path}", str(fork)],
                                check=False, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "Default()" in (tmp_path / "caffe_pb2.py").read_text(encoding="utf-8")
    path = [str(REPO), str(tmp_path)] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    env.pop("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", None)
    if implementation == "python":
        # Under the pure-Python runtime (protobuf 3.20 on Python 3.11+ has no other) the
        # default symbol database copies registered classes into the default pool.
        env["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
    result = subprocess.run([sys.executable, "-c", _COEXIST, order], cwd=tmp_path, env=env,
                            check=False, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
