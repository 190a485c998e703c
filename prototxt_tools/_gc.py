"""Pause the cyclic garbage collector while building large trees.

Parsing a 5 MB net allocates about a million small objects; each allocation burst triggers
collections that walk all of them again, halving throughput. Nothing we build in that window
needs collecting, so the collector is paused and restored afterwards (nesting is safe).
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def gc_paused() -> Iterator[None]:
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
