"""The lossless tree: byte-exact printing, positions, trivia, values, and the formatter."""

from __future__ import annotations

import collections
import re

import pytest

from conftest import all_text_params, sample_params
from prototxt_tools import PrototxtError, format_text, parse
from prototxt_tools.schema.binding import bind
from prototxt_tools.syntax.format import format_document
from prototxt_tools.syntax.values import (
    EscapeError, escape_bytes, parse_float, parse_int, shortest_float32_repr,
    string_literal_bytes,
)

# -- byte-exact round trip --------------------------------------------------------------------


@pytest.mark.parametrize("path", all_text_params())
def test_round_trip_is_byte_exact(path):
    data = path.read_bytes()
    document = parse(data, str(path))
    assert document.to_bytes() == data


@pytest.mark.parametrize("text", [
    "", "\n", "a: 1", "a: 1\n", "# only\n", "# no newline", "\ufeffa: 1\r\n", "a: 1\r\nb: 2\r\n",
    "\t a\t:\t1\t\n", "a{b{c{d:1}}}", "x: [ ]", "x: 1;;" if False else "x: 1;",
    "a: 'x' \"y\"\n", "a: - 5", "\n\n\n  a: 1  \n\n\n",
])
def test_round_trip_edge_texts(text):
    assert parse(text).to_text() == text


def test_non_utf8_bytes_in_comments_survive():
    data = b"# a cp1252 dash \x97 here\nbase_lr: 0.1 # \xff\xfe\n"
    document = parse(data)
    assert document.to_bytes() == data
    assert format_text(data).encode("utf-8", "surrogateescape").count(b"\x97") == 1


def test_bom_and_crlf_are_kept():
    text = "\ufeffname: 'x'\r\nlayer {\r\n  name: \"a\"\r\n}\r\n"
    document = parse(text)
    assert document.bom and document.newline == "\r\n"
    assert document.to_text() == text
    assert format_text(text) == "\ufeffname: \"x\"\r\nlayer {\r\n  name: \"a\"\r\n}\r\n"


# -- positions and navigation -----------------------------------------------------------------

def test_spans_are_exact():
    text = "# head\nlayer {\n\tname: \"conv1\"  # c\n  top: 'x'\n}\n"
    document = parse(text, "n.prototxt")
    layer = document.fields[0]
    assert layer.name == "layer"
    start, end = layer.span
    assert (start.line, start.column, start.offset) == (2, 1, 7)
    assert (end.line, end.column) == (5, 2)
    name = layer.get("name")
    assert name.span.start[:2] == (3, 2)  # a tab counts as one column
    assert name.value.text == '"conv1"'
    assert name.leading_trivia == "\n\t"
    top = layer.get("top")
    assert top.span.start[:2] == (4, 3)
    assert "# c" in top.leading_trivia
    assert [f.name for f in document.walk()] == ["layer", "name", "top"]
    assert document.get("layer") is layer and document.get("nope") is None


def test_positions_after_bom_count_from_the_text():
    with pytest.raises(PrototxtError) as caught:
        parse("\ufeffa: 1\nb: }", "x")
    assert (caught.value.line, caught.value.column) == (2, 4)
    assert parse("\ufeffa: 1\n").fields[0].span.start[:2] == (1, 1)


def test_scalar_kinds():
    document = parse("a: 'x' \"y\"\nb: -5\nc: -inf\nd: TRAIN\ne: ${t}\nf: 1.5f\n")
    kinds = [f.value.kind for f in document.fields]
    assert kinds == ["string", "number", "identifier", "identifier", "template", "number"]
    assert document.fields[1].value.negative and document.fields[1].value.body == "5"
    assert document.fields[0].value.literals == ["'x'", '"y"']


def test_deep_nesting_is_an_error_not_a_crash():
    text = "a { " * 150 + "}" * 150
    with pytest.raises(PrototxtError, match="nesting deeper than 100 levels"):
        parse(text)
    parse("a { " * 99 + "}" * 99)


def test_bytes_input_and_path_in_errors():
    with pytest.raises(PrototxtError) as caught:
        parse(b"a: [1,", "in.prototxt")
    assert str(caught.value).startswith("in.prototxt:1:7: ")


# -- values -----------------------------------------------------------------------------------

@pytest.mark.parametrize("literal,expected", [
    (r'"plain"', b"plain"),
    (r"'single \' quote'", b"single ' quote"),
    (r'"\n\t\r\\\"\'\a\b\f\v\?"', b"\n\t\r\\\"'\a\b\f\v?"),
    (r'"\x41\x4a\x7"', b"AJ\x07"),
    (r'"\101\0\377"', b"A\x00\xff"),
    (r'"\u00e9\U0001F600"', "é😀".encode()),
    ('"中文"', "中文".encode()),
])
def test_string_escapes(literal, expected):
    assert string_literal_bytes(literal) == expected


