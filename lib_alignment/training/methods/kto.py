"""Diffusion-KTO (Li et al. 2024): single images labelled desirable or undesirable.

Implicit reward g = −e_θ + e_ref per image (e = element-mean squared error);
reference point KL = max(0, mean g) over the batch (of all processes), detached;
loss = λ_D(1 − σ(β(g − KL))) for desirable and λ_U(1 − σ(−β(g − KL))) for
undesirable images, averaged over the batch. Each image gets its own noise and
timestep. The reference code's options are here as `utility` (its "halo":
sigmoid or loss_averse, which uses log σ) and `reference_point`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import Errors, Method, MethodOutput, ReduceMean, local_mean, relative_drift, spread


class KTO(Method):
    name = "kto"
    data_kind = "labeled"
    needs_reference = True
    share_noise_in_pair = False
    metric_names = ("reward_accuracy", "reward_margin", "reward_margin_std", "kl", "desirable_fraction", "model_error", "reference_error", "drift")

    def __init__(
        self,
        beta: float,
        utility: str = "sigmoid",
        reference_point: str = "batch_kl",
        lambda_desirable: float = 1.0,
        lambda_undesirable: float = 1.0,
    ) -> None:
        if utility not in ("sigmoid", "loss_averse"):
            raise ValueError(f"kto_utility {utility!r} is not one of 'sigmoid', 'loss_averse'")
        if reference_point not in ("batch_kl", "batch_kl_local", "zero"):
            raise ValueError(f"kto_reference_point {reference_point!r} is not one of 'batch_kl', 'batch_kl_local', 'zero'")
        super().__init__(
            beta,
            utility=utility,
            reference_point=reference_point,
            lambda_desirable=float(lambda_desirable),
            lambda_undesirable=float(lambda_undesirable),
        )
        self.utility = utility
        self.reference_point = reference_point
        self.lambda_desirable = float(lambda_desirable)
        self.lambda_undesirable = float(lambda_undesirable)

    def kl_estimate(self, g: torch.Tensor, reduce_mean: ReduceMean) -> torch.Tensor:
        if self.reference_point == "zero":
            return torch.zeros((), dtype=g.dtype, device=g.device)
        estimate = g.detach().mean()
        if self.reference_point == "batch_kl":
            estimate = reduce_mean(estimate)
        return estimate.clamp(min=0).detach()

    def loss(self, errors: Errors, batch: dict[str, Any], reduce_mean: ReduceMean = local_mean) -> MethodOutput:
        if errors.reference is None:
            raise ValueError("KTO needs the reference model's errors")
        labels = batch["label"].to(errors.policy.device, torch.float32)
        desirable = labels > 0.5
        g = errors.reference - errors.policy
        kl = self.kl_estimate(g, reduce_mean)
        sign = torch.where(desirable, 1.0, -1.0).to(g)
        z = sign * self.beta * (g - kl)
        value = torch.sigmoid(z) if self.utility == "sigmoid" else F.logsigmoid(z)
        weights = torch.where(desirable, self.lambda_desirable, self.lambda_undesirable).to(g)
        loss = (weights * (1 - value)).mean()
        with torch.no_grad():
            margin = torch.zeros((), device=g.device)
            if desirable.any() and (~desirable).any():
                margin = self.beta * (g[desirable].mean() - g[~desirable].mean())
            metrics = {
                "reward_accuracy": (z > 0).float().mean(),
                "reward_margin": margin,
                "reward_margin_std": spread(z),
                "kl": kl,
                "desirable_fraction": desirable.float().mean(),
                "model_error": errors.policy.mean(),
                "reference_error": errors.reference.mean(),
                "drift": relative_drift(errors.policy, errors.reference),
            }
        return MethodOutput(loss=loss, metrics=metrics)
