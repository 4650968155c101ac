"""Fake of Forge's diffusion engines (backend.diffusion_engine.sd15.StableDiffusion and siblings).

The layout extensions see: parts as ModelPatchers in `forge_objects`, two more copies of the
holder beside it, the WebUI-legacy fields (`first_stage_model` / `cond_stage_model` None, `is_sd1` ...).
The fake UNet patcher carries the LoRA weight applied to it, which the fake sampler reads.
"""

from __future__ import annotations

import types

from . import memory_management

REPOS = {"sd1": "runwayml/stable-diffusion-v1-5", "sd2": "stabilityai/stable-diffusion-2-1", "sdxl": "stabilityai/stable-diffusion-xl-base-1.0"}


class ForgeObjects:
    def __init__(self, unet, clip, vae, clipvision):
        self.unet = unet
        self.clip = clip
        self.vae = vae
        self.clipvision = clipvision

    def shallow_copy(self):
        return ForgeObjects(self.unet, self.clip, self.vae, self.clipvision)


class ModelPatcher:
    def __init__(self, name, load_device=None, lora_weight=0.0):
        self.name = name
        self.load_device = load_device or memory_management.get_torch_device()
        self.lora_weight = lora_weight

    def clone(self):
        twin = ModelPatcher(self.name, self.load_device, self.lora_weight)
        twin.model = getattr(self, "model", None)
        return twin


class ObjectDict:
    def __init__(self, items):
        for name, value in items.items():
            setattr(self, name, value)


class CLIP:
    def __init__(self, tokenizers, load_device=None):
        self.patcher = ModelPatcher("clip", load_device)
        self.cond_stage_model = None
        self.tokenizer = ObjectDict(tokenizers)


class VAE:
    def __init__(self, load_device=None):
        self.patcher = ModelPatcher("vae", load_device)
        self.latent_channels = 4


class FakeForgeModel:
    """What `forge_model_reload()` puts in `shared.sd_model` for an SD1/SD2/SDXL checkpoint."""

    def __init__(self, family="sd1", tokenizers=None, load_device=None, prediction_type="epsilon"):
        self.model_config = types.SimpleNamespace(huggingface_repo=REPOS[family])
        unet = ModelPatcher("unet", load_device)
        unet.model = types.SimpleNamespace(predictor=types.SimpleNamespace(prediction_type=prediction_type))
        clip = CLIP(tokenizers or {}, load_device)
        self.forge_objects = ForgeObjects(unet=unet, clip=clip, vae=VAE(load_device), clipvision=None)
        self.forge_objects_original = self.forge_objects.shallow_copy()
        self.forge_objects_after_applying_lora = self.forge_objects.shallow_copy()
        self.first_stage_model = None
        self.cond_stage_model = None
        self.is_sd1 = family == "sd1"
        self.is_sd2 = family == "sd2"
        self.is_sdxl = family == "sdxl"
