"""The tiny model's training script: the shape-contrast term that taught "circle" and "square" apart.

Runs on the seeded random tiny components (no shipped weights needed), a batch of four scenes at 128 px.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import torch

from lib_alignment import toyworld
from lib_alignment.models.tiny import build_components

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import train_tiny_model as training  # noqa: E402


def test_other_shape_caption_swaps_only_the_shape_word():
    generator = torch.Generator().manual_seed(0)
    swaps = {training.other_shape_caption("a red circle on a circle-free blue background", "circle", generator) for _ in range(20)}
    assert swaps == {
        "a red square on a circle-free blue background",
        "a red triangle on a circle-free blue background",
    }  # both other shapes come up; words that merely contain the shape are left alone
    assert training.other_shape_caption("a red circle", "square", generator) is None  # caption without its shape
    assert training.other_shape_caption("", "square", generator) is None  # the empty (CFG) caption


def _batch(components: dict, seed: int = 0):
    rng = random.Random(seed)
    scenes = [toyworld.Scene(shape=shape, color="red", background="blue") for shape in ("circle", "square", "triangle", "circle")]
    captioner = training.Captioner(components["tokenizer"], seed)
    texts = [scene.caption() for scene in scenes]
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(len(scenes), 4, 16, 16, generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    t = torch.tensor([rng.randrange(200, 800) for _ in scenes])
    noisy = components["scheduler"].add_noise(latents, noise, t)
    return scenes, texts, captioner, noisy, noise, t


def _margin(components: dict, scenes, texts, captioner, noisy, noise, t) -> float:
    """Mean over the batch of (error with another shape's caption) − (error with the true caption)."""
    unet, text_encoder = components["unet"], components["text_encoder"]
    with torch.no_grad():
        true = unet(noisy, t, text_encoder(captioner.batch(texts))[0]).sample
        generator = torch.Generator().manual_seed(1)
        swapped = [training.other_shape_caption(text, s.shape, generator) for s, text in zip(scenes, texts)]
        wrong = unet(noisy, t, text_encoder(captioner.batch(swapped))[0]).sample
    return float(((wrong - noise).pow(2).mean(dim=(1, 2, 3)) - (true - noise).pow(2).mean(dim=(1, 2, 3))).mean())


def test_shape_contrast_steps_make_the_true_shape_word_denoise_better():
    torch.manual_seed(0)
    components = build_components(seed=3)
    unet, text_encoder = components["unet"], components["text_encoder"]
    scenes, texts, captioner, noisy, noise, t = _batch(components)
    before = _margin(components, scenes, texts, captioner, noisy, noise, t)
    params = [p for m in (unet, text_encoder) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    for step in range(4):
        hidden = text_encoder(captioner.batch(texts))[0]
        per_sample = (unet(noisy, t, hidden).sample - noise).pow(2).mean(dim=(1, 2, 3))
        loss = training.shape_contrast_loss(
            unet, text_encoder, captioner, scenes, texts, noisy, noise, t, per_sample, torch.Generator().manual_seed(step)
        )
        assert loss.requires_grad and loss.item() > 0
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _margin(components, scenes, texts, captioner, noisy, noise, t)
    assert after > before + 1e-3, (before, after)  # the term pushes the captions' shapes apart, not together


def test_shape_contrast_is_zero_when_no_caption_names_its_shape():
    components = build_components(seed=3)
    scenes, _, captioner, noisy, noise, t = _batch(components)
    per_sample = torch.ones(len(scenes), requires_grad=True)
    loss = training.shape_contrast_loss(
        components["unet"], components["text_encoder"], captioner, scenes, [""] * len(scenes), noisy, noise, t,
        per_sample, torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert float(loss) == 0.0


def test_readme_of_a_continued_run_lists_every_phase_in_order(tmp_path: Path):
    first = tmp_path / "first"
    first.mkdir()
    (first / "README.md").write_text(
        "Rebuild it with:\n\n    python tools/train_tiny_model.py --device cpu --seed 0 --steps 8000 --threads 1\n"
    )
    stats = {
        "parameters": {"unet": 1, "vae": 2, "text_encoder": 3}, "device": "cpu", "scaling_factor": 0.3,
        "vae_seconds": 60.0, "unet_seconds": 60.0, "vae_reconstruction_loss": 0.1, "diffusion_loss": 0.05,
        "size_bytes": 10**6,
    }  # fmt: skip
    second = tmp_path / "second"
    second.mkdir()
    training.write_readme(second, training.parse_args(["--steps", "1500", "--shape-contrast", "0.02", "--init-from", str(first)]), stats)
    third = tmp_path / "third"
    third.mkdir()
    training.write_readme(third, training.parse_args(["--steps", "1200", "--init-from", str(second)]), stats)
    commands = [line.strip() for line in (third / "README.md").read_text().splitlines() if "train_tiny_model.py" in line]
    assert commands == [
        "python tools/train_tiny_model.py --device cpu --seed 0 --steps 8000 --threads 1 --output PHASE1",
        "python tools/train_tiny_model.py --device cpu --seed 0 --steps 1500 --shape-contrast 0.02 --init-from PHASE1 --output PHASE2",
        "python tools/train_tiny_model.py --device cpu --seed 0 --steps 1200 --init-from PHASE2",
    ]
