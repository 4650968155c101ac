"""DDPO's inputs: prompt lists, files and templates; rewards as adapters over the Rank & Refine oracles."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from lib_alignment.training.ddpo.prompts import WORD_LISTS, PromptSource, fix_articles
from lib_alignment.training.ddpo.rewards import make_reward


def test_templates_fill_slots_and_articles_reproducibly():
    source = PromptSource(["a(n) [animal]", "a [red|blue] [shape]"])
    drawn = source.draw(40, torch.Generator().manual_seed(0))
    assert drawn == source.draw(40, torch.Generator().manual_seed(0))
    animals = [p for p in drawn if not p.endswith(WORD_LISTS["shape"])]
    assert animals and all(p.split()[1] in WORD_LISTS["animal"] for p in animals)
    assert all(p.split()[0] == ("an" if p.split()[1][0] in "aeiou" else "a") for p in animals)
    shapes = [p for p in drawn if p not in animals]
    assert {p.split()[1] for p in shapes} == {"red", "blue"}
    assert fix_articles('A(n) owl, a(n) "eagle" and a(n) cat') == 'An owl, an "eagle" and a cat'
    assert source[0] == {"caption": "a cat"} and len(source) == 2


def test_prompt_files_skip_comments_and_bad_input_is_named(tmp_path: Path):
    file = tmp_path / "prompts.txt"
    file.write_text("# animals\na cat\n\n  a(n) [animal] on a [color] background  \n", encoding="utf-8")
    source = PromptSource([str(file), "a red circle"])
    assert [t.text for t in source.templates] == ["a cat", "a(n) [animal] on a [color] background", "a red circle"]
    with pytest.raises(ValueError, match="missing.txt does not exist"):
        PromptSource([str(tmp_path / "missing.txt")])
    bad = tmp_path / "bad.txt"
    bad.write_text("a dog\na [animl]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:2 'a \[animl\]': unknown template slot \[animl\]"):
        PromptSource([str(bad)])
    (tmp_path / "empty.txt").write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.txt: no prompts"):
        PromptSource([str(tmp_path / "empty.txt")])
    with pytest.raises(ValueError, match="at least one prompt"):
        PromptSource(["  "])


def _jpeg_kb(image: Image.Image) -> float:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.tell() / 1000.0


def test_jpeg_rewards_are_the_file_size_in_kb_with_both_signs():
    flat = Image.new("RGB", (64, 64), (120, 30, 200))
    noisy = Image.fromarray((torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8).numpy())
    compress, incompress = make_reward("jpeg_compressibility"), make_reward("jpeg_incompressibility")
    got = compress([flat, noisy], ["p", "q"])
    torch.testing.assert_close(got, torch.tensor([-_jpeg_kb(flat), -_jpeg_kb(noisy)]))
    torch.testing.assert_close(incompress([flat, noisy], ["p", "q"]), -got)
    assert float(got[0]) > float(got[1])


def test_callable_reward_is_called_once_per_prompt_and_keeps_the_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "my_rewards.py").write_text(
        "CALLS = []\n"
        "def score(images, prompt):\n"
        "    CALLS.append((prompt, len(images)))\n"
        "    return [len(prompt) + image.size[0] for image in images]\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reward = make_reward("my_rewards:score")
    images = [Image.new("RGB", (s, s)) for s in (8, 16, 24)]
    values = reward(images, ["ab", "abcd", "ab"])
    assert values.tolist() == [10.0, 20.0, 26.0]
    assert sys.modules["my_rewards"].CALLS == [("ab", 2), ("abcd", 1)]
    with pytest.raises(ValueError, match="reward 'my_rewards:nothing'.*no attribute"):
        make_reward("my_rewards:nothing")


def test_aesthetic_without_local_files_says_what_to_give(tmp_path: Path):
    with pytest.raises(ValueError, match=r"never downloaded: --reward aesthetic:/path/.*clip-vit-large-patch14"):
        make_reward("aesthetic")
    with pytest.raises(FileNotFoundError, match="aesthetic predictor weights .*missing.pth"):
        make_reward(f"aesthetic:{tmp_path / 'missing.pth'},{tmp_path}")
    with pytest.raises(ValueError, match="unknown oracle"):
        make_reward("jpeg_compressability")


def test_preference_reward_learns_the_ranked_colour_from_toy_pairs(tmp_path: Path):
    """Fitted on pairs preferring red shapes, it scores held-out red variants above the others."""
    from lib_alignment.toyworld import render
    from lib_alignment.training.data.synthetic import make_toy_pairs
    from lib_alignment.training.ddpo.preference_reward import PreferenceReward

    pairs = make_toy_pairs(tmp_path / "pairs", 24, preferred="red", resolution=64, seed=0)
    reward = make_reward(f"preference:{pairs}")
    assert isinstance(reward.oracle, PreferenceReward) and reward.oracle.train_accuracy >= 0.9
    import dataclasses
    import random

    from lib_alignment.toyworld import sample_scene

    rng = random.Random(123)
    wins = 0
    for _ in range(12):
        scene = sample_scene(rng)
        background = "white" if scene.background == "red" else scene.background
        red = render(dataclasses.replace(scene, color="red", background=background), 64)
        other = render(dataclasses.replace(scene, color="green" if background != "green" else "blue", background=background), 64)
        scores = reward([red, other], ["p", "p"])
        wins += int(scores[0] > scores[1])
    assert wins >= 10
