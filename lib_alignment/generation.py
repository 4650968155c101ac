"""The generation backend every feature uses: images from explicit initial latents.

A backend takes prompts and unit-variance initial noise of shape
[n, C, H/8, W/8] and returns the n images and their final latents in one batched
call. Rank & Refine moves that noise; trainers sample from it. The diffusers
implementation lives here; the WebUI one (through A1111's own sampler) sits
behind the facade in `lib_alignment.webui`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch
from PIL import Image

from .samplers import ANCESTRAL_SAMPLERS, SAMPLERS  # noqa: F401 - re-exported: the names live without torch

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class GenerationSettings:
    """Everything but the noise that decides an image."""

    prompt: str = ""
    negative_prompt: str = ""
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    sampler: str = "DDIM"
    #: Seeds the per-step noise of ancestral samplers (fixed per candidate, so results repeat).
    noise_seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def with_(self, **changes: Any) -> GenerationSettings:
        return replace(self, **changes)

    def validate(self, samplers: Collection[str] | None = None) -> None:
        """Raise ValueError naming every bad field. samplers: the backend's names (None: any non-empty name,
        so WebUI samplers such as "LMS" pass; DiffusersBackend checks against SAMPLERS)."""
        problems = []
        if self.steps < 1:
            problems.append(f"steps must be ≥ 1 (got {self.steps})")
        if self.width % 8 or self.height % 8 or self.width <= 0 or self.height <= 0:
            problems.append(f"width and height must be positive multiples of 8 (got {self.width}×{self.height})")
        if self.cfg_scale < 0:
            problems.append(f"cfg_scale must be ≥ 0 (got {self.cfg_scale})")
        if not self.sampler or (samplers is not None and self.sampler not in samplers):
            problems.append(f"sampler {self.sampler!r} is not one of {list(samplers or SAMPLERS)}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class GenerationResult:
    images: list[Image.Image]
    #: Final (denoised) latents, [n, C, H/8, W/8], in the model's latent space (unscaled).
    latents: torch.Tensor


class GenerationBackend(Protocol):
    """What Rank & Refine and the trainers need from an image generator."""

    #: Short name of the loaded model, for infotexts and file names.
    model_name: str

    def latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
        """(C, H/8, W/8) for an image of this size."""
        ...

    def default_size(self) -> int:
        """The model's native resolution in pixels."""
        ...

    def generate(
        self,
        settings: GenerationSettings,
        initial_latents: torch.Tensor,
        prompts: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> GenerationResult:
        """Generate len(initial_latents) images in one batch; same inputs give the same pixels."""
        ...


def noise_from_seed(seed: int, shape: Sequence[int]) -> torch.Tensor:
    """Unit-variance noise from a seed, drawn on the CPU as A1111 does with its CPU RNG source."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32)


def batch_prompts(
    backend: GenerationBackend, settings: GenerationSettings, initial_latents: torch.Tensor, prompts: Sequence[str] | None
) -> list[str]:
    """One prompt per latent, after checking the latents fit the settings' size; any backend's generate() starts here."""
    n = initial_latents.shape[0]
    expected = (n, *backend.latent_shape(settings.width, settings.height))
    if tuple(initial_latents.shape) != expected:
        raise ValueError(f"initial latents have shape {tuple(initial_latents.shape)}, expected {expected}")
    prompt_list = list(prompts) if prompts is not None else [settings.prompt] * n
    if len(prompt_list) != n:
        raise ValueError(f"{len(prompt_list)} prompts for {n} latents")
    return prompt_list


class DiffusersBackend:
    """GenerationBackend over a diffusers Stable Diffusion (or SDXL) pipeline."""

    def __init__(self, pipe: Any, model_name: str = "model") -> None:
        self.pipe = pipe
        self.model_name = model_name
        self._lock = threading.Lock()

    @property
    def vae_scale(self) -> int:
        return getattr(self.pipe, "vae_scale_factor", 8)

    def latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
        return (self.pipe.unet.config.in_channels, height // self.vae_scale, width // self.vae_scale)

    def default_size(self) -> int:
        return int(self.pipe.unet.config.sample_size) * self.vae_scale

    def sampler_names(self) -> list[str]:
        return list(SAMPLERS)

    def _scheduler(self, sampler: str) -> Any:
        import diffusers

        cls = getattr(diffusers, SAMPLERS[sampler])
        return cls.from_config(self.pipe.scheduler.config)

    def generate(
        self,
        settings: GenerationSettings,
        initial_latents: torch.Tensor,
        prompts: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> GenerationResult:
        settings.validate(SAMPLERS)
        prompt_list = batch_prompts(self, settings, initial_latents, prompts)
        n = len(prompt_list)
        unet = self.pipe.unet
        latents = initial_latents.to(device=unet.device, dtype=unet.dtype)
        # One generator per image, all seeded alike: an ancestral sampler's step noise is then the same for
        # every candidate and independent of its batch position, so an image regenerated alone matches.
        generators = [torch.Generator(device="cpu").manual_seed(settings.noise_seed) for _ in range(n)]

        def on_step_end(_pipe: Any, step: int, _t: Any, kwargs: dict) -> dict:
            if progress is not None:
                progress(step + 1, settings.steps)
            return kwargs

        with self._lock:
            original = self.pipe.scheduler
            self.pipe.scheduler = self._scheduler(settings.sampler)
            try:
                with torch.inference_mode():
                    out = self.pipe(
                        prompt=prompt_list,
                        negative_prompt=[settings.negative_prompt] * n if settings.negative_prompt else None,
                        num_inference_steps=settings.steps,
                        guidance_scale=settings.cfg_scale,
                        width=settings.width,
                        height=settings.height,
                        latents=latents,
                        generator=generators,
                        output_type="latent",
                        callback_on_step_end=on_step_end,
                    )
                    final = out.images
                    images = self.decode(final)
            finally:
                self.pipe.scheduler = original
        return GenerationResult(images=images, latents=final.detach().float().cpu())

    def decode(self, latents: torch.Tensor) -> list[Image.Image]:
        """Latents → PIL images through the pipeline's VAE (upcast where the VAE needs fp32)."""
        vae = self.pipe.vae
        needs_upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
        dtype = torch.float32 if needs_upcast else vae.dtype
        if needs_upcast:
            vae.to(torch.float32)
        try:
            with torch.inference_mode():
                decoded = vae.decode(latents.to(vae.device, dtype) / vae.config.scaling_factor, return_dict=False)[0]
        finally:
            if needs_upcast:
                vae.to(torch.float16)
        return self.pipe.image_processor.postprocess(decoded.float(), output_type="pil")
