"""Fake of backend.memory_management: the list of models on their device and the calls that move them.

Forge keeps `LoadedModel` entries (`.model` a ModelPatcher, `.device` its load device) in
`current_loaded_models`; `load_models_gpu` adds them, `unload_all_models` (behind
/sdapi/v1/unload-checkpoint) drops every one on the torch device, `soft_empty_cache` empties the CUDA cache.
"""

from __future__ import annotations

import torch

current_loaded_models: list = []
calls: list = []
torch_device = torch.device("cpu")


class LoadedModel:
    def __init__(self, model):
        self.model = model
        self.device = model.load_device


def get_torch_device():
    return torch_device


def load_models_gpu(models, memory_required=0, hard_memory_preservation=0):
    calls.append("load_models_gpu")
    for model in models:
        if not any(entry.model is model for entry in current_loaded_models):
            current_loaded_models.insert(0, LoadedModel(model))


def load_model_gpu(model):
    return load_models_gpu([model])


def free_memory(memory_required, device, keep_loaded=(), free_all=False):
    for i in range(len(current_loaded_models) - 1, -1, -1):
        if current_loaded_models[i].device == device and current_loaded_models[i] not in keep_loaded:
            current_loaded_models.pop(i)


def unload_all_models():
    calls.append("unload_all_models")
    free_memory(1e30, get_torch_device(), free_all=True)


def soft_empty_cache(force=False):
    calls.append("soft_empty_cache")
