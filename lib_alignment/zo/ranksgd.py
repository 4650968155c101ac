"""ZO-RankSGD as an ask/tell optimiser over any tensor (image latents, synthetic test functions).

One round = `ask()` then `tell(order)`. With `line_search=True` (the scheme the
paper's authors use for images) rounds alternate:

* rank round: m candidates x + μ·ξ_i, ξ_i ~ N(0, I). The ranking gives the
  rank-based estimate g (see `ranking.rank_gradient`); the search direction is the
  running mean of g over the rank rounds since the point last moved.
* line round: candidates x + lr·2^(−i)·direction for i = 0 … m−3, the best
  candidate of the last rank round, and the current point x itself. The point
  moves to whichever the user puts first, so it never moves to something ranked
  below the current point; choosing x keeps the direction for averaging.

With `line_search=False` every round is a rank round followed by x ← x + lr·g
(the paper's Algorithm 1).

Step schedule: with `shrink` < 1, a line round whose ranking puts the current
point first (no step helped: the rounds stopped improving) multiplies the step
by `shrink` for the following line rounds, down to `MIN_STEP_SCALE`·lr; a move
keeps the shrunk step. `step` is the step in use (lr × that scale).

Candidates are returned in a shuffled *display* order (drawn from the
optimiser's seeded generator) and `tell` takes display indices, in both round
types. With `project_to_shell=True` every new point (candidates and moves) is
rescaled to norm √d, where Gaussian noise of d entries concentrates, so a
diffusion sampler always sees in-distribution noise; x0 itself is kept as given
so the first image is exactly the seed's image.

State: `state_dict()` holds tensors, python scalars and the generator state;
loading it into a fresh optimiser continues bit-exactly. `undo()` restores the
state before the last `tell` from a bounded in-memory stack (`undo_depth`
snapshots; the stack is not part of `state_dict`, persist snapshots yourself
if undo must survive a restart, as `lib_alignment.refine` does).
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import torch

from .ranking import pair_count, rank_gradient, validate_order

STATE_FORMAT = 1
#: Defaults for image latents (the Rank & Refine tab, API and `refine` command use them). On an SD1.5-sized
#: latent a perturbation μ = 0.3 turns the noise by about 15° and line steps lr·2^-i·g by 3–25°; against the
#: authors' μ = 0.1, lr = 2 (5°, 1–6°) they roughly doubled the gain of 12–16 oracle-ranked rounds on the tiny
#: model and on a 4×64×64 latent taste (benchmarks/zo_refine_quality.py, benchmarks/README.md).
from .defaults import DEFAULT_LR, DEFAULT_MU, MIN_STEP_SCALE  # noqa: E402 - the values live in a module without torch

ROUND_RANK = "rank"
ROUND_LINE = "line"


def project_rows_to_shell(points: torch.Tensor) -> torch.Tensor:
    """Rescale each row of [n, *shape] to norm √(numel of a row)."""
    flat = points.reshape(points.shape[0], -1)
    radius = math.sqrt(flat.shape[1])
    norms = flat.norm(dim=1, keepdim=True).clamp_min(torch.finfo(flat.dtype).tiny)
    return (flat * (radius / norms)).reshape(points.shape)


class RankSGD:
    """Maximise a preference known only through rankings of candidates.

    Args:
        x0: start point, any shape (e.g. a [4, 64, 64] noise latent). Floating point.
        m: candidates per round (≥ 3 with line search, ≥ 2 without).
        k: how many of the top candidates a ranking uses; None uses as many as `tell` gets.
        mu: perturbation scale of rank rounds.
        lr: step size; line rounds try lr·2^(−i) along the direction.
        line_search: alternate rank and line rounds (see module doc).
        project_to_shell: keep new points at norm √d.
        seed: seeds the generator for perturbations and display shuffles.
        undo_depth: how many `tell`s `undo()` can take back.
        shrink: step factor after a line round that does not move (1 = constant step).
    """

    def __init__(
        self,
        x0: torch.Tensor,
        m: int = 6,
        k: int | None = None,
        mu: float = DEFAULT_MU,
        lr: float = DEFAULT_LR,
        line_search: bool = True,
        project_to_shell: bool = True,
        seed: int = 0,
        undo_depth: int = 10,
        shrink: float = 1.0,
    ) -> None:
        if not isinstance(x0, torch.Tensor) or not x0.is_floating_point():
            raise ValueError("x0 must be a floating-point torch tensor")
        self.line_search = bool(line_search)
        self.project_to_shell = bool(project_to_shell)
        self._x = x0.detach().clone()
        self.m = m
        self.k = k
        self.mu = mu
        self.lr = lr
        self.shrink = shrink
        self._step_scale = 1.0
        self._generator = torch.Generator(device="cpu").manual_seed(int(seed))
        self._direction = torch.zeros_like(self._x)
        self._n_accumulated = 0
        self._rank_best: torch.Tensor | None = None
        self._best = self._x.clone()
        self._round_type = ROUND_RANK
        self._rounds = 0
        self._pending: torch.Tensor | None = None
        self._pending_perturbations: torch.Tensor | None = None
        self._perm: torch.Tensor | None = None
        self.history: list[dict[str, Any]] = []
        self._undo: deque[dict[str, Any]] = deque(maxlen=max(0, int(undo_depth)))

    # ----- settings (take effect at the next new round) -----------------------

    @property
    def m(self) -> int:
        return self._m

    @m.setter
    def m(self, value: int) -> None:
        value = int(value)
        minimum = 3 if self.line_search else 2
        if value < minimum:
            raise ValueError(f"m must be ≥ {minimum} {'with' if self.line_search else 'without'} line search (got {value})")
        self._m = value

    @property
    def k(self) -> int | None:
        return self._k

    @k.setter
    def k(self, value: int | None) -> None:
        if value is not None and int(value) < 1:
            raise ValueError(f"k must be ≥ 1 or None (got {value})")
        self._k = None if value is None else int(value)

    @property
    def mu(self) -> float:
        return self._mu

    @mu.setter
    def mu(self, value: float) -> None:
        if not float(value) > 0:
            raise ValueError(f"mu must be > 0 (got {value})")
        self._mu = float(value)

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        if not float(value) > 0:
            raise ValueError(f"lr must be > 0 (got {value})")
        self._lr = float(value)

    @property
    def shrink(self) -> float:
        return self._shrink

    @shrink.setter
    def shrink(self, value: float) -> None:
        if not 0 < float(value) <= 1:
            raise ValueError(f"shrink must be in (0, 1] (got {value})")
        self._shrink = float(value)

    @property
    def step(self) -> float:
        """The line-search step in use: lr shrunk by the schedule."""
        return self._lr * self._step_scale

    # ----- read-only views ----------------------------------------------------

    @property
    def x(self) -> torch.Tensor:
        """The current point (a copy)."""
        return self._x.clone()

    @property
    def best(self) -> torch.Tensor:
        """Best point known so far: x with line search; the top candidate of the last round without."""
        return self._best.clone()

    @property
    def round_type(self) -> str:
        """"rank" or "line": the type of the round `ask()` returns (or has returned)."""
        return self._round_type

    @property
    def rounds(self) -> int:
        """Number of `tell`s applied."""
        return self._rounds

    @property
    def direction(self) -> torch.Tensor:
        """The current search direction (mean of rank estimates since the last move; a copy)."""
        return self._direction.clone()

    @property
    def pending(self) -> bool:
        """True between `ask()` and `tell()`."""
        return self._pending is not None

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def roles(self) -> list[str]:
        """What each displayed candidate is, in display order (asks if needed).

        "perturbation" in rank rounds; in line rounds "step lr·2^-i", "rank best"
        (best of the last rank round) and "current" (x itself).
        """
        self._ensure_pending()
        internal = self._internal_roles()
        assert self._perm is not None
        return [internal[int(i)] for i in self._perm]

    def _internal_roles(self) -> list[str]:
        assert self._pending is not None
        n = self._pending.shape[0]
        if self._round_type == ROUND_RANK:
            return ["perturbation"] * n
        return [f"step lr·2^-{i}" for i in range(n - 2)] + ["rank best", "current"]

    # ----- ask / tell ---------------------------------------------------------

    def ask(self) -> torch.Tensor:
        """Candidates of the current round in display order, shape (n, *x0.shape).

        Calling it again before `tell` returns the same candidates in the same order.
        """
        self._ensure_pending()
        assert self._pending is not None and self._perm is not None
        return self._pending.index_select(0, self._perm.to(self._pending.device))

    def tell(self, order: Sequence[int]) -> None:
        """Apply a best-first ranking of display indices (the top k, or all)."""
        if self._pending is None:
            raise RuntimeError("tell() before ask(): there are no candidates to rank")
        n = self._pending.shape[0]
        display = validate_order(order, n)
        assert self._perm is not None
        internal = [int(self._perm[i]) for i in display]
        if self._round_type == ROUND_RANK and self._k is not None and len(internal) < min(self._k, n):
            raise ValueError(f"ranking has {len(internal)} entries, but k = {min(self._k, n)} are required")
        if self._undo.maxlen:
            self._undo.append(self._snapshot())
        entry: dict[str, Any] = {"round": self._rounds, "type": self._round_type, "order": display, "internal_order": internal}
        if self._round_type == ROUND_RANK:
            self._tell_rank(internal, entry)
        else:
            self._tell_line(internal, entry)
        self.history.append(entry)
        self._rounds += 1
        self._pending = None
        self._pending_perturbations = None
        self._perm = None

    def _tell_rank(self, internal: list[int], entry: dict[str, Any]) -> None:
        assert self._pending is not None and self._pending_perturbations is not None
        m = self._pending.shape[0]
        k = len(internal) if self._k is None else min(self._k, m)
        used = internal[:k]
        estimate = rank_gradient(self._pending_perturbations, used)
        entry.update(k=k, pairs=pair_count(m, k), estimate_norm=float(estimate.norm()))
        top = self._pending[used[0]].clone()
        if self.line_search:
            n = self._n_accumulated
            self._direction = (self._direction * n + estimate) / (n + 1)
            self._n_accumulated = n + 1
            self._rank_best = top
            self._round_type = ROUND_LINE
            entry["moved"] = False
        else:
            self._x = self._project(self._x + self._lr * estimate)
            self._best = top
            entry["moved"] = True

    def _tell_line(self, internal: list[int], entry: dict[str, Any]) -> None:
        assert self._pending is not None
        chosen = internal[0]
        roles = self._internal_roles()
        current_index = self._pending.shape[0] - 1
        entry["chosen"] = roles[chosen]
        if chosen != current_index:
            self._x = self._pending[chosen].clone()
            self._best = self._x.clone()
            self._direction = torch.zeros_like(self._x)
            self._n_accumulated = 0
            entry["moved"] = True
        else:
            entry["moved"] = False
            self._step_scale = max(MIN_STEP_SCALE, self._step_scale * self._shrink)
        entry["step_scale"] = self._step_scale
        self._rank_best = None
        self._round_type = ROUND_RANK

    def _ensure_pending(self) -> None:
        if self._pending is not None:
            return
        if self._round_type == ROUND_RANK:
            noise = torch.randn((self._m, *self._x.shape), generator=self._generator, dtype=self._x.dtype)
            perturbations = noise.to(self._x.device).mul_(self._mu)
            self._pending_perturbations = perturbations
            self._pending = self._project(self._x.unsqueeze(0) + perturbations, rows=True)
        else:
            assert self._rank_best is not None
            scales = torch.tensor([self.step * 0.5**i for i in range(self._m - 2)], dtype=self._x.dtype, device=self._x.device)
            steps = self._x.unsqueeze(0) + scales.reshape(-1, *([1] * self._x.dim())) * self._direction.unsqueeze(0)
            steps = self._project(steps, rows=True)
            self._pending = torch.cat([steps, self._rank_best.unsqueeze(0), self._x.unsqueeze(0)])
        self._perm = torch.randperm(self._pending.shape[0], generator=self._generator)

    def _project(self, points: torch.Tensor, rows: bool = False) -> torch.Tensor:
        if not self.project_to_shell:
            return points
        if rows:
            return project_rows_to_shell(points)
        return project_rows_to_shell(points.unsqueeze(0))[0]

    # ----- undo and state ----------------------------------------------------

    def undo(self) -> None:
        """Restore the state before the last `tell` (its round is pending again, same display order)."""
        if not self._undo:
            raise RuntimeError("nothing to undo")
        snapshot = self._undo.pop()
        history_length = snapshot.pop("history_length")
        self.load_state_dict({**snapshot, "history": self.history[:history_length]}, keep_undo=True)

    def _snapshot(self) -> dict[str, Any]:
        """A cheap state for undo: tensors by reference (state tensors are replaced, never changed in place)."""
        return {
            "format": STATE_FORMAT,
            "m": self._m,
            "k": self._k,
            "mu": self._mu,
            "lr": self._lr,
            "shrink": self._shrink,
            "step_scale": self._step_scale,
            "line_search": self.line_search,
            "project_to_shell": self.project_to_shell,
            "round_type": self._round_type,
            "rounds": self._rounds,
            "n_accumulated": self._n_accumulated,
            "x": self._x,
            "best": self._best,
            "direction": self._direction,
            "rank_best": self._rank_best,
            "pending": self._pending,
            "pending_perturbations": self._pending_perturbations,
            "perm": self._perm,
            "generator": self._generator.get_state(),
            "history_length": len(self.history),
        }

    def state_dict(self) -> dict[str, Any]:
        """Tensors, python scalars and the generator state; enough to continue bit-exactly."""
        state = self._snapshot()
        del state["history_length"]
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                state[name] = value.detach().clone()
        state["history"] = copy.deepcopy(self.history)
        return state

    def load_state_dict(self, state: dict[str, Any], keep_undo: bool = False) -> None:
        """Continue from `state_dict()` output; the undo stack is cleared unless keep_undo."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"optimiser state has format {state.get('format')!r}, expected {STATE_FORMAT}")
        x = state["x"]
        if tuple(x.shape) != tuple(self._x.shape):
            raise ValueError(f"optimiser state is for shape {tuple(x.shape)}, this optimiser has {tuple(self._x.shape)}")
        if state["round_type"] not in (ROUND_RANK, ROUND_LINE):
            raise ValueError(f"optimiser state has unknown round type {state['round_type']!r}")
        device, dtype = self._x.device, self._x.dtype

        def put(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.detach().to(device=device, dtype=dtype).clone()

        self.line_search = bool(state["line_search"])
        self.project_to_shell = bool(state["project_to_shell"])
        self.m = state["m"]
        self.k = state["k"]
        self.mu = state["mu"]
        self.lr = state["lr"]
        self.shrink = state.get("shrink", 1.0)  # states saved before the schedule existed
        self._step_scale = float(state.get("step_scale", 1.0))
        self._round_type = state["round_type"]
        self._rounds = int(state["rounds"])
        self._n_accumulated = int(state["n_accumulated"])
        self._x = put(x)  # type: ignore[assignment]
        self._best = put(state["best"])  # type: ignore[assignment]
        self._direction = put(state["direction"])  # type: ignore[assignment]
        self._rank_best = put(state.get("rank_best"))
        self._pending = put(state.get("pending"))
        self._pending_perturbations = put(state.get("pending_perturbations"))
        perm = state.get("perm")
        self._perm = None if perm is None else perm.detach().to(torch.long).cpu().clone()
        self._generator.set_state(state["generator"].detach().to(torch.uint8).cpu().clone())
        self.history = copy.deepcopy(list(state.get("history", [])))
        if not keep_undo:
            self._undo.clear()
