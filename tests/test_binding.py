"""Tree -> NetParameter / SolverParameter, against protobuf's own text parser."""

from __future__ import annotations

import re

import pytest
from google.protobuf import text_format

from conftest import FIXTURES, all_text_params
from prototxt_tools import PrototxtError, bind, from_message, message_to_text, parse, to_message
from prototxt_tools.schema import caffe_pb2
from prototxt_tools.schema.binding import detect_kind, message_class_for


def _cases():
    text = (FIXTURES / "binding_cases.prototxt").read_text(encoding="utf-8")
    parts = re.split(r"^#: (.*)\n", text, flags=re.M)
    return [pytest.param(header, body, id=header[:70])
            for header, body in zip(parts[1::2], parts[2::2])]


@pytest.mark.parametrize("header,body", _cases())
def test_binding_case(header, body):
    kind, rest = header.split(" ", 1)
    result = bind(parse(body, "case.prototxt"), kind)
    if rest.startswith("ok"):
        assert result.diagnostics == []
        # protobuf's parser reads the same message.
        assert text_format.Parse(body, message_class_for(kind)()) == result.message
        return
    match = re.match(r"(error|warning) (\d+):(\d+) (.*)", rest)
    assert match, header
    severity, line, column, message = match.groups()
    assert [(d.severity, d.line, d.column, d.message) for d in result.diagnostics] == \
        [(severity, int(line), int(column), message)]
    assert result.ok == (severity == "warning")


def test_values_land_in_the_message():
    net = to_message(parse(
        "layer { name: 'c' convolution_param { num_output: 0x10 kernel_size: [3, 5] pad: 017 "
        "bias_term: f engine: CUDNN weight_filler { std: .5 } } loss_weight: -1.5f "
        "include { phase: TRAIN } }\ninput_dim: [1, 3]\n"))
    layer = net.layer[0]
    conv = layer.convolution_param
    assert (conv.num_output, list(conv.kernel_size), list(conv.pad)) == (16, [3, 5], [15])
    assert conv.bias_term is False and conv.engine == caffe_pb2.ConvolutionParameter.CUDNN
    assert conv.weight_filler.std == 0.5 and list(layer.loss_weight) == [-1.5]
    assert layer.include[0].phase == caffe_pb2.TRAIN and list(net.input_dim) == [1, 3]


def test_empty_blocks_are_present():
    net = to_message(parse("layer { name: 'x' convolution_param { } }"))
    assert net.layer[0].HasField("convolution_param")


def test_bytes_field_and_utf8_check():
    datum = to_message(parse(r'data: "\x00\xff\001" channels: 1'), "Datum")
    assert datum.data == b"\x00\xff\x01"
    result = bind(parse(r'layer { name: "\xff" }'), "net")
    assert [d.message for d in result.errors] == ["'name' must be valid UTF-8 text"]


def test_to_message_raises_with_every_error():
    with pytest.raises(PrototxtError) as caught:
        to_message(parse("layer { nme: 'a' typ: 'b' }", "x.prototxt"))
    error = caught.value
    assert (error.path, error.line, error.column) == ("x.prototxt", 1, 9)
    assert len(error.diagnostics) == 2
    assert str(error).startswith("x.prototxt:1:9: unknown field 'nme'")


@pytest.mark.parametrize("text,kind", [
    ("", "net"), ("name: 'x' layer {}", "net"), ("layers {}", "net"),
    ("net: 'a' base_lr: 0.1 max_iter: 10", "solver"), ("train_net: 'x' debug_info: true", "solver"),
    ("input: 'data' input_dim: 1", "net"),
])
def test_detect_kind(text, kind):
    assert detect_kind(parse(text)) == kind


def test_warnings_do_not_stop_binding():
    result = bind(parse("layer { name: 'a' interp_param { zoom_factor: 2 } type: 'Interp' }"))
    assert result.ok and len(result.warnings) == 1
    assert result.message.layer[0].type == "Interp"


@pytest.mark.parametrize("path", all_text_params())
def test_same_message_as_protobuf(path):
    """Where protobuf's own parser accepts a file, our message is identical; where it does not,
    we explain why with at least one diagnostic (or the file is not valid UTF-8)."""
    data = path.read_bytes()
    document = parse(data, str(path))
    kind = detect_kind(document)
    result = bind(document, kind)
    try:
        expected = text_format.Parse(data.decode("utf-8"), message_class_for(kind)())
    except UnicodeDecodeError:
        assert result.ok  # stray bytes sit in comments only
        return
    except text_format.ParseError as exc:
        assert result.diagnostics, f"protobuf rejects ({exc}) but we report nothing"
        line = int(re.match(r"(\d+):", str(exc)).group(1))
        assert line in {d.line for d in result.diagnostics}
        return
    assert result.diagnostics == []
    assert result.message == expected


@pytest.mark.parametrize("path", all_text_params())
def test_message_to_text_round_trips(path):
    result = bind(parse(path.read_bytes()))
    text = message_to_text(result.message)
    again = bind(from_message(result.message))
    assert again.ok and again.message == result.message
    assert text_format.Parse(text, type(result.message)()) == result.message
