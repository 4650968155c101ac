"""The training tab's option fields: their labels, and their values read back for a job (pure, no gradio).

Every option shown in the form has a readable label (never the raw field name);
a numeric field that is empty or not a number is refused with that label.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .fields import FieldError, number

#: Readable labels of the options the tab shows (the field's help text is the line below it).
LABELS: dict[str, str] = {
    "beta": "β (preference strength)",
    "rank": "LoRA rank",
    "lora_alpha": "LoRA alpha",
    "batch_size": "Batch size",
    "gradient_accumulation_steps": "Gradient accumulation steps",
    "resolution": "Resolution (px, 0 = the model's)",
    "mixed_precision": "Mixed precision",
    "gradient_checkpointing": "Gradient checkpointing",
    "optimizer": "Optimizer",
    "cache_latents": "Cache latents",
    "device": "Device",
    "lr_scheduler": "Learning-rate schedule",
    "lr_warmup_steps": "Warm-up steps",
    "train_text_encoder": "Also train the text encoder",
    "tie_policy": "Tied pairs",
    "checkpoint_every": "Checkpoint every N steps",
    "sample_every": "Preview images every N steps",
    "sample_prompts": "Preview prompts",
    "sample_seeds": "Preview seeds",
    "sample_steps": "Preview sampling steps",
    "seed": "Seed",
    "save_precision": "LoRA file precision",
    "min_per_class": "KTO: fewest liked / disliked images",
    "positive_ratio": "KTO: share of liked images drawn",
    "kto_utility": "KTO value function",
    "kto_reference_point": "KTO reference point",
    "kto_lambda_desirable": "KTO weight of liked images (λ_D)",
    "kto_lambda_undesirable": "KTO weight of disliked images (λ_U)",
    "mapo_snr_value": "MaPO score constant a",
    "samples_per_epoch": "Samples per epoch",
    "rollout_batch_size": "Sampling batch size",
    "eta": "Sampler η (DDIM)",
    "inner_epochs": "Training passes per epoch",
    "ddpo_estimator": "Estimator",
    "clip_range": "PPO clip range ε",
    "adv_clip_max": "Advantage clip (±)",
    "timestep_fraction": "Share of steps trained",
    "advantages": "Reward normalisation",
    "stat_buffer_size": "Rewards remembered per prompt",
    "stat_min_count": "Rewards before per-prompt statistics",
    "prompt_group_size": "Samples per drawn prompt",
    "kl_samples": "Samples scored for the KL",
    "reward_target": "Stop at mean reward",
    "max_train_steps": "Training steps",
    "learning_rate": "Learning rate",
}

#: Options that must be positive (the trainer refuses 0 for them too, but later and by field name).
POSITIVE = {
    "rank",
    "batch_size",
    "gradient_accumulation_steps",
    "sample_steps",
    "max_train_steps",
    "learning_rate",
    "samples_per_epoch",
    "rollout_batch_size",
    "inner_epochs",
    "stat_buffer_size",
    "prompt_group_size",
}


def option_label(name: str) -> str:
    """The label of an option: from LABELS, else its name in words with a capital."""
    return LABELS.get(name) or name.replace("_", " ").capitalize()


def option_value(name: str, f: dataclasses.Field, value: Any, kind: str, optional_blank: bool = False) -> tuple[bool, Any]:
    """(send it?, value) of one option field; FieldError naming the label for a value that is not one.

    kind: training.config.field_kind(f). optional_blank: the field may be left empty (an optional option
    or one the job chooses, shown as a textbox with a placeholder); other numeric fields must hold a number.
    """
    label = option_label(name)
    if kind.startswith("list["):
        items = [line.strip() for line in str(value or "").splitlines() if line.strip()]
        if kind == "list[int]" or name.endswith("_targets"):
            items = [part for line in items for part in line.replace(",", " ").split()]
        if kind == "list[int]":
            items = [number(item, label, integer=True) for item in items]
        return True, items
    base = kind.rstrip("?")
    blank = value is None or (isinstance(value, str) and not value.strip())
    if base in ("int", "float"):
        if blank:
            if optional_blank or kind.endswith("?"):
                return False, None
            raise FieldError(label, f"enter {'a whole number' if base == 'int' else 'a number'}")
        kwargs: dict[str, Any] = {"above": 0} if name in POSITIVE else {}
        return True, number(value, label, integer=base == "int", **kwargs)
    if blank and base not in ("str",):
        return False, None
    return True, value


def start_numbers(steps: Any, learning_rate: Any) -> dict[str, Any]:
    """The Training steps and Learning rate fields as options, refused with their labels when not numbers."""
    return {
        "max_train_steps": number(steps, LABELS["max_train_steps"], integer=True, minimum=1),
        "learning_rate": number(learning_rate, LABELS["learning_rate"], above=0),
    }


__all__ = ["LABELS", "FieldError", "option_label", "option_value", "start_numbers"]
