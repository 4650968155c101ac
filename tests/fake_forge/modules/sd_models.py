"""Fake of Forge's modules.sd_models: the checkpoint is selected at start and loaded lazily.

`model_data.forge_loading_parameters['checkpoint_info']` names the selected checkpoint;
`forge_model_reload()` (called by process_images) loads it when the parameters changed. The A1111
calls `load_model`, `reload_model_weights` and `send_model_to_device` are stubs that do nothing.
"""

from __future__ import annotations

import os

from backend import diffusion_engine, memory_management

checkpoints_list: dict = {}
checkpoint_aliases: dict = {}
#: what the next forge_model_reload() builds: family, tokenizers (slot name -> tokenizer), load device
load_options: dict = {"family": "sd1", "tokenizers": None, "load_device": None, "prediction_type": "epsilon"}
loads: list = []


class CheckpointInfo:
    def __init__(self, filename):
        self.filename = os.path.abspath(filename)
        name = os.path.basename(filename)
        self.name = name
        self.model_name = os.path.splitext(name)[0]
        self.title = name  # real Forge: "name [hash]" once hashed; the bare name before
        checkpoints_list[self.title] = self
        for alias in (self.title, self.name, self.model_name):
            checkpoint_aliases[alias] = self


def get_closet_checkpoint_match(search_string):
    return checkpoint_aliases.get(search_string)


class FakeInitialModel:
    def __init__(self):
        self.cond_stage_model = None
        self.chunk_length = 75


class SdModelData:
    def __init__(self):
        self.sd_model = FakeInitialModel()
        self.forge_loading_parameters = {}
        self.forge_hash = ""

    def get_sd_model(self):
        return self.sd_model

    def set_sd_model(self, v):
        self.sd_model = v


model_data = SdModelData()


def forge_model_reload():
    current = str(model_data.forge_loading_parameters)
    if model_data.forge_hash == current:
        return model_data.sd_model, False
    info = model_data.forge_loading_parameters["checkpoint_info"]
    model = diffusion_engine.FakeForgeModel(**load_options)
    model.sd_checkpoint_info = info
    model.filename = info.filename
    model_data.set_sd_model(model)
    model_data.forge_hash = current
    loads.append(info.filename)
    return model, True


def load_model(checkpoint_info=None, already_loaded_state_dict=None):
    pass


def reload_model_weights(sd_model=None, info=None, forced_reload=False):
    pass


def send_model_to_device(m):
    pass


def unload_model_weights(sd_model=None, info=None):
    memory_management.unload_all_models()
