"""GenerationBackend over the WebUI's own txt2img processing (A1111 / Forge)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from . import webui_facade as webui
from .generation import GenerationResult, GenerationSettings, ProgressCallback, batch_prompts


def largest_divisor_at_most(n: int, limit: int) -> int:
    """Batch size for n candidates: all in one batch if the WebUI allows, else equal batches."""
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


class WebUIBackend:
    """Generates through `processing.process_images`, so the WebUI's model, VAE, LoRAs and samplers apply."""

    #: SD1/SD2/SDXL all use 4 latent channels and an 8× VAE, as the WebUI itself assumes.
    latent_channels = 4
    vae_scale = 8

    @property
    def model_name(self) -> str:
        checkpoint = webui.loaded_checkpoint()
        return checkpoint.name if checkpoint else "unknown"

    def latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
        return (self.latent_channels, height // self.vae_scale, width // self.vae_scale)

    def default_size(self) -> int:
        return webui.native_size()

    def sampler_names(self) -> list[str]:
        return webui.sampler_names()

    def generate(
        self,
        settings: GenerationSettings,
        initial_latents: torch.Tensor,
        prompts: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> GenerationResult:
        prompt_list = batch_prompts(self, settings, initial_latents, prompts)
        n = len(prompt_list)
        images, latents = webui.txt2img_with_initial_noise(
            prompts=prompt_list,
            negative_prompt=settings.negative_prompt,
            initial_noise=initial_latents,
            noise_seed=settings.noise_seed,
            steps=settings.steps,
            cfg_scale=settings.cfg_scale,
            width=settings.width,
            height=settings.height,
            sampler_name=settings.sampler,
            batch_size=largest_divisor_at_most(n, webui.max_batch_size()),
            extra_params=dict(settings.extra) or None,
        )
        if progress is not None:
            progress(settings.steps, settings.steps)
        return GenerationResult(images=images, latents=latents)

    def info(self) -> dict[str, Any]:
        return {"host": webui.host_name(), "model": self.model_name}
