"""Memory presets: which training options fit a GPU of a given size (or the CPU with the tiny model).

A preset only sets options that change memory use (batch, accumulation,
resolution, checkpointing, precision, optimizer, rank, latent caching), and the
CPU preset turns off the references' caption dropout and flips for the tiny model;
the user's own options always win over it. Options the installed trainer does not
know are left out, so a preset never breaks an older or newer TrainConfig.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    #: GPU memory in GiB the preset is made for; None for the CPU preset.
    memory_gb: int | None
    options: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    #: Training steps and learning rate the tab starts from with this preset (empty: the tab's defaults).
    start: dict[str, Any] = field(default_factory=dict)


PRESETS: tuple[Preset, ...] = (
    Preset(
        "cpu",
        "CPU (tiny model)",
        None,
        {
            "device": "cpu",
            "mixed_precision": "no",
            "batch_size": 4,
            "gradient_accumulation_steps": 1,
            "resolution": 0,
            "gradient_checkpointing": False,
            "optimizer": "adamw",
            "rank": 8,
            "cache_latents": True,
            "sample_steps": 10,
            # the references' caption dropout and flips add noise a 60-step tiny run cannot average out
            "caption_dropout": 0.0,
            "random_flip": False,
        },
        "for the built-in tiny model; real checkpoints are far too slow on a CPU",
        # DPO on 48 toy pairs with these settings turns the tiny model's shapes visibly red in 60 steps
        # (tests/test_training_preference.py); the default 500 steps at 1e-4 took ~45 min and changed little
        {"max_train_steps": 60, "learning_rate": 2e-3},
    ),
    Preset(
        "6gb",
        "6 GB GPU",
        6,
        {
            "device": "auto",
            "mixed_precision": "fp16",
            "batch_size": 1,
            "gradient_accumulation_steps": 4,
            "resolution": 512,
            "gradient_checkpointing": True,
            "optimizer": "auto",
            "rank": 4,
            "cache_latents": False,
        },
        "SD1.x at 512 px; 8-bit Adam when bitsandbytes is installed; SDXL does not fit",
    ),
    Preset(
        "8gb",
        "8 GB GPU",
        8,
        {
            "device": "auto",
            "mixed_precision": "fp16",
            "batch_size": 1,
            "gradient_accumulation_steps": 4,
            "resolution": 512,
            "gradient_checkpointing": True,
            "optimizer": "auto",
            "rank": 8,
            "cache_latents": False,
        },
        "SD1.x/SD2 at 512 px; 8-bit Adam when bitsandbytes is installed",
    ),
    Preset(
        "12gb",
        "12 GB GPU",
        12,
        {
            "device": "auto",
            "mixed_precision": "fp16",
            "batch_size": 2,
            "gradient_accumulation_steps": 2,
            "resolution": 0,
            "gradient_checkpointing": True,
            "optimizer": "adamw",
            "rank": 16,
            "cache_latents": False,
        },
        "SD1.x/SD2 at their native size; SDXL with batch 1",
    ),
    Preset(
        "24gb",
        "24 GB GPU",
        24,
        {
            "device": "auto",
            "mixed_precision": "fp16",
            "batch_size": 4,
            "gradient_accumulation_steps": 1,
            "resolution": 0,
            "gradient_checkpointing": False,
            "optimizer": "adamw",
            "rank": 32,
            "cache_latents": False,
        },
        "any SD1/SD2/SDXL model at its native size",
    ),
)

BY_KEY = {preset.key: preset for preset in PRESETS}
#: Options about a dataset, left out for methods that sample their own images (DDPO refuses them).
DATA_ONLY = ("cache_latents", "tie_policy", "skip_bad_rows", "min_per_class", "positive_ratio", "caption_dropout", "random_flip")


def preset(key: str) -> Preset:
    try:
        return BY_KEY[key]
    except KeyError:
        raise ValueError(f"preset {key!r} is not one of {', '.join(BY_KEY)}") from None


def preset_options(key: str | None, known: set[str] | None = None, uses_data: bool = True) -> dict[str, Any]:
    """The preset's options, limited to the fields the trainer knows (all of them when `known` is None);
    uses_data=False leaves out the dataset options (for DDPO)."""
    if not key:
        return {}
    options = {k: v for k, v in preset(key).options.items() if uses_data or k not in DATA_ONLY}
    if known is None:
        from ..training.config import TrainConfig

        known = {f.name for f in dataclasses.fields(TrainConfig)}
    return {k: v for k, v in options.items() if k in known}


def preset_start(key: str | None) -> dict[str, Any]:
    """Training steps and learning rate a preset starts the tab with ({} for the tab's defaults)."""
    return dict(BY_KEY[key].start) if key in BY_KEY else {}


def detect_preset(total_gb: float | None) -> str:
    """The largest GPU preset that fits `total_gb` (None: no GPU → the CPU preset)."""
    if total_gb is None:
        return "cpu"
    fitting = [p for p in PRESETS if p.memory_gb is not None and p.memory_gb <= total_gb + 0.5]
    return fitting[-1].key if fitting else PRESETS[1].key


def gpu_memory_gb() -> tuple[float, float] | None:
    """(free, total) GiB of the current CUDA device, or None without CUDA."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        free, total = torch.cuda.mem_get_info()
    except Exception:  # noqa: BLE001 - a broken driver must not break the tab
        return None
    return free / 2**30, total / 2**30
