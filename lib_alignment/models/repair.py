"""Undo what community checkpoints get wrong once diffusers has built a pipeline from them.

`position_ids`: many single-file checkpoints store the CLIP text model's
`embeddings.position_ids` as float32 or fp16 (some with rounding error such as
76.9999). transformers < 4.31 keeps the ids as a persistent buffer, so
diffusers loads that float tensor into the model and the embedding lookup fails
at the first forward pass ("Expected tensor for argument #1 'indices' ... got
torch.FloatTensor"). The ids are always 0..n-1, so every such buffer is reset to
`torch.arange(n)` as int64, whatever the file held or whether it held any.

dtype: all-fp16 or bf16 files can leave components (or single tensors) in the
file's dtype; the loaders promise float32 on the CPU, so everything floating is
cast to float32 (exact for both).
"""

from __future__ import annotations

from typing import Any

import torch


def text_encoders(pipe: Any) -> list[torch.nn.Module]:
    """The pipeline's text encoder modules (one for SD1/SD2, two for SDXL)."""
    components = getattr(pipe, "components", {})
    return [m for name, m in components.items() if name.startswith("text_encoder") and isinstance(m, torch.nn.Module)]


def reset_position_ids(pipe: Any) -> int:
    """Set every text encoder's `position_ids` buffer to arange(n) int64 on its device; returns how many."""
    count = 0
    for encoder in text_encoders(pipe):
        for module in encoder.modules():
            buffer = module._buffers.get("position_ids")
            if buffer is None:
                continue
            ids = torch.arange(buffer.shape[-1], dtype=torch.long, device=buffer.device)
            module._buffers["position_ids"] = ids.expand(buffer.shape).clone()
            count += 1
    return count


def cast_to_float32(pipe: Any) -> None:
    """Cast every floating tensor of every component to float32 (integer buffers keep their dtype)."""
    for component in getattr(pipe, "components", {}).values():
        if not isinstance(component, torch.nn.Module):
            continue
        tensors = list(component.parameters()) + list(component.buffers())
        if any(t.is_floating_point() and t.dtype != torch.float32 for t in tensors):
            component.to(dtype=torch.float32)


def repair_pipeline(pipe: Any) -> Any:
    """float32 everywhere, then integer position ids (casting would turn float ids into float32 again)."""
    cast_to_float32(pipe)
    reset_position_ids(pipe)
    return pipe
