"""Value-based ZO-SGD: the baseline ZO-RankSGD is compared with on synthetic functions.

Same ask/tell shape as `RankSGD`, but `tell` takes the candidates' scores
(higher is better) instead of a ranking. With m queries per step the estimate is
g = (1/m) Σ_i (s_i − mean(s)) / μ · ξ_i, which needs no extra query at x (the
mean of the m scores is the baseline), and the step is x ← x + lr·g.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .ranksgd import project_rows_to_shell

STATE_FORMAT = 1


class ZOSGD:
    """Gaussian-smoothing zeroth-order gradient ascent on scores."""

    def __init__(
        self,
        x0: torch.Tensor,
        m: int = 10,
        mu: float = 0.1,
        lr: float = 0.01,
        project_to_shell: bool = False,
        seed: int = 0,
    ) -> None:
        if not isinstance(x0, torch.Tensor) or not x0.is_floating_point():
            raise ValueError("x0 must be a floating-point torch tensor")
        if int(m) < 2:
            raise ValueError(f"m must be ≥ 2 (got {m})")
        if not float(mu) > 0 or not float(lr) > 0:
            raise ValueError(f"mu and lr must be > 0 (got mu={mu}, lr={lr})")
        self.m, self.mu, self.lr = int(m), float(mu), float(lr)
        self.project_to_shell = bool(project_to_shell)
        self._x = x0.detach().clone()
        self._generator = torch.Generator(device="cpu").manual_seed(int(seed))
        self._noise: torch.Tensor | None = None
        self._rounds = 0

    @property
    def x(self) -> torch.Tensor:
        return self._x.clone()

    @property
    def rounds(self) -> int:
        return self._rounds

    def ask(self) -> torch.Tensor:
        """m candidates x + μ·ξ_i, shape (m, *x0.shape); the same ones until `tell`."""
        if self._noise is None:
            self._noise = torch.randn((self.m, *self._x.shape), generator=self._generator, dtype=self._x.dtype).to(self._x.device)
        return self._x.unsqueeze(0) + self.mu * self._noise

    def tell(self, scores: Sequence[float] | torch.Tensor) -> None:
        """Step along the estimated ascent direction of the scores (higher is better)."""
        if self._noise is None:
            raise RuntimeError("tell() before ask(): there are no candidates to score")
        values = torch.as_tensor(scores, dtype=self._x.dtype, device=self._x.device).reshape(-1)
        if values.numel() != self.m:
            raise ValueError(f"got {values.numel()} scores for {self.m} candidates")
        if not torch.isfinite(values).all():
            raise ValueError("scores must be finite")
        centred = (values - values.mean()) / (self.mu * self.m)
        estimate = (centred @ self._noise.reshape(self.m, -1)).reshape(self._x.shape)
        x = self._x + self.lr * estimate
        self._x = project_rows_to_shell(x.unsqueeze(0))[0] if self.project_to_shell else x
        self._noise = None
        self._rounds += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "m": self.m,
            "mu": self.mu,
            "lr": self.lr,
            "project_to_shell": self.project_to_shell,
            "rounds": self._rounds,
            "x": self._x.clone(),
            "noise": None if self._noise is None else self._noise.clone(),
            "generator": self._generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"ZOSGD state has format {state.get('format')!r}, expected {STATE_FORMAT}")
        if tuple(state["x"].shape) != tuple(self._x.shape):
            raise ValueError(f"ZOSGD state is for shape {tuple(state['x'].shape)}, this optimiser has {tuple(self._x.shape)}")
        self.m, self.mu, self.lr = int(state["m"]), float(state["mu"]), float(state["lr"])
        self.project_to_shell = bool(state["project_to_shell"])
        self._rounds = int(state["rounds"])
        self._x = state["x"].to(self._x).clone()
        self._noise = None if state["noise"] is None else state["noise"].to(self._x).clone()
        self._generator.set_state(state["generator"].to(torch.uint8).cpu().clone())
