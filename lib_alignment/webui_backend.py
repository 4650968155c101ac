"""GenerationBackend over the WebUI's own txt2img processing (A1111 / Forge)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from . import webui_facade as webui
from .generation import GenerationResult, GenerationSettings, ProgressCallback, batch_prompts, load_init_image


def largest_divisor_at_most(n: int, limit: int) -> int:
    """Batch size for n candidates: all in one batch if the WebUI allows, else equal batches."""
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def txt2img_params(settings: GenerationSettings) -> dict[str, Any] | None:
    """txt2img's extra fields: the settings' own `extra`, plus A1111's hires-fix fields when hires is on."""
    params = dict(settings.extra)
    if settings.is_hires:
        params.update(
            enable_hr=True,
            hr_scale=float(settings.hires_scale),
            hr_upscaler=settings.hires_upscaler,
            denoising_strength=float(settings.hires_denoising),
            hr_second_pass_steps=int(settings.hires_steps),
        )
    return params or None


class WebUIBackend:
    """Generates through `processing.process_images`, so the WebUI's model, VAE, LoRAs and samplers apply."""

    #: SD1/SD2/SDXL all use 4 latent channels and an 8× VAE, as the WebUI itself assumes (A1111's opt_C,
    #: opt_f; SDXL's conditioning dict and size embeddings stay inside the WebUI's own processing).
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
        settings.validate()
        n = len(prompt_list)
        common = dict(
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
        )
        if settings.is_img2img:
            init = load_init_image(settings.init_image, settings.width, settings.height)
            images, latents = webui.img2img_with_initial_noise(
                init_image=init,
                denoising_strength=settings.denoising_strength,
                extra_params=dict(settings.extra) or None,
                **common,
            )
        else:
            images, latents = webui.txt2img_with_initial_noise(extra_params=txt2img_params(settings), **common)
        if progress is not None:
            progress(settings.steps, settings.steps)
        return GenerationResult(images=images, latents=latents)

    def info(self) -> dict[str, Any]:
        return {"host": webui.host_name(), "model": self.model_name}
