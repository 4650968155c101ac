"""Blind A/B evaluation of a LoRA: base and LoRA images from the same seeds, shown in random order.

`ABTest.create` takes the base ("before") and LoRA ("after") images of each
(prompt, seed) and puts them left/right by a seeded coin, so whoever judges —
a person in the Compare view, or an oracle/reward (`judge_with`) — cannot tell
which is which. Each pick is "left", "right" or "skip"; `summary()` gives the
LoRA's win rate over the non-skipped pairs with a 95% Wilson interval and a
per-prompt table, and `save()` appends the result to NAME.alignment-compare.json
beside the LoRA (every finished comparison of that LoRA, each with its id,
time, judge, picks and where its images were kept; atomic write) and puts the
latest on its card's notes (NAME.json), which the WebUIs' Lora cards show.
`saved_results` reads them back (the Compare view's past results survive a
restart). Picks can become preference pairs (`preference_rows`, the layout of
Rank & Refine's pairs.csv).
"""

from __future__ import annotations

import json
import math
import os
import random
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..paths import atomic_save_image, atomic_write_json

PICKS = ("left", "right", "skip")
#: NAME + this, beside NAME.safetensors: every finished comparison of that LoRA.
RESULTS_SUFFIX = ".alignment-compare.json"
#: What one comparison was saved as before (read, never written).
LEGACY_SUFFIX = ".ab.json"
_SAVE_LOCK = threading.Lock()


