"""Fake of modules.processing with A1111 v1.10.1's call order and signatures.

process_images → seeds/prompts set → p.init() → per batch: p.rng = ImageRNG(...) → p.sample(...).
The fake txt2img sample() draws x = self.rng.next() like the real one, runs a deterministic
"sampler" (two more rng.next() calls when the sampler is ancestral) and returns latents; images
are a fixed linear map of the latents, so pixels depend only on the noise and the settings.
With enable_hr, sample() ends in sample_hr_pass(samples, decoded_samples, ...), which upscales the
latents, draws fresh noise from a new ImageRNG of the seeds and returns the hires latents, as A1111's.
img2img: init() "encodes" init_images into init_latent (the inverse of the fake decode, pooled 8×, plus a
draw from the global torch RNG per image, as A1111's VAE posterior sampling);
sample() draws x = self.rng.next() and moves init_latent toward the sampler's result by
denoising_strength, so low strength keeps the init image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import rng, shared

opt_C = 4
opt_f = 8


@dataclass(repr=False)
class StableDiffusionProcessing:
    sd_model: object = None
    outpath_samples: str = None
    outpath_grids: str = None
    prompt: Any = ""
    negative_prompt: Any = ""
    seed: Any = -1
    sampler_name: str = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    extra_generation_params: dict = None
    override_settings: dict = None
    rng: Any = field(default=None, init=False)
    iteration: int = field(default=0, init=False)
    all_prompts: list = field(default=None, init=False)
    all_seeds: list = field(default=None, init=False)
    closed: bool = field(default=False, init=False)

    def init(self, all_prompts, all_seeds, all_subseeds):
        pass

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        raise NotImplementedError()

    def close(self):
        self.closed = True


@dataclass(repr=False)
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: str = None
    denoising_strength: float = 0.75
    hr_second_pass_steps: int = 0

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        x = self.rng.next()
        if self.sampler_name and self.sampler_name.endswith(" a"):
            x = x + 0.1 * self.rng.next() + 0.1 * self.rng.next()
        samples = _fake_sampler(self, x, prompts)
        if not self.enable_hr:
            return samples
        return self.sample_hr_pass(samples, None, seeds, subseeds, subseed_strength, prompts)

    def sample_hr_pass(self, samples, decoded_samples, seeds, subseeds, subseed_strength, prompts):
        upscaled = torch.nn.functional.interpolate(samples, scale_factor=float(self.hr_scale), mode="bilinear")
        self.rng = rng.ImageRNG(upscaled.shape[1:], seeds)
        return torch.tanh(upscaled + self.denoising_strength * 0.1 * self.rng.next())


def _fake_sampler(p, x, prompts):
    shade = torch.tensor([len(q) % 7 for q in prompts], dtype=torch.float32).view(-1, 1, 1, 1)
    return torch.tanh(x * (p.cfg_scale / 7.0) + 0.05 * shade + 0.01 * p.steps)


@dataclass(repr=False)
class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    init_images: list = None
    resize_mode: int = 0
    denoising_strength: float = 0.75
    init_latent: Any = field(default=None, init=False)

    def init(self, all_prompts, all_seeds, all_subseeds):
        image = self.init_images[0].convert("RGB").resize((self.width, self.height))
        rgb = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
        pooled = torch.nn.functional.avg_pool2d(rgb, opt_f)
        latent = torch.cat([pooled, torch.zeros_like(pooled[:, :1])], dim=1)
        # A1111 samples the VAE posterior once per image, with the global torch RNG (not the seeds).
        self.init_latent = torch.cat([latent + 0.05 * torch.randn_like(latent) for _ in range(self.batch_size)])

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        x = self.rng.next()
        s = float(self.denoising_strength)
        return (1 - s) * self.init_latent + s * _fake_sampler(self, x, prompts)


@dataclass
class Processed:
    p: Any
    images: list
    seed: int = 0
    info: str = ""


def _decode(samples):
    rgb = torch.stack([samples[:, 0], samples[:, 1], samples[:, 2] - samples[:, 3]], dim=1)
    rgb = torch.nn.functional.interpolate(rgb, scale_factor=opt_f, mode="nearest")
    arrays = ((rgb.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in arrays]


def process_images(p):
    n = p.batch_size * p.n_iter
    p.all_prompts = p.prompt if isinstance(p.prompt, list) else [p.prompt] * n
    p.all_seeds = p.seed if isinstance(p.seed, list) else [int(p.seed) + i for i in range(n)]
    p.init(p.all_prompts, p.all_seeds, p.all_seeds)
    images = []
    for iteration in range(p.n_iter):
        p.iteration = iteration
        batch = slice(iteration * p.batch_size, (iteration + 1) * p.batch_size)
        prompts, seeds = p.all_prompts[batch], p.all_seeds[batch]
        p.rng = rng.ImageRNG((opt_C, p.height // opt_f, p.width // opt_f), seeds)
        samples = p.sample(None, None, seeds, seeds, 0.0, prompts)
        images.extend(_decode(samples))
        if shared.state.interrupted:
            break
    return Processed(p=p, images=images, seed=p.all_seeds[0])
