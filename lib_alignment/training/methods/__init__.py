"""Training objectives: DPO, KTO and MaPO behind one `Method` interface."""

from __future__ import annotations

from typing import Any

from .base import Errors, Method, MethodOutput, denoising_errors, weighted_mean
from .dpo import DPO, dpo_logits
from .kto import KTO
from .mapo import MaPO, mapo_score

METHOD_CLASSES: dict[str, type[Method]] = {"dpo": DPO, "kto": KTO, "mapo": MaPO}


def build_method(config: Any, num_train_timesteps: int = 1000) -> Method:
    """The Method a TrainConfig asks for, with its options."""
    beta = config.effective_beta
    if config.method == "dpo":
        return DPO(beta)
    if config.method == "kto":
        return KTO(
            beta,
            utility=config.kto_utility,
            reference_point=config.kto_reference_point,
            lambda_desirable=config.kto_lambda_desirable,
            lambda_undesirable=config.kto_lambda_undesirable,
        )
    if config.method == "mapo":
        return MaPO(beta, snr_value=config.mapo_snr_value, num_train_timesteps=num_train_timesteps)
    raise ValueError(f"method {config.method!r} is not one of {sorted(METHOD_CLASSES)}")


__all__ = [
    "DPO",
    "KTO",
    "METHOD_CLASSES",
    "Errors",
    "MaPO",
    "Method",
    "MethodOutput",
    "build_method",
    "denoising_errors",
    "dpo_logits",
    "mapo_score",
    "weighted_mean",
]
