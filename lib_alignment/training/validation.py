"""A held-out split of the preference data, scored while training, and the best checkpoint by its score.

The split never shares an image or a caption with the training part: items are
grouped into connected components (two items meet when they show the same
image or carry the same caption) and whole components are held out, in a seeded
random order, until the held-out count is reached.

The score is the held-out preference accuracy of the implicit reward
g = e_ref − e_θ (the base model's denoising error minus the LoRA's, averaged
over stratified timesteps with fixed noise): for pairs, the share whose
preferred image has the higher g; for liked/disliked images, the share of
(liked, disliked) combinations ranked that way. It is 0.5 before training (the
LoRA starts as the base model) for every method, MaPO included. The margin is
the mean g difference in the method's logit units (`Method.margin_scale`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .lora import adapters_disabled
from .methods import denoising_errors


@dataclass
class HeldOutScore:
    step: int
    accuracy: float
    margin: float
    count: int

    def better_than(self, other: HeldOutScore | None) -> bool:
        """A new best needs a higher accuracy: on a tie the earlier step (less drift from the base) stays best,
        since a growing margin at the same accuracy is what over-optimisation looks like."""
        return other is None or self.accuracy > other.accuracy

    @property
    def value(self) -> float:
        """The number the best checkpoint is chosen by."""
        return self.accuracy

    def metadata(self) -> dict[str, str]:
        """LoRA metadata (safetensors header) of this score."""
        return {
            "lib_alignment_heldout_step": str(self.step),
            "lib_alignment_heldout_accuracy": f"{self.accuracy:.6g}",
            "lib_alignment_heldout_margin": f"{self.margin:.6g}",
            "lib_alignment_heldout_count": str(self.count),
        }

    def describe(self) -> str:
        """'held-out preference accuracy 0.812, margin 1.3 at step 40 (12 items)' for cards and logs."""
        return f"held-out preference accuracy {self.accuracy:.3f}, margin {self.margin:.4g} at step {self.step} ({self.count} items)"

    def event_fields(self) -> dict[str, float | int]:
        """The "validation" event's score fields."""
        return {"accuracy": self.accuracy, "margin": self.margin, "count": self.count}


@dataclass
class HeldOutReward:
    """DDPO's held-out score: the job's reward averaged over fixed held-out (prompt, seed) samples."""

    step: int
    reward: float
    reward_std: float
    count: int

    def better_than(self, other: HeldOutReward | None) -> bool:
        """A higher mean reward; on a tie the earlier step (closer to the base) stays best."""
        return other is None or self.reward > other.reward

    @property
    def value(self) -> float:
        return self.reward

    def metadata(self) -> dict[str, str]:
        return {
            "lib_alignment_heldout_step": str(self.step),
            "lib_alignment_heldout_reward": f"{self.reward:.6g}",
            "lib_alignment_heldout_reward_std": f"{self.reward_std:.6g}",
            "lib_alignment_heldout_count": str(self.count),
        }

    def describe(self) -> str:
        return f"held-out reward {self.reward:.5g} (spread {self.reward_std:.3g}) at step {self.step} ({self.count} samples)"

    def event_fields(self) -> dict[str, float | int]:
        return {"reward": self.reward, "reward_std": self.reward_std, "count": self.count}


def score_from_dict(saved: dict[str, Any]) -> HeldOutScore | HeldOutReward:
    """A score written by `dataclasses.asdict` (RUN_DIR/best/best.json), of either kind."""
    if "reward" in saved:
        return HeldOutReward(int(saved["step"]), float(saved["reward"]), float(saved["reward_std"]), int(saved["count"]))
    return HeldOutScore(int(saved["step"]), float(saved["accuracy"]), float(saved["margin"]), int(saved["count"]))


