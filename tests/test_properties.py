"""Property tests: arbitrary edits of real files never raise anything but PrototxtError."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CORPUS_FILES, SAMPLE_FILES
from prototxt_tools import PrototxtError, bind, format_text, parse

# Seeds: every sample, plus a spread of corpus files when the corpus is there (small ones, so
# each example stays fast).
_SEEDS = [p.read_bytes() for p in SAMPLE_FILES]
_SEEDS += [p.read_bytes() for p in CORPUS_FILES if p.stat().st_size < 60_000][::3]

_SYNTAX_BYTES = list(b"{}<>[]:;,-'\"#\n\r\t $.0123456789xefinaTtF_\\") + [0x97, 0xFF, 0xC3, 0x00]


@st.composite
def edited(draw):
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        if not data:
            data += b"a"
        position = draw(st.integers(min_value=0, max_value=len(data) - 1))
        action = draw(st.sampled_from(["insert", "delete", "replace", "duplicate", "truncate"]))
        if action == "insert":
            chunk = bytes(draw(st.lists(st.sampled_from(_SYNTAX_BYTES), min_size=1, max_size=4)))
            data[position:position] = chunk
        elif action == "delete":
            data[position:position + draw(st.integers(min_value=1, max_value=40))] = b""
        elif action == "replace":
            data[position] = draw(st.sampled_from(_SYNTAX_BYTES + list(range(256))))
        elif action == "duplicate":
            end = position + draw(st.integers(min_value=1, max_value=200))
            data[position:position] = data[position:end]
        else:
            del data[position:]
    return bytes(data)


def _exercise(data: bytes) -> None:
    try:
        document = parse(data, "fuzz.prototxt")
    except PrototxtError as exc:
        assert exc.line is not None and exc.column is not None
        assert str(exc).startswith("fuzz.prototxt:")
        return
    assert document.to_bytes() == data
    bind(document)  # diagnostics, never exceptions
    for kind in ("net", "solver"):
        bind(document, kind)
    formatted = format_text(data)
    assert format_text(formatted) == formatted
    assert bind(parse(formatted)).message == bind(document).message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@given(edited())
def test_edited_files_only_raise_prototxt_errors(data):
    _exercise(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_prototxt_errors(data):
    _exercise(data)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab:{}<>[],;-'\"#\n \\.0x1eE$_")), max_size=80))
def test_random_syntax_soup_only_raises_prototxt_errors(text):
    _exercise(text.encode())


@pytest.mark.parametrize("data", [b"layer { name: '\\", b"a: '\\x", b"a: \"\\400\"", b"a: 1e400",
                                  b"a: -", b"a: [", b"a: [{", b"\xef\xbb\xbf", b"\xef\xbb\xbf}"])
def test_known_tricky_inputs(data):
    _exercise(data)
