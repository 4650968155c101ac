"""Training objectives: DPO, KTO, MaPO and DDPO behind one `Method` interface."""

from __future__ import annotations

from typing import Any

from .base import Errors, Method, MethodOutput, denoising_errors, weighted_mean
from .ddpo import DDPO, ppo_loss, reinforce_loss
from .dpo import DPO, dpo_logits
from .dpo_variants import IPO, HingeDPO
from .kto import KTO
from .listwise import Listwise, plackett_luce_nll
from .mapo import MaPO, mapo_score
from .orpo import ORPO

METHOD_CLASSES: dict[str, type[Method]] = {"dpo": DPO, "ipo": IPO, "dpo_hinge": HingeDPO, "kto": KTO, "mapo": MaPO, "orpo": ORPO, "listwise": Listwise, "ddpo": DDPO}


def build_method(config: Any, num_train_timesteps: int = 1000) -> Method:
    """The Method a TrainConfig asks for, with its options."""
    if config.method == "ddpo":
        return DDPO(
            config.ddpo_estimator,
            clip_range=config.clip_range,
            adv_clip_max=config.adv_clip_max,
            reward=config.reward,
            eta=config.eta,
            advantages=config.advantages,
            inner_epochs=config.inner_epochs,
            timestep_fraction=config.timestep_fraction,
            samples_per_epoch=config.samples_per_epoch,
            steps=config.sample_steps,
            guidance_scale=config.sample_cfg_scale,
        )
    beta = config.effective_beta
    if config.method in ("dpo", "ipo", "dpo_hinge", "listwise"):
        return METHOD_CLASSES[config.method](beta)
    if config.method == "orpo":
        return ORPO(beta, num_train_timesteps=num_train_timesteps)
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
    "DDPO",
    "DPO",
    "IPO",
    "ORPO",
    "HingeDPO",
    "KTO",
    "Listwise",
    "METHOD_CLASSES",
    "Errors",
    "MaPO",
    "Method",
    "MethodOutput",
    "build_method",
    "denoising_errors",
    "dpo_logits",
    "mapo_score",
    "plackett_luce_nll",
    "ppo_loss",
    "reinforce_loss",
    "weighted_mean",
]
