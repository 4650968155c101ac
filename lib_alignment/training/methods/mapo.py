"""MaPO (Hong et al. 2024): margin-aware preference optimisation without a reference model.

With an image's error L (element mean) and score s(L) = aL / (exp(aL) − 1),
loss = mean(L_w) − β · mean(log σ(T · (s(L_w) − s(L_l)))), T the number of
training timesteps, a = `snr_value` (0.5), β default 0.1 — the preferred image
is also fitted directly, which replaces the reference model's anchor.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import Errors, Method, MethodOutput, ReduceMean, fit_plus_odds_output, local_mean


def mapo_score(errors: torch.Tensor, snr_value: float) -> torch.Tensor:
    scaled = snr_value * errors
    return scaled / torch.expm1(scaled)


class MaPO(Method):
    name = "mapo"
    data_kind = "pairs"
    needs_reference = False
    metric_names = ("reward_accuracy", "reward_margin", "reward_margin_std", "margin_loss", "model_error_preferred", "model_error_other")

    def __init__(self, beta: float, snr_value: float = 0.5, num_train_timesteps: int = 1000) -> None:
        super().__init__(beta, snr_value=float(snr_value), num_train_timesteps=int(num_train_timesteps))
        self.snr_value = float(snr_value)
        self.num_train_timesteps = int(num_train_timesteps)

    @property
    def margin_scale(self) -> float:
        return float(self.num_train_timesteps)  # MaPO's β weighs a loss term; margins are in T · error units

    def loss(self, errors: Errors, batch: dict[str, Any], reduce_mean: ReduceMean = local_mean) -> MethodOutput:
        errors_w, errors_l = errors.policy.chunk(2)
        log_odds = mapo_score(errors_w, self.snr_value) - mapo_score(errors_l, self.snr_value)
        ratio = F.logsigmoid(log_odds * self.num_train_timesteps)
        return fit_plus_odds_output(
            errors_w, errors_l, log_odds, ratio, self.beta, batch.get("weight"), self.num_train_timesteps, "margin_loss"
        )
