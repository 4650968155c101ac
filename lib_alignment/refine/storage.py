"""On-disk pieces of a refine session: optimiser snapshots and latent files, written atomically.

An optimiser `state_dict()` is stored as one safetensors file: its tensors as
tensors, everything else (python scalars, the light history) as JSON in the
file's metadata under "state", so one atomic write keeps both consistent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..paths import atomic_write_bytes

STATE_KEY = "state"


def save_state(path: Path, state: dict[str, Any]) -> None:
    from safetensors.torch import save

    tensors = {key: value.detach().cpu().contiguous() for key, value in state.items() if isinstance(value, torch.Tensor)}
    scalars = {key: value for key, value in state.items() if not isinstance(value, torch.Tensor)}
    atomic_write_bytes(path, save(tensors, metadata={STATE_KEY: json.dumps(scalars)}))


def load_state(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(f"optimiser state {path} is missing")
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        if STATE_KEY not in metadata:
            raise ValueError(f"{path} is not an optimiser state file (no '{STATE_KEY}' metadata)")
        state: dict[str, Any] = json.loads(metadata[STATE_KEY])
        for key in handle.keys():
            state[key] = handle.get_tensor(key)
    return state


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save

    data = {key: value.detach().cpu().contiguous() for key, value in tensors.items()}
    atomic_write_bytes(path, save(data, metadata=metadata))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(f"latent file {path} is missing")
    with safe_open(str(path), framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})
