"""Default step sizes of ZO-RankSGD, importable without torch (the command line's --help shows them)."""

from __future__ import annotations

#: Perturbation scale μ of the exploration candidates: the "medium" variety (benchmarks/refine_variety.py).
DEFAULT_MU = 0.45
#: Line-search step of the line rounds.
DEFAULT_LR = 3.0
#: Step schedule: after a line round that does not move (the current image ranked first), the step is
#: multiplied by this (1 = a constant step), down to MIN_STEP_SCALE of the set step.
DEFAULT_SHRINK = 0.5
MIN_STEP_SCALE = 0.125
#: The variety choice the tab shows, and the μ behind each word (advanced settings show the number).
VARIETY = {"subtle": 0.15, "medium": 0.45, "bold": 1.0}
DEFAULT_VARIETY = "medium"


def variety_of(mu: float) -> str | None:
    """The word for a μ, or None when it is one the user typed."""
    return next((word for word, value in VARIETY.items() if abs(value - float(mu)) < 1e-9), None)
