"""DDPO (Black et al. 2023): LoRA fine-tuning on a reward with policy gradients over DDIM steps.

`DDPOTrainer(config).train()` runs it on the shared training framework; the
pieces are usable alone: `sampler_logprob` (DDIM with recorded log-probabilities),
`stat_tracker` (advantages), `rewards` (adapters over the Rank & Refine oracles)
and `prompts` (lists, files, templates).
"""

from __future__ import annotations

from .prompts import PromptSource
from .rewards import Reward, make_reward
from .sampler_logprob import Trajectories, ddim_step, gaussian_log_prob, sample_trajectories
from .stat_tracker import PerPromptStatTracker, compute_advantages
from .trainer import DDPOTrainer

__all__ = [
    "DDPOTrainer",
    "PerPromptStatTracker",
    "PromptSource",
    "Reward",
    "Trajectories",
    "compute_advantages",
    "ddim_step",
    "gaussian_log_prob",
    "make_reward",
    "sample_trajectories",
]
