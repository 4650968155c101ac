"""Advantages from rewards: per-prompt running statistics (DDPO), batch or group normalisation.

DDPO normalises a reward by the mean and standard deviation of recent rewards
for the *same prompt*, so easy and hard prompts contribute comparably. Until a
prompt has `min_count` rewards in its buffer (the last `buffer_size`), the
statistics of the whole batch are used instead. "group" is the GRPO-style
alternative: statistics of the samples drawn for the same prompt in this
epoch only, with no memory across epochs. Population standard deviations plus
1e-6, as in the reference code.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import torch

ADVANTAGE_MODES = ("per_prompt", "batch", "group")
_EPS = 1e-6


def _normalise(values: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return (values - reference.mean()) / (reference.std(unbiased=False) + _EPS) if reference.numel() > 1 else torch.zeros_like(values)


class PerPromptStatTracker:
    """Running reward statistics per prompt; `state_dict` makes a resumed run continue exactly."""

    def __init__(self, buffer_size: int = 16, min_count: int = 16) -> None:
        if buffer_size < 1 or min_count < 1:
            raise ValueError(f"buffer_size and min_count must be ≥ 1 (got {buffer_size}, {min_count})")
        self.buffer_size = int(buffer_size)
        self.min_count = int(min_count)
        self.buffers: dict[str, deque[float]] = {}

    def update(self, prompts: Sequence[str], rewards: torch.Tensor) -> torch.Tensor:
        """Add this batch's rewards to the buffers, then return the normalised advantages (float64)."""
        values = rewards.detach().double().cpu()
        if len(prompts) != values.numel():
            raise ValueError(f"{len(prompts)} prompts for {values.numel()} rewards")
        advantages = torch.empty_like(values)
        for prompt in dict.fromkeys(prompts):  # first-seen order: deterministic
            index = torch.tensor([i for i, p in enumerate(prompts) if p == prompt])
            buffer = self.buffers.setdefault(prompt, deque(maxlen=self.buffer_size))
            buffer.extend(values[index].tolist())
            reference = values if len(buffer) < self.min_count else torch.tensor(list(buffer), dtype=torch.float64)
            advantages[index] = _normalise(values[index], reference)
        return advantages

    def stats(self) -> dict[str, dict[str, float]]:
        return {p: {"mean": float(torch.tensor(list(b)).mean()), "count": len(b)} for p, b in self.buffers.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"buffer_size": self.buffer_size, "min_count": self.min_count, "buffers": {p: list(b) for p, b in self.buffers.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffers = {p: deque((float(v) for v in values), maxlen=self.buffer_size) for p, values in state["buffers"].items()}


def group_advantages(prompts: Sequence[str], rewards: torch.Tensor) -> torch.Tensor:
    """GRPO-style: each reward against the other samples of its prompt in this batch (0 for a lone sample)."""
    values = rewards.detach().double().cpu()
    advantages = torch.empty_like(values)
    for prompt in dict.fromkeys(prompts):
        index = torch.tensor([i for i, p in enumerate(prompts) if p == prompt])
        advantages[index] = _normalise(values[index], values[index])
    return advantages


def compute_advantages(
    mode: str,
    prompts: Sequence[str],
    rewards: torch.Tensor,
    tracker: PerPromptStatTracker | None = None,
    clip: float | None = None,
) -> torch.Tensor:
    """Advantages (float32) for one epoch's rewards, clipped to ±clip when given."""
    if mode == "per_prompt":
        if tracker is None:
            raise ValueError("per_prompt advantages need a PerPromptStatTracker")
        advantages = tracker.update(prompts, rewards)
    elif mode == "batch":
        values = rewards.detach().double().cpu()
        advantages = _normalise(values, values)
    elif mode == "group":
        advantages = group_advantages(prompts, rewards)
    else:
        raise ValueError(f"advantages {mode!r} is not one of {', '.join(ADVANTAGE_MODES)}")
    if clip is not None:
        advantages = advantages.clamp(-clip, clip)
    return advantages.float()
