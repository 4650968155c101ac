"""ORPO for diffusion (diffusers' research example `diffusion_orpo`): no reference model.

With per-image errors e (element means, a stand-in for −log p):
loss = mean(e_w) − β · mean(log σ(e_l − e_w)), β default 0.1 (diffusers' beta_orpo).
The first term fits the preferred image, the second is the odds-ratio term.

One deliberate difference: the diffusers script feeds log σ(e_w − e_l), which
— errors being negative log-likelihoods — rewards the *preferred* image for a
larger error. Here the odds-ratio term has the sign of the ORPO paper (the
preferred image's likelihood above the other's), so both terms pull the same way.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F

from .base import Errors, Method, MethodOutput, ReduceMean, fit_plus_odds_output, local_mean


class ORPO(Method):
    name = "orpo"
    data_kind = "pairs"
    needs_reference = False
    metric_names = ("reward_accuracy", "reward_margin", "reward_margin_std", "odds_ratio_loss", "model_error_preferred", "model_error_other")

    def __init__(self, beta: float, num_train_timesteps: int = 1000) -> None:
        super().__init__(beta)
        self.num_train_timesteps = int(num_train_timesteps)

    @property
    def margin_scale(self) -> float:
        return float(self.num_train_timesteps)

    def loss(self, errors: Errors, batch: dict[str, Any], reduce_mean: ReduceMean = local_mean) -> MethodOutput:
        errors_w, errors_l = errors.policy.chunk(2)
        log_odds = errors_l - errors_w
        ratio = F.logsigmoid(log_odds)
        return fit_plus_odds_output(
            errors_w, errors_l, log_odds, ratio, self.beta, batch.get("weight"), self.num_train_timesteps, "odds_ratio_loss"
        )
