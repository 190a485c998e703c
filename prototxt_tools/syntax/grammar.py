"""The grammar file, lark's reference parser for it, and the lexer tables generated from it.

``grammars/prototxt.lark`` is the one definition of the syntax. Importing lark and analysing the
grammar costs ~0.15 s, too much for every ``prototxt check``, so the fast parser reads its token
regex from ``_tables.py``, which ``python -m prototxt_tools.syntax.grammar`` regenerates from the
grammar (a test fails when it is stale). lark's own LALR parser of the same grammar is the
reference the fast parser is tested against.
"""

from __future__ import annotations

import hashlib
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

GRAMMAR_NAME = "prototxt.lark"
TABLES_PATH = Path(__file__).with_name("_tables.py")


def grammar_path() -> Path:
    """Where the grammar is: inside the installed package, or at the top of a source checkout."""
    try:
        from importlib.resources import files

        candidate = files("prototxt_tools.grammars") / GRAMMAR_NAME
        if candidate.is_file():
            return Path(str(candidate))
    except (ImportError, ModuleNotFoundError, TypeError):
        pass
    checkout = Path(__file__).resolve().parents[2] / "grammars" / GRAMMAR_NAME
    if checkout.is_file():
        return checkout
    raise FileNotFoundError(f"grammar file {GRAMMAR_NAME} is not installed")


def grammar_text() -> str:
    return grammar_path().read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def reference_parser() -> Any:
    """lark's LALR parser for the grammar (slow; the yardstick for the fast parser).

    It keeps every token and positions, uses lark's context-free basic lexer (as the fast
    parser's lexer is), and leaves optional items out of the tree rather than as ``None``.
    """
    import lark

    return lark.Lark(grammar_text(), parser="lalr", lexer="basic", keep_all_tokens=True,
                     propagate_positions=True, maybe_placeholders=False)


def build_tables(text: Optional[str] = None) -> str:
    """The source of ``_tables.py`` for the grammar ``text`` (default: the grammar file)."""
    import lark

    text = grammar_text() if text is None else text
    parser = lark.Lark(text, parser="lalr", lexer="basic", keep_all_tokens=True)
    ignored = [t for t in parser.terminals if t.name in parser.ignore_tokens]
    tokens = [t for t in parser.terminals if t.name not in parser.ignore_tokens]
    trivia = "(?:" + "|".join(t.pattern.to_regexp() for t in ignored) + ")*"
    alternatives = "|".join(f"(?:{t.pattern.to_regexp()})" for t in tokens)
    # One match per token: (leading trivia)(token | end of input | (one character no terminal
    # accepts)). re.findall over it runs the whole lexer in C.
    token_regex = f"({trivia})({alternatives}|\\Z|([\\s\\S]))"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    lines = [
        f"# Generated from grammars/{GRAMMAR_NAME} by `python -m prototxt_tools.syntax.grammar`.",
        "# Do not edit; regenerate after changing the grammar.",
        "",
        f"GRAMMAR_SHA256 = {digest!r}",
        "",
        "# Terminals in grammar order: name -> Python regex.",
        "TERMINALS = {",
        *(f"    {t.name!r}: {t.pattern.to_regexp()!r}," for t in tokens),
        "}",
        "",
        "# Whitespace and comments: kept as trivia before the next token.",
        "IGNORED = {",
        *(f"    {t.name!r}: {t.pattern.to_regexp()!r}," for t in ignored),
        "}",
        "",
        f"TOKEN_REGEX = {token_regex!r}",
        "",
    ]
    return "\n".join(lines)


def tables_are_current() -> bool:
    try:
        current = TABLES_PATH.read_text(encoding="utf-8")
    except OSError:
        return False
    return current == build_tables()


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--check":
        if tables_are_current():
            return 0
        print(f"{TABLES_PATH}: stale; run python -m prototxt_tools.syntax.grammar", file=sys.stderr)
        return 1
    source = build_tables()
    tmp = TABLES_PATH.with_suffix(".tmp")
    tmp.write_text(source, encoding="utf-8")
    os.replace(tmp, TABLES_PATH)
    print(f"wrote {TABLES_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
