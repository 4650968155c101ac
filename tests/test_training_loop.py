"""The training loop on tiny-random at 32 px: exact resume, cancel, NaN guard, KTO, v-prediction, SDXL, CLI."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from lib_alignment.models.ldm_keys import unet_module_to_ldm
from lib_alignment.training import TrainConfig, Trainer
from lib_alignment.training.events import read_events
from lib_alignment.training.lora import trainable_state

RES = 32

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    from training_helpers import single_thread

    with single_thread():
        yield



@pytest.fixture(scope="module")
def pair_csv(tmp_path_factory) -> Path:
    from lib_alignment.training.data.synthetic import make_toy_pairs

    return make_toy_pairs(tmp_path_factory.mktemp("pairs"), 6, preferred="red", resolution=RES, seed=0)


@pytest.fixture(scope="module")
def kto_csv(tmp_path_factory) -> Path:
    from lib_alignment.training.data.synthetic import make_toy_kto

    return make_toy_kto(tmp_path_factory.mktemp("kto"), 6, preferred="red", resolution=RES, seed=0)


def _config(tmp_path: Path, data: Path, **changes) -> TrainConfig:
    values = {
        "method": "dpo",
        "model": "tiny-random",
        "data": str(data),
        "output_dir": str(tmp_path / "out"),
        "name": "run",
        "resolution": RES,
        "batch_size": 1,
        "max_train_steps": 2,
        "learning_rate": 1e-3,
        "checkpoint_every": 0,
        "preview": False,
        "progress_bar": False,
        "tensorboard": False,
        "save_precision": "fp32",
    }
    values.update(changes)
    return TrainConfig(**values)


def _fresh_pipe():
    from lib_alignment.models.tiny import tiny_random_pipeline

    return tiny_random_pipeline(seed=0)


@pytest.mark.slow
def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path: Path, pair_csv: Path):
    """6 steps in one go vs 3 steps, Ctrl-C (a real SIGINT), then --resume: bitwise-equal LoRA and optimizer.
    Then a process killed outright after step 5 and resumed from its step-3 checkpoint: the same weights again."""
    randomness = {"max_train_steps": 6, "gradient_accumulation_steps": 2, "lora_dropout": 0.2, "caption_dropout": 0.3, "checkpoint_every": 3, "lr_scheduler": "linear", "lr_warmup_steps": 2}
    # previews every 2 steps in the uninterrupted run only: sampling must not disturb the training's randomness
    whole = Trainer(_config(tmp_path / "a", pair_csv, sample_every=2, sample_steps=2, sample_seeds=[3], **randomness), pipe=_fresh_pipe())
    assert whole.train().status == "finished"
    samples = [e for e in read_events(whole.run_dir / "events.jsonl") if e["event"] == "sample"]
    assert [e["step"] for e in samples] == [0, 2, 4, 6] and all(Path(p).is_file() for e in samples for p in e["paths"])

    def interrupt_at_step_3(event):
        if event["event"] == "step" and event["step"] == 3:
            os.kill(os.getpid(), signal.SIGINT)

    first = Trainer(_config(tmp_path / "b", pair_csv, **randomness), pipe=_fresh_pipe(), listeners=[interrupt_at_step_3])
    stopped = first.train()
    assert (stopped.status, stopped.step) == ("cancelled", 3)
    run_dir = first.config.resolved_run_dir()
    resumed = Trainer(_config(tmp_path / "b", pair_csv, resume=str(run_dir), **randomness), pipe=_fresh_pipe())
    result = resumed.train()
    assert (result.status, result.step) == ("finished", 6)

    expected, got = trainable_state(whole.pipe.unet), trainable_state(resumed.pipe.unet)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert any(float(v.abs().max()) > 0 for k, v in got.items() if "lora_B" in k)  # it trained
    opt_a, opt_b = whole.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(opt_a[i]["exp_avg_sq"], opt_b[i]["exp_avg_sq"]) for i in opt_a)
    # the resumed run rewrote nothing twice: one metrics row per step
    rows = (run_dir / "metrics.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4, 5, 6]
    events = read_events(run_dir / "events.jsonl")
    assert [e["reason"] for e in events if e["event"] == "done"] == ["cancelled", "finished"]
    starts = [e for e in events if e["event"] == "start"]
    assert (starts[1]["resumed"], starts[1]["step"]) == (True, 3)

    # a hard kill (no handler runs) after step 5: --resume goes back to the step-3 checkpoint and redoes 4 and 5
    import subprocess
    import sys

    killed_config = _config(tmp_path / "c", pair_csv, **randomness)
    script = (
        "import json, os, sys, torch\n"
        "torch.set_num_threads(1)\n"
        "from lib_alignment.models.tiny import tiny_random_pipeline\n"
        "from lib_alignment.training import TrainConfig, Trainer\n"
        "die = lambda e: os._exit(9) if e['event'] == 'step' and e['step'] == 5 else None\n"
        "Trainer(TrainConfig.from_dict(json.loads(sys.argv[1])), pipe=tiny_random_pipeline(seed=0), listeners=[die]).train()\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", script, killed_config.to_json()], cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 9, done.stderr[-2000:]
    killed_dir = killed_config.resolved_run_dir()
    assert not killed_config.output_path().exists()
    after_kill = Trainer(_config(tmp_path / "c", pair_csv, resume=str(killed_dir), **randomness), pipe=_fresh_pipe())
    assert after_kill.train().step == 6
    got = trainable_state(after_kill.pipe.unet)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    rows = (killed_dir / "metrics.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_non_finite_loss_stops_with_a_message_and_keeps_the_last_good_weights(tmp_path: Path, pair_csv: Path):
    from safetensors.torch import load_file

    trainer = Trainer(_config(tmp_path, pair_csv, max_train_steps=5), pipe=_fresh_pipe())
    trainer.setup()
    real_loss, calls, snapshots = trainer.method.loss, [], {}

    def loss_going_nan(errors, batch, reduce_mean):
        calls.append(1)
        out = real_loss(errors, batch, reduce_mean)
        if len(calls) == 3:
            out.loss = out.loss * float("nan")
        return out

    trainer.method.loss = loss_going_nan
    trainer.listeners.append(lambda e: snapshots.setdefault(e["step"], trainable_state(trainer.pipe.unet)) if e["event"] == "step" else None)
    result = trainer.train()

    assert result.status == "error" and result.step == 2
    assert "non-finite" in result.message and "step 3" in result.message
    kept = trainable_state(trainer.pipe.unet)
    assert all(torch.equal(kept[k], snapshots[2][k]) for k in kept)
    assert not all(torch.equal(kept[k], snapshots[1][k]) for k in kept)
    exported = load_file(result.outputs["lora"])
    ups = {k: v for k, v in kept.items() if ".lora_B." in k}
    for name, value in ups.items():
        module = unet_module_to_ldm(name.split(".lora_B.")[0], trainer.pipe.unet.config)  # one layer per block: LDM names
        assert torch.equal(exported["lora_unet_" + module.replace(".", "_") + ".lora_up.weight"], value), name
    events = read_events(trainer.run_dir / "events.jsonl")
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "non_finite_loss"
    assert not any(e["event"] == "done" for e in events)


@pytest.mark.slow
def test_stop_file_saves_exports_and_exits_cleanly(tmp_path: Path, pair_csv: Path):
    from safetensors import safe_open

    config = _config(tmp_path, pair_csv, max_train_steps=4, preview=True, sample_steps=2)
    stop = config.resolved_stop_file()
    trainer = Trainer(config, pipe=_fresh_pipe(), listeners=[lambda e: stop.touch() if e["event"] == "step" and e["step"] == 1 else None])
    result = trainer.train()
    assert (result.status, result.step) == ("cancelled", 1)
    assert not stop.exists()
    assert Path(result.outputs["checkpoint"]).name == "step-000001"
    assert Path(result.outputs["preview"]).is_file()
    with safe_open(result.outputs["lora"], framework="pt") as handle:
        assert handle.metadata()["lib_alignment_status"] == "cancelled"
        assert handle.metadata()["ss_steps"] == "1"


@pytest.mark.slow
def test_kto_trains_from_labels_and_starts_at_one_half(tmp_path: Path, kto_csv: Path):
    trainer = Trainer(_config(tmp_path, kto_csv, method="kto", batch_size=2, max_train_steps=2, positive_ratio=0.5, cache_latents=True), pipe=_fresh_pipe())
    result = trainer.train()
    assert result.status == "finished"
    steps = [e for e in read_events(trainer.run_dir / "events.jsonl") if e["event"] == "step"]
    assert steps[0]["loss"] == pytest.approx(0.5, abs=1e-6) and steps[0]["kl"] == 0.0
    assert steps[1]["loss"] != pytest.approx(0.5, abs=1e-7)


def test_v_prediction_models_train_on_the_velocity(tmp_path: Path, pair_csv: Path):
    from diffusers import DDIMScheduler

    pipe = _fresh_pipe()
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, prediction_type="v_prediction")
    trainer = Trainer(_config(tmp_path, pair_csv), pipe=pipe)
    trainer.setup()
    g = torch.Generator().manual_seed(0)
    latents, noise = torch.randn((2, 4, 4, 4), generator=g), torch.randn((2, 4, 4, 4), generator=g)
    t = torch.tensor([100, 900])
    noisy, target = trainer.noisy_and_target(latents, noise, t)
    alpha = trainer.noise_scheduler.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1)
    sigma = (1 - trainer.noise_scheduler.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1)
    torch.testing.assert_close(target, alpha * noise - sigma * latents)  # v = √ᾱ ε − √(1−ᾱ) x₀
    torch.testing.assert_close(noisy, alpha * latents + sigma * noise)


@pytest.mark.slow
def test_sdxl_step_with_text_encoder_lora(tmp_path: Path, pair_csv: Path):
    from safetensors.torch import load_file
    from training_helpers import tiny_sdxl_pipeline

    trainer = Trainer(_config(tmp_path, pair_csv, resolution=64, train_text_encoder=True, max_train_steps=1), pipe=tiny_sdxl_pipeline())
    result = trainer.train()
    assert result.status == "finished" and trainer.version == "sdxl"
    step = next(e for e in read_events(trainer.run_dir / "events.jsonl") if e["event"] == "step")
    assert step["loss"] == pytest.approx(0.6931472, abs=1e-5)
    prefixes = {k.split("_")[0] + "_" + k.split("_")[1] for k in load_file(result.outputs["lora"])}
    assert prefixes == {"lora_unet", "lora_te1", "lora_te2"}


@pytest.mark.slow
def test_command_line_end_to_end_with_toml_and_json_events(tmp_path: Path, pair_csv: Path, capsys):
    from safetensors import safe_open

    from lib_alignment.cli import main

    toml = tmp_path / "opts.toml"
    toml.write_text('rank = 2\nlora_alpha = 1\nbeta = 2000.0\n[logging]\ntensorboard = false\nmax_train_steps = 5\n')
    out = tmp_path / "loras"
    code = main([
        "train", "--config", str(toml), "--method", "dpo", "--model", "tiny-random", "--data", str(pair_csv),
        "--output-dir", str(out), "--name", "cli-lora", "--resolution", str(RES), "--batch-size", "1",
        "--max-train-steps", "2", "--events-stdout", "--sample-prompts", "a circle", "--preview", "false",
    ])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    events = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events if e["event"] in ("start", "step", "done")] == ["start", "step", "step", "done"]
    assert {"step", "total", "loss", "lr", "elapsed", "eta", "reward_accuracy", "reward_margin"} <= set([e for e in events if e["event"] == "step"][-1])
    assert sorted(p.name for p in out.iterdir()) == ["cli-lora.json", "cli-lora.safetensors"]  # only LoRAs there
    assert (out.parent / "alignment-runs" / "cli-lora" / "events.jsonl").is_file()
    with safe_open(str(out / "cli-lora.safetensors"), framework="pt") as handle:
        meta = handle.metadata()
        alphas = {float(handle.get_tensor(k)) for k in handle.keys() if k.endswith(".alpha")}  # noqa: SIM118 (safe_open is not iterable)
    assert (meta["ss_network_dim"], meta["ss_network_alpha"], meta["ss_steps"]) == ("2", "1", "2")  # TOML, flag wins on steps
    assert alphas == {1.0}
    assert json.loads(meta["lib_alignment_hyperparameters"])["beta"] == 2000.0


def test_command_line_rejects_bad_options_naming_the_field(tmp_path: Path, capsys):
    from lib_alignment.cli import main

    code = main(["train", "--model", "tiny-random", "--data", "x.csv", "--output-dir", str(tmp_path), "--name", "n", "--rank", "0", "--learning-rate", "fast"])
    err = capsys.readouterr().err
    assert code == 2 and "learning_rate" in err
    code = main(["train", "--model", "tiny-random", "--data", "x.csv", "--output-dir", str(tmp_path), "--name", "n", "--rank", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "rank: must be ≥ 1" in err
    bad = tmp_path / "bad.toml"
    bad.write_text("rnak = 4\n")
    code = main(["train", "--config", str(bad), "--model", "tiny-random", "--data", "x.csv", "--output-dir", str(tmp_path), "--name", "n"])
    err = capsys.readouterr().err
    assert code == 2 and "bad.toml" in err and "'rnak'" in err
