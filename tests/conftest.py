"""Shared test helpers: where the samples and the (optional) shared corpus are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _corpus_dir() -> Path:
    override = os.environ.get("PROTOTXT_CORPUS")
    if override:
        return Path(override)
    return ROOT.parent / "shared" / "corpus"


CORPUS = _corpus_dir()
CORPUS_FILES = sorted((CORPUS / "files").glob("*")) if (CORPUS / "files").is_dir() else []
SAMPLE_FILES = sorted(SAMPLES.glob("*.prototxt"))


def corpus_params() -> list:
    """Parametrize over corpus files; a single skipped case when the corpus is absent."""
    if not CORPUS_FILES:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no corpus at {CORPUS}"))]
    return [pytest.param(path, id=path.name[:90]) for path in CORPUS_FILES]


def corpus_net_params() -> list:
    """corpus_params() without the solvers (the manifest's kind column says which)."""
    manifest = CORPUS / "manifest.tsv"
    if not CORPUS_FILES or not manifest.exists():
        return corpus_params()
    with manifest.open(encoding="utf-8") as handle:
        rows = [line.rstrip("\n").split("\t") for line in handle][1:]
    solvers = {row[0] for row in rows if len(row) > 4 and row[4] == "solver"}
    return [pytest.param(path, id=path.name[:90]) for path in CORPUS_FILES
            if path.name not in solvers]


def sample_params() -> list:
    return [pytest.param(path, id=path.name) for path in SAMPLE_FILES]


def all_text_params() -> list:
    """Samples plus corpus files (the corpus part skips when absent)."""
    return sample_params() + corpus_params()