def _groups(keys: Sequence[Sequence[str]]) -> list[list[int]]:
    """Connected components of items that share any key (image or caption)."""
    parent = list(range(len(keys)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, item_keys in enumerate(keys):
        for key in item_keys:
            if key in owner:
                parent[find(i)] = find(owner[key])
            else:
                owner[key] = i
    components: dict[int, list[int]] = {}
    for i in range(len(keys)):
        components.setdefault(find(i), []).append(i)
    return list(components.values())


def item_keys(dataset: Any) -> list[list[str]] | None:
    """Per item: its images' identities and its caption; None for a dataset without records."""
    records = getattr(dataset, "records", None)
    refs_of = getattr(dataset, "_refs", None)
    if records is None or refs_of is None:
        return None
    return [[*(f"image:{ref.key}" for ref in refs_of(record)), f"caption:{record.caption.strip().lower()}"] for record in records]


def choose_held_out(keys: Sequence[Sequence[str]], fraction: float, minimum: int, seed: int, max_share: float = 0.25) -> tuple[list[int], str]:
    """(held-out item indices, note). Empty with a note saying why when the data cannot spare them."""
    n = len(keys)
    wanted = max(int(minimum), math.ceil(fraction * n))
    if fraction <= 0 or wanted < 1:
        return [], "validation is off (validation_split 0)"
    if wanted > max_share * n:
        return [], f"validation is off: {n} items cannot spare {wanted} for a held-out split (needs at least {math.ceil(wanted / max_share)})"
    components = _groups(keys)
    random.Random(seed).shuffle(components)
    chosen: list[int] = []
    for component in components:
        if len(chosen) >= wanted:
            break
        if len(chosen) + len(component) <= max_share * n:
            chosen.extend(component)
    if len(chosen) < wanted:
        return [], f"validation is off: the items share images or captions too widely to hold out {wanted} of {n} without overlap"
    return sorted(chosen), f"holding out {len(chosen)} of {n} items for validation (no image or caption shared with training)"


def split_dataset(dataset: Any, fraction: float, minimum: int, seed: int) -> tuple[Any, Any | None, str]:
    """(training part, held-out part or None, note) of a PairDataset/LabeledDataset."""
    keys = item_keys(dataset)
    if keys is None:
        return dataset, None, "validation is off: the data was handed over without records to split"
    held, note = choose_held_out(keys, fraction, minimum, seed)
    if not held:
        return dataset, None, note
    held_set = set(held)
    if getattr(dataset, "kind", "") == "labeled":
        labels = [dataset.records[i].label > 0.5 for i in held]
        if all(labels) or not any(labels):
            return dataset, None, "validation is off: the held-out part would hold only liked or only disliked images"
    parts = []
    for indices in ([i for i in range(len(dataset)) if i not in held_set], held):
        part = type(dataset)([dataset.records[i] for i in indices], dataset.resolution, dataset.report, dataset.max_pixels)
        parts.append(part)
    return parts[0], parts[1], note


@torch.no_grad()
def implicit_gains(trainer: Any, dataset: Any, draws: int, seed: int, batch_size: int = 8) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Per image g = e_ref − e_θ averaged over `draws` stratified timesteps; pairs share noise and t.

    Returns (gains [items, 2] for pairs or [items] for single images, the items' non-image fields).
    """
    generator = torch.Generator().manual_seed(seed)
    device = trainer.accelerator.device
    steps = trainer.noise_scheduler.config.num_train_timesteps
    model = trainer.accelerator.unwrap_model(trainer.model)
    was_training = trainer.pipe.unet.training
    trainer.pipe.unet.eval()
    gains, infos = [], []
    try:
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            infos += [{k: v for k, v in it.items() if k not in ("pixel_values", "latents")} for it in items]
            key = "latents" if "latents" in items[0] else "pixel_values"
            stacked = torch.stack([it[key] for it in items])  # [B, m, C, H, W] for pairs/rankings, [B, C, H, W] otherwise
            pairs = stacked.ndim == 5
            per_item = stacked.shape[1] if pairs else 1
            if pairs:  # rank-major, as in training: all preferred images first
                stacked = torch.cat([stacked[:, r] for r in range(per_item)])
            if key == "latents":
                latents = stacked.to(device, torch.float32)
            else:
                latents = trainer.encode_images(stacked.to(device), sample=False)
            b = len(items)
            captions = [str(it["caption"]) for it in items] * per_item
            conditioning = trainer.condition(captions, latents.shape[0], device)
            total = torch.zeros(latents.shape[0])
            for k in range(draws):
                offsets = torch.rand((b,), generator=generator)
                timesteps = ((k + offsets) * steps / draws).long().clamp(max=steps - 1)
                noise = torch.randn((b, *latents.shape[1:]), generator=generator)
                timesteps, noise = timesteps.repeat(per_item).to(device), noise.repeat(per_item, 1, 1, 1).to(device)
                noisy, target = trainer.noisy_and_target(latents, noise, timesteps)
                kwargs = {"repeat": 1, "time_ids": conditioning["time_ids"], "encoded": conditioning.get("encoded")}
                policy = denoising_errors(model(noisy, timesteps, conditioning["input_ids"], **kwargs), target)
                with adapters_disabled(trainer.adapter_layers):
                    reference = denoising_errors(model(noisy, timesteps, conditioning["input_ids"], **kwargs), target)
                total += (reference - policy).float().cpu()
            mean = total / draws
            gains.append(mean.reshape(per_item, b).t() if pairs else mean)
    finally:
        trainer.pipe.unet.train(was_training)
    return torch.cat(gains), infos


def score_gains(gains: torch.Tensor, infos: list[dict[str, Any]], scale: float) -> tuple[float, float]:
    """(accuracy, margin) from implicit gains: per pair, or over every liked × disliked combination."""
    if gains.ndim == 2:  # pairs or rankings, best first: every implied (better, worse) pair
        i, j = torch.triu_indices(gains.shape[1], gains.shape[1], offset=1)
        diff = (gains[:, i] - gains[:, j]).flatten()
        accuracy = float(((diff > 0).float() + 0.5 * (diff == 0).float()).mean())
        return accuracy, float(scale * diff.mean())
    liked = torch.tensor([float(info.get("label", 0.0)) > 0.5 for info in infos])
    good, bad = gains[liked], gains[~liked]
    if good.numel() == 0 or bad.numel() == 0:
        return float("nan"), float("nan")
    diff = good[:, None] - bad[None, :]
    accuracy = float(((diff > 0).float() + 0.5 * (diff == 0).float()).mean())
    return accuracy, float(scale * (good.mean() - bad.mean()))


class Validator:
    """Scores the held-out part every `every` steps and remembers the best score (subclasses score otherwise)."""

    def __init__(self, dataset: Any, every: int, draws: int, seed: int, scale: float, patience: int = 0) -> None:
        self.dataset = dataset
        self.every = max(1, int(every))
        self.draws = max(1, int(draws))
        self.seed = int(seed)
        self.scale = float(scale)
        self.patience = int(patience)
        self.history: list[HeldOutScore] = []
        self.best: Any = None
        self.since_best = 0

    def due(self, step: int, total: int) -> bool:
        return step == 0 or step % self.every == 0 or step == total

    def measure(self, trainer: Any, step: int) -> HeldOutScore | HeldOutReward:
        """The held-out score of the trainer's current weights."""
        gains, infos = implicit_gains(trainer, self.dataset, self.draws, self.seed)
        accuracy, margin = score_gains(gains, infos, self.scale)
        return HeldOutScore(step, accuracy, margin, len(self.dataset))

    def score(self, trainer: Any, step: int) -> tuple[Any, bool]:
        """Score now; (the score, whether it is a new best). Step 0 (the base model) is never the best."""
        result = self.measure(trainer, step)
        self.history.append(result)
        improved = step > 0 and math.isfinite(result.value) and result.better_than(self.best)
        if improved:
            self.best, self.since_best = result, 0
        elif step > 0:
            self.since_best += 1
        return result, improved

    def should_stop(self) -> bool:
        """Early stopping: `patience` scores in a row without a new best."""
        return self.patience > 0 and self.best is not None and self.since_best >= self.patience


__all__ = ["HeldOutReward", "HeldOutScore", "Validator", "score_from_dict", "choose_held_out", "implicit_gains", "item_keys", "score_gains", "split_dataset"]
