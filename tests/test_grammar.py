"""The fast parser against the grammar: generated tables, and lark's LALR parser as the oracle."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FIXTURES, all_text_params
from prototxt_tools import PrototxtError, parse
from prototxt_tools.syntax import grammar
from prototxt_tools.syntax.tree import Document, Field, ListValue, Message, Scalar, token_kind


def test_generated_tables_match_the_grammar():
    assert grammar.tables_are_current(), "run: python -m prototxt_tools.syntax.grammar"


def test_grammar_file_is_found_and_loads():
    assert grammar.grammar_path().name == "prototxt.lark"
    assert grammar.reference_parser().parse("a: 1\n") is not None


# -- one structure for both trees ---------------------------------------------------------------

def doc_structure(document: Document) -> list:
    offset = document.token_offset
    texts = document._texts

    def value(node):
        if type(node) is Scalar:
            return ("scalar", tuple((offset(i), texts[i]) for i in range(node.start, node.stop)))
        if type(node) is Message:
            return ("message", offset(node.start), [field(f) for f in node.fields],
                    offset(node.stop - 1))
        assert type(node) is ListValue
        return ("list", offset(node.start), [value(item) for item in node.items],
                offset(node.stop - 1))

    def field(f: Field):
        return ("field", offset(f.start), f.name, f.colon, value(f.value), f.separator)

    return [field(f) for f in document.fields]


def lark_structure(tree) -> list:
    from lark import Token, Tree

    def value(node):
        if node.data == "scalar":
            return ("scalar", tuple((t.start_pos, str(t)) for t in node.children))
        if node.data == "message":
            children = node.children
            return ("message", children[0].start_pos,
                    [field(c) for c in children[1:-1]], children[-1].start_pos)
        assert node.data == "list"
        children = node.children
        items = [value(c) for c in children[1:-1] if isinstance(c, Tree)]
        return ("list", children[0].start_pos, items, children[-1].start_pos)

    def field(node):
        children = node.children
        name = children[0]
        colon = any(isinstance(c, Token) and c.type == "COLON" for c in children)
        separator = any(isinstance(c, Tree) and c.data == "separator" for c in children)
        (body,) = [c for c in children if isinstance(c, Tree) and c.data != "separator"]
        return ("field", name.start_pos, str(name), colon, value(body), separator)

    return [field(c) for c in tree.children]


def lark_parse(text: str):
    import lark

    try:
        return lark_structure(grammar.reference_parser().parse(text))
    except lark.exceptions.LarkError:
        return None


def ours(text: str):
    try:
        return doc_structure(parse(text))
    except PrototxtError:
        return None


# -- fixture cases ------------------------------------------------------------------------------

def _cases():
    text = (FIXTURES / "syntax_cases.prototxt").read_text(encoding="utf-8")
    parts = re.split(r"^#: (.*)\n", text, flags=re.M)
    cases = []
    for header, body in zip(parts[1::2], parts[2::2]):
        cases.append(pytest.param(header, body, id=header[:60]))
    return cases


@pytest.mark.parametrize("header,body", _cases())
def test_syntax_case(header, body):
    reference = lark_parse(body)
    if header.startswith("ok"):
        document = parse(body, "case.prototxt")
        assert document.to_text() == body
        assert reference is not None, "lark rejects a case we call ok"
        assert doc_structure(document) == reference
    else:
        match = re.match(r"error (\d+):(\d+) (.*)", header)
        assert match, header
        line, column, message = int(match.group(1)), int(match.group(2)), match.group(3)
        with pytest.raises(PrototxtError) as caught:
            parse(body, "case.prototxt")
        error = caught.value
        assert (error.line, error.column, error.message) == (line, column, message)
        assert str(error) == f"case.prototxt:{line}:{column}: {message}"
        assert reference is None, "lark accepts a case we reject"


# -- corpus and samples ------------------------------------------------------------------------

@pytest.mark.parametrize("path", all_text_params())
def test_same_tree_as_lark(path):
    text = path.read_bytes().decode("utf-8", "surrogateescape").lstrip("\ufeff")
    assert doc_structure(parse(text)) == lark_parse(text)


@pytest.mark.parametrize("path", all_text_params())
def test_token_kinds_agree_with_lark_lexer(path):
    text = path.read_bytes().decode("utf-8", "surrogateescape").lstrip("\ufeff")
    lexed = [(t.start_pos, t.type, str(t)) for t in grammar.reference_parser().lex(text)]
    document = parse(text)
    ours_tokens = [(document.token_offset(i), token_kind(document.token_text(i)),
                    document.token_text(i)) for i in range(document.token_count - 1)]
    assert ours_tokens == lexed


# -- random token soups: both parsers accept the same inputs and build the same trees ----------

_TOKENS = ["a", "b_2", ":", "{", "}", "<", ">", "[", "]", ",", ";", "-", "1", "0x1F", "1.5f",
           ".5", "'s'", '"t"', "${x}", "inf", "# c\n", "\n", " "]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_TOKENS), max_size=25),
       st.lists(st.sampled_from([" ", "", "\n", "\t"]), min_size=25, max_size=25))
def test_random_token_soup_matches_lark(tokens, gaps):
    text = "".join(t + g for t, g in zip(tokens, gaps))
    assert ours(text) == lark_parse(text)


_FIELDISH = st.recursive(
    st.sampled_from(["a: 1", "b: 'x'", "c: -2.5", "d: TRAIN", "e: [1, 2]", "f: []", "g: ${v}"]),
    lambda inner: st.lists(inner, max_size=4).map(lambda items: "m { " + " ".join(items) + " }")
    | st.lists(inner, max_size=3).map(lambda items: "n: < " + "; ".join(items) + " >")
    | st.lists(inner, max_size=3).map(lambda items: "l: [" + ", ".join(
        "{ " + item + " }" for item in items) + "]"),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_FIELDISH, max_size=5), st.integers(min_value=0, max_value=200),
       st.sampled_from(["", "}", "{", ":", "]", ",", "-", "'"]))
def test_well_formed_and_damaged_documents_match_lark(fields, cut, insert):
    text = "\n".join(fields)
    assert ours(text) == lark_parse(text)
    position = min(cut, len(text))
    damaged = text[:position] + insert + text[position:]
    assert ours(damaged) == lark_parse(damaged)
