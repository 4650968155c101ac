"""Fake of modules.shared: cmd_opts, device, sd_model (a checkpoint-info-bearing stub), state."""

import os
import types

import torch

from . import paths

cmd_opts = types.SimpleNamespace(lora_dir=os.path.join(paths.models_path, "Lora"), api_auth=None)
device = torch.device("cpu")


class State:
    """The parts of modules.shared_state.State that jobs touch: begin/end reset flags, interrupt sets one."""

    def __init__(self):
        self.interrupted = False
        self.skipped = False
        self.job = ""
        self.job_count = -1
        self.job_no = 0
        self.sampling_step = 0
        self.jobs_begun = []

    def begin(self, job="(unknown)"):
        self.interrupted = False
        self.skipped = False
        self.job = job
        self.job_count = -1
        self.job_no = 0
        self.sampling_step = 0
        self.jobs_begun.append(job)

    def end(self):
        self.job = ""
        self.job_count = 0

    def interrupt(self):
        self.interrupted = True


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
