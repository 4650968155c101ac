"""Before/after grid: the same prompts and seeds without and with a trained LoRA.

Standalone app: the LoRA is merged into the app's pipeline for the "after"
images and the original weights are put back exactly (copies of the touched
layers), under the generation lock so no other image sees the merged model.
WebUI: the "after" prompts carry <lora:NAME:WEIGHT>, so the WebUI's own Lora
extension applies it, as in txt2img.
"""

from __future__ import annotations

import contextlib
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont

from ..generation import GenerationSettings, noise_from_seed
from ..paths import atomic_save_image

PREFERRED_SAMPLERS = ("DPM++ 2M", "DDIM", "Euler")
MAX_CELL = 256


@contextlib.contextmanager
def lora_merged(pipe: Any, path: Path, weight: float = 1.0) -> Iterator[int]:
    """Merge a kohya LoRA file into the pipeline's layers for the duration; restores the exact weights."""
    from safetensors import safe_open

    from ..lora_apply import _kohya_module_index, merge_kohya_lora

    with safe_open(str(path), framework="pt") as handle:
        bases = {key.split(".", 1)[0] for key in handle.keys()}  # noqa: SIM118 - safe_open is not a dict
    modules = _kohya_module_index(pipe)
    saved = {base: modules[base].weight.detach().clone() for base in bases if base in modules}
    try:
        yield merge_kohya_lora(pipe, path, weight)
    finally:
        with torch.no_grad():
            for base, weight_copy in saved.items():
                modules[base].weight.copy_(weight_copy)


def pick_sampler(names: Sequence[str]) -> str:
    for name in PREFERRED_SAMPLERS:
        if name in names:
            return name
    return next(iter(names), "DDIM")


def _generate(backend: Any, settings: GenerationSettings, prompts: list[str], seeds: list[int]) -> list[Image.Image]:
    shape = backend.latent_shape(settings.width, settings.height)
    noise = torch.stack([noise_from_seed(seed, shape) for _ in prompts for seed in seeds])
    prompt_list = [prompt for prompt in prompts for _ in seeds]
    return list(backend.generate(settings, noise, prompts=prompt_list).images)


def before_after_images(
    backend: Any,
    lora_path: Path,
    lora_name: str,
    prompts: Sequence[str],
    seeds: Sequence[int],
    in_webui: bool,
    weight: float = 1.0,
    steps: int = 20,
    cfg_scale: float = 7.0,
    negative_prompt: str = "",
    size: int | None = None,
) -> tuple[list[Image.Image], list[Image.Image]]:
    """(before, after) images, prompt-major: prompt 0 with every seed, then prompt 1...

    size: width and height in pixels (default: the model's own)."""
    prompts = [p for p in (p.strip() for p in prompts) if p]
    seeds = [int(s) for s in seeds]
    if not prompts or not seeds:
        raise ValueError("give at least one prompt and one seed")
    if not Path(lora_path).is_file():
        raise FileNotFoundError(f"LoRA file {lora_path} does not exist")
    size = int(size or backend.default_size())
    names = backend.sampler_names() if hasattr(backend, "sampler_names") else []
    settings = GenerationSettings(
        negative_prompt=negative_prompt,
        steps=steps,
        cfg_scale=cfg_scale,
        width=size,
        height=size,
        sampler=pick_sampler(names),
    )
    if in_webui:
        before = _generate(backend, settings, prompts, seeds)
        tagged = [f"{p} <lora:{lora_name}:{weight:g}>" for p in prompts]
        after = _generate(backend, settings, tagged, seeds)
        return before, after
    from .. import webui_facade

    with webui_facade.queue_lock():  # outside the WebUI: the app's generation lock
        before = _generate(backend, settings, prompts, seeds)
        with lora_merged(backend.pipe, Path(lora_path), weight):
            after = _generate(backend, settings, prompts, seeds)
    return before, after


def grid_image(
    before: Sequence[Image.Image],
    after: Sequence[Image.Image],
    prompts: Sequence[str],
    seeds: Sequence[int],
    title: str = "",
) -> Image.Image:
    """Rows: each prompt before and after; columns: seeds."""
    prompts = [p for p in (p.strip() for p in prompts) if p]
    cols = len(seeds)
    cell = min(MAX_CELL, max(im.width for im in before))
    label_w, head_h = 170, 34 if title else 20
    width = label_w + cols * cell
    height = head_h + 2 * len(prompts) * cell
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    if title:
        draw.text((6, 4), title, fill=(20, 20, 20), font=font)
    for c, seed in enumerate(seeds):
        draw.text((label_w + c * cell + 6, head_h - 14), f"seed {seed}", fill=(60, 60, 60), font=font)
    for p, prompt in enumerate(prompts):
        for half, (images, label) in enumerate(((before, "before"), (after, "after (LoRA)"))):
            row_top = head_h + (2 * p + half) * cell
            draw.text((6, row_top + 6), label, fill=(20, 20, 20) if half == 0 else (180, 60, 20), font=font)
            for line_no, line in enumerate(textwrap.wrap(prompt, 26)[:6]):
                draw.text((6, row_top + 24 + 12 * line_no), line, fill=(90, 90, 90), font=font)
            for c in range(cols):
                image = images[p * cols + c].convert("RGB")
                if image.width != cell:
                    image = image.resize((cell, round(image.height * cell / image.width)), Image.BICUBIC)
                grid.paste(image, (label_w + c * cell, row_top))
    return grid


def save_grid(grid: Image.Image, folder: Path) -> Path:
    path = folder / f"grid-{time.strftime('%Y%m%d-%H%M%S')}.png"
    atomic_save_image(grid, path)
    return path
