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
    #: img2img: the init image's file ("" = txt2img). It is resized to width×height; the refined noise is
    #: the noise img2img adds to its latent, and denoising_strength says how much of it is re-drawn.
    init_image: str = ""
    denoising_strength: float = 0.75
    #: Hires fix (txt2img only): > 1 upscales the first pass's latents by this factor and re-samples them
    #: with hires_denoising (hires_steps 0: as many steps as the first pass). The refined noise is the first
    #: pass's; the hires pass's noise comes from noise_seed, the same for every candidate.
    hires_scale: float = 0.0
    hires_denoising: float = 0.5
    hires_steps: int = 0
    hires_upscaler: str = "Latent"

    @property
    def is_img2img(self) -> bool:
        return bool(self.init_image)

    @property
    def is_hires(self) -> bool:
        return self.hires_scale > 1.0 and not self.is_img2img

    def output_size(self) -> tuple[int, int]:
        """(width, height) of the images made: hires fix scales the first pass's size (rounded as A1111 does)."""
        if not self.is_hires:
            return self.width, self.height
        return int(self.width * self.hires_scale) // 8 * 8, int(self.height * self.hires_scale) // 8 * 8

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
        if not 0.0 < self.denoising_strength <= 1.0:
            problems.append(f"denoising_strength must be in (0, 1] (got {self.denoising_strength})")
        if self.init_image and self.hires_scale > 1.0:
            problems.append("hires fix is for txt2img; an img2img run (init_image) cannot use hires_scale")
        if self.hires_scale and not 1.0 <= self.hires_scale <= 4.0:
            problems.append(f"hires_scale must be 0 (off) or in 1..4 (got {self.hires_scale})")
        if not 0.0 < self.hires_denoising <= 1.0:
            problems.append(f"hires_denoising must be in (0, 1] (got {self.hires_denoising})")
        if self.hires_steps < 0:
            problems.append(f"hires_steps must be ≥ 0 (got {self.hires_steps})")
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


