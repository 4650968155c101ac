"""Fake of modules.sd_models: the two calls behind /sdapi/v1/unload-checkpoint and /reload-checkpoint."""

from . import shared

calls = []


def unload_model_weights(sd_model=None, info=None):
    calls.append("unload")
    shared.sd_model.on_gpu = False
    return sd_model


def send_model_to_device(m):
    calls.append("reload")
    m.on_gpu = True
