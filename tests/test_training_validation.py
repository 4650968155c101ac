"""Held-out split (no shared image or caption), held-out scoring, the best checkpoint and early stopping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lib_alignment.training.validation import Validator, choose_held_out, score_gains, split_dataset

RES = 32


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    from training_helpers import single_thread

    with single_thread():
        yield


def test_held_out_items_never_share_an_image_or_a_caption_with_training():
    # items 0-1 share an image, 1-2 a caption: one component of three; the others stand alone
    keys = [["image:a", "caption:x"], ["image:a", "caption:y"], ["image:b", "caption:y"]] + [[f"image:{i}", f"caption:{i}"] for i in range(3, 40)]
    for seed in range(20):
        held, note = choose_held_out(keys, 0.05, 4, seed)
        assert len(held) >= 4 and "holding out" in note
        trained = [k for i, item in enumerate(keys) if i not in held for k in item]
        assert not set(trained) & {k for i in held for k in keys[i]}


def test_small_data_trains_without_validation_and_says_why():
    held, note = choose_held_out([[f"image:{i}", f"caption:{i}"] for i in range(10)], 0.05, 4, 0)
    assert held == [] and "cannot spare 4" in note
    # one caption everywhere: no split without overlap
    held, note = choose_held_out([[f"image:{i}", "caption:same"] for i in range(40)], 0.05, 4, 0)
    assert held == [] and "share images or captions" in note


def test_split_of_real_pair_data_keeps_types_and_disjoint_captions(tmp_path: Path):
    from lib_alignment.training.data import load_preference_data
    from lib_alignment.training.data.synthetic import make_toy_pairs

    data = load_preference_data(make_toy_pairs(tmp_path, 40, resolution=RES, seed=3), method="dpo", resolution=RES)
    train, held, note = split_dataset(data, 0.05, 4, seed=0)
    assert held is not None and type(train) is type(data) and len(train) + len(held) == len(data), note
    assert not {r.caption for r in train.records} & {r.caption for r in held.records}
    assert not {r.preferred.key for r in train.records} & {r.preferred.key for r in held.records}


def test_scores_pairs_and_liked_disliked_images():
    pairs = torch.tensor([[0.3, 0.1], [0.2, 0.2], [0.0, 0.4]])  # right, tie, wrong
    accuracy, margin = score_gains(pairs, [{}] * 3, scale=10.0)
    assert accuracy == pytest.approx(0.5) and margin == pytest.approx(10.0 * (0.2 + 0.0 - 0.4) / 3)
    singles = torch.tensor([0.5, 0.1, 0.2, 0.3])
    infos = [{"label": 1.0}, {"label": 0.0}, {"label": 1.0}, {"label": 0.0}]
    accuracy, margin = score_gains(singles, infos, scale=1.0)
    assert accuracy == pytest.approx(3 / 4)  # liked 0.5 beats both; liked 0.2 beats 0.1 only
    assert margin == pytest.approx(0.35 - 0.2)


def test_early_stopping_counts_scores_without_a_new_best(monkeypatch):
    import lib_alignment.training.validation as validation

    scores = iter([(0.5, 0.0), (0.7, 1.0), (0.8, 2.0), (0.75, 2.5), (0.8, 3.0)])  # a tie with a larger margin is no new best
    monkeypatch.setattr(validation, "implicit_gains", lambda *a, **k: (None, []))
    monkeypatch.setattr(validation, "score_gains", lambda *a, **k: next(scores))
    validator = Validator([0] * 4, every=10, draws=1, seed=0, scale=1.0, patience=2)
    results = [validator.score(None, step) for step in (0, 10, 20, 30, 40)]
    assert [improved for _, improved in results] == [False, True, True, False, False]
    assert validator.best.step == 20 and validator.should_stop()


@pytest.mark.slow
def test_a_short_dpo_run_validates_keeps_the_best_and_gives_a_verdict(tmp_path: Path):
    from safetensors import safe_open

    from lib_alignment.training import TrainConfig, Trainer
    from lib_alignment.training.data.synthetic import make_toy_pairs
    from lib_alignment.training.events import read_events

    data = make_toy_pairs(tmp_path / "data", 40, preferred="red", resolution=RES, seed=5)
    config = TrainConfig(
        method="dpo", model="tiny-random", data=str(data), output_dir=str(tmp_path / "out"), name="run",
        resolution=RES, batch_size=2, max_train_steps=8, learning_rate=1e-3, cache_latents=True,
        validation_every=4, validation_draws=2, checkpoint_every=0, preview=False, progress_bar=False,
        tensorboard=False, save_precision="fp32",
    )
    result = Trainer(config).train()
    assert result.status == "finished"
    events = read_events(tmp_path / "alignment-runs" / "run" / "events.jsonl")  # the default run folder, beside out/
    validations = [e for e in events if e["event"] == "validation"]
    assert [v["step"] for v in validations] == [0, 4, 8]
    assert validations[0]["accuracy"] == 0.5 and validations[0]["margin"] == 0.0  # LoRA at init = base model
    assert all(v["count"] >= 4 for v in validations)
    steps = [e for e in events if e["event"] == "step"]
    assert all(e["grad_norm"] > 0 and "drift" in e and "reward_margin_std" in e for e in steps)
    health = [e for e in events if e["event"] == "health"]
    assert health and health[-1]["state"] in ("early", "learning", "not_learning", "over_optimising", "unstable")
    assert health[-1]["reason"]
    best_step = next(v["step"] for v in validations[1:] if v["accuracy"] == max(w["accuracy"] for w in validations[1:]))  # first of the best
    best = Path(result.outputs["best"])
    assert best.name == "run-best.safetensors" and best.parent == Path(result.outputs["lora"]).parent
    with safe_open(str(best), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["lib_alignment_heldout_step"] == str(best_step) and meta["ss_steps"] == str(best_step)
    assert float(meta["lib_alignment_heldout_accuracy"]) == pytest.approx(max(v["accuracy"] for v in validations[1:]), abs=1e-5)
    card = json.loads((tmp_path / "out" / "run-best.json").read_text())
    assert f"step {best_step}" in card["notes"]
    final_card = json.loads((tmp_path / "out" / "run.json").read_text())
    assert "held-out preference accuracy" in final_card["notes"] and "Verdict:" in final_card["notes"]
