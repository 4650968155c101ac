"""DDPO on the shared trainer: exact resume mid-epoch, the PPO ratio, the command line, reward target, previews."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from lib_alignment.training import TrainConfig
from lib_alignment.training.ddpo import DDPOTrainer
from lib_alignment.training.events import read_events
from lib_alignment.training.lora import trainable_state

RES = 32


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    from training_helpers import single_thread

    with single_thread():
        yield


def _config(tmp_path: Path, **changes) -> TrainConfig:
    values = dict(  # noqa: C408 (keyword form reads like the command line)
        method="ddpo",
        model="tiny-random",
        output_dir=str(tmp_path / "out"),
        name="run",
        reward="jpeg_compressibility",
        prompts=["a [red|blue] [shape]"],
        resolution=RES,
        sample_steps=4,
        sample_cfg_scale=5.0,
        samples_per_epoch=4,
        rollout_batch_size=4,
        batch_size=2,
        num_epochs=2,
        learning_rate=3e-3,
        rank=4,
        checkpoint_every=0,
        preview=False,
        progress_bar=False,
        tensorboard=False,
        save_precision="fp32",
    )
    values.update(changes)
    return TrainConfig(**values)


def _fresh_pipe():
    from lib_alignment.models.tiny import tiny_random_pipeline

    return tiny_random_pipeline(seed=0)


@pytest.mark.slow
def test_killed_mid_epoch_and_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path: Path):
    """Two inner epochs, half the timesteps, per-prompt advantages over groups of 2: SIGINT at step 3 of 8
    (mid-epoch, so the checkpoint carries the epoch's trajectories), then --resume: bitwise-equal weights."""
    options = {"inner_epochs": 2, "timestep_fraction": 0.5, "prompt_group_size": 2, "stat_min_count": 2, "kl_samples": 1, "checkpoint_every": 4}
    whole = DDPOTrainer(_config(tmp_path / "a", **options), pipe=_fresh_pipe())
    assert whole.train().status == "finished" and whole.steps_per_epoch == 4

    def interrupt_at_step_3(event):
        if event["event"] == "step" and event["step"] == 3:
            os.kill(os.getpid(), signal.SIGINT)

    first = DDPOTrainer(_config(tmp_path / "b", **options), pipe=_fresh_pipe(), listeners=[interrupt_at_step_3])
    stopped = first.train()
    assert (stopped.status, stopped.step) == ("cancelled", 3)
    run_dir = first.config.resolved_run_dir()
    from lib_alignment.training.config import ConfigError

    with pytest.raises(ConfigError, match=r"middle of an epoch.*inner_epochs \(2 there, 1 now\)"):
        DDPOTrainer(_config(tmp_path / "b", resume=str(run_dir), **{**options, "inner_epochs": 1}), pipe=_fresh_pipe()).setup()
    resumed = DDPOTrainer(_config(tmp_path / "b", resume=str(run_dir), **options), pipe=_fresh_pipe())
    result = resumed.train()
    assert (result.status, result.step) == ("finished", 8)

    expected, got = trainable_state(whole.pipe.unet), trainable_state(resumed.pipe.unet)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert any(float(v.abs().max()) > 0 for k, v in got.items() if "lora_B" in k)  # it trained
    assert whole.tracker.state_dict() == resumed.tracker.state_dict()
    rows = (run_dir / "metrics.csv").read_text().strip().splitlines()
    header = rows[0].split(",")
    values = [dict(zip(header, r.split(","))) for r in rows[1:]]
    assert [int(v["step"]) for v in values] == list(range(1, 9))
    whole_rows = (whole.run_dir / "metrics.csv").read_text().strip().splitlines()[1:]
    assert [r.split(",")[header.index("reward_mean")] for r in whole_rows] == [v["reward_mean"] for v in values]
    # the drift estimate starts at (numerically) zero and grows once the LoRA has moved
    kl = [float(v["kl_to_base"]) for v in values]
    assert kl[0] < 1e-8 < kl[-1]


def test_command_line_trains_ddpo_with_the_same_outputs_and_exact_first_ratio(tmp_path: Path, capsys):
    from safetensors import safe_open

    from lib_alignment.cli import main

    out = tmp_path / "loras"
    code = main([
        "train", "--method", "ddpo", "--model", "tiny-random", "--reward", "jpeg_compressibility", "--prompts", "a [color] circle",
        "--output-dir", str(out), "--name", "cli-ddpo", "--epochs", "1", "--samples-per-epoch", "2", "--rollout-batch-size", "2",
        "--batch-size", "2", "--sample-steps", "3", "--resolution", str(RES), "--learning-rate", "1e-3", "--rank", "2", "--seed", "5",
        "--events-stdout", "--preview", "false", "--tensorboard", "false", "--sample-every", "1", "--sample-prompts", "a red circle",
        "--sample-seeds", "0", "1", "--kl-samples", "0",
    ])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    events = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == 1 and steps[0]["total"] == 1
    # the first step scores the trajectories with the weights that sampled them: ratio exactly 1
    assert (steps[0]["ratio"], steps[0]["approx_kl"], steps[0]["clipfrac"]) == (1.0, 0.0, 0.0)
    assert steps[0]["reward_mean"] < 0 and steps[0]["kl_to_base"] is None  # JPEG kB, negated; drift estimate off
    sample = next(e for e in events if e["event"] == "sample")
    assert len(sample["paths"]) == 2 and len(sample["rewards"]) == 2 and all(r < 0 for r in sample["rewards"])
    # only LoRAs there: the final one and the best by held-out reward
    assert sorted(p.name for p in out.iterdir()) == ["cli-ddpo-best.json", "cli-ddpo-best.safetensors", "cli-ddpo.json", "cli-ddpo.safetensors"]
    assert (out.parent / "alignment-runs" / "cli-ddpo" / "events.jsonl").is_file()
    with safe_open(str(out / "cli-ddpo.safetensors"), framework="pt") as handle:
        meta = handle.metadata()
        assert any(k.startswith("lora_unet_") for k in handle.keys())  # noqa: SIM118 (safe_open is not a dict)
    assert meta["lib_alignment_method"] == "ddpo" and meta["ss_network_dim"] == "2"
    assert json.loads(meta["lib_alignment_hyperparameters"])["reward"] == "jpeg_compressibility"
    assert "DDPO" in json.loads((out / "cli-ddpo.json").read_text())["description"]


def test_reward_target_stops_the_run_before_training_on_that_epoch(tmp_path: Path):
    trainer = DDPOTrainer(_config(tmp_path, reward_target=-1000.0, num_epochs=3), pipe=_fresh_pipe())
    result = trainer.train()
    assert (result.status, result.step) == ("target_reached", 0)
    events = read_events(trainer.run_dir / "events.jsonl")
    assert events[-1]["event"] == "done" and events[-1]["reason"] == "target_reached"
    assert any("reward target" in e.get("message", "") for e in events if e["event"] == "status")
    assert result.outputs.get("lora") is None  # no step was taken: no LoRA is exported (issue 15)
    assert not list(tmp_path.rglob("*.safetensors"))


def test_command_line_names_missing_and_bad_ddpo_options(tmp_path: Path, capsys):
    from lib_alignment.cli import main

    base = ["train", "--method", "ddpo", "--model", "tiny-random", "--output-dir", str(tmp_path), "--name", "n"]
    assert main([*base, "--prompts", "a cat"]) == 2
    assert "reward: is required" in capsys.readouterr().err
    assert main([*base, "--reward", "jpeg_compressibility"]) == 2
    assert "prompts: is required" in capsys.readouterr().err
    assert main([*base, "--reward", "jpeg_compressibility", "--prompts", "a cat", "--samples-per-epoch", "5", "--batch-size", "2", "--eta", "0"]) == 2
    err = capsys.readouterr().err
    assert "samples_per_epoch: must be a multiple of batch_size × gradient_accumulation_steps = 2" in err and "eta: must be > 0" in err
    assert main([*base, "--reward", "jpeg_compressibility", "--prompts", "a cat", "--advantages", "group"]) == 2
    assert "prompt_group_size: must be ≥ 2" in capsys.readouterr().err


def test_sdxl_pipeline_samples_with_zero_uncond_and_trains(tmp_path: Path):
    """SDXL's path: pooled embeddings and size conditioning, zeros for the empty prompt as its pipeline uses."""
    from training_helpers import tiny_sdxl_pipeline

    trainer = DDPOTrainer(_config(tmp_path, resolution=64, num_epochs=1, samples_per_epoch=2, rollout_batch_size=2, batch_size=2, sample_steps=2), pipe=tiny_sdxl_pipeline())
    result = trainer.train()
    assert result.status == "finished" and trainer.version == "sdxl"
    hidden, pooled = trainer.uncond
    assert float(hidden.abs().max()) == 0.0 and pooled is not None and float(pooled.abs().max()) == 0.0
    step = next(e for e in read_events(trainer.run_dir / "events.jsonl") if e["event"] == "step")
    assert (step["ratio"], step["approx_kl"]) == (1.0, 0.0)
    assert any(float(v.abs().max()) > 0 for k, v in trainable_state(trainer.pipe.unet).items() if "lora_B" in k)