def wilson_interval(wins: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a win rate (0, 1 when nothing was judged)."""
    if n <= 0:
        return 0.0, 1.0
    p = wins / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class ABPair:
    """One comparison: which side shows the LoRA, and the pick once made."""

    index: int
    prompt: str
    seed: int
    lora_left: bool
    pick: str | None = None

    @property
    def lora_won(self) -> bool | None:
        if self.pick in (None, "skip"):
            return None
        return (self.pick == "left") == self.lora_left


@dataclass
class ABTest:
    lora: str
    weight: float
    pairs: list[ABPair] = field(default_factory=list)
    judge: str = "person"
    #: names the comparison in NAME.alignment-compare.json (the Compare view uses its session id)
    id: str = field(default_factory=lambda: secrets.token_hex(8))

    @classmethod
    def create(cls, lora: str, weight: float, prompts: Sequence[str], seeds: Sequence[int], shuffle_seed: int = 0) -> ABTest:
        """Pairs prompt-major (as `before_after_images` returns images), sides by a seeded coin."""
        rng = random.Random(shuffle_seed)
        pairs = [ABPair(i, prompt, int(seed), rng.random() < 0.5) for i, (prompt, seed) in enumerate((p, s) for p in prompts for s in seeds)]
        return cls(lora=str(lora), weight=float(weight), pairs=pairs)

    def sides(self, index: int, base: Image.Image, lora: Image.Image) -> tuple[Image.Image, Image.Image]:
        """(left, right) images of pair `index`."""
        return (lora, base) if self.pairs[index].lora_left else (base, lora)

    def record(self, index: int, pick: str) -> None:
        if pick not in PICKS:
            raise ValueError(f"pick must be one of {', '.join(PICKS)}, not {pick!r}")
        self.pairs[index].pick = pick

    def next_open(self) -> int | None:
        return next((p.index for p in self.pairs if p.pick is None), None)

    def judge_with(self, oracle: Any, base: Sequence[Image.Image], lora: Sequence[Image.Image]) -> None:
        """Picks by an oracle/reward's scores (`score(images, prompt)`, higher is better); equal scores skip."""
        self.judge = str(getattr(oracle, "name", type(oracle).__name__))
        for pair in self.pairs:
            left, right = self.sides(pair.index, base[pair.index], lora[pair.index])
            scores = [float(s) for s in oracle.score([left, right], pair.prompt)]
            self.record(pair.index, "skip" if scores[0] == scores[1] else ("left" if scores[0] > scores[1] else "right"))

    def summary(self) -> dict[str, Any]:
        """LoRA win rate with its 95% interval, counts, and a per-prompt table."""
        judged = [p for p in self.pairs if p.lora_won is not None]
        wins = sum(1 for p in judged if p.lora_won)
        low, high = wilson_interval(wins, len(judged))
        prompts: dict[str, dict[str, int]] = {}
        for pair in self.pairs:
            row = prompts.setdefault(pair.prompt, {"lora": 0, "base": 0, "skipped": 0, "open": 0})
            key = "open" if pair.pick is None else ("skipped" if pair.lora_won is None else ("lora" if pair.lora_won else "base"))
            row[key] += 1
        return {
            "lora": self.lora,
            "weight": self.weight,
            "judge": self.judge,
            "judged": len(judged),
            "lora_wins": wins,
            "skipped": sum(1 for p in self.pairs if p.pick == "skip"),
            "open": sum(1 for p in self.pairs if p.pick is None),
            "win_rate": wins / len(judged) if judged else None,
            "interval": [low, high],
            "per_prompt": prompts,
        }

    def text(self) -> str:
        s = self.summary()
        if not s["judged"]:
            return f"A/B ({s['judge']}): nothing judged yet"
        return (f"A/B ({s['judge']}, weight {s['weight']:g}): LoRA preferred in {s['lora_wins']} of {s['judged']} "
                f"({100 * s['win_rate']:.0f}%, 95% CI {100 * s['interval'][0]:.0f}–{100 * s['interval'][1]:.0f}%), {s['skipped']} skipped")

    def as_record(self, images: str | None = None) -> dict[str, Any]:
        """What NAME.alignment-compare.json keeps of this comparison."""
        return {"id": self.id, "finished": time.time(), "text": self.text(), "summary": self.summary(),
                "pairs": [asdict(p) for p in self.pairs], "images": images}

    def save(self, images: str | Path | None = None) -> Path:
        """Append this result to NAME.alignment-compare.json beside the LoRA (a result with the same id is
        replaced) and put it in NAME.json's notes; `images`: the folder holding base-NNN.png / lora-NNN.png."""
        lora = Path(self.lora)
        path = results_path(lora)
        with _SAVE_LOCK:
            results = [r for r in _read_results(path, keep_bad=True) if r.get("id") != self.id]
            results.append(self.as_record(str(images) if images else None))
            atomic_write_json(path, {"version": 1, "lora": lora.name, "results": results})
            card = lora.with_name(lora.stem + ".json")
            if card.is_file():
                data = json.loads(card.read_text(encoding="utf-8"))
                notes = [line for line in str(data.get("notes", "")).splitlines() if not line.startswith("A/B (")]
                line = self.text() + (f" [{len(results)} comparisons in {path.name}]" if len(results) > 1 else "")
                data["notes"] = "\n".join([*notes, line]).strip()
                atomic_write_json(card, data)
        return path

    def preference_rows(self, base_paths: Sequence[str], lora_paths: Sequence[str]) -> list[list[Any]]:
        """pairs.csv rows (caption, image_0, image_1, label_0, label_1), the picked image first."""
        rows = []
        for pair in self.pairs:
            if pair.lora_won is None:
                continue
            better, worse = (lora_paths[pair.index], base_paths[pair.index]) if pair.lora_won else (base_paths[pair.index], lora_paths[pair.index])
            rows.append([pair.prompt, better, worse, 1, 0])
        return rows


def results_path(lora: str | Path) -> Path:
    """NAME.alignment-compare.json beside NAME.safetensors."""
    lora = Path(lora)
    return lora.with_name(lora.stem + RESULTS_SUFFIX)


def _read_results(path: Path, keep_bad: bool = False) -> list[dict[str, Any]]:
    """The results in one file ([] if none). An unreadable file is moved aside (keep_bad) rather than overwritten."""
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        results = data["results"] if path.name.endswith(RESULTS_SUFFIX) else [{"id": path.stem, "finished": path.stat().st_mtime, **data}]
        if not isinstance(results, list):
            raise ValueError("results is not a list")
        return [r for r in results if isinstance(r, dict) and isinstance(r.get("summary"), dict)]
    except (OSError, ValueError, KeyError, TypeError):
        if keep_bad:
            os.replace(path, path.with_name(f"{path.name}.unreadable-{int(time.time())}"))
        return []


def saved_results(folder: str | Path) -> list[dict[str, Any]]:
    """Every saved comparison of the LoRAs in `folder` (and subfolders), newest first, each with "file"."""
    root = Path(folder)
    if not root.is_dir():
        return []
    found: list[dict[str, Any]] = []
    for pattern in ("*" + RESULTS_SUFFIX, "*" + LEGACY_SUFFIX):
        for path in root.rglob(pattern):
            found += [{**record, "file": str(path)} for record in _read_results(path)]
    return sorted(found, key=lambda r: float(r.get("finished") or 0), reverse=True)


def save_images(folder: Path, base: Sequence[Image.Image], lora: Sequence[Image.Image]) -> tuple[list[str], list[str]]:
    """base-NNN.png / lora-NNN.png in `folder` (for preference rows), relative names returned."""
    names: tuple[list[str], list[str]] = ([], [])
    for kind, images, out in (("base", base, names[0]), ("lora", lora, names[1])):
        for i, image in enumerate(images):
            name = f"{kind}-{i:03d}.png"
            atomic_save_image(image, folder / name)
            out.append(name)
    return names


__all__ = ["PICKS", "RESULTS_SUFFIX", "ABPair", "ABTest", "results_path", "save_images", "saved_results", "wilson_interval"]
