"""Zeroth-order optimisers driven by rankings (ZO-RankSGD) or by values (ZO-SGD).

    from lib_alignment.zo import RankSGD
    opt = RankSGD(x0, m=6, mu=0.3, lr=3.0, seed=0)
    cands = opt.ask()          # (n, *x0.shape), display order
    opt.tell([3, 0, 5])        # display indices, best first (top k or all)
    opt.x                      # current point

We maximise preference: a ranking lists the preferred candidate first.
"""

from __future__ import annotations

from .ranking import order_from_scores, pair_count, rank_gradient, rank_weights, ranking_pairs, validate_order
from .ranksgd import DEFAULT_LR, DEFAULT_MU, ROUND_LINE, ROUND_RANK, RankSGD, project_rows_to_shell
from .zosgd import ZOSGD

__all__ = [
    "DEFAULT_LR",
    "DEFAULT_MU",
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
]
