"""DDPO's held-out reward: prompts never trained on, the best step exported as NAME-best, early stopping, verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lib_alignment.training import TrainConfig
from lib_alignment.training.ddpo import DDPOTrainer
from lib_alignment.training.ddpo.held_out import RewardValidator, choose_held_out_prompts
from lib_alignment.training.ddpo.prompts import PromptSource
from lib_alignment.training.events import read_events
from lib_alignment.training.health import HealthMonitor
from lib_alignment.training.validation import HeldOutReward

RES = 32


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    from training_helpers import single_thread

    with single_thread():
        yield


def test_many_prompt_lines_hold_some_out_and_training_never_draws_them():
    source = PromptSource([f"a photo of thing {i}" for i in range(100)])
    held, training, note, disjoint = choose_held_out_prompts(source, 0.05, 4, seed=3)
    assert disjoint and len(held) == 5 and "5 of 100" in note
    drawn = set(training.draw(2000, torch.Generator().manual_seed(0)))
    assert not drawn & set(held) and len(drawn) == 95
    again, _, _, _ = choose_held_out_prompts(source, 0.05, 4, seed=3)
    assert again == held  # seeded: a resumed run holds out the same prompts


def test_a_template_holds_out_fillings_that_training_redraws():
    source = PromptSource(["a(n) [animal] [activity]"])
    held, training, note, disjoint = choose_held_out_prompts(source, 0.02, 4, seed=0)
    assert disjoint and len(held) == 10 and "500" in note
    drawn = training.draw(3000, torch.Generator().manual_seed(1))
    assert not set(drawn) & set(held)
    assert len(set(drawn)) > 400  # everything else is still drawn


def test_one_prompt_is_scored_on_fixed_held_out_seeds():
    source = PromptSource(["a red circle"])
    held, training, note, disjoint = choose_held_out_prompts(source, 0.05, 4, seed=0)
    assert held == ["a red circle"] and training is source and not disjoint and "fixed held-out seeds" in note
    validator = RewardValidator(held, every=2, draws=4, seed=7, minimum=4)
    prompts, seeds = validator.samples()
    assert prompts == ["a red circle"] * 16 and len(set(seeds)) == 16
    assert validator.samples() == RewardValidator(held, 2, 4, 7, minimum=4).samples()
    assert choose_held_out_prompts(source, 0.0, 4, 0)[0] == []


def _config(tmp_path: Path, **changes) -> TrainConfig:
    values = dict(  # noqa: C408
        method="ddpo", model="tiny-random", output_dir=str(tmp_path / "out"), name="run", reward="jpeg_compressibility",
        prompts=["a [red|blue] [shape]"], resolution=RES, sample_steps=3, sample_cfg_scale=5.0, samples_per_epoch=4,
        rollout_batch_size=8, batch_size=2, num_epochs=3, learning_rate=3e-3, rank=4, checkpoint_every=0, preview=False,
        progress_bar=False, tensorboard=False, save_precision="fp32", validation_min=2, validation_draws=2,
    )
    values.update(changes)
    return TrainConfig(**values)


def _pipe():
    from lib_alignment.models.tiny import tiny_random_pipeline

    return tiny_random_pipeline(seed=0)


def test_held_out_reward_is_scored_and_the_best_step_is_exported_with_its_score(tmp_path: Path):
    from safetensors import safe_open

    trainer = DDPOTrainer(_config(tmp_path, validation_every=2, num_epochs=2), pipe=_pipe())
    result = trainer.train()
    assert result.status == "finished" and result.step == 4
    events = read_events(trainer.config.resolved_run_dir() / "events.jsonl")
    validations = [e for e in events if e["event"] == "validation"]
    assert [v["step"] for v in validations] == [0, 2, 4]
    assert all(v["count"] == 4 and "reward" in v and "accuracy" not in v for v in validations)  # 2 prompts × 2 seeds
    # the score is the reward of the trainer's own seeded samples: recompute the last one
    validator = trainer.validator
    _, rewards = trainer.sample_seeded(*validator.samples())
    assert validations[-1]["reward"] == pytest.approx(float(rewards.mean()), rel=1e-6)
    best = max(validations[1:], key=lambda v: v["reward"])  # step 0 (the base model) is never the best
    path = Path(result.outputs["best"])
    assert path.name == "run-best.safetensors" and path.parent == Path(result.outputs["lora"]).parent
    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
    assert meta["lib_alignment_heldout_step"] == str(best["step"]) == meta["ss_steps"]
    assert float(meta["lib_alignment_heldout_reward"]) == pytest.approx(best["reward"], rel=1e-5)
    card = json.loads(path.with_suffix(".json").read_text())
    assert f"Best held-out step {best['step']} of 4: held-out reward" in card["notes"]
    final_card = json.loads(Path(result.outputs["metadata"]).read_text())
    assert "held-out reward" in final_card["notes"] and "run-best.safetensors" in final_card["notes"]
    health = [e for e in events if e["event"] == "health"]
    assert health and "held_out_last" in health[-1]["numbers"] and "approx_kl" in health[-1]["numbers"]
    from lib_alignment.jobs.progress import EventSummary

    summary = EventSummary(trainer.config.resolved_run_dir() / "events.jsonl")
    summary.update()
    assert [p[0] for p in summary.series["heldout_reward"]] == [0, 2, 4]
    assert summary.health_keys()[:2] == ["grad_norm", "heldout_reward"] and "approx_kl" in summary.health_keys()


def test_early_stopping_on_the_held_out_reward(tmp_path: Path, monkeypatch):
    scores = iter([0.0, 1.0, 0.5, 0.4, 0.3, 0.2])

    def measure(self, trainer, step):
        return HeldOutReward(step, next(scores), 0.1, 4)

    monkeypatch.setattr(RewardValidator, "measure", measure)
    trainer = DDPOTrainer(_config(tmp_path, validation_every=1, early_stopping_patience=2, num_epochs=4), pipe=_pipe())
    result = trainer.train()
    assert result.step == 3  # best at step 1, then two scores without a new best
    events = read_events(trainer.config.resolved_run_dir() / "events.jsonl")
    assert events[-1]["event"] == "done" and events[-1].get("stopped_early") is True
    assert result.outputs["best_step"] == "1"


def test_no_validation_when_the_split_is_zero(tmp_path: Path):
    trainer = DDPOTrainer(_config(tmp_path, validation_split=0.0), pipe=_pipe())
    trainer.setup()
    assert trainer.validator is None and trainer.prompt_source.exclude == frozenset()


def _feed(monitor: HealthMonitor, held: list[float], train: list[float]) -> None:
    for step, (h, r) in enumerate(zip(held, train)):
        monitor.observe_step(step, {"loss": 0.1, "reward_mean": r, "reward_std": 0.2, "clipfrac": 0.05, "approx_kl": 1e-6, "kl_to_base": 0.01})
        monitor.observe_validation(step, h, 0.2)


def test_ddpo_verdicts_read_the_held_out_reward():
    rising = HealthMonitor("ddpo", total=40)
    _feed(rising, [1.0 + 0.02 * i for i in range(6)], [1.0] * 6)  # training reward flat, held-out rising
    assert rising.verdict().state == "learning" and "held-out reward" in rising.verdict().reason
    gamed = HealthMonitor("ddpo", total=40)
    _feed(gamed, [1.0, 1.3, 1.2, 1.0, 0.9, 0.8], [1.0, 1.2, 1.4, 1.6, 1.8, 2.0])
    verdict = gamed.verdict()
    assert verdict.state == "over_optimising" and verdict.numbers["held_out_best"] == 1.3
