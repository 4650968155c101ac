"""Progress events (JSON lines), the metrics CSV and optional TensorBoard logging.

Event schema — one JSON object per line in RUN_DIR/events.jsonl (and on stdout
with --events-stdout). Every event has "event" (its kind), "time" (Unix seconds)
and "run" (the output name). Kinds and their other fields:

- "start": "method", "step" (0, or the step a resumed run continues from),
  "total" (steps of the whole run), "resumed" (bool), "device", "processes",
  "output" (path of the LoRA the run will write), "run_dir".
- "status": "message" — a phase begins (loading the model, caching latents, exporting).
- "step": "step", "total", "epoch" (passes over the data, fractional), "loss",
  "lr", "elapsed" (seconds, including earlier sessions of a resumed run),
  "eta" (seconds left), and the method's metrics: "reward_accuracy",
  "reward_margin", "reward_margin_std", "drift" (mean|e_θ − e_ref| / mean e_ref,
  how far the LoRA moved from the base) for the preference methods, "grad_norm"
  (before clipping) for all; "kl" (KTO); DDPO: "reward_mean",
  "reward_std", "kl_to_base" (of the epoch's samples; null when not estimated),
  "approx_kl", "clipfrac", "ratio", "advantage_abs"; see `Method.metric_names`.
- "health": a verdict on how the run is going (training.health): "state"
  ("early", "learning", "not_learning", "over_optimising", "unstable"),
  "title", "step", "reason" (with the numbers), "advice" (what to change),
  "numbers"; when the verdict changes, every tenth of the run and at the end.
- "validation": "step", "accuracy", "margin", "count" (held-out items),
  "best_step", "best" — the held-out score (see training.validation); DDPO:
  "reward", "reward_std", "count" (held-out samples) instead of accuracy and
  margin (see training.ddpo.held_out).
- "sample": "step", "path" (first image), "paths" (all preview images of that step);
  DDPO adds "epoch" and "rewards" (one per preview image).
- "checkpoint": "step", "path" (the checkpoint folder; `--resume` accepts it).
- "done": "step", "total", "reason" ("finished", "cancelled", or "target_reached"
  when DDPO's reward_target was met), "outputs"
  (paths: "lora", "metadata" (NAME.json), "preview" or null, "checkpoint" or null).
- "error": "message", "kind" ("non_finite_loss", "data", "config" or
  "exception"), "step", and "outputs" when the last good weights were saved.

A run ends with exactly one "done" or "error" event.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from ..paths import atomic_write_text

EVENT_KINDS = ("start", "status", "step", "sample", "checkpoint", "validation", "health", "done", "error")


def _clean(value: Any) -> Any:
    """JSON-safe scalars: tensors to floats, NaN/Inf to None (JSON has no NaN)."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


class EventLog:
    """Appends events to a JSONL file, optionally to a stream (stdout), and hands them to in-process listeners."""

    def __init__(
        self,
        path: Path | None,
        run: str,
        stream: TextIO | None = None,
        enabled: bool = True,
        listeners: Sequence[Callable[[dict[str, Any]], None]] = (),
    ) -> None:
        self.path = path
        self.listeners = listeners if isinstance(listeners, list) else list(listeners)  # shared: added later, heard too
        self.run = run
        self.stream = stream
        self.enabled = enabled
        self._file: TextIO | None = None
        if enabled and path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")

    def emit(self, event_kind: str, /, **fields: Any) -> dict[str, Any]:
        if event_kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {event_kind!r}")
        event = {"event": event_kind, "time": round(time.time(), 3), "run": self.run, **_clean(fields)}
        if not self.enabled:
            return event
        line = json.dumps(event, ensure_ascii=False, sort_keys=False)
        for handle in (self._file, self.stream):
            if handle is not None:
                handle.write(line + "\n")
                handle.flush()
        for listener in self.listeners:
            listener(event)
        return event

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_events(path: Path) -> list[dict[str, Any]]:
    """Parse an events file (for tests and the WebUI)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class MetricsLog:
    """RUN_DIR/metrics.csv (one row per logged step) and TensorBoard scalars when available."""

    def __init__(self, path: Path, columns: list[str], tensorboard_dir: Path | None, enabled: bool = True) -> None:
        self.path = path
        self.columns = ["step", "epoch", "loss", "lr", "elapsed", *columns]
        self.enabled = enabled
        self.tensorboard = None
        self.tensorboard_error: str | None = None
        if not enabled:
            return
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(log_dir=str(tensorboard_dir))
            except (ImportError, OSError, RuntimeError) as error:  # tensorboard missing or broken: CSV only
                self.tensorboard_error = f"TensorBoard logging is off: {error}"

    def truncate_after(self, step: int) -> None:
        """Drop rows past `step` (a resumed run rewrites them), keeping the file atomic."""
        if not self.enabled or not self.path.is_file():
            return
        rows = list(csv.DictReader(self.path.open(encoding="utf-8", newline="")))
        kept = [row for row in rows if int(float(row.get("step") or 0)) <= step]
        if len(kept) == len(rows):
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(kept)
        atomic_write_text(self.path, buffer.getvalue())

    def write(self, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: _clean(v) for k, v in values.items()}
        new = not self.path.is_file() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: ("" if clean.get(k) is None else clean.get(k)) for k in self.columns})
        if self.tensorboard is not None:
            step = int(values["step"])
            for key in self.columns[2:]:
                value = clean.get(key)
                if isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(f"train/{key}", value, step)
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None


def stdout_stream() -> TextIO:
    return sys.stdout
