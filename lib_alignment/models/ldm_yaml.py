"""The LDM `<name>.yaml` for an SD1-architecture diffusers pipeline, and the checks that it can be expressed.

The fields follow the WebUI's configs/v1-inference.yaml (LatentDiffusion with an
openaimodel UNetModel, an AutoencoderKL and FrozenCLIPEmbedder). LDM hard-codes
some choices diffusers leaves open (GroupNorm with 32 groups, SiLU, cos-first
timestep embeddings, one transformer per attention block), so a pipeline that
differs there is refused with the list of differences.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

UNET_REQUIRED = {
    "norm_num_groups": 32,
    "act_fn": "silu",
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "time_embedding_type": "positional",
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "resnet_time_scale_shift": "default",
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "addition_embed_type": None,
    "class_embed_type": None,
    "encoder_hid_dim": None,
    "time_cond_proj_dim": None,
    "time_embedding_dim": None,
    "dual_cross_attention": False,
    "only_cross_attention": False,
}
VAE_REQUIRED = {"norm_num_groups": 32, "act_fn": "silu", "use_quant_conv": True, "use_post_quant_conv": True, "mid_block_add_attention": True}


def check_exportable(pipe: Any) -> None:
    """Raise ValueError listing every reason the pipeline has no LDM SD1 equivalent."""
    problems: list[str] = []
    components = getattr(pipe, "components", {})
    if components.get("text_encoder_2") is not None:
        problems.append("it has a second text encoder (SDXL); only SD1-architecture pipelines can be exported")
    unet, vae, text = pipe.unet.config, pipe.vae.config, pipe.text_encoder.config
    problems += _differences("unet", unet, UNET_REQUIRED)
    problems += _differences("vae", vae, VAE_REQUIRED)
    channels = list(unet.block_out_channels) + list(vae.block_out_channels)
    if any(c % 32 for c in channels):
        problems.append(f"channel counts {channels} must be multiples of 32 (LDM GroupNorm has 32 groups)")
    for name, config in (("unet", unet), ("vae", vae)):
        first = config.block_out_channels[0]
        if any(c % first for c in config.block_out_channels):
            problems.append(f"{name}.block_out_channels {list(config.block_out_channels)} must be multiples of the first")
    depth = unet.transformer_layers_per_block
    if any(d != 1 for d in (depth if isinstance(depth, (list, tuple)) else [depth])):
        problems.append(f"unet.transformer_layers_per_block {depth} must be 1")
    down = [t for t in unet.down_block_types]
    mirrored = [t.replace("Down", "Up") for t in reversed(down)]
    if set(down) - {"CrossAttnDownBlock2D", "DownBlock2D"} or list(unet.up_block_types) != mirrored:
        problems.append(f"unet block types {down} / {list(unet.up_block_types)} are not SD1-style mirrored blocks")
    if _heads(unet) is None:
        problems.append(f"unet attention heads {unet.attention_head_dim} give no single head count or head width")
    if unet.cross_attention_dim != text.hidden_size:
        problems.append(f"unet.cross_attention_dim {unet.cross_attention_dim} ≠ text encoder hidden_size {text.hidden_size}")
    scheduler = pipe.scheduler.config
    if scheduler.get("beta_schedule") != "scaled_linear" or scheduler.get("rescale_betas_zero_snr", False):
        problems.append("the scheduler must use the scaled_linear beta schedule without zero-SNR rescaling")
    if scheduler.get("prediction_type", "epsilon") not in ("epsilon", "v_prediction"):
        problems.append(f"prediction_type {scheduler.get('prediction_type')!r} has no LDM parameterization")
    if problems:
        raise ValueError("cannot export as an LDM SD1 checkpoint: " + "; ".join(problems))


def _differences(name: str, config: Any, required: dict[str, Any]) -> list[str]:
    return [
        f"{name}.{key} is {config.get(key)!r}, LDM needs {value!r}"
        for key, value in required.items()
        if key in config and config.get(key) != value
    ]


def _heads(unet: Any) -> dict[str, int] | None:
    """{"num_heads": n} or {"num_head_channels": c}, as LDM's UNetModel takes them."""
    heads = unet.get("num_attention_heads") or unet.attention_head_dim
    if isinstance(heads, int):
        return {"num_heads": heads}
    widths = {c // h for c, h in zip(unet.block_out_channels, heads)}
    return {"num_head_channels": widths.pop()} if len(widths) == 1 else None


def ldm_yaml_dict(pipe: Any, text_encoder_dir: Path) -> dict[str, Any]:
    unet, vae, scheduler = pipe.unet.config, pipe.vae.config, pipe.scheduler.config
    base = unet.block_out_channels[0]
    vae_base = vae.block_out_channels[0]
    prediction = scheduler.get("prediction_type", "epsilon")
    unet_params: dict[str, Any] = {
        "use_checkpoint": False,
        "image_size": int(unet.sample_size),
        "in_channels": int(unet.in_channels),
        "out_channels": int(unet.out_channels),
        "model_channels": int(base),
        "attention_resolutions": [2**i for i, t in enumerate(unet.down_block_types) if t.startswith("CrossAttn")],
        "num_res_blocks": int(unet.layers_per_block),
        "channel_mult": [int(c // base) for c in unet.block_out_channels],
        **_heads(unet),  # type: ignore[arg-type]
        "use_spatial_transformer": True,
        "use_linear_in_transformer": bool(unet.get("use_linear_projection", False)),
        "transformer_depth": 1,
        "context_dim": int(unet.cross_attention_dim),
        "legacy": False,
    }
    ddconfig = {
        "double_z": True,
        "z_channels": int(vae.latent_channels),
        "resolution": int(vae.sample_size),
        "in_channels": int(vae.in_channels),
        "out_ch": int(vae.out_channels),
        "ch": int(vae_base),
        "ch_mult": [int(c // vae_base) for c in vae.block_out_channels],
        "num_res_blocks": int(vae.layers_per_block),
        "attn_resolutions": [],
        "dropout": 0.0,
    }
    params: dict[str, Any] = {
        "parameterization": "v" if prediction == "v_prediction" else "eps",
        "linear_start": float(scheduler["beta_start"]),
        "linear_end": float(scheduler["beta_end"]),
        "num_timesteps_cond": 1,
        "log_every_t": 200,
        "timesteps": int(scheduler["num_train_timesteps"]),
        "first_stage_key": "jpg",
        "cond_stage_key": "txt",
        "image_size": int(unet.sample_size),
        "channels": int(unet.in_channels),
        "cond_stage_trainable": False,
        "conditioning_key": "crossattn",
        "monitor": "val/loss_simple_ema",
        "scale_factor": float(vae.scaling_factor),
        "use_ema": False,
        "unet_config": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": unet_params},
        "first_stage_config": {
            "target": "ldm.models.autoencoder.AutoencoderKL",
            "params": {
                "embed_dim": int(vae.latent_channels),
                "monitor": "val/rec_loss",
                "ddconfig": ddconfig,
                "lossconfig": {"target": "torch.nn.Identity"},
            },
        },
        "cond_stage_config": {
            "target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder",
            "params": {"version": str(text_encoder_dir), "max_length": int(pipe.text_encoder.config.max_position_embeddings)},
        },
    }
    return {"model": {"base_learning_rate": 1.0e-04, "target": "ldm.models.diffusion.ddpm.LatentDiffusion", "params": params}}


def ldm_yaml_text(pipe: Any, text_encoder_dir: Path) -> str:
    import yaml

    header = "# LDM config written by lib_alignment (python -m lib_alignment export-tiny); the WebUI reads it beside the checkpoint.\n"
    return header + yaml.safe_dump(ldm_yaml_dict(pipe, text_encoder_dir), sort_keys=False, default_flow_style=False)
