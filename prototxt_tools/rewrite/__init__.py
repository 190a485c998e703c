"""Net-to-net rewrites, each a text edit of the original file (comments and layout of what
survives are kept) checked by re-parsing, and, where numbers change, by running both nets.

- :func:`deploy`: the TEST-phase inference net of a train_val.
- :func:`fold_bn`: BatchNorm (+ Scale) folded into the layer before it, weights rewritten.
- :func:`freeze_bn`: BatchNorm made to use its stored statistics in TRAIN (fine-tuning).
- :func:`bn_stats`: BatchNorm statistics recomputed over data, written into new weights.
"""

from __future__ import annotations

from typing import Any

__all__ = ["deploy", "DeployResult", "fold_bn", "FoldResult", "freeze_bn", "FreezeResult",
           "bn_stats", "StatsResult"]

# fold_bn and bn_stats need NumPy; load each on first use.
_LAZY = {
    "deploy": "deploy", "DeployResult": "deploy",
    "fold_bn": "fold_bn", "FoldResult": "fold_bn",
    "freeze_bn": "freeze_bn", "FreezeResult": "freeze_bn",
    "bn_stats": "bn_stats", "StatsResult": "bn_stats",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'prototxt_tools.rewrite' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