def load_init_image(path: str, width: int, height: int) -> Image.Image:
    """img2img's init image as RGB at the run's size (A1111's resize mode 0, "Just resize")."""
    try:
        with Image.open(path) as image:
            image.load()
            rgb = image.convert("RGB")
    except (OSError, ValueError) as error:
        raise ValueError(f"init_image: cannot read {path}: {error}") from error
    return rgb if rgb.size == (width, height) else rgb.resize((width, height), Image.LANCZOS)


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
        init = load_init_image(settings.init_image, settings.width, settings.height) if settings.is_img2img else None
        with self._lock:
            if init is not None:
                final = self._img2img(settings, prompt_list, init, initial_latents, settings.denoising_strength, settings.steps, progress)
                first = final
            else:
                first = final = self._txt2img(settings, prompt_list, initial_latents, progress)
                if settings.is_hires:
                    final = self._hires_pass(settings, prompt_list, first, progress)
            images = self.decode(final)
        # Like the WebUI backend: with hires fix the latents are the first pass's (what the refined noise decides).
        return GenerationResult(images=images, latents=first.detach().float().cpu())

    def _generators(self, settings: GenerationSettings, n: int) -> list[torch.Generator]:
        # One generator per image, all seeded alike: an ancestral sampler's step noise is then the same for
        # every candidate and independent of its batch position, so an image regenerated alone matches.
        return [torch.Generator(device="cpu").manual_seed(settings.noise_seed) for _ in range(n)]

    def _common(self, settings: GenerationSettings, prompt_list: list[str], total: int, progress: ProgressCallback | None) -> dict:
        n = len(prompt_list)

        def on_step_end(_pipe: Any, step: int, _t: Any, kwargs: dict) -> dict:
            if progress is not None:
                progress(step + 1, total)
            return kwargs

        return {
            "prompt": prompt_list,
            "negative_prompt": [settings.negative_prompt] * n if settings.negative_prompt else None,
            "guidance_scale": settings.cfg_scale,
            "generator": self._generators(settings, n),
            "output_type": "latent",
            "callback_on_step_end": on_step_end,
        }

    def _txt2img(
        self, settings: GenerationSettings, prompt_list: list[str], initial_latents: torch.Tensor, progress: ProgressCallback | None
    ) -> torch.Tensor:
        unet = self.pipe.unet
        original = self.pipe.scheduler
        self.pipe.scheduler = self._scheduler(settings.sampler)
        try:
            with torch.inference_mode():
                return self.pipe(
                    num_inference_steps=settings.steps,
                    width=settings.width,
                    height=settings.height,
                    latents=initial_latents.to(device=unet.device, dtype=unet.dtype),
                    **self._common(settings, prompt_list, settings.steps, progress),
                ).images
        finally:
            self.pipe.scheduler = original

    def _img2img(
        self,
        settings: GenerationSettings,
        prompt_list: list[str],
        image: Any,
        noise: torch.Tensor,
        strength: float,
        steps: int,
        progress: ProgressCallback | None,
    ) -> torch.Tensor:
        """diffusers' img2img pipeline (SD or SDXL, sharing this pipeline's modules) with `noise` as the
        noise it adds to the init latent: the scheduler's add_noise gets ours instead of its own draw."""
        denoised_steps = min(int(steps * strength), steps)
        if denoised_steps < 1:
            raise ValueError(f"denoising strength {strength:g} × {steps} steps leaves no step to run; raise either")
        scheduler = self._scheduler(settings.sampler)
        own_add_noise = scheduler.add_noise
        unet = self.pipe.unet

        def add_given_noise(original: torch.Tensor, _drawn: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
            return own_add_noise(original, noise.to(device=original.device, dtype=original.dtype), timesteps)

        scheduler.add_noise = add_given_noise  # type: ignore[method-assign]
        img2img = self._img2img_pipeline(scheduler)
        with torch.inference_mode():
            return img2img(
                image=image if isinstance(image, torch.Tensor) else [image] * len(prompt_list),
                strength=strength,
                num_inference_steps=steps,
                **self._common(settings, prompt_list, denoised_steps, progress),
            ).images.to(unet.dtype)

    def _img2img_pipeline(self, scheduler: Any) -> Any:
        """The img2img pipeline of this pipeline's family over the same modules. Named directly: diffusers'
        AutoPipelineForImage2Image imports every pipeline, and some fail under A1111's transformers 4.30."""
        import inspect

        import diffusers

        name = "StableDiffusionXLImg2ImgPipeline" if "XL" in type(self.pipe).__name__ else "StableDiffusionImg2ImgPipeline"
        cls = getattr(diffusers, name)
        accepted = inspect.signature(cls.__init__).parameters
        parts = {key: value for key, value in self.pipe.components.items() if key in accepted}
        parts["scheduler"] = scheduler
        if "requires_safety_checker" in accepted:
            parts["requires_safety_checker"] = False
        pipe = cls(**parts)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _hires_pass(
        self, settings: GenerationSettings, prompt_list: list[str], first: torch.Tensor, progress: ProgressCallback | None
    ) -> torch.Tensor:
        """A1111's hires fix with its "Latent" upscaler: first-pass latents upscaled (bilinear), noised with
        noise_seed's noise (the same for every candidate) and re-sampled at hires_denoising."""
        width, height = settings.output_size()
        upscaled = torch.nn.functional.interpolate(
            first.float(), size=(height // self.vae_scale, width // self.vae_scale), mode="bilinear"
        ).to(first.dtype)
        noise = noise_from_seed(settings.noise_seed, upscaled.shape[1:]).unsqueeze(0).expand(len(prompt_list), -1, -1, -1)
        steps = settings.hires_steps or settings.steps
        # A1111 runs the requested number of hires steps: a schedule that long over the re-noised part.
        total = max(steps, int(steps / min(settings.hires_denoising, 0.999)))
        return self._img2img(settings, prompt_list, upscaled, noise, settings.hires_denoising, total, progress)

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
