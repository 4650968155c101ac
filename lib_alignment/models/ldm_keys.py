"""Tensor names of diffusers SD1-style components in the original LDM layout the WebUI loads.

Derived from how the two code bases build the same networks:

UNet (`model.diffusion_model.`): LDM keeps one flat list of input blocks —
`input_blocks.0` is conv_in, then per level `layers_per_block` entries of
[ResBlock, SpatialTransformer?] and one Downsample entry (except the last
level) — and one list of output blocks with `layers_per_block + 1` entries per
level, the Upsample riding as the last module of a level's last entry.
ResBlocks name their layers in_layers/emb_layers/out_layers/skip_connection;
transformers use the same names in both code bases.

VAE (`first_stage_model.`): encoder `down.{i}.block.{j}`; the decoder's `up`
list is indexed by resolution, so diffusers' `up_blocks.{i}` is LDM's
`up.{n-1-i}`; the mid attention uses 1×1 convolutions named q/k/v/proj_out
where diffusers has linear layers.

Text encoder (`cond_stage_model.transformer.`): a Hugging Face CLIPTextModel
under a prefix, named as transformers 4.x names it (`text_model.…`), plus the `position_ids` buffer that SD1 checkpoints carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."

UNET_RESNET_PARTS = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
VAE_RESNET_PARTS = {"conv_shortcut": "nin_shortcut"}
VAE_ATTENTION_PARTS = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def unet_module_map(config: Any) -> dict[str, str]:
    """diffusers module path → LDM module path for every UNet module that holds weights."""
    per_level = int(config.layers_per_block)
    levels = len(config.block_out_channels)
    names = {
        "conv_in": "input_blocks.0.0",
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "mid_block.resnets.0": "middle_block.0",
        "mid_block.attentions.0": "middle_block.1",
        "mid_block.resnets.1": "middle_block.2",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    for level in range(levels):
        first_input = 1 + level * (per_level + 1)
        for j in range(per_level):
            names[f"down_blocks.{level}.resnets.{j}"] = f"input_blocks.{first_input + j}.0"
            names[f"down_blocks.{level}.attentions.{j}"] = f"input_blocks.{first_input + j}.1"
        if level < levels - 1:
            names[f"down_blocks.{level}.downsamplers.0.conv"] = f"input_blocks.{first_input + per_level}.0.op"
        first_output = level * (per_level + 1)
        for j in range(per_level + 1):
            names[f"up_blocks.{level}.resnets.{j}"] = f"output_blocks.{first_output + j}.0"
            names[f"up_blocks.{level}.attentions.{j}"] = f"output_blocks.{first_output + j}.1"
        if level < levels - 1:
            upsample_slot = 2 if "CrossAttn" in config.up_block_types[level] else 1
            names[f"up_blocks.{level}.upsamplers.0.conv"] = f"output_blocks.{first_output + per_level}.{upsample_slot}.conv"
    return names


def vae_module_map(config: Any) -> dict[str, str]:
    """diffusers module path → LDM module path for every AutoencoderKL module that holds weights."""
    per_level = int(config.layers_per_block)
    levels = len(config.block_out_channels)
    names = {"quant_conv": "quant_conv", "post_quant_conv": "post_quant_conv"}
    for part in ("encoder", "decoder"):
        names.update(
            {
                f"{part}.conv_in": f"{part}.conv_in",
                f"{part}.conv_out": f"{part}.conv_out",
                f"{part}.conv_norm_out": f"{part}.norm_out",
                f"{part}.mid_block.resnets.0": f"{part}.mid.block_1",
                f"{part}.mid_block.attentions.0": f"{part}.mid.attn_1",
                f"{part}.mid_block.resnets.1": f"{part}.mid.block_2",
            }
        )
    for level in range(levels):
        for j in range(per_level):
            names[f"encoder.down_blocks.{level}.resnets.{j}"] = f"encoder.down.{level}.block.{j}"
        if level < levels - 1:
            names[f"encoder.down_blocks.{level}.downsamplers.0.conv"] = f"encoder.down.{level}.downsample.conv"
        ldm_level = levels - 1 - level
        for j in range(per_level + 1):
            names[f"decoder.up_blocks.{level}.resnets.{j}"] = f"decoder.up.{ldm_level}.block.{j}"
        if level < levels - 1:
            names[f"decoder.up_blocks.{level}.upsamplers.0.conv"] = f"decoder.up.{ldm_level}.upsample.conv"
    return names


def _split_module(key: str, modules: Mapping[str, str]) -> tuple[str, str]:
    """(longest mapped module path that prefixes key, remainder)."""
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        if module in modules:
            return module, ".".join(parts[cut:])
    raise ValueError(f"no LDM name for the diffusers tensor {key!r}: this architecture is not SD1-style")


def _rename_part(rest: str, parts: Mapping[str, str]) -> str:
    for old, new in parts.items():
        if rest.startswith(old + "."):
            return new + rest[len(old) :]
    return rest


def unet_module_to_ldm(path: str, config: Any, modules: Mapping[str, str] | None = None) -> str:
    """LDM module path (under `model.diffusion_model.`) of a diffusers UNet module path, e.g.
    `down_blocks.1.attentions.0.proj_in` → `input_blocks.3.1.proj_in` when layers_per_block is 1."""
    modules = unet_module_map(config) if modules is None else modules
    module, rest = _split_module(path + ".weight", modules)
    if ".resnets." in module:
        rest = _rename_part(rest, UNET_RESNET_PARTS)
    return f"{modules[module]}.{rest}"[: -len(".weight")]


def unet_ldm_names(unet: torch.nn.Module) -> dict[str, str]:
    """diffusers module path → LDM module path for every module of `unet` inside the SD1-style block layout
    (LoRA key names; peft's wrapped layers included)."""
    modules = unet_module_map(unet.config)
    names: dict[str, str] = {}
    for name, _ in unet.named_modules():
        try:
            names[name] = unet_module_to_ldm(name, unet.config, modules)
        except ValueError:
            continue  # the root and the block lists themselves have no LDM module
    return names


def unet_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    modules = unet_module_map(config)
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        module, rest = _split_module(key, modules)
        if ".resnets." in module:
            rest = _rename_part(rest, UNET_RESNET_PARTS)
        out[f"{UNET_PREFIX}{modules[module]}.{rest}"] = value
    return _unique(out, len(state_dict), "UNet")


def vae_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    modules = vae_module_map(config)
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        module, rest = _split_module(key, modules)
        if ".resnets." in module:
            rest = _rename_part(rest, VAE_RESNET_PARTS)
        elif ".attentions." in module:
            renamed = _rename_part(rest, VAE_ATTENTION_PARTS)
            if renamed == rest:
                raise ValueError(f"no LDM name for the VAE attention tensor {key!r}")
            rest = renamed
            if rest.endswith(".weight") and value.ndim == 2:
                value = value[:, :, None, None]  # linear → 1×1 convolution
        out[f"{VAE_PREFIX}{modules[module]}.{rest}"] = value
    return _unique(out, len(state_dict), "VAE")


def text_encoder_to_ldm(state_dict: Mapping[str, torch.Tensor], max_positions: int) -> dict[str, torch.Tensor]:
    # transformers ≥ 5 drops the `text_model.` level from CLIPTextModel's own names; LDM keeps it.
    out = {TEXT_PREFIX + (key if key.startswith("text_model.") else "text_model." + key): value for key, value in state_dict.items()}
    out.setdefault(TEXT_PREFIX + "text_model.embeddings.position_ids", torch.arange(max_positions, dtype=torch.int64)[None])
    return out


def _unique(out: dict[str, torch.Tensor], expected: int, what: str) -> dict[str, torch.Tensor]:
    if len(out) != expected:
        raise ValueError(f"{what}: {expected} diffusers tensors mapped onto only {len(out)} LDM names")
    return out
