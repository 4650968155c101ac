"""Resumable training state: LoRA weights, optimizer, schedule, random generators, data position.

A checkpoint is a folder RUN_DIR/checkpoints/step-NNNNNN/ holding
- state.json: step, samples consumed per process, elapsed seconds, the config;
- state.bin: LoRA parameters (exact, by module name), optimizer, LR schedule and
  loss-scaler state (torch.save; read back with weights_only=True);
- rng-RANK.bin: each process's generators (global torch, CUDA, the trainer's
  noise/timestep generator, Python's `random`), plus what else a trainer keeps
  per process (`Trainer.process_state`: DDPO's current epoch of trajectories).
It is written into a temporary folder and renamed, so a folder that exists is complete.
Tensors use `.bin` rather than `.safetensors` so the WebUI's Lora list, which
scans the Lora folder recursively, does not offer them as LoRAs.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..paths import atomic_write_json

FORMAT_VERSION = 1
PREFIX = "step-"


@dataclass
class TrainingState:
    step: int = 0
    consumed: int = 0
    elapsed: float = 0.0
    started_at: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    #: Where the data stood (epoch, offset, seed, next item; shard, row group and row for streamed data), for people and
    #: for a check on resume: the stream itself restarts from `consumed` without re-reading what was used.
    data_position: dict[str, Any] = field(default_factory=dict)


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"{PREFIX}{step:06d}"


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: Path,
    state: TrainingState,
    tensors: dict[str, Any] | None,
    rng: dict[str, Any],
    rank: int = 0,
    keep: int = 0,
) -> Path:
    """Write this process's part of a checkpoint; rank 0 writes the shared state and renames the folder.

    With several processes, call on every rank and synchronise around it: ranks
    > 0 write their RNG file into the final folder's temporary twin first.
    """
    final = checkpoint_dir(run_dir, state.step)
    tmp = final.with_name(final.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save(rng, tmp / f"rng-{rank}.bin")
    if rank == 0:
        if tensors is not None:
            torch.save(tensors, tmp / "state.bin")
        atomic_write_json(
            tmp / "state.json",
            {
                "format": FORMAT_VERSION,
                "step": state.step,
                "consumed": state.consumed,
                "elapsed": state.elapsed,
                "started_at": state.started_at,
                "config": state.config,
                "data_position": state.data_position,
            },
        )
    return final


def finalize_checkpoint(run_dir: Path, step: int, keep: int = 0) -> Path:
    """Rank 0, after every rank wrote its part: publish the folder and prune old checkpoints."""
    final = checkpoint_dir(run_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    if keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and not p.name.endswith(".tmp") and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder itself, or the latest checkpoint of a run folder."""
    location = Path(path).expanduser()
    if (location / "state.json").is_file():
        return location
    found = list_checkpoints(location)
    if not found:
        raise FileNotFoundError(f"--resume {location}: neither a checkpoint folder (with state.json) nor a run folder with checkpoints/")
    return found[-1]


def read_state(folder: Path) -> TrainingState:
    try:
        data = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{folder / 'state.json'}: unreadable checkpoint state: {error}") from None
    if data.get("format") != FORMAT_VERSION:
        raise ValueError(f"{folder}: checkpoint format {data.get('format')!r} is not {FORMAT_VERSION}")
    return TrainingState(
        step=int(data["step"]),
        consumed=int(data["consumed"]),
        elapsed=float(data.get("elapsed", 0.0)),
        started_at=float(data.get("started_at", 0.0)),
        config=dict(data.get("config", {})),
        data_position=dict(data.get("data_position") or {}),
    )


def load_tensors(folder: Path) -> dict[str, Any]:
    return torch.load(folder / "state.bin", map_location="cpu", weights_only=True)


def load_rng(folder: Path, rank: int) -> dict[str, Any]:
    path = folder / f"rng-{rank}.bin"
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no random-generator state for process {rank}; resume with the same number of processes")
    return torch.load(path, map_location="cpu", weights_only=True)