@pytest.mark.parametrize("literal", [r'"\q"', r'"\400"', r'"\ud800"'])
def test_bad_escapes(literal):
    with pytest.raises(EscapeError):
        string_literal_bytes(literal)


@pytest.mark.parametrize("data", [b"", b"abc", b'q"uote\\', b"\x00\x01\xff\xfe", "é中".encode(),
                                  b"tab\tnl\n"])
def test_escape_round_trips(data):
    assert string_literal_bytes(escape_bytes(data)) == data


@pytest.mark.parametrize("text,value", [("42", 42), ("0x1F", 31), ("017", 15), ("0", 0)])
def test_integers(text, value):
    assert parse_int(text) == value and parse_int(text, negative=True) == -value


@pytest.mark.parametrize("text", ["1.5", "1e3", "08", "0x"])
def test_not_integers(text):
    with pytest.raises(ValueError):
        parse_int(text)


@pytest.mark.parametrize("text,value", [("1.", 1.0), (".5", 0.5), ("1e-5", 1e-5), ("1.5f", 1.5),
                                        ("2E+3", 2000.0), ("7F", 7.0), ("inf", float("inf")),
                                        ("Infinity", float("inf")), ("0x10", 16.0)])
def test_floats(text, value):
    assert parse_float(text) == value


def test_nan_and_shortest_float32():
    assert parse_float("nan") != parse_float("nan")
    assert shortest_float32_repr(0.1) == "0.1"
    assert shortest_float32_repr(0.00390625) == "0.00390625"
    assert shortest_float32_repr(1e-5) == "1e-05"
    assert shortest_float32_repr(3.0) == "3"


# -- the formatter -----------------------------------------------------------------------------

def test_canonical_layout():
    source = ("a:1;b:{c:[1,2] # x\n d: [{e:1},{e:2}]} # end\n\n\n# tail\n"
              "s: 'it' \"s\"\nn < m: - 5 >\nw: []  # empty list\n")
    assert format_text(source) == (
        "a: 1\n"
        "b {\n"
        "  c: 1\n"
        "  c: 2  # x\n"
        "  d {\n"
        "    e: 1\n"
        "  }\n"
        "  d {\n"
        "    e: 2\n"
        "  }\n"
        "}  # end\n"
        "\n"
        "# tail\n"
        "s: \"its\"\n"
        "n {\n"
        "  m: -5\n"
        "}\n"
        "# empty list\n")


def test_comments_keep_their_places():
    source = (
        "# file header\n"
        "\n"
        "layer {  # the first layer\n"
        "    # own-line before name\n"
        "    name: \"a\"   # trailing\n"
        "\n"
        "\n"
        "    # after two blank lines\n"
        "    type: \"ReLU\"\n"
        "    # dangling at the end of the block\n"
        "}\n"
        "# end of file\n")
    assert format_text(source) == (
        "# file header\n"
        "\n"
        "layer {  # the first layer\n"
        "  # own-line before name\n"
        "  name: \"a\"  # trailing\n"
        "\n"
        "  # after two blank lines\n"
        "  type: \"ReLU\"\n"
        "  # dangling at the end of the block\n"
        "}\n"
        "# end of file\n")


def test_comments_inside_a_field_keep_their_order():
    # End-of-line comments inside a field trail its line (extra ones follow it); own-line
    # comments inside it move in front of it.
    assert format_text("a # x\n: # y\n 1\n") == "a: 1  # x\n# y\n"
    assert format_text("a:\n  # own\n  1\n") == "# own\na: 1\n"


def test_empty_inputs():
    assert format_text("") == ""
    assert format_text("\n\n") == ""
    assert format_text("# c") == "# c\n"
    assert format_text("a {}") == "a {\n}\n"


def _comments(text: str) -> collections.Counter:
    document = parse(text)
    counter: collections.Counter = collections.Counter()
    for trivia in document.trivia_list():
        for comment in re.findall(r"#[^\n]*", trivia):
            counter[comment.rstrip()] += 1
    return counter


@pytest.mark.parametrize("path", all_text_params())
def test_format_is_idempotent_keeps_comments_and_meaning(path):
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    formatted = format_text(text)
    assert format_text(formatted) == formatted
    assert _comments(formatted) == _comments(text)
    before, after = bind(parse(text)), bind(parse(formatted))
    assert after.message == before.message
    assert [d.message for d in after.diagnostics] == [d.message for d in before.diagnostics]


@pytest.mark.parametrize("path", sample_params())
def test_samples_are_canonical(path):
    text = path.read_text(encoding="utf-8")
    assert format_document(parse(text)) == text
