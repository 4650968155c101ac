"""Zeroth-order optimisers driven by rankings (ZO-RankSGD) or by values (ZO-SGD).

    from lib_alignment.zo import RankSGD
    opt = RankSGD(x0, m=6, mu=0.3, lr=3.0, seed=0)
    cands = opt.ask()          # (n, *x0.shape), display order
    opt.tell([3, 0, 5])        # display indices, best first (top k or all)
    opt.x                      # current point

We maximise preference: a ranking lists the preferred candidate first.
"""

from __future__ import annotations

import importlib
from typing import Any

from .defaults import DEFAULT_LR, DEFAULT_MU, DEFAULT_SHRINK, DEFAULT_VARIETY, MIN_STEP_SCALE, VARIETY, variety_of

#: Imported on first use (they need torch; `--help` and the defaults do not).
_LAZY = {
    "order_from_scores": "ranking",
    "pair_count": "ranking",
    "rank_gradient": "ranking",
    "rank_weights": "ranking",
    "ranking_pairs": "ranking",
    "validate_order": "ranking",
    "ROUND_LINE": "ranksgd",
    "ROUND_RANK": "ranksgd",
    "RankSGD": "ranksgd",
    "project_rows_to_shell": "ranksgd",
    "ZOSGD": "zosgd",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "DEFAULT_LR",
    "DEFAULT_MU",
    "DEFAULT_SHRINK",
    "DEFAULT_VARIETY",
    "MIN_STEP_SCALE",
    "VARIETY",
    "ROUND_LINE",
    "ROUND_RANK",
    "RankSGD",
    "ZOSGD",
    "order_from_scores",
    "pair_count",
    "project_rows_to_shell",
    "rank_gradient",
    "rank_weights",
    "ranking_pairs",
    "validate_order",
    "variety_of",
]
