"""The rank-based gradient estimate of ZO-RankSGD (Tang, Rybin, Chang, arXiv 2303.03751).

Convention used everywhere in this package: we *maximise* preference. A ranking
is a best-first list of candidate indices (the user's or an oracle's top k of
the m candidates, or all of them). It implies the ordered pairs
(better, worse): every ranked candidate beats each one ranked after it and
every unranked candidate, k(k−1)/2 + k(m−k) pairs in all. The estimate is the
mean over those pairs of (perturbation of the better − perturbation of the
worse), so it points toward the better-ranked candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def validate_order(order: Sequence[int], n: int) -> list[int]:
    """The ranking as a list of ints; a clear error for empty, repeated or out-of-range entries."""
    try:
        items = [int(i) for i in order]
    except (TypeError, ValueError) as error:
        raise ValueError(f"ranking must be a list of candidate indices, got {order!r}") from error
    if any(float(i) != float(j) for i, j in zip(items, order)):
        raise ValueError(f"ranking must hold whole candidate indices, got {list(order)!r}")
    if not items:
        raise ValueError("ranking is empty: give at least the index of the best candidate")
    bad = [i for i in items if not 0 <= i < n]
    if bad:
        raise ValueError(f"ranking has indices {bad} outside 0..{n - 1} ({n} candidates)")
    if len(set(items)) != len(items):
        raise ValueError(f"ranking repeats a candidate: {items}")
    return items


def pair_count(m: int, k: int) -> int:
    """Number of (better, worse) pairs a top-k ranking of m candidates implies."""
    return k * (k - 1) // 2 + k * (m - k)


def ranking_pairs(order: Sequence[int], m: int) -> list[tuple[int, int]]:
    """Every (better, worse) pair implied by a best-first ranking of the top len(order) of m."""
    ranked = validate_order(order, m)
    ranked_set = set(ranked)
    unranked = [i for i in range(m) if i not in ranked_set]
    pairs: list[tuple[int, int]] = []
    for position, better in enumerate(ranked):
        pairs.extend((better, worse) for worse in ranked[position + 1 :])
        pairs.extend((better, worse) for worse in unranked)
    return pairs


def rank_weights(order: Sequence[int], m: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Per-candidate weight: (#pairs it wins) − (#pairs it loses), so Σ weight·p = Σ_pairs (p_better − p_worse).

    A candidate at rank r (0-based) of the top k gets m − 1 − 2r; an unranked one gets −k.
    The weights sum to zero, so a shift common to all perturbations cancels.
    """
    ranked = validate_order(order, m)
    k = len(ranked)
    weights = torch.full((m,), float(-k), dtype=dtype)
    for rank, index in enumerate(ranked):
        weights[index] = float(m - 1 - 2 * rank)
    return weights


def rank_gradient(perturbations: torch.Tensor, order: Sequence[int]) -> torch.Tensor:
    """Mean over the implied pairs of (perturbation_better − perturbation_worse).

    perturbations: [m, *shape], in candidate (internal) order. Returns a tensor of `shape`.
    """
    m = perturbations.shape[0]
    weights = rank_weights(order, m, dtype=perturbations.dtype).to(perturbations.device)
    n_pairs = pair_count(m, len(order))
    flat = perturbations.reshape(m, -1)
    return (weights @ flat).div_(n_pairs).reshape(perturbations.shape[1:])


def order_from_scores(scores: Sequence[float]) -> list[int]:
    """Best-first indices for scores where higher is better; equal scores keep their index order."""
    values = [float(s) for s in scores]
    bad = [i for i, v in enumerate(values) if v != v]
    if bad:
        raise ValueError(f"scores at indices {bad} are NaN; cannot rank them")
    return sorted(range(len(values)), key=lambda i: -values[i])
