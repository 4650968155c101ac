"""DDPO (Black et al. 2023): policy-gradient objectives over recorded denoising steps.

For a recorded step with log-probability `old` at sampling time, `new` under the
current weights and the trajectory's advantage A:

- DDPO_IS (PPO clip): loss = mean(max(−A·r, −A·clip(r, 1−ε, 1+ε))), r = exp(new − old);
- DDPO_SF (REINFORCE): loss = mean(−A·new), the score-function estimator, on-policy.

The trainer hands the current log-probabilities in `Errors.policy` and the
recorded ones and advantages in the batch ("old_log_prob", "advantages"), so
the objective stays a pure function of tensors like the preference methods.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import Errors, Method, MethodOutput, ReduceMean, local_mean

ESTIMATORS = ("is", "sf")


def ppo_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(PPO clipped loss, ratio) of one batch of steps."""
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return torch.maximum(unclipped, clipped).mean(), ratio


def reinforce_loss(log_prob: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    return (-advantages * log_prob).mean()


class DDPO(Method):
    name = "ddpo"
    data_kind = "rollouts"
    needs_reference = False
    #: Per optimizer step: the objective's diagnostics; per epoch (repeated on its steps): reward and drift.
    metric_names = ("reward_mean", "reward_std", "kl_to_base", "approx_kl", "clipfrac", "ratio", "advantage_abs")

    def __init__(self, estimator: str = "is", clip_range: float = 1e-4, adv_clip_max: float = 5.0, **options: Any) -> None:
        if estimator not in ESTIMATORS:
            raise ValueError(f"ddpo_estimator {estimator!r} is not one of {', '.join(ESTIMATORS)}")
        super().__init__(0.0, estimator=estimator, clip_range=float(clip_range), adv_clip_max=float(adv_clip_max), **options)
        self.estimator = estimator
        self.clip_range = float(clip_range)

    def loss(self, errors: Errors, batch: dict[str, Any], reduce_mean: ReduceMean = local_mean) -> MethodOutput:
        log_prob = errors.policy
        old = batch["old_log_prob"].to(log_prob)
        advantages = batch["advantages"].to(log_prob)
        if self.estimator == "is":
            loss, ratio = ppo_loss(log_prob, old, advantages, self.clip_range)
        else:
            loss, ratio = reinforce_loss(log_prob, advantages), torch.exp(log_prob - old)
        with torch.no_grad():
            difference = log_prob.detach() - old
            metrics = {
                # 0.5·E[(log r)²], the estimate the reference code logs (http://joschu.net/blog/kl-approx.html)
                "approx_kl": 0.5 * (difference**2).mean(),
                "clipfrac": ((ratio.detach() - 1.0).abs() > self.clip_range).float().mean(),
                "ratio": ratio.detach().mean(),
                "advantage_abs": advantages.abs().mean(),
            }
        return MethodOutput(loss=loss, metrics=metrics)

    def hyperparameters(self) -> dict[str, Any]:
        return {"method": self.name, **self.options}
