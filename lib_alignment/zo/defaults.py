"""Default step sizes of ZO-RankSGD, importable without torch (the command line's --help shows them)."""

from __future__ import annotations

#: Perturbation scale μ of the exploration candidates.
DEFAULT_MU = 0.3
#: Line-search step of the line rounds.
DEFAULT_LR = 3.0
