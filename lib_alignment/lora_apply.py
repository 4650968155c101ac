"""Apply a kohya-format LoRA file to a diffusers pipeline for generation.

diffusers' own loader (`pipe.load_lora_weights`) is used where it works; it
needs diffusers' peft backend, which is off under A1111's transformers 4.30.2
pin. There we merge the weights ourselves, for files in the diffusers module
layout our trainers write (`lora_unet_down_blocks_0_...`, `lora_te_...`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

_PREFIXES = {"lora_unet_": "unet", "lora_te_": "text_encoder", "lora_te1_": "text_encoder", "lora_te2_": "text_encoder_2"}


def apply_kohya_lora(pipe: Any, path: Path, weight: float = 1.0) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"LoRA file {path} does not exist")
    try:
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name="lora")
        pipe.set_adapters(["lora"], adapter_weights=[weight])
        return
    except (ValueError, ImportError, AttributeError, RuntimeError):
        pass  # no peft backend in this stack: merge below
    merge_kohya_lora(pipe, path, weight)


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
    index: dict[str, torch.nn.Module] = {}
    for prefix, attribute in _PREFIXES.items():
        model = getattr(pipe, attribute, None)
        if model is None:
            continue
        for name, module in model.named_modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                index[prefix + name.replace(".", "_")] = module
    return index
