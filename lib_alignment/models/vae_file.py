"""A separate VAE file, as the WebUI keeps them in `models/VAE`, loaded into a diffusers AutoencoderKL.

The WebUI's VAE files hold LDM AutoencoderKL tensors without a prefix
(`encoder.down.0.block.0.norm1.weight`, `decoder.up.3...`, `quant_conv...`),
sometimes with `loss.*` tensors or EMA counters beside them, as `.safetensors`,
`.pt` or `.ckpt`. They are read with safetensors or `torch.load(weights_only=True)`
only; a `first_stage_model.` prefix (a VAE cut from a checkpoint) is accepted too.
Names are mapped with the same tables the LDM export uses (`ldm_keys`), so any
AutoencoderKL config the tables describe loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .ldm_keys import VAE_PREFIX, vae_to_ldm

VAE_SUFFIXES = (".safetensors", ".pt", ".ckpt")
IGNORED_PREFIXES = ("loss.", "model_ema.")


def has_vae_weights(names: Any) -> bool:
    """Whether a checkpoint's tensor names include LDM VAE weights (`first_stage_model.*`)."""
    return any(str(name).startswith(VAE_PREFIX) for name in names)


def check_vae_path(vae: str | Path) -> Path:
    """The VAE file as a Path; a one-line error naming it if it is missing or of an unknown type."""
    path = Path(vae).expanduser()
    if path.suffix.lower() not in VAE_SUFFIXES:
        raise ValueError(f"VAE {path}: unsupported file type {path.suffix!r}; expected one of {VAE_SUFFIXES}")
    if not path.is_file():
        raise FileNotFoundError(f"VAE file {path} does not exist")
    return path


def read_vae_state(path: Path) -> dict[str, torch.Tensor]:
    """The file's VAE tensors under LDM names without prefix (loss and EMA entries dropped)."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            raw: Mapping[str, Any] = load_file(str(path))
        except Exception as error:  # safetensors' error types differ by version
            raise ValueError(f"VAE {path}: not a readable .safetensors file ({error})") from error
    else:
        from .checkpoint_io import load_ckpt_state_dict

        raw = load_ckpt_state_dict(path)
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor) or key.startswith(IGNORED_PREFIXES):
            continue
        state[key[len(VAE_PREFIX) :] if key.startswith(VAE_PREFIX) else key] = value
    return state


def load_vae_file(vae: str | Path, config: Mapping[str, Any]) -> Any:
    """An AutoencoderKL (float32, CPU) built from `config` with the weights of the VAE file `vae`."""
    from diffusers import AutoencoderKL

    path = check_vae_path(vae)
    state = read_vae_state(path)
    model = AutoencoderKL.from_config(dict(config))
    target = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    wrong: list[str] = []
    for key, reference in target.items():
        ldm_key = next(iter(vae_to_ldm({key: reference}, model.config)))[len(VAE_PREFIX) :]
        value = state.get(ldm_key)
        if value is None:
            missing.append(ldm_key)
            continue
        if reference.ndim == 2 and value.ndim == 4:
            value = value[:, :, 0, 0]  # the mid attention's 1×1 convolutions are linear layers in diffusers
        if tuple(value.shape) != tuple(reference.shape):
            wrong.append(f"{ldm_key} {tuple(value.shape)} ≠ {tuple(reference.shape)}")
            continue
        loaded[key] = value.to(torch.float32)
    if missing or wrong:
        detail = f"lacks {len(missing)} tensors, e.g. {missing[:3]}" if missing else f"has other shapes: {wrong[:3]}"
        raise ValueError(f"VAE {path}: not a VAE for this model (LDM AutoencoderKL layout expected); it {detail}")
    model.load_state_dict(loaded, strict=True)
    return model.eval()
