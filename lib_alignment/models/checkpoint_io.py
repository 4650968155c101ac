"""Read what a single-file checkpoint holds (names, a few shapes, metadata) safely.

Detection needs only tensor names and a handful of shapes, so `.safetensors`
files are read through their header without loading weights. `.ckpt` files are
unpickled only with `torch.load(weights_only=True)` (memory-mapped where the
file is a zip archive), which refuses arbitrary Python objects.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUPPORTED_SUFFIXES = (".safetensors", ".ckpt")


@dataclass
class CheckpointSummary:
    """Tensor names, shapes and (safetensors) metadata of one checkpoint."""

    path: Path
    shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, str] = field(default_factory=dict)

    def has(self, key: str) -> bool:
        return key in self.shapes

    def shape(self, key: str) -> tuple[int, ...] | None:
        return self.shapes.get(key)


def read_summary(path: Path) -> CheckpointSummary:
    """Names and shapes of every tensor in `path`; a clear ValueError if it is not a checkpoint."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(f"{path}: unsupported checkpoint type {path.suffix!r}; expected one of {SUPPORTED_SUFFIXES}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if suffix == ".safetensors":
        return _read_safetensors(path)
    state_dict = load_ckpt_state_dict(path)
    return CheckpointSummary(path, {k: tuple(v.shape) for k, v in state_dict.items() if hasattr(v, "shape")})


def _read_safetensors(path: Path) -> CheckpointSummary:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as error:  # safetensors raises its own error types, which differ by version
        raise ValueError(f"{path}: not a readable .safetensors file ({error})") from error
    return CheckpointSummary(path, shapes, metadata)


def load_ckpt_state_dict(path: Path) -> Mapping[str, Any]:
    """The state dict of a `.ckpt`, unpickled with weights_only=True only."""
    import torch

    extra: dict[str, Any] = {"mmap": True} if zipfile.is_zipfile(path) else {}
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True, **extra)
    except Exception as error:
        raise ValueError(
            f"{path}: cannot be read with torch.load(weights_only=True) ({type(error).__name__}: {error}). "
            "Only plain tensor checkpoints are accepted; convert this one to .safetensors"
        ) from error
    while isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path}: holds a {type(loaded).__name__}, not a state dict of tensors")
    return loaded
