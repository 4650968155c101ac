"""IPO and hinge variants of Diffusion-DPO: the same implicit reward margin, another loss on it.

With the DPO margin z = −β/2 · [(e_θ,w − e_ref,w) − (e_θ,l − e_ref,l)] (β/2 is
diffusers' beta_dpo) and h = z / (β/2) the raw margin in error units:

- hinge (SLiC): loss = max(0, 1 − z), as diffusers' DPO example's loss_type "hinge";
- IPO (Azar et al. 2023): loss = (h − 1/(2τ))² with τ = β/2, diffusers' loss_type
  "ipo": a squared loss that pulls the margin to a target instead of to infinity,
  so it cannot over-optimise on pairs it already ranks right.
"""

from __future__ import annotations

import torch

from .dpo import DPO


class HingeDPO(DPO):
    name = "dpo_hinge"

    def pair_loss(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.relu(1.0 - logits)


class IPO(DPO):
    name = "ipo"

    def pair_loss(self, logits: torch.Tensor) -> torch.Tensor:
        tau = 0.5 * self.beta
        raw = logits / tau
        return (raw - 1.0 / (2.0 * tau)) ** 2
