"""A deterministic, resumable order of training samples.

The order is a pure function of (seed, epoch): a shuffle per epoch, or, for KTO
with a positive ratio, weighted draws with replacement. A run's data position is
then one number — samples consumed by this process — so a resumed run reads
exactly the batches an uninterrupted one would. Each process takes every
world-th index of the epoch's order (padded by wrapping around).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch


def class_balanced_weights(labels: Sequence[float], positive_ratio: float) -> torch.Tensor:
    """Sampling weights that draw desirable (label 1) images with probability `positive_ratio`."""
    label_tensor = torch.tensor([float(v) for v in labels])
    desirable = label_tensor > 0.5
    n_pos, n_neg = int(desirable.sum()), int((~desirable).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"positive_ratio needs both desirable and undesirable images (got {n_pos} and {n_neg}); set positive_ratio to none")
    return torch.where(desirable, positive_ratio / n_pos, (1 - positive_ratio) / n_neg)


class SampleStream(torch.utils.data.Sampler):
    """Endless dataset indices for one process, starting after `start` consumed samples."""

    def __init__(
        self,
        size: int,
        seed: int,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
        weights: torch.Tensor | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("the training data is empty")
        self.size = size
        self.seed = int(seed)
        self.start = int(start)
        self.rank = rank
        self.world_size = world_size
        self.weights = weights
        self.per_process = math.ceil(size / world_size)

    def epoch_order(self, epoch: int) -> list[int]:
        """All processes' indices of one epoch, in order."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if self.weights is not None:
            return torch.multinomial(self.weights, self.size, replacement=True, generator=generator).tolist()
        return torch.randperm(self.size, generator=generator).tolist()

    def process_share(self, epoch: int) -> list[int]:
        order = self.epoch_order(epoch)
        padded = order + order[: self.per_process * self.world_size - len(order)]
        return padded[self.rank :: self.world_size]

    def epoch_of(self, consumed: int) -> float:
        """Epochs completed after `consumed` samples of this process."""
        return consumed / self.per_process

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.per_process)
        while True:
            share = self.process_share(epoch)
            yield from share[offset:]
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:  # DataLoader asks; the stream is endless
        return 2**62


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a micro-batch. Pairs become [2B, ...] with all preferred images first; rankings of m [m·B, ...] by rank."""
    first = items[0]
    batch: dict[str, Any] = {"caption": [str(item["caption"]) for item in items]}
    key = "latents" if "latents" in first else "pixel_values"
    stacked = torch.stack([item[key] for item in items])
    if stacked.ndim == 5:  # pairs [B, 2, C, H, W] or rankings [B, m, C, H, W]: rank-major [m·B, ...]
        batch["group"] = stacked.shape[1]
        stacked = torch.cat([stacked[:, r] for r in range(stacked.shape[1])])
        batch["weight"] = torch.tensor([float(item.get("weight", 1.0)) for item in items])
    else:
        batch["label"] = torch.tensor([float(item["label"]) for item in items])
    batch[key] = stacked
    return batch


class CachedLatents(torch.utils.data.Dataset):
    """Items whose images were encoded once: "latents" replaces "pixel_values", the rest is kept."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]
