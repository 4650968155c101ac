"""Listwise preference training: a Plackett–Luce likelihood over Diffusion-DPO's implicit rewards.

For a ranking x_1 ≻ x_2 ≻ … ≻ x_m of one caption (same noise and timestep for
all m images), each image's implicit reward is r_k = −β/2 · (e_θ(x_k) − e_ref(x_k)),
and the loss is the negative Plackett–Luce log-likelihood of the order:

    loss = −Σ_{k=1}^{m−1} [ r_k − log Σ_{j=k}^{m} exp(r_j) ]

(the first image is chosen from all, the second from the rest, …), as in the
listwise ranking objectives of RankDPO-style work. For m = 2 it is exactly the
DPO loss −log σ(r_1 − r_2), so β keeps DPO's meaning and default (5000).
"""

from __future__ import annotations

from typing import Any

import torch

from .base import Errors, Method, MethodOutput, ReduceMean, local_mean, relative_drift, spread, weighted_mean


def plackett_luce_nll(rewards: torch.Tensor) -> torch.Tensor:
    """Per ranking −log P(order) of rewards [B, m], best first."""
    # log Σ_{j≥k} exp(r_j) for every k: a reversed cumulative logsumexp
    tails = torch.logcumsumexp(rewards.flip(-1), dim=-1).flip(-1)
    return -(rewards - tails)[:, :-1].sum(-1)


def ranked_rewards(policy: torch.Tensor, reference: torch.Tensor, beta: float, group: int) -> torch.Tensor:
    """Implicit rewards [B, m] (best first) from rank-major errors [m·B]."""
    return (-0.5 * beta * (policy - reference)).reshape(group, -1).t()


def pairwise_differences(rewards: torch.Tensor) -> torch.Tensor:
    """r_i − r_j for every i < j of each ranking, [B, m(m−1)/2]."""
    m = rewards.shape[1]
    i, j = torch.triu_indices(m, m, offset=1)
    return rewards[:, i] - rewards[:, j]


class Listwise(Method):
    name = "listwise"
    data_kind = "rankings"
    needs_reference = True
    metric_names = ("reward_accuracy", "reward_margin", "reward_margin_std", "model_error", "reference_error", "drift")

    @property
    def margin_scale(self) -> float:
        return 0.5 * self.beta

    def loss(self, errors: Errors, batch: dict[str, Any], reduce_mean: ReduceMean = local_mean) -> MethodOutput:
        if errors.reference is None:
            raise ValueError("the listwise objective needs the reference model's errors")
        group = int(batch.get("group", 2))
        rewards = ranked_rewards(errors.policy, errors.reference, self.beta, group)
        loss = weighted_mean(plackett_luce_nll(rewards), batch.get("weight"))
        with torch.no_grad():
            differences = pairwise_differences(rewards.detach())
            metrics = {
                "reward_accuracy": ((differences > 0).float() + 0.5 * (differences == 0).float()).mean(),
                "reward_margin": differences.mean(),
                "reward_margin_std": spread(differences.flatten()),
                "model_error": errors.policy.mean(),
                "reference_error": errors.reference.mean(),
                "drift": relative_drift(errors.policy, errors.reference),
            }
        return MethodOutput(loss=loss, metrics=metrics)
