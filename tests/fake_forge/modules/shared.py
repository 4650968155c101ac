"""Fake of Forge's modules.shared: `sd_model` reads sd_models.model_data (Forge's Shared property)."""

import os
import types

import torch

from . import paths
from .shared_state import State

cmd_opts = types.SimpleNamespace(lora_dir=os.path.join(paths.models_path, "Lora"), api_auth=None, vae_dir=None)
opts = types.SimpleNamespace(sd_model_checkpoint=None, forge_additional_modules=[])
device = torch.device("cpu")
state = State()


def __getattr__(name):
    if name == "sd_model":
        from . import sd_models

        return sd_models.model_data.get_sd_model()
    raise AttributeError(name)
