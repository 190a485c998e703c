"""Lint configuration: which rules run, what fails the run, rule options.

Read from ``.prototxt-tools.toml`` (table ``[lint]``) or ``pyproject.toml`` (table
``[tool.prototxt-tools.lint]``), the first found walking up from the working directory, and
overridden by the command line. Keys::

    select = ["BN", "G001"]        # codes or prefixes; default: every rule on by default
    extend-select = ["BN009"]      # add to the selection (e.g. rules off by default)
    ignore = ["BN007"]             # codes or prefixes to skip
    fail-on = "warning"            # lowest severity that makes the exit status 1
    [lint.options.BN006]           # (or [tool.prototxt-tools.lint.options.BN006])
    threshold = 32
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Optional

from ..errors import ERROR, PrototxtError
from .rule import SEVERITIES, Rule

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older Pythons only
    import tomli as tomllib

CONFIG_FILES = (".prototxt-tools.toml", "pyproject.toml")
_KEYS = {"select", "extend-select", "ignore", "fail-on", "options"}


@dataclass
class LintConfig:
    select: tuple = ()
    extend_select: tuple = ()
    ignore: tuple = ()
    fail_on: str = ERROR
    options: dict = field(default_factory=dict)  # code -> {name: value}
    source: Optional[str] = None  # the file the settings came from

    def enabled(self, rule: Rule) -> bool:
        """Whether ``rule`` runs: selected (or on by default when nothing is selected), or
        extended into the selection, and not ignored. The longest matching prefix wins, so
        ``ignore = ["BN"]`` with ``select = ["BN004"]`` keeps BN004, and ``ignore = ["ALL"]``
        turns off what is on by default but not what is selected by code."""
        code = rule.code
        # Being on by default is the least specific selection: any ignore prefix beats it.
        chosen = _longest_match(code, self.select) if self.select else (
            0 if rule.enabled_by_default else -1)
        extended = _longest_match(code, self.extend_select)
        ignored = _longest_match(code, self.ignore)
        return max(chosen, extended) > ignored

    def with_overrides(self, *, select: Iterable[str] = (), extend_select: Iterable[str] = (),
                       ignore: Iterable[str] = (), fail_on: Optional[str] = None,
                       options: Optional[dict] = None) -> "LintConfig":
        """The command line's settings on top of these (select replaces; the rest adds)."""
        merged_options = {code: dict(values) for code, values in self.options.items()}
        for code, values in (options or {}).items():
            merged_options.setdefault(code, {}).update(values)
        select = tuple(code.upper() for code in select)
        return replace(
            self,
            select=select or self.select,
            extend_select=self.extend_select + tuple(c.upper() for c in extend_select),
            ignore=self.ignore + tuple(c.upper() for c in ignore),
            fail_on=fail_on or self.fail_on,
            options=merged_options,
        )


def _longest_match(code: str, patterns: Iterable[str]) -> int:
    """Length of the longest pattern that prefixes ``code`` ("ALL" matches everything), or -1."""
    best = -1
    for pattern in patterns:
        pattern = pattern.upper()
        if pattern == "ALL":
            best = max(best, 0)
        elif code.startswith(pattern):
            best = max(best, len(pattern))
    return best


def find_config(start: Optional[Path] = None) -> Optional[Path]:
    """The nearest config file at or above ``start`` that has lint settings."""
    directory = (start or Path.cwd()).resolve()
    for folder in (directory, *directory.parents):
        for name in CONFIG_FILES:
            candidate = folder / name
            if candidate.is_file() and _table(candidate, quiet=True) is not None:
                return candidate
    return None


def load_config(path: Optional[Path] = None, start: Optional[Path] = None) -> LintConfig:
    """Settings from ``path`` (or the nearest config file); defaults when there is none."""
    if path is None:
        path = find_config(start)
        if path is None:
            return LintConfig()
    table = _table(path)
    if table is None:
        if Path(path).name == "pyproject.toml":
            return LintConfig(source=os.fspath(path))
        table = {}
    return _from_table(table, os.fspath(path))


def _table(path: Path, quiet: bool = False) -> Optional[dict]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        if quiet:
            return None
        raise PrototxtError(f"cannot read config: {exc.strerror or exc}", os.fspath(path)) from None
    except tomllib.TOMLDecodeError as exc:
        if quiet:
            return None
        raise PrototxtError(f"invalid TOML: {exc}", os.fspath(path)) from None
    if Path(path).name == "pyproject.toml":
        return data.get("tool", {}).get("prototxt-tools", {}).get("lint")
    return data.get("lint", {})


def _from_table(table: dict, source: str) -> LintConfig:
    unknown = set(table) - _KEYS
    if unknown:
        raise PrototxtError(f"unknown lint setting(s): {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(sorted(_KEYS))})", source)

    def codes(key: str) -> tuple:
        value = table.get(key, [])
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise PrototxtError(f"'{key}' must be a list of rule codes or prefixes", source)
        return tuple(v.upper() for v in value)

    fail_on = table.get("fail-on", ERROR)
    if fail_on not in SEVERITIES:
        raise PrototxtError(f"'fail-on' must be one of {', '.join(SEVERITIES)}", source)
    options = table.get("options", {})
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise PrototxtError("'options' must be a table of tables, one per rule code", source)
    return LintConfig(codes("select"), codes("extend-select"), codes("ignore"), fail_on,
                      {code.upper(): dict(values) for code, values in options.items()}, source)


def parse_option(text: str) -> tuple:
    """``CODE.name=value`` from the command line -> (CODE, name, value); the value is read
    as TOML when it can be (numbers, booleans, strings in quotes), else kept as a string."""
    try:
        target, raw = text.split("=", 1)
        code, name = target.split(".", 1)
    except ValueError:
        raise PrototxtError(f"--option expects CODE.name=value, got {text!r}") from None
    try:
        value: Any = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return code.upper(), name, value
