"""Apply a kohya-format LoRA file to a diffusers pipeline for generation.

diffusers' own loader (`pipe.load_lora_weights`) is used where it works; it
needs diffusers' peft backend, which is off under A1111's transformers 4.30.2
pin. There we merge the weights ourselves, for files in the diffusers module
layout (`lora_unet_down_blocks_0_...`, `lora_te_...`) or the LDM one our trainers write
for non-standard UNet layouts (`lora_unet_input_blocks_3_1_...`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

_PREFIXES = {"lora_unet_": "unet", "lora_te_": "text_encoder", "lora_te1_": "text_encoder", "lora_te2_": "text_encoder_2"}


def apply_kohya_lora(pipe: Any, path: Path, weight: float = 1.0) -> None:
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"LoRA file {path} does not exist")
    try:
        # diffusers' SD1/SD2 loader cannot number LDM-layout blocks: hand it this pipeline's own names
        pipe.load_lora_weights(names_for_diffusers(load_file(str(path)), pipe), adapter_name="lora")
        pipe.set_adapters(["lora"], adapter_weights=[weight])
        return
    except (ValueError, ImportError, AttributeError, RuntimeError):
        pass  # no peft backend in this stack: merge below
    merge_kohya_lora(pipe, path, weight)


def names_for_diffusers(state: dict[str, torch.Tensor], pipe: Any) -> dict[str, torch.Tensor]:
    """The same kohya tensors named after this pipeline's modules: LDM-layout UNet names
    (`lora_unet_input_blocks_3_1_…`) become diffusers ones, and text-encoder names lose the
    `text_model` level where this transformers version has none."""
    names = {spelling: own for spelling, own, _ in _kohya_spellings(pipe)}
    renamed = {}
    for key, value in state.items():
        base, _, part = key.partition(".")
        renamed[f"{names.get(base, base)}.{part}"] = value
    return renamed


def merge_kohya_lora(pipe: Any, path: Path, weight: float = 1.0) -> int:
    """W += weight · alpha/rank · up @ down for every LoRA pair; returns the number of modules changed."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    modules = _kohya_module_index(pipe)
    bases = {key.split(".", 1)[0] for key in state}
    missing = sorted(b for b in bases if b not in modules)
    if missing:
        raise ValueError(f"{path}: {len(missing)} LoRA modules match nothing in this model, e.g. {missing[0]!r}")
    for base in sorted(bases):
        module = modules[base]
        down = state[f"{base}.lora_down.weight"].float()
        up = state[f"{base}.lora_up.weight"].float()
        rank = down.shape[0]
        alpha = float(state.get(f"{base}.alpha", torch.tensor(rank)).item())
        if down.ndim == 4:
            delta = torch.nn.functional.conv2d(down.permute(1, 0, 2, 3), up).permute(1, 0, 2, 3) if up.shape[-1] == 1 else None
            if delta is None:
                raise ValueError(f"{path}: {base} has an unsupported convolution LoRA layout")
        else:
            delta = up @ down
        with torch.no_grad():
            target = module.weight
            scaled = (weight * alpha / rank * delta).reshape(target.shape)
            target.add_(scaled.to(device=target.device, dtype=target.dtype))
    return len(bases)


def _kohya_module_index(pipe: Any) -> dict[str, torch.nn.Module]:
    """kohya base name → module; UNet modules under both their diffusers and their LDM names."""
    return {spelling: module for spelling, _, module in _kohya_spellings(pipe)}


def _kohya_spellings(pipe: Any) -> Iterator[tuple[str, str, torch.nn.Module]]:
    """(a kohya base name a file may use, the name of the same layer in this pipeline, the layer) for every
    Linear/Conv2d: UNet layers also under their LDM-layout name, text-encoder layers also under the
    transformers 4 name with `text_model.`."""
    from .models.ldm_keys import unet_ldm_names
    from .training.export import with_text_model_level

    for prefix, attribute in _PREFIXES.items():
        model = getattr(pipe, attribute, None)
        if model is None:
            continue
        ldm = unet_ldm_names(model) if attribute == "unet" else {}
        for name, module in model.named_modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                own = prefix + name.replace(".", "_")
                other = ldm.get(name) if attribute == "unet" else with_text_model_level(name)
                yield own, own, module
                if other is not None:
                    yield prefix + other.replace(".", "_"), own, module
