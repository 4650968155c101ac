"""Preference training of LoRAs for Stable Diffusion: Diffusion-DPO, Diffusion-KTO and MaPO.

`TrainConfig` holds every option; `Trainer(config).train()` runs a job and writes
a kohya-format LoRA the WebUIs load; `python -m lib_alignment train` is the
same code path on the command line. Progress events are documented in
`lib_alignment.training.events`.
"""

from __future__ import annotations

from .config import ConfigError, TrainConfig
from .trainer import NonFiniteLoss, Trainer, TrainResult, train

__all__ = ["ConfigError", "NonFiniteLoss", "TrainConfig", "TrainResult", "Trainer", "train"]
