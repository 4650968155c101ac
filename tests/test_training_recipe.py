"""The references' recipe: caption dropout and random flips for DPO/KTO by default, not in the CPU preset; bf16 warning."""

from __future__ import annotations

import pytest
import torch

from lib_alignment.jobs.presets import preset_options
from lib_alignment.training import TrainConfig
from lib_alignment.training.config import ConfigError
from lib_alignment.training.trainer import Trainer


@pytest.mark.parametrize(("method", "augmented"), [("dpo", True), ("ipo", True), ("dpo_hinge", True), ("kto", True),
                                                   ("mapo", False), ("orpo", False), ("listwise", False), ("ddpo", False)])
def test_dpo_and_kto_default_to_the_references_dropout_and_flips(method: str, augmented: bool):
    config = TrainConfig(method=method)
    assert config.effective_caption_dropout == (0.2 if augmented else 0.0)
    assert config.effective_random_flip is augmented
    chosen = TrainConfig(method=method, caption_dropout=0.05, random_flip=not augmented)
    assert chosen.effective_caption_dropout == 0.05 and chosen.effective_random_flip is (not augmented)


def test_the_cpu_preset_keeps_both_off_and_bad_values_name_the_field():
    options = preset_options("cpu")
    assert options["caption_dropout"] == 0.0 and options["random_flip"] is False
    assert "random_flip" not in preset_options("cpu", uses_data=False)  # DDPO samples its own images
    with pytest.raises(ConfigError, match="caption_dropout: must be in"):
        TrainConfig(method="dpo", caption_dropout=1.5).validate(require_paths=False)
    assert TrainConfig.from_dict({"random_flip": "false", "caption_dropout": "none"}).random_flip is False


def test_bf16_is_warned_against_for_dpo_and_kto_at_large_beta():
    assert "small difference of large" in TrainConfig(method="dpo", mixed_precision="bf16").precision_warning()
    assert "kto at beta 1000" in TrainConfig(method="kto", mixed_precision="bf16").precision_warning()
    assert TrainConfig(method="dpo", mixed_precision="fp16").precision_warning() == ""
    assert TrainConfig(method="mapo", mixed_precision="bf16").precision_warning() == ""  # β 0.1 weighs a term
    assert TrainConfig(method="dpo", mixed_precision="bf16", beta=10).precision_warning() == ""


def _flipper(**options) -> Trainer:
    trainer = Trainer.__new__(Trainer)  # only the config and the generator matter here
    trainer.config = TrainConfig(method="dpo", **options)
    trainer.generator = torch.Generator().manual_seed(0)
    return trainer


def test_each_image_is_mirrored_on_its_own_with_probability_one_half():
    images = torch.arange(64 * 3 * 2 * 4, dtype=torch.float32).reshape(64, 3, 2, 4)
    out = _flipper()._flipped(images)
    mirrored = [bool(torch.equal(out[i], images[i].flip(-1))) for i in range(64)]
    kept = [bool(torch.equal(out[i], images[i])) for i in range(64)]
    assert all(m != k for m, k in zip(mirrored, kept))  # every image either untouched or mirrored left-right
    assert 16 < sum(mirrored) < 48
    again = _flipper()._flipped(images)
    assert torch.equal(out, again)  # drawn from the trainer's generator: a resumed run flips the same images
    assert _flipper(random_flip=False)._flipped(images) is images
