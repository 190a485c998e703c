"""Text edits: one node replaced, inserted or deleted; every other byte untouched."""

from __future__ import annotations

import random

import pytest

from conftest import all_text_params
from prototxt_tools import PrototxtError, parse
from prototxt_tools.syntax.edits import (
    TextEdit, apply_edits, apply_to_document, delete, insert_field, replace, replace_value,
)

NET = """\
# header
name: "tiny"

layer {
  name: "conv1"  # first
  type: "Convolution"
  convolution_param {
    num_output: 8
    kernel_size: 3
  }
}

# the activation
layer {
  name: "relu1"
  type: "ReLU"
}
"""


def test_replace_value_keeps_everything_else():
    document = parse(NET)
    num_output = document.fields[1].get("convolution_param").get("num_output")
    out = apply_edits(NET, [replace_value(num_output, "16")])
    assert out == NET.replace("num_output: 8", "num_output: 16")


def test_replace_a_whole_block():
    document = parse(NET)
    param = document.fields[1].get("convolution_param")
    out = apply_edits(NET, [replace(param.value, "{ num_output: 4 }")])
    assert "convolution_param { num_output: 4 }\n}" in out
    assert out.startswith("# header\nname: \"tiny\"\n\nlayer {\n  name: \"conv1\"  # first\n")


def test_delete_a_field_with_its_line_and_trailing_comment():
    document = parse(NET)
    name = document.fields[1].get("name")
    assert apply_edits(NET, [delete(name)]) == NET.replace('  name: "conv1"  # first\n', "")


def test_delete_a_block_with_its_comment_and_a_doubled_blank_line():
    document = parse(NET)
    out = apply_edits(NET, [delete(document.fields[2])])
    assert out == NET[:NET.index("# the activation")].rstrip("\n") + "\n"
    out = apply_edits(NET, [delete(document.fields[2], with_comments=False)])
    assert "# the activation\n" in out and "relu1" not in out


def test_delete_between_layers_leaves_one_blank_line():
    text = "a: 1\n\nlayer {\n  name: \"x\"\n}\n\nlayer {\n  name: \"y\"\n}\n"
    document = parse(text)
    assert apply_edits(text, [delete(document.fields[1])]) == \
        "a: 1\n\nlayer {\n  name: \"y\"\n}\n"


def test_deleting_neighbours_merges_and_leaves_no_blank_line_at_the_end():
    text = "a: 1\n\nlayer {\n  name: \"x\"\n}\n\nlayer {\n  name: \"y\"\n}\n"
    document = parse(text)
    # both deletions claim the blank line between the layers: they merge
    assert apply_edits(text, [delete(document.fields[1]), delete(document.fields[2])]) == \
        "a: 1\n"
    assert apply_edits(text, [delete(document.fields[2])]) == \
        "a: 1\n\nlayer {\n  name: \"x\"\n}\n"
    with pytest.raises(ValueError):  # a deletion overlapping a replacement is still an error
        apply_edits("abcdef", [TextEdit(0, 3, ""), TextEdit(2, 4, "y")])


def test_delete_inline_fields():
    text = "shape { dim: 1 dim: 3 dim: 224 }\n"
    document = parse(text)
    dims = document.fields[0].fields
    assert apply_edits(text, [delete(dims[1])]) == "shape { dim: 1 dim: 224 }\n"
    assert apply_edits(text, [delete(dims[2])]) == "shape { dim: 1 dim: 3 }\n"
    assert apply_edits(text, [delete(dims[0])]) == "shape { dim: 3 dim: 224 }\n"


def test_insert_into_a_block_indented_like_its_siblings():
    document = parse(NET)
    conv = document.fields[1]
    out = apply_edits(NET, [insert_field(conv.get("convolution_param"), "bias_term: false")])
    assert "    kernel_size: 3\n    bias_term: false\n  }" in out
    out = apply_edits(NET, [insert_field(conv, "bottom: \"data\"", index=1)])
    assert '  name: "conv1"  # first\n  bottom: "data"\n  type:' in out
    out = apply_edits(NET, [insert_field(conv, "top: \"c\"", index=0)])
    assert 'layer {\n  top: "c"\n  name: "conv1"' in out


def test_insert_a_multi_line_layer_at_top_level():
    document = parse(NET)
    block = 'layer {\n  name: "scale1"\n  type: "Scale"\n}'
    out = apply_edits(NET, [insert_field(document, block, index=2)])
    expected_tail = '}\nlayer {\n  name: "scale1"\n  type: "Scale"\n}\n\n# the activation\n'
    assert expected_tail in out
    assert parse(out).fields[2].get("name").value.text == '"scale1"'


def test_insert_into_empty_and_inline_blocks_and_documents():
    text = "a {}\nb { c: 1 }\n"
    document = parse(text)
    first, second = document.fields
    assert apply_edits(text, [insert_field(first, "x: 1")]) == "a { x: 1 }\nb { c: 1 }\n"
    assert apply_edits(text, [insert_field(second, "x: 1")]) == "a {}\nb { c: 1 x: 1 }\n"
    assert apply_edits("", [insert_field(parse(""), "a: 1")]) == "a: 1\n"
    assert apply_edits("# c", [insert_field(parse("# c"), "a: 1")]) == "# c\na: 1\n"


def test_insert_keeps_crlf_and_tabs():
    text = "layer {\r\n\tname: \"a\"\r\n}\r\n"
    document = parse(text)
    out = apply_edits(text, [insert_field(document.fields[0], "top: \"a\"\ntop: \"b\"")])
    assert out == "layer {\r\n\tname: \"a\"\r\n\ttop: \"a\"\r\n\ttop: \"b\"\r\n}\r\n"


def test_edits_compose_and_reject_overlaps():
    document = parse(NET)
    conv = document.fields[1]
    edits = [replace_value(conv.get("type"), '"Deconvolution"'), delete(document.fields[2]),
             insert_field(conv, 'top: "c"')]
    new = apply_to_document(document, edits)
    assert [f.name for f in new.fields] == ["name", "layer"]
    assert new.fields[1].get("type").value.text == '"Deconvolution"'
    with pytest.raises(ValueError):
        apply_edits("abcdef", [TextEdit(0, 3, "x"), TextEdit(2, 4, "y")])
    with pytest.raises(ValueError):
        TextEdit(3, 1, "")


def test_an_edit_that_breaks_syntax_is_reported():
    document = parse(NET)
    with pytest.raises(PrototxtError):
        apply_to_document(document, [replace_value(document.fields[0], "{")])


@pytest.mark.parametrize("path", all_text_params())
def test_deleting_any_field_touches_nothing_else(path):
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    document = parse(text)
    fields = list(document.walk())
    rng = random.Random(path.name)
    for field in rng.sample(fields, min(5, len(fields))):
        edit = delete(field)
        out = apply_edits(document.source, [edit])
        # Outside the removed range, the text is exactly the original.
        assert out == document.source[:edit.start] + document.source[edit.end:]
        assert document.source[edit.start:edit.end].strip() != ""
        parse(out)  # still valid syntax
