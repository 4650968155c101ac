"""A deterministic, resumable order of training samples.

The order is a pure function of (seed, epoch): a shuffle per epoch, or, for KTO
with a positive ratio, weighted draws with replacement. A run's data position is
then one number — samples consumed by this process — so a resumed run reads
exactly the batches an uninterrupted one would. Each process takes every
world-th index of the epoch's order (padded by wrapping around).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
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
        blocks: Sequence[int] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("the training data is empty")
        if blocks is not None and sum(blocks) != size:
            raise ValueError(f"blocks cover {sum(blocks)} items, not {size}")
        self.blocks = np.asarray(blocks, dtype=np.int64) if blocks is not None and weights is None else None
        self.size = size
        self.seed = int(seed)
        self.start = int(start)
        self.rank = rank
        self.world_size = world_size
        self.weights = weights
        self.per_process = math.ceil(size / world_size)

    def epoch_order(self, epoch: int) -> list[int] | np.ndarray:
        """All processes' indices of one epoch, in order.

        With ``blocks`` (runs of items that share a parquet row group) the blocks
        are shuffled and so are the items inside each: reads stay local to one
        group at a time, yet every epoch's order differs.
        """
        if self.blocks is not None:
            rng = np.random.default_rng([self.seed, epoch])
            starts = np.concatenate([[0], np.cumsum(self.blocks)[:-1]])
            parts = [starts[b] + rng.permutation(self.blocks[b]) for b in rng.permutation(len(self.blocks))]
            return np.concatenate(parts)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if self.weights is not None:
            return torch.multinomial(self.weights, self.size, replacement=True, generator=generator).tolist()
        return torch.randperm(self.size, generator=generator).tolist()

    def process_share(self, epoch: int) -> list[int] | np.ndarray:
        """This process's indices of one epoch; block orders are cut in contiguous parts (each process reads its own groups)."""
        order = self.epoch_order(epoch)
        if isinstance(order, np.ndarray):
            padded = np.concatenate([order, order[: self.per_process * self.world_size - len(order)]])
            return padded[self.rank * self.per_process : (self.rank + 1) * self.per_process]
        padded = order + order[: self.per_process * self.world_size - len(order)]
        return padded[self.rank :: self.world_size]

    def position(self, consumed: int) -> dict[str, int]:
        """Where this process stands after ``consumed`` samples: epoch, offset in its share, next item, seed."""
        epoch, offset = divmod(int(consumed), self.per_process)
        share = self.process_share(epoch)
        return {"epoch": epoch, "offset": offset, "item": int(share[offset]), "seed": self.seed, "rank": self.rank, "world_size": self.world_size}

    def epoch_of(self, consumed: int) -> float:
        """Epochs completed after `consumed` samples of this process."""
        return consumed / self.per_process

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.per_process)
        while True:
            share = self.process_share(epoch)
            if isinstance(share, np.ndarray):  # in slices: a million Python ints at once would cost memory
                for start in range(offset, len(share), 4096):
                    yield from share[start : start + 4096].tolist()
            else:
                yield from share[offset:]
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:  # DataLoader asks; the stream is endless
        return 2**62


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a micro-batch. Pairs become [2B, ...] with all preferred images first; rankings of m [m·B, ...] by rank.

    Items marked ``skipped`` (an unreadable image met while streaming) are left
    out and listed in ``batch["skipped"]``; a batch of nothing but those has no
    captions and no images.
    """
    skipped = [item["skipped"] for item in items if "skipped" in item]
    if skipped:
        items = [item for item in items if "skipped" not in item]
        if not items:
            return {"caption": [], "skipped": skipped}
    first = items[0]
    batch: dict[str, Any] = {"caption": [str(item["caption"]) for item in items]}
    if skipped:
        batch["skipped"] = skipped
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


class DataStreamError(ValueError):
    """Too many unreadable images met while streaming; the message is one line."""


class BadImageGuard:
    """Batches of a loader with the skipped items taken out, counted and reported.

    Stops the run (DataStreamError) once more than ``max_share`` of the images
    read so far were bad, judged after ``min_images`` images (or all of them,
    for a smaller set). Byte-identical pairs are counted apart: they are not bad.
    ``on_skip(info)`` is called for every skipped item.
    """

    def __init__(
        self,
        batches: Iterator[dict[str, Any]],
        max_share: float = 0.01,
        images_per_item: int = 2,
        total_images: int | None = None,
        on_skip: Callable[[dict[str, Any]], None] | None = None,
        min_images: int = 200,
    ) -> None:
        self.batches = batches
        self.max_share = max_share
        self.images_per_item = images_per_item
        self.min_images = min(min_images, total_images) if total_images else min_images
        self.on_skip = on_skip
        self.images_read = 0
        self.bad = 0
        self.identical = 0
        self.first_bad: dict[str, Any] | None = None

    def __iter__(self) -> BadImageGuard:
        return self

    def __next__(self) -> dict[str, Any]:
        while True:
            batch = next(self.batches)
            if not isinstance(batch, dict) or "caption" not in batch:  # other data flows (DDPO's rollouts) pass through
                return batch
            skipped = batch.pop("skipped", [])
            self.images_read += (len(batch["caption"]) + len(skipped)) * self.images_per_item
            for info in skipped:
                if info.get("bad", True):
                    self.bad += 1
                    self.first_bad = self.first_bad or info
                else:
                    self.identical += 1
                if self.on_skip is not None:
                    self.on_skip(info)
            self.check()
            if batch["caption"]:
                return batch

    def check(self) -> None:
        """Raise DataStreamError when the share of bad images is over the limit."""
        if not self.bad or self.images_read < self.min_images:
            return
        share = self.bad / self.images_read
        if share > self.max_share:
            info = self.first_bad or {}
            raise DataStreamError(
                f"{self.bad} of the {self.images_read} images read so far are unreadable ({share:.1%}, over the limit of "
                f"{self.max_share:.1%}); the first: {where(info)}: {info.get('message', '')}. Fix or remove them, "
                "check them all with --strict-images, or raise max_bad_images"
            )

    def counts(self) -> dict[str, int]:
        return {"images_read": self.images_read, "bad_images": self.bad, "identical_pairs": self.identical}


def where(info: dict[str, Any]) -> str:
    """'file, row N, column' of a skipped item."""
    from pathlib import Path

    text = Path(str(info.get("file", ""))).name
    if info.get("row") is not None:
        text += f", row {info['row']}"
    if info.get("field"):
        text += f", {info['field']}"
    return text
