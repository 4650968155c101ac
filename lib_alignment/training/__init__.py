"""LoRA training for Stable Diffusion: Diffusion-DPO, Diffusion-KTO, MaPO (preferences) and DDPO (a reward).

`TrainConfig` holds every option; `make_trainer(config).train()` runs a job
(`Trainer`, or `ddpo.DDPOTrainer` for method ddpo) and writes
a kohya-format LoRA the WebUIs load; `python -m lib_alignment train` is the
same code path on the command line. Progress events are documented in
`lib_alignment.training.events`.
"""

from __future__ import annotations

from typing import Any

from .config import ConfigError, TrainConfig
from .trainer import NonFiniteLoss, Trainer, TrainResult, train


def make_trainer(config: TrainConfig, **kwargs: Any) -> Trainer:
    """The trainer for the config's method: DDPO's samples its own data, the others read preference data."""
    if config.method == "ddpo":
        from .ddpo import DDPOTrainer

        return DDPOTrainer(config, **kwargs)
    return Trainer(config, **kwargs)


__all__ = ["ConfigError", "NonFiniteLoss", "TrainConfig", "TrainResult", "Trainer", "make_trainer", "train"]
