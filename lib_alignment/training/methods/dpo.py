"""Diffusion-DPO (Wallace et al. 2023): preference pairs against a frozen reference model.

loss = −log σ(−β/2 · [(e_θ(x_w) − e_ref(x_w)) − (e_θ(x_l) − e_ref(x_l))]),
with e = ‖ε − ε̂(x_t, t)‖² (element mean; v instead of ε for v-prediction models),
the same noise and timestep for both images of a pair. β is the paper's β_T
(default 5000); diffusers' LoRA example writes the same loss with beta_dpo = β/2.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import Errors, Method, MethodOutput, ReduceMean, local_mean, relative_drift, spread, weighted_mean


def dpo_logits(policy: torch.Tensor, reference: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-pair implicit reward margin −β/2·[(e_θ,w − e_ref,w) − (e_θ,l − e_ref,l)]."""
    policy_w, policy_l = policy.chunk(2)
    ref_w, ref_l = reference.chunk(2)
    return -0.5 * beta * ((policy_w - ref_w) - (policy_l - ref_l))


class DPO(Method):
    name = "dpo"
    data_kind = "pairs"
    needs_reference = True
    metric_names = ("reward_accuracy", "reward_margin", "reward_margin_std", "reward_preferred", "reward_other", "model_error", "reference_error", "drift")

    @property
    def margin_scale(self) -> float:
        return 0.5 * self.beta

    def pair_loss(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-pair loss of the implicit reward margins (the sigmoid loss of the paper)."""
        return -F.logsigmoid(logits)

    def loss(self, errors: Errors, batch: dict[str, Any], reduce_mean: ReduceMean = local_mean) -> MethodOutput:
        if errors.reference is None:
            raise ValueError("DPO needs the reference model's errors")
        logits = dpo_logits(errors.policy, errors.reference, self.beta)
        loss = weighted_mean(self.pair_loss(logits), batch.get("weight"))
        with torch.no_grad():
            policy_w, policy_l = errors.policy.chunk(2)
            ref_w, ref_l = errors.reference.chunk(2)
            metrics = {
                "reward_accuracy": ((logits > 0).float() + 0.5 * (logits == 0).float()).mean(),
                "reward_margin": logits.mean(),
                "reward_margin_std": spread(logits),
                "reward_preferred": (-0.5 * self.beta * (policy_w - ref_w)).mean(),
                "reward_other": (-0.5 * self.beta * (policy_l - ref_l)).mean(),
                "model_error": errors.policy.mean(),
                "reference_error": errors.reference.mean(),
                "drift": relative_drift(errors.policy, errors.reference),
            }
        return MethodOutput(loss=loss, metrics=metrics)
