"""Device and dtype selection: cuda, then mps, then cpu; half precision only where it runs."""

from __future__ import annotations

import torch

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def select_device(requested: str | None = None) -> torch.device:
    """The requested device, or the best one available ("auto" or None)."""
    if requested and requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} was asked for, but CUDA is not available here")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {requested!r} was asked for, but MPS is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def select_dtype(requested: str | None, device: torch.device) -> torch.dtype:
    """fp16 on cuda/mps and fp32 on cpu by default; bf16 only where the device supports it."""
    if requested in (None, "auto"):
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if requested not in DTYPES:
        raise ValueError(f"dtype {requested!r} is not one of {sorted(DTYPES)}")
    dtype = DTYPES[requested]
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("dtype 'bf16' was asked for, but this GPU does not support bfloat16")
    return dtype
