"""Fake of Forge's modules.processing: A1111's signatures with Forge's model handling.

process_images → forge_model_reload() (p.sd_model = the loaded model) → per batch:
forge_objects reset from forge_objects_original, p.rng = ImageRNG(...), `<lora:NAME:W>` applied into
forge_objects_after_applying_lora and copied into forge_objects, then p.sample(...). txt2img
sample() draws x = self.rng.next(), copies forge_objects_after_applying_lora again, and "samples"
with a deterministic function of x, the settings and the LoRA weight its UNet patcher carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from backend import memory_management

from . import rng, sd_models, shared

opt_f = 8
LORA_TAG = re.compile(r"<lora:([^:>]+):([0-9.]+)>")


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
    modified_noise: Any = field(default=None, init=False)
    scripts: Any = field(default=None, init=False)
    closed: bool = field(default=False, init=False)

    def init(self, all_prompts, all_seeds, all_subseeds):
        pass

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        raise NotImplementedError()

    def close(self):
        self.closed = True


class DecodedSamples(list):
    already_decoded = True


@dataclass(repr=False)
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: str = None
    denoising_strength: float = 0.75
    hr_second_pass_steps: int = 0
    hr_additional_modules: list = None

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        x = self.rng.next()
        self.sd_model.forge_objects = self.sd_model.forge_objects_after_applying_lora.shallow_copy()
        if self.modified_noise is not None:
            x, self.modified_noise = self.modified_noise, None
        if self.sampler_name and self.sampler_name.endswith(" a"):
            x = x + 0.1 * self.rng.next() + 0.1 * self.rng.next()
        memory_management.load_models_gpu([self.sd_model.forge_objects.unet])  # Forge's sampling loads the UNet
        lora = float(self.sd_model.forge_objects.unet.lora_weight)
        shade = torch.tensor([len(p) % 7 for p in prompts], dtype=torch.float32).view(-1, 1, 1, 1)
        samples = torch.tanh(x * (self.cfg_scale / 7.0) + 0.05 * shade + 0.01 * self.steps + 0.3 * lora)
        if not self.enable_hr:
            return samples
        "Use same choices" in self.hr_additional_modules  # noqa: B015 - Forge's own test; None raises TypeError
        return self.sample_hr_pass(samples, None, seeds, subseeds, subseed_strength, prompts)

    def sample_hr_pass(self, samples, decoded_samples, seeds, subseeds, subseed_strength, prompts):
        """Forge's hires pass: upscaled latents, fresh ImageRNG noise, second sampling, then decoded images."""
        scale = int(self.hr_scale)
        upscaled = torch.nn.functional.interpolate(samples, scale_factor=scale, mode="nearest")
        self.rng = rng.ImageRNG(upscaled.shape[1:], seeds)
        second = torch.tanh(upscaled + self.denoising_strength * 0.1 * self.rng.next())
        return DecodedSamples(_decode_tensor(second))


@dataclass
class Processed:
    p: Any
    images: list
    seed: int = 0
    info: str = ""


def _decode_tensor(samples):
    rgb = torch.stack([samples[:, 0], samples[:, 1], samples[:, 2] - samples[:, 3]], dim=1)
    return list(torch.nn.functional.interpolate(rgb, scale_factor=opt_f, mode="nearest"))


def _decode(samples):
    rgb = torch.stack(list(samples)) if isinstance(samples, DecodedSamples) else torch.stack(_decode_tensor(samples))
    arrays = ((rgb.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in arrays]


def _activate_loras(model, prompts):
    """Forge's extra_networks.activate: LoRAs merged into clones kept in forge_objects_after_applying_lora."""
    weight = sum(float(w) for w in dict(LORA_TAG.findall(" ".join(prompts))).values())  # one per name
    objects = model.forge_objects_original.shallow_copy()
    if weight:
        objects.unet = objects.unet.clone()
        objects.unet.lora_weight = weight
    model.forge_objects_after_applying_lora = objects


def process_images(p):
    p.sd_model, _ = sd_models.forge_model_reload()
    n = p.batch_size * p.n_iter
    p.all_prompts = p.prompt if isinstance(p.prompt, list) else [p.prompt] * n
    p.all_seeds = p.seed if isinstance(p.seed, list) else [int(p.seed) + i for i in range(n)]
    p.init(p.all_prompts, p.all_seeds, p.all_seeds)
    images = []
    for iteration in range(p.n_iter):
        p.iteration = iteration
        batch = slice(iteration * p.batch_size, (iteration + 1) * p.batch_size)
        prompts, seeds = p.all_prompts[batch], p.all_seeds[batch]
        p.sd_model.forge_objects = p.sd_model.forge_objects_original.shallow_copy()
        channels = shared.sd_model.forge_objects.vae.latent_channels
        p.rng = rng.ImageRNG((channels, p.height // opt_f, p.width // opt_f), seeds)
        _activate_loras(p.sd_model, prompts)
        p.sd_model.forge_objects = p.sd_model.forge_objects_after_applying_lora.shallow_copy()
        samples = p.sample(None, None, seeds, seeds, 0.0, [LORA_TAG.sub("", q) for q in prompts])
        images.extend(_decode(samples))
        if shared.state.interrupted:
            break
    return Processed(p=p, images=images, seed=p.all_seeds[0])
