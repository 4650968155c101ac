"""Turn a WebUI-style `<name>.yaml` (original LDM/SGM config) into a local diffusers config folder.

The WebUI reads a yaml beside a checkpoint for non-standard architectures. We map
its fields onto the shipped config folder of the detected family ourselves,
rather than through diffusers' `create_*_diffusers_config_from_ldm`, whose
signatures differ between the diffusers versions the hosts pin. LDM fixes the
GroupNorm group count at 32, so `norm_num_groups` is always 32 here.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from .architecture import Architecture

TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
SUPPORTED_TARGET_SUFFIXES = ("LatentDiffusion", "DiffusionEngine")
_MISSING = object()


class LdmYaml:
    """A parsed `<name>.yaml`, with field access that names the file and field on error."""

    def __init__(self, path: Path) -> None:
        import yaml

        self.path = path
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise ValueError(f"{path}: not a readable yaml file ({error})") from error
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping with a top-level 'model' entry")
        self.data = data
        target = str(self.get("model.target"))
        if not target.endswith(SUPPORTED_TARGET_SUFFIXES):
            raise ValueError(f"{path}: model.target {target!r} is not a text-to-image LatentDiffusion/DiffusionEngine model")

    def get(self, dotted: str, default: Any = _MISSING) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node or node[part] is None:
                if default is _MISSING:
                    raise ValueError(f"{self.path}: the field {dotted} is missing")
                return default
            node = node[part]
        return node

    @property
    def unet_key(self) -> str:
        return "model.params.network_config" if self.get("model.params.network_config", None) else "model.params.unet_config"

    def parameterization(self) -> str | None:
        """"eps"/"v" as the yaml states it (LDM's `parameterization`, SGM's denoiser scaling), or None."""
        value = self.get("model.params.parameterization", None)
        if value is not None:
            return str(value)
        scaling = str(self.get("model.params.denoiser_config.params.scaling_config.target", ""))
        if scaling.endswith("VScaling"):
            return "v"
        if scaling.endswith("EpsScaling"):
            return "eps"
        return None


def derive_config_folder(ldm: LdmYaml, arch: Architecture, dest: Path) -> Path:
    """Write the diffusers config folder the yaml describes into `dest`; returns it."""
    folder = dest / "config"
    shutil.copytree(arch.config_dir, folder)
    # SD2/SDXL yamls state the training crop (64 for the 768-px v-models), not the native size: keep the shipped one.
    image_size = ldm.get("model.params.image_size", None) if arch.family == "sd1" else None
    _update_json(folder / "unet" / "config.json", lambda base: unet_config(ldm, base, image_size))
    _update_json(folder / "vae" / "config.json", lambda base: vae_config(ldm, base, image_size))
    _update_json(folder / "scheduler" / "scheduler_config.json", lambda base: scheduler_config(ldm, base, arch))
    if arch.family == "sd1":
        text_folder = local_text_encoder_folder(ldm)
        if text_folder is not None:
            _use_local_text_encoder(text_folder, folder, ldm.path)
    return folder


def unet_config(ldm: LdmYaml, base: dict[str, Any], image_size: Any) -> dict[str, Any]:
    key = ldm.unet_key + ".params"
    get = lambda name, *default: ldm.get(f"{key}.{name}", *default)  # noqa: E731
    channels = int(get("model_channels"))
    mult = [int(m) for m in get("channel_mult")]
    attention_res = {int(r) for r in get("attention_resolutions")}
    res_blocks = get("num_res_blocks")
    if isinstance(res_blocks, list):
        if len(set(res_blocks)) != 1:
            raise ValueError(f"{ldm.path}: {key}.num_res_blocks {res_blocks} differs per level; diffusers needs one value")
        res_blocks = res_blocks[0]
    for flag in ("use_scale_shift_norm", "resblock_updown"):
        if get(flag, False):
            raise ValueError(f"{ldm.path}: {key}.{flag} is true, which no Stable Diffusion UNet uses")
    out_channels = [channels * m for m in mult]
    with_attention = [2**level in attention_res for level in range(len(mult))]
    head_channels = int(get("num_head_channels", -1))
    heads = int(get("num_heads", -1))
    if head_channels > 0:
        attention_heads: Any = [c // head_channels for c in out_channels]
    elif heads > 0:
        attention_heads = heads
    else:
        raise ValueError(f"{ldm.path}: {key} needs num_heads or num_head_channels")
    context_dim = get("context_dim")
    config = dict(base)
    config.update(
        in_channels=int(get("in_channels", 4)),
        out_channels=int(get("out_channels", 4)),
        block_out_channels=out_channels,
        layers_per_block=int(res_blocks),
        down_block_types=["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in with_attention],
        up_block_types=["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(with_attention)],
        attention_head_dim=attention_heads,
        cross_attention_dim=int(context_dim[0] if isinstance(context_dim, list) else context_dim),
        use_linear_projection=bool(get("use_linear_in_transformer", False)),
        transformer_layers_per_block=get("transformer_depth", 1),
        norm_num_groups=32,
    )
    if image_size is not None:
        config["sample_size"] = int(image_size)
    num_classes = get("num_classes", None)
    if num_classes == "sequential":
        config.update(addition_embed_type="text_time", projection_class_embeddings_input_dim=int(get("adm_in_channels")))
    elif num_classes is not None:
        raise ValueError(f"{ldm.path}: {key}.num_classes {num_classes!r} (class-conditional UNet) is not supported")
    return config


def vae_config(ldm: LdmYaml, base: dict[str, Any], image_size: Any) -> dict[str, Any]:
    key = "model.params.first_stage_config.params.ddconfig"
    get = lambda name, *default: ldm.get(f"{key}.{name}", *default)  # noqa: E731
    mult = [int(m) for m in get("ch_mult")]
    if get("attn_resolutions", []):
        raise ValueError(f"{ldm.path}: {key}.attn_resolutions must be empty for a Stable Diffusion VAE")
    config = dict(base)
    config.update(
        block_out_channels=[int(get("ch")) * m for m in mult],
        down_block_types=["DownEncoderBlock2D"] * len(mult),
        up_block_types=["UpDecoderBlock2D"] * len(mult),
        layers_per_block=int(get("num_res_blocks")),
        latent_channels=int(get("z_channels")),
        in_channels=int(get("in_channels", 3)),
        out_channels=int(get("out_ch", 3)),
        norm_num_groups=32,
        scaling_factor=float(ldm.get("model.params.scale_factor", base.get("scaling_factor", 0.18215))),
    )
    if image_size is not None:
        config["sample_size"] = int(image_size) * 2 ** (len(mult) - 1)
    return config


def scheduler_config(ldm: LdmYaml, base: dict[str, Any], arch: Architecture) -> dict[str, Any]:
    schedule = ldm.get("model.params.beta_schedule", "linear")
    if schedule != "linear":
        raise ValueError(f"{ldm.path}: model.params.beta_schedule {schedule!r} is not supported (only 'linear')")
    config = dict(base)
    config.update(
        beta_start=float(ldm.get("model.params.linear_start", base["beta_start"])),
        beta_end=float(ldm.get("model.params.linear_end", base["beta_end"])),
        num_train_timesteps=int(ldm.get("model.params.timesteps", base["num_train_timesteps"])),
        beta_schedule="scaled_linear",
        prediction_type=arch.prediction_type or "epsilon",
    )
    return config


def local_text_encoder_folder(ldm: LdmYaml) -> Path | None:
    """The folder `cond_stage_config.params.version` names, or None for a hub id such as openai/clip-vit-large-patch14.

    An absolute path that no longer exists (checkpoint and yaml moved together) is
    looked up again beside the yaml by its last component.
    """
    field = "model.params.cond_stage_config.params.version"
    version = ldm.get(field, None)
    if not version:
        return None
    version = str(version)
    for candidate in (Path(version).expanduser(), ldm.path.parent / version):
        if candidate.is_dir():
            return candidate
    if _looks_like_path(version):
        sibling = ldm.path.parent / Path(version.replace("\\", "/")).name
        if sibling.is_dir():
            return sibling
        raise FileNotFoundError(f"{ldm.path}: {field} names the folder {version!r}, which does not exist (nor does {sibling})")
    return None


def _looks_like_path(version: str) -> bool:
    return os.path.isabs(version) or version.startswith((".", "~")) or "\\" in version or version.count("/") != 1


def _use_local_text_encoder(text_folder: Path, folder: Path, yaml_path: Path) -> None:
    config = text_folder / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{yaml_path}: the text encoder folder {text_folder} has no config.json")
    shutil.copyfile(config, folder / "text_encoder" / "config.json")
    if (text_folder / "vocab.json").is_file() and (text_folder / "merges.txt").is_file():
        for name in TOKENIZER_FILES:
            if (text_folder / name).is_file():
                shutil.copyfile(text_folder / name, folder / "tokenizer" / name)


def _update_json(path: Path, change: Any) -> None:
    base = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(change(base), indent=2), encoding="utf-8")
