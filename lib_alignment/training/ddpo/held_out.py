"""DDPO's held-out reward: fixed (prompt, seed) samples scored with the job's reward, never trained on.

Which prompts are held out depends on what the prompt source can spare
(`choose_held_out_prompts`):

- enough prompt lines/templates: a few percent of them (at least `minimum`,
  never more than a quarter) are taken out of training altogether;
- few lines but templates with many fillings: that many *filled* prompts are
  held out, and training draws that would produce one of them are redrawn;
- otherwise (one prompt, or a handful): the training prompts themselves on
  fixed held-out seeds — the score then says whether the LoRA improves the
  reward on fresh noise, not on unseen prompts, and the note says so.

Every held-out prompt is sampled with the same fixed seeds (at least
`minimum` × `draws` samples in all), so the scores of two steps differ only by
the weights. `RewardValidator` plugs into the shared
trainer's validation (best checkpoint, NAME-best export, early stopping).
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch

from ..validation import HeldOutReward, Validator
from .prompts import PromptSource

#: A held-out set may take at most this share of the prompt lines / of a template's fillings.
MAX_SHARE = 0.25
#: Seeds of the held-out samples start here (far from the preview seeds 0, 1, …).
SEED_BASE = 900_001
#: Most prompts held out (sampling is the expensive part of a score).
MAX_PROMPTS = 32


def _variants(source: PromptSource) -> int:
    return sum(template.variants for template in source.templates)


def _all_fills(source: PromptSource, limit: int) -> list[str]:
    """Every distinct filled prompt of the source, up to `limit` (templates in order, slots odometer-style)."""
    seen: dict[str, None] = {}
    for template in source.templates:
        sizes = [len(options) for options in template.slots]
        for index in range(template.variants):
            choices, rest = [], index
            for size in sizes:
                rest, choice = divmod(rest, size)
                choices.append(choice)
            seen.setdefault(template.fill(choices), None)
            if len(seen) >= limit:
                return list(seen)
    return list(seen)


def choose_held_out_prompts(source: PromptSource, fraction: float, minimum: int, seed: int) -> tuple[list[str], PromptSource, str, bool]:
    """(held-out prompts, the training source, a note, whether the prompts are disjoint from training).

    An empty list means validation is off (the note says why).
    """
    if fraction <= 0:
        return [], source, "validation is off (validation_split 0)", False
    rng = random.Random(seed)
    lines = len(source.templates)
    wanted = min(MAX_PROMPTS, max(int(minimum), math.ceil(fraction * lines), 1))
    if wanted <= MAX_SHARE * lines:
        held = set(rng.sample(range(lines), wanted))
        generator = torch.Generator().manual_seed(seed)
        prompts = []
        for i in sorted(held):
            template = source.templates[i]
            prompts.append(template.fill([int(torch.randint(len(o), (1,), generator=generator)) for o in template.slots]))
        # a kept line whose only prompt is held out (a duplicate line) would never be drawn: leave it out too
        kept = [t for i, t in enumerate(source.templates) if i not in held and not (t.variants == 1 and t.fill([]) in prompts)]
        if kept:
            training = source.subset(kept, exclude=set(prompts))
            return prompts, training, f"holding out {wanted} of {lines} prompts for the held-out reward (never trained on)", True
    wanted = min(MAX_PROMPTS, max(int(minimum), math.ceil(fraction * _variants(source)), 1))
    if wanted <= MAX_SHARE * _variants(source):
        fills = _all_fills(source, 20_000)
        if wanted <= MAX_SHARE * len(fills):
            prompts = sorted(rng.sample(fills, wanted))
            training = source.subset(source.templates, exclude=set(prompts))
            return prompts, training, f"holding out {wanted} of the templates' {len(fills)} prompts for the held-out reward (training redraws them)", True
    prompts = _all_fills(source, wanted)
    return prompts, source, (
        f"too few prompts to hold any out: the held-out reward scores {len(prompts)} training prompt(s) on fixed held-out seeds"
    ), False


class RewardValidator(Validator):
    """Samples the held-out (prompt, seed) set with the current LoRA and averages the job's reward."""

    def __init__(self, prompts: list[str], every: int, draws: int, seed: int, patience: int = 0, minimum: int = 4) -> None:
        super().__init__(prompts, every, draws, seed, scale=1.0, patience=patience)
        self.prompts = list(prompts)
        # at least minimum × draws samples in all (one prompt: that many seeds), at least one seed per prompt
        per_prompt = max(1, math.ceil(max(1, int(minimum)) * self.draws / max(1, len(self.prompts))))
        self.seeds = [SEED_BASE + int(seed) % 1000 * 1000 + k for k in range(per_prompt)]

    def samples(self) -> tuple[list[str], list[int]]:
        """Every held-out prompt with every held-out seed."""
        return [p for p in self.prompts for _ in self.seeds], [s for _ in self.prompts for s in self.seeds]

    def measure(self, trainer: Any, step: int) -> HeldOutReward:
        prompts, seeds = self.samples()
        _, rewards = trainer.sample_seeded(prompts, seeds)
        rewards = rewards.detach().float().cpu()
        return HeldOutReward(step, float(rewards.mean()), float(rewards.std(unbiased=False)), len(prompts))


__all__ = ["RewardValidator", "choose_held_out_prompts"]
