"""Fake of A1111's built-in Lora extension module `networks` (extensions-builtin/Lora is on sys.path there).

Same names as v1.10.1: `available_networks` (name → NetworkOnDisk with name, alias, filename,
metadata) and `list_available_networks()`, which rescans `shared.cmd_opts.lora_dir`.
"""

import json
import os

from modules import shared

available_networks = {}
scans = []


def _metadata(filename):
    if not filename.endswith(".safetensors"):
        return {}
    with open(filename, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
    return header.get("__metadata__", {})


class NetworkOnDisk:
    def __init__(self, name, filename):
        self.name = name
        self.filename = filename
        self.metadata = _metadata(filename)
        self.alias = self.metadata.get("ss_output_name", name)


def list_available_networks():
    available_networks.clear()
    folder = shared.cmd_opts.lora_dir
    for root, _dirs, files in os.walk(folder):
        for file in sorted(files):
            if os.path.splitext(file)[1].lower() in (".pt", ".ckpt", ".safetensors"):
                name = os.path.splitext(file)[0]
                available_networks[name] = NetworkOnDisk(name, os.path.join(root, file))
    scans.append(len(available_networks))


# --- how v1.10.1's load_network() finds the module each LoRA key belongs to (written from its behaviour) ---
# A1111 names every module of the loaded LDM model by its dotted path with "_" (`assign_network_names_to_compvis_modules`:
# the UNet under `diffusion_model_…`, the SD1 text encoder under `transformer_text_model_…`). A key's module part is
# first translated from diffusers naming by fixed formulas that assume SD's two layers per block; if that names
# nothing, `lora_unet` is replaced by `diffusion_model` (the path kohya's SDXL files take).

_RESNET_PARTS = {"conv1": "in_layers_2", "conv2": "out_layers_3", "norm1": "in_layers_0", "norm2": "out_layers_0", "time_emb_proj": "emb_layers_1", "conv_shortcut": "skip_connection"}


def _part(kind, rest):
    if kind != "resnets":
        return rest
    for name, ldm in _RESNET_PARTS.items():
        if rest == name or rest.startswith(name + "_"):
            return ldm + rest[len(name):]
    return rest


def convert_diffusers_name_to_compvis(key, is_sd2):
    import re

    m = re.match(r"lora_unet_down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)", key)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        return f"diffusion_model_input_blocks_{1 + 3 * i + j}_{1 if kind == 'attentions' else 0}_{_part(kind, rest)}"
    m = re.match(r"lora_unet_mid_block_(attentions|resnets)_(\d+)_(.+)", key)
    if m:
        kind, j, rest = m[1], int(m[2]), m[3]
        return f"diffusion_model_middle_block_{1 if kind == 'attentions' else 2 * j}_{_part(kind, rest)}"
    m = re.match(r"lora_unet_up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)", key)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        return f"diffusion_model_output_blocks_{3 * i + j}_{1 if kind == 'attentions' else 0}_{_part(kind, rest)}"
    m = re.match(r"lora_te_text_model_encoder_layers_(\d+)_(.+)", key)
    if m:
        return f"{'model_transformer_resblocks' if is_sd2 else 'transformer_text_model_encoder_layers'}_{m[1]}_{m[2]}"
    return key


def layer_mapping_from_checkpoint(state_dict_keys):
    """network name → module path, as A1111 builds it from an SD1 LDM checkpoint's modules."""
    mapping = {}
    for key in state_dict_keys:
        for prefix, strip in (("model.diffusion_model.", "model."), ("cond_stage_model.transformer.", "cond_stage_model.")):
            if key.startswith(prefix) and key.endswith(".weight"):
                module = key[len(strip) : -len(".weight")]
                mapping[module.replace(".", "_")] = key
    return mapping


def match_lora_keys(lora_keys, layer_mapping):
    """(network key base → checkpoint weight key for matched modules, unmatched network key bases)."""
    matched, failed = {}, []
    for base in sorted({key.partition(".")[0] for key in lora_keys}):
        found = layer_mapping.get(convert_diffusers_name_to_compvis(base, False))
        if found is None and "lora_unet" in base:
            found = layer_mapping.get(base.replace("lora_unet", "diffusion_model"))
        if found is None:
            failed.append(base)
        else:
            matched[base] = found
    return matched, failed
