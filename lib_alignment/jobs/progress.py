"""What a job's events file says so far: read incrementally, summarised for the tab and the API.

The trainer appends JSON lines to RUN_DIR/events.jsonl (schema in
lib_alignment/training/events.py); a resumed run appends to the same file.
`EventSummary.update()` reads only what was added since the last call (whole
lines only: the trainer may be writing the last one), so polling every two
seconds costs next to nothing even for long runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Step-event keys that are not metrics.
_NOT_METRICS = {"event", "time", "run", "step", "total", "epoch", "lr", "elapsed", "eta"}
#: Step-event keys that are not curves (lr is one: it is plotted on request).
_SERIES_SKIP = _NOT_METRICS - {"lr"}
#: The reward-like curve to plot beside the loss, first one present wins (held-out accuracy before the
#: training accuracy: it is the one that says whether the run generalises).
REWARD_KEYS = ("reward_mean", "reward", "heldout_accuracy", "reward_accuracy", "reward_margin")
#: Step events kept to measure speed.
_SPEED_WINDOW = 20


@dataclass
class EventSummary:
    """The figures the UI needs from one events file."""

    path: Path
    offset: int = 0
    events: int = 0
    total: int | None = None
    step: int = 0
    last_step: dict[str, Any] = field(default_factory=dict)
    #: metric name -> [(step, value)], rewritten from a resume point on
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    status: str = ""
    start: dict[str, Any] | None = None
    starts: list[dict[str, Any]] = field(default_factory=list)
    ending: dict[str, Any] | None = None
    #: the trainer's latest "health" verdict (state, title, reason, advice, numbers)
    verdict: dict[str, Any] | None = None
    #: held-out scores: "validation" events in order
    validations: list[dict[str, Any]] = field(default_factory=list)
    _recent: list[tuple[float, int]] = field(default_factory=list)
    _partial: bytes = b""

    def update(self) -> bool:
        """Read new lines; True when anything changed."""
        try:
            size = self.path.stat().st_size
        except OSError:
            return False
        if size < self.offset:  # replaced or truncated: start over
            fresh = EventSummary(self.path)
            self.__dict__.update(fresh.__dict__)
        if size == self.offset:
            return False
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read(size - self.offset)
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an unfinished last line waits for the next call
        changed = False
        for raw in lines:
            if not raw.strip():
                continue
            try:
                event = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            self._apply(event)
            changed = True
        return changed

    def _apply(self, event: dict[str, Any]) -> None:
        self.events += 1
        kind = event.get("event")
        if kind == "status":
            self.status = str(event.get("message", ""))
        elif kind == "start":
            self.start = event
            self.starts.append(event)
            self.ending = None
            self.total = _int(event.get("total"), self.total)
            self.step = _int(event.get("step"), 0) or 0
            self._recent = []
            self.status = "training"
            for name, points in self.series.items():  # a resumed run rewrites what came after its checkpoint
                self.series[name] = [p for p in points if p[0] <= self.step]
            self.samples = [s for s in self.samples if _int(s.get("step"), 0) <= self.step]
            self.validations = [v for v in self.validations if (_int(v.get("step"), 0) or 0) <= self.step]
        elif kind == "step":
            self.step = _int(event.get("step"), self.step) or 0
            self.total = _int(event.get("total"), self.total)
            self.last_step = event
            self._recent.append((float(event.get("time", 0.0)), self.step))
            del self._recent[:-_SPEED_WINDOW]
            for key, value in event.items():
                if key in _SERIES_SKIP or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                self.series.setdefault(key, []).append((self.step, float(value)))
        elif kind == "health":
            self.verdict = event
        elif kind == "validation":
            step = _int(event.get("step"), 0) or 0
            self.validations = [v for v in self.validations if (_int(v.get("step"), 0) or 0) < step] + [event]
            for key, name in (("accuracy", "heldout_accuracy"), ("margin", "heldout_margin"), ("reward", "heldout_reward")):
                value = event.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    points = [p for p in self.series.get(name, []) if p[0] < step]
                    self.series[name] = [*points, (step, float(value))]
        elif kind == "sample":
            self.samples.append(event)
        elif kind == "checkpoint":
            self.checkpoints.append(event)
        elif kind in ("done", "error"):
            self.ending = event
            if kind == "done":
                self.step = _int(event.get("step"), self.step) or 0
                self.total = _int(event.get("total"), self.total)

    # ------------------------------------------------------------------ views
    def seconds_per_step(self) -> float | None:
        """Recent speed: seconds per step over the last steps of the current session."""
        if len(self._recent) >= 2:
            (t0, s0), (t1, s1) = self._recent[0], self._recent[-1]
            if s1 > s0 and t1 > t0:
                return (t1 - t0) / (s1 - s0)
        eta, step, total = self.last_step.get("eta"), self.last_step.get("step"), self.last_step.get("total")
        if isinstance(eta, (int, float)) and isinstance(step, int) and isinstance(total, int) and total > step:
            return float(eta) / (total - step)
        elapsed = self.last_step.get("elapsed")
        if isinstance(elapsed, (int, float)) and self.step:
            return float(elapsed) / self.step
        return None

    def eta(self) -> float | None:
        per_step = self.seconds_per_step()
        if per_step is None or self.total is None:
            return None
        return max(0.0, per_step * (self.total - self.step))

    def figures(self) -> dict[str, float]:
        """The last logged value of every metric (loss, reward accuracy, ...)."""
        return {
            k: v
            for k, v in self.last_step.items()
            if k not in _NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)
        }

    def health_keys(self) -> list[str]:
        """The health curves this run has, in plotting order (held-out accuracy first when validated)."""
        order = ("heldout_accuracy", "reward_accuracy", "reward_margin", "drift", "grad_norm", "heldout_reward", "reward_mean", "kl_to_base", "approx_kl", "clipfrac")
        return [key for key in order if self.series.get(key)]

    def reward_key(self) -> str | None:
        for key in REWARD_KEYS:
            if self.series.get(key):
                return key
        return None

    def sample_paths(self) -> list[str]:
        """Every preview image written so far, oldest first."""
        paths: list[str] = []
        for event in self.samples:
            paths.extend(str(p) for p in (event.get("paths") or ([event["path"]] if event.get("path") else [])))
        return paths

    def events_since(self, when: float) -> bool:
        """True when the file holds a start/status/step event written at or after `when` (Unix seconds)."""
        last = self.starts[-1] if self.starts else None
        return bool(last and float(last.get("time", 0)) >= when) or bool(
            self.last_step and float(self.last_step.get("time", 0)) >= when
        )


def _int(value: Any, default: int | None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
