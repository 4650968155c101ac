"""TrainConfig: checks that name the field, TOML files, flags generated from the fields, and option precedence."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from lib_alignment.training.config import ConfigError, TrainConfig, load_toml


def _train_parser() -> argparse.ArgumentParser:
    from lib_alignment.commands import train

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    train.register(sub)
    return parser


def _valid(**changes) -> TrainConfig:
    return TrainConfig(model="tiny-random", data="d.csv", output_dir="out", name="n", **changes)


def test_every_problem_is_reported_with_its_field():
    config = _valid(rank=0, method="ppo", caption_dropout=1.5, resolution=100, positive_ratio=1.0, sample_sampler="Nope")
    with pytest.raises(ConfigError) as info:
        config.validate()
    text = str(info.value)
    for field in ("rank:", "method:", "caption_dropout:", "resolution:", "positive_ratio:", "sample_sampler:"):
        assert field in text
    assert "(got 0)" in text and "'ppo'" in text
    with pytest.raises(ConfigError, match="name: name '../x' is not allowed"):
        _valid().replace(name="../x").validate()
    with pytest.raises(ConfigError, match="model: is required"):
        TrainConfig(data="d", output_dir="o", name="n").validate()


def test_method_defaults_for_beta_and_alpha():
    assert _valid().effective_beta == 5000.0
    assert _valid(method="kto").effective_beta == 1000.0
    assert _valid(method="mapo").effective_beta == 0.1
    assert _valid(method="kto", beta=300.0).effective_beta == 300.0
    assert _valid(rank=16).effective_alpha == 16.0 and _valid(rank=16, lora_alpha=8).effective_alpha == 8.0


def test_values_are_converted_and_type_errors_name_the_source_and_field():
    config = TrainConfig.from_dict({"rank": "4", "lora-alpha": 2, "gradient_checkpointing": "yes", "beta": "none", "sample_seeds": "1, 2"}, source="x.toml")
    assert (config.rank, config.lora_alpha, config.gradient_checkpointing, config.beta, config.sample_seeds) == (4, 2.0, True, None, [1, 2])
    with pytest.raises(ConfigError, match=r"x.toml: rank: 2.5 is not an integer"):
        TrainConfig.from_dict({"rank": 2.5}, source="x.toml")
    with pytest.raises(ConfigError, match=r"x.toml: unknown option\(s\) 'rnak'"):
        TrainConfig.from_dict({"rnak": 4}, source="x.toml")
    with pytest.raises(ConfigError, match="learning_rate: a value is required"):
        TrainConfig.from_dict({"learning_rate": None})


def test_toml_sections_only_group_options(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text('method = "kto"\n[lora]\nrank = 4\nlora_targets = ["to_q", "to_v"]\n[objective]\nkto_utility = "loss_averse"\n')
    config = TrainConfig.from_dict(load_toml(path))
    assert (config.method, config.rank, config.lora_targets, config.kto_utility) == ("kto", 4, ["to_q", "to_v"], "loss_averse")
    path.write_text("rank = [\n")
    with pytest.raises(ConfigError, match="c.toml: not valid TOML"):
        load_toml(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")


def test_every_field_is_a_flag_and_flags_override_the_file(tmp_path: Path):
    from lib_alignment.commands.train import build_config

    parser = _train_parser()
    flags = {a.dest for a in parser._subparsers._group_actions[0].choices["train"]._actions}
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= flags
    toml = tmp_path / "c.toml"
    toml.write_text('rank = 4\nlearning_rate = 0.01\nsample_prompts = ["a", "b"]\n')
    args = parser.parse_args(["train", "--config", str(toml), "--model", "tiny", "--data", "d.csv", "--output-dir", "o", "--name", "n",
                              "--learning-rate", "2e-5", "--gradient-checkpointing", "--train-text-encoder", "false", "--lora-targets", "to_q", "to_k"])
    config = build_config(args)
    assert (config.rank, config.learning_rate, config.sample_prompts) == (4, 2e-5, ["a", "b"])
    assert config.gradient_checkpointing is True and config.train_text_encoder is False
    assert config.lora_targets == ["to_q", "to_k"]
    assert config.max_train_steps == TrainConfig().max_train_steps  # untouched options keep their defaults


def test_resume_takes_the_checkpoint_options_unless_overridden(tmp_path: Path):
    from lib_alignment.commands.train import build_config
    from lib_alignment.training import checkpoint as ckpt

    original = _valid(rank=4, beta=123.0, run_dir=str(tmp_path / "run"), max_train_steps=10)
    state = ckpt.TrainingState(step=3, consumed=6, config=original.to_dict())
    import torch

    ckpt.save_checkpoint(tmp_path / "run", state, {"unet": {}}, ckpt.rng_state(torch.Generator()))
    folder = ckpt.finalize_checkpoint(tmp_path / "run", 3)
    args = _train_parser().parse_args(["train", "--resume", str(tmp_path / "run"), "--max-train-steps", "20"])
    config = build_config(args)
    assert (config.rank, config.beta, config.max_train_steps, config.name) == (4, 123.0, 20, "n")
    assert config.resume == str(tmp_path / "run") and ckpt.resolve_checkpoint(config.resume) == folder
    with pytest.raises(FileNotFoundError, match="neither a checkpoint folder"):
        ckpt.resolve_checkpoint(tmp_path)
