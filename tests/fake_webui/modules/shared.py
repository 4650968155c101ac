"""Fake of modules.shared: cmd_opts, device, sd_model (a checkpoint-info-bearing stub), state (shared_state.State)."""

import os
import types

import torch

from . import paths
from .shared_state import State

cmd_opts = types.SimpleNamespace(lora_dir=os.path.join(paths.models_path, "Lora"), api_auth=None)
device = torch.device("cpu")


state = State()


class FakeCheckpointInfo:
    def __init__(self, filename):
        self.filename = filename
        self.title = f"{os.path.basename(filename)} [0123456789]"


class FakeSDModel:
    """Carries what extensions read off shared.sd_model; image_size is LDM's latent size."""

    is_sdxl = False

    def __init__(self, filename, image_size=16):
        self.sd_checkpoint_info = FakeCheckpointInfo(filename)
        self.image_size = image_size


sd_model = FakeSDModel(os.path.join(paths.models_path, "Stable-diffusion", "tiny.safetensors"))
