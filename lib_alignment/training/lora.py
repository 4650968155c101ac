"""LoRA on the UNet and text encoders through peft, and the adapter switch the reference pass uses.

peft's `inject_adapter_in_model` is used directly instead of diffusers'
`add_adapter`, which needs diffusers' peft backend (off in the A1111 stack,
whose transformers is too old). The reference model of DPO/KTO is the same
module with its adapters switched off, never a second copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch


def add_lora(
    model: torch.nn.Module,
    rank: int,
    alpha: float,
    dropout: float,
    targets: Sequence[str],
    what: str = "model",
) -> list[torch.nn.Parameter]:
    """Freeze `model`, inject a LoRA adapter into the named modules, return the trainable parameters.

    The down (A) weights are initialised randomly and the up (B) weights to zero,
    so the adapted model starts out equal to the base model.
    """
    from peft import LoraConfig, inject_adapter_in_model

    if getattr(model, "peft_config", None):
        raise ValueError(f"the {what} already carries a LoRA adapter (a pipeline trained before?): pass a freshly loaded model")
    model.requires_grad_(False)
    config = LoraConfig(
        r=int(rank),
        lora_alpha=float(alpha),
        lora_dropout=float(dropout),
        target_modules=list(targets),
        init_lora_weights=True,
    )
    try:
        inject_adapter_in_model(config, model, adapter_name="default")
    except ValueError as error:
        raise ValueError(f"cannot add LoRA to the {what}: {error} (targets: {', '.join(targets)})") from None
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    if not params:
        raise ValueError(f"no module of the {what} matches the LoRA targets {', '.join(targets)}")
    for p in params:
        p.requires_grad_(True)
    return params


def lora_layers(models: Iterable[torch.nn.Module]) -> list[torch.nn.Module]:
    """Every peft adapter layer inside the given models."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for model in models for m in model.modules() if isinstance(m, BaseTunerLayer)]


def _set_enabled(layer: torch.nn.Module, enabled: bool) -> None:
    if hasattr(layer, "_disable_adapters"):
        # The flag every peft LoRA forward reads. `enable_adapters` would also flip requires_grad
        # on each adapter (a few ms per toggle on a big UNet, twice per step) — pointless under no_grad.
        layer._disable_adapters = not enabled
    else:
        layer.enable_adapters(enabled)


@contextmanager
def adapters_disabled(layers: Sequence[torch.nn.Module]) -> Iterator[None]:
    """Run the base (reference) model: adapters off inside, back on (and trainable) after."""
    for layer in layers:
        _set_enabled(layer, False)
    try:
        yield
    finally:
        for layer in layers:
            _set_enabled(layer, True)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA parameters under their full module names (for exact checkpoints)."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" in name}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str = "model") -> None:
    """Copy checkpointed LoRA parameters back, bit for bit; the names must match exactly."""
    params = {name: p for name, p in model.named_parameters() if "lora_" in name}
    missing = sorted(set(params) - set(state))
    unexpected = sorted(set(state) - set(params))
    if missing or unexpected:
        raise ValueError(
            f"the checkpoint's LoRA for the {what} does not fit this model "
            f"({len(missing)} missing, {len(unexpected)} unexpected; e.g. {(missing or unexpected)[0]}): "
            "were rank or targets changed?"
        )
    with torch.no_grad():
        for name, p in params.items():
            value = state[name]
            if value.shape != p.shape:
                raise ValueError(f"{what} LoRA {name}: checkpoint shape {tuple(value.shape)} ≠ model shape {tuple(p.shape)}")
            p.copy_(value.to(p.device, p.dtype))


def peft_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """peft's own LoRA state dict (adapter name removed), the input of diffusers' kohya converter."""
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(model, adapter_name="default")
