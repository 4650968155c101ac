"""Preview images from fixed prompts and seeds, through the project's generation backend.

The same prompts and seeds at every sampling step make previews comparable over
a run. Sampling runs in eval mode (no LoRA dropout) and inside
`torch.random.fork_rng`, so it never changes the training's random stream: a
run with previews ends with the same weights as one without.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch

from ..generation import DiffusersBackend, GenerationSettings, noise_from_seed
from ..paths import atomic_save_image


class PreviewSampler:
    def __init__(
        self,
        pipe: Any,
        prompts: Sequence[str],
        seeds: Sequence[int],
        resolution: int,
        steps: int,
        cfg_scale: float,
        sampler: str,
        model_name: str = "model",
    ) -> None:
        self.backend = DiffusersBackend(pipe, model_name=model_name)
        self.prompts = list(prompts)
        self.seeds = list(seeds)
        self.settings = GenerationSettings(steps=steps, cfg_scale=cfg_scale, width=resolution, height=resolution, sampler=sampler)
        self.settings.validate()

    def generate(self, prompts: Sequence[str] | None = None, seeds: Sequence[int] | None = None, autocast: AbstractContextManager | None = None) -> list[Any]:
        """One image per (prompt, seed), prompts outermost."""
        prompts = list(prompts if prompts is not None else self.prompts)
        seeds = list(seeds if seeds is not None else self.seeds)
        pairs = [(p, s) for p in prompts for s in seeds]
        if not pairs:
            return []
        shape = self.backend.latent_shape(self.settings.width, self.settings.height)
        latents = torch.stack([noise_from_seed(seed, shape) for _, seed in pairs])
        pipe = self.backend.pipe
        modules = [m for m in (pipe.unet, getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None)) if m is not None]
        modes = [m.training for m in modules]
        devices = [pipe.unet.device]
        with torch.random.fork_rng(devices=[d for d in devices if d.type == "cuda"]):
            for m in modules:
                m.eval()
            try:
                with autocast or nullcontext():
                    result = self.backend.generate(self.settings, latents, prompts=[p for p, _ in pairs])
            finally:
                for m, mode in zip(modules, modes):
                    m.train(mode)
        return result.images

    def save(self, folder: Path, step: int, autocast: AbstractContextManager | None = None) -> list[Path]:
        images = self.generate(autocast=autocast)
        paths = []
        for i, image in enumerate(images):
            prompt_index, seed_index = divmod(i, len(self.seeds))
            path = folder / f"step-{step:06d}-p{prompt_index}-s{self.seeds[seed_index]}.png"
            atomic_save_image(image, path)
            paths.append(path)
        return paths
