"""Blind A/B evaluation: Wilson interval, hidden sides, oracle picks, saved result, and the evaluate CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lib_alignment.training.ab_test import ABTest, wilson_interval


def test_wilson_interval_matches_the_closed_form():
    low, high = wilson_interval(8, 10)
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_sides_are_hidden_by_a_seeded_coin_and_picks_count_for_the_right_image():
    test = ABTest.create("x.safetensors", 1.0, ["p1", "p2"], list(range(8)), shuffle_seed=3)
    sides = [p.lora_left for p in test.pairs]
    assert any(sides) and not all(sides)  # both orders occur
    assert sides == [p.lora_left for p in ABTest.create("x.safetensors", 1.0, ["p1", "p2"], list(range(8)), shuffle_seed=3).pairs]
    for pair in test.pairs:  # the judge always clicks the LoRA's side on p1, the base's on p2, skips one
        lora_side = "left" if pair.lora_left else "right"
        base_side = "right" if pair.lora_left else "left"
        test.record(pair.index, lora_side if pair.prompt == "p1" else base_side)
    test.record(15, "skip")
    summary = test.summary()
    assert (summary["judged"], summary["lora_wins"], summary["skipped"]) == (15, 8, 1)
    assert summary["per_prompt"]["p1"] == {"lora": 8, "base": 0, "skipped": 0, "open": 0}
    assert summary["per_prompt"]["p2"]["base"] == 7
    with pytest.raises(ValueError):
        test.record(0, "both")


def test_an_oracle_judges_blind_and_the_result_lands_beside_the_lora(tmp_path: Path):
    from lib_alignment.oracles import make_oracle

    lora = tmp_path / "taste.safetensors"
    lora.write_bytes(b"")
    (tmp_path / "taste.json").write_text(json.dumps({"notes": "finished"}))
    red, blue = Image.new("RGB", (8, 8), (220, 30, 30)), Image.new("RGB", (8, 8), (30, 60, 220))
    test = ABTest.create(str(lora), 0.8, ["a square"], [1, 2, 3, 4, 5, 6], shuffle_seed=0)
    test.judge_with(make_oracle("color:red"), base=[blue] * 6, lora=[red] * 6)
    assert test.summary()["win_rate"] == 1.0
    saved = json.loads(test.save().read_text())["results"]
    assert len(saved) == 1 and saved[0]["summary"]["lora_wins"] == 6 and len(saved[0]["pairs"]) == 6
    assert saved[0]["summary"]["judge"] == "color:red" and saved[0]["images"] is None
    notes = json.loads((tmp_path / "taste.json").read_text())["notes"]
    assert notes.startswith("finished\nA/B (") and "6 of 6" in notes
    second = ABTest.create(str(lora), 1.0, ["a square"], [7], shuffle_seed=1)
    second.judge_with(make_oracle("color:blue"), base=[blue], lora=[red])
    second.save()  # a second evaluation is kept beside the first; the card shows the latest
    notes = json.loads((tmp_path / "taste.json").read_text())["notes"]
    assert notes.count("A/B (") == 1 and "0 of 1" in notes and "[2 comparisons in taste.alignment-compare.json]" in notes
    from lib_alignment.training.ab_test import saved_results

    (tmp_path / "old.ab.json").write_text(json.dumps({"summary": {"lora": "old", "win_rate": 0.5}, "pairs": []}))
    (tmp_path / "broken.alignment-compare.json").write_text("{not json")
    listed = saved_results(tmp_path)
    assert [r["id"] for r in listed if r["id"] != "old.ab"] == [second.id, test.id]  # newest first
    assert {r["summary"]["lora"] for r in listed} == {str(lora), "old"}  # the older one-result files are read too
    broken = ABTest.create(str(tmp_path / "broken.safetensors"), 1.0, ["x"], [1])
    broken.save()  # an unreadable results file is moved aside, never overwritten
    assert len(list(tmp_path.glob("broken.alignment-compare.json.unreadable-*"))) == 1


@pytest.mark.slow
def test_evaluate_command_picks_by_the_judge_and_writes_pairs(tmp_path: Path, capsys):
    import torch

    from lib_alignment.cli import main
    from lib_alignment.training import TrainConfig, Trainer
    from lib_alignment.training.data.synthetic import make_toy_pairs

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = make_toy_pairs(tmp_path / "data", 4, resolution=32, seed=0)
        Trainer(TrainConfig(method="dpo", model="tiny-random", data=str(data), output_dir=str(tmp_path / "out"), name="ab",
                            resolution=32, batch_size=1, max_train_steps=2, learning_rate=5e-2, checkpoint_every=0, preview=False,
                            progress_bar=False, tensorboard=False, save_precision="fp32")).train()
        lora = tmp_path / "out" / "ab.safetensors"
        code = main(["evaluate", "--lora", str(lora), "--model", "tiny-random", "--prompts", "a circle", "a square",
                     "--seeds", "1", "2", "--steps", "3", "--judge", "brightness", "--pairs-out", str(tmp_path / "pairs")])
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    assert code == 0
    saved = json.loads((tmp_path / "out" / "ab.alignment-compare.json").read_text())["results"][-1]
    assert saved["summary"]["judge"] == "brightness" and saved["summary"]["judged"] + saved["summary"]["skipped"] == 4
    # every pick is the brighter image, wherever the LoRA's image was shown
    import csv

    rows = list(csv.DictReader((tmp_path / "pairs" / "pairs.csv").open()))
    assert len(rows) == saved["summary"]["judged"] >= 1  # the LoRA changed the images
    for row in rows:
        luma = [np.asarray(Image.open(tmp_path / "pairs" / row[k]).convert("L"), dtype=np.float64).mean() for k in ("image_0", "image_1")]
        assert luma[0] >= luma[1]
    assert "A/B (brightness" in out
