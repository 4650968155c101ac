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

#: Imported on first use: the trainer needs torch, the options (and `train --help`) do not.
_LAZY = ("NonFiniteLoss", "Trainer", "TrainResult", "train")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import trainer

        value = getattr(trainer, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_trainer(config: TrainConfig, **kwargs: Any) -> Any:
    """The trainer for the config's method: DDPO's samples its own data, the others read preference data."""
    if config.method == "ddpo":
        from .ddpo import DDPOTrainer

        return DDPOTrainer(config, **kwargs)
    from .trainer import Trainer

    return Trainer(config, **kwargs)


__all__ = ["ConfigError", "NonFiniteLoss", "TrainConfig", "TrainResult", "Trainer", "make_trainer", "train"]
