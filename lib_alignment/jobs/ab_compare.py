"""Blind A/B comparisons judged by a person: the sessions behind the tab's Compare view and /alignment/v1/compare.

A session renders the base and LoRA images of every (prompt, seed) through the
host's generation backend (`before_after_images`), keeps them in memory with an
`ABTest` (seeded, unpredictable left/right order), and hands out one pair at a
time as ("A", "B") images. Nothing a caller sees before the end tells which side
is the LoRA; after the last pick the images are kept under OUTPUT/compare/NAME-ID/,
the result is appended to NAME.alignment-compare.json beside the LoRA (and put on
its card), and returned. Finished comparisons are read back from those files, so
the list of past results and adding their picks to the preference data survive
a restart. Picks go to the preference store (lib_alignment.preferences) as
judgements of source "ab-compare"; without the store, to a pairs.csv.
"""

from __future__ import annotations

import csv
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..training.ab_test import ABPair, ABTest, save_images, saved_results

#: The preference store's source name of A/B picks.
PICK_SOURCE = "ab-compare"

CHOICES = {"A": "left", "B": "right", "skip": "skip"}
MAX_PAIRS = 200
MAX_SESSIONS = 8  # the oldest open comparison (and its images) goes first


class CompareNotFound(KeyError):
    """No comparison with that id (never started, or dropped as the oldest)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no such comparison"


@dataclass
class Pair:
    """What a judge sees of one comparison: its place and the two images, A on the left."""

    index: int
    number: int
    total: int
    images: tuple[Image.Image, Image.Image]


@dataclass
class Comparison:
    """One blind test: the ABTest and the images it was made of (prompt-major, like its pairs)."""

    id: str
    test: ABTest
    base: list[Image.Image]
    lora: list[Image.Image]
    saved: str | None = None
    exported: str | None = None
    created: float = field(default_factory=time.time)

    @property
    def done(self) -> bool:
        return self.test.next_open() is None

    @property
    def picked(self) -> int:
        return sum(1 for p in self.test.pairs if p.pick is not None)

    def pair(self) -> Pair | None:
        """The next unjudged pair as (A, B), or None when all are judged."""
        index = self.test.next_open()
        if index is None:
            return None
        left, right = self.test.sides(index, self.base[index], self.lora[index])
        return Pair(index, self.picked + 1, len(self.test.pairs), (left, right))

    def result(self) -> dict[str, Any] | None:
        """The summary (win rate, interval, per-prompt table) once every pair is judged; None before."""
        if not self.done:
            return None
        return {**self.test.summary(), "text": self.test.text(), "saved": self.saved, "exported": self.exported}


def lora_files(folder: Path) -> list[Path]:
    """The .safetensors LoRAs in `folder` and its subfolders, by name."""
    if not folder.is_dir():
        return []
    return sorted(folder.rglob("*.safetensors"), key=lambda p: p.stem.lower())


def resolve_lora(folder: Path, name: str) -> Path:
    """A LoRA named by its file name or stem (in `folder`), or by a path to an existing file."""
    name = (name or "").strip()
    if not name:
        raise ValueError("lora: choose a LoRA")
    path = Path(name)
    if path.is_absolute() and path.is_file():
        return path
    for candidate in lora_files(folder):
        if name in (candidate.stem, candidate.name):
            return candidate
    raise FileNotFoundError(f"lora: no LoRA named {name!r} in {folder}")


class CompareSessions:
    """The open comparisons of one host (shared by the tab and the API through `AppContext.service`)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._open: dict[str, Comparison] = {}

    def start(
        self,
        lora: str,
        weight: float,
        prompts: list[str],
        seeds: list[int],
        steps: int = 20,
        cfg_scale: float = 7.0,
        size: int | None = None,
    ) -> Comparison:
        """Render base and LoRA images of every prompt × seed (size: pixels, default the model's) and open a
        blind test of them."""
        from .compare import before_after_images

        prompts = [p.strip() for p in prompts if p and p.strip()]
        seeds = [int(s) for s in seeds]
        if not prompts:
            raise ValueError("prompts: give at least one prompt")
        if not seeds:
            raise ValueError("seeds: give at least one seed")
        if len(prompts) * len(seeds) > MAX_PAIRS:
            raise ValueError(f"prompts × seeds: at most {MAX_PAIRS} pairs (got {len(prompts) * len(seeds)})")
        if not 1 <= int(steps) <= 150:
            raise ValueError(f"steps: between 1 and 150 (got {steps})")
        if size is not None and (int(size) % 8 or not 64 <= int(size) <= 2048):
            raise ValueError(f"size: a multiple of 8 from 64 to 2048 pixels (got {size})")
        path = resolve_lora(Path(self.ctx.lora_dir), lora)
        base, lora_images = before_after_images(
            self.ctx.backend(), path, path.stem, prompts, seeds, self.ctx.in_webui,
            weight=float(weight), steps=int(steps), cfg_scale=float(cfg_scale), size=int(size) if size else None,
        )  # fmt: skip
        test = ABTest.create(str(path), float(weight), prompts, seeds, shuffle_seed=secrets.randbits(64))
        comparison = Comparison(secrets.token_hex(16), test, base, lora_images)
        test.id = comparison.id
        with self._lock:
            self._open[comparison.id] = comparison
            for old in sorted(self._open.values(), key=lambda c: c.created)[: max(0, len(self._open) - MAX_SESSIONS)]:
                del self._open[old.id]
        return comparison

    def get(self, compare_id: str) -> Comparison:
        with self._lock:
            found = self._open.get(str(compare_id or ""))
        if found is None:
            raise CompareNotFound(f"no comparison {compare_id!r}")
        return found

    def pick(self, compare_id: str, choice: str, index: int | None = None) -> Comparison:
        """Record "A", "B" or "skip" for the pair on show (`index`, when given, must be that pair);
        after the last pick the test is saved beside the LoRA."""
        if choice not in CHOICES:
            raise ValueError(f"choice: one of A, B, skip (got {choice!r})")
        comparison = self.get(compare_id)
        with self._lock:
            current = comparison.test.next_open()
            if current is None:
                raise ValueError("choice: every pair of this comparison is judged already")
            if index is not None and int(index) != current:
                raise ValueError(f"index: pair {index} is not the one on show ({current})")
            comparison.test.record(current, CHOICES[choice])
            if comparison.done:
                folder = Path(self.ctx.output_dir) / "compare" / f"{Path(comparison.test.lora).stem}-{comparison.id[:8]}"
                save_images(folder, comparison.base, comparison.lora)
                comparison.saved = str(comparison.test.save(images=folder))
        return comparison

    def past(self) -> list[dict[str, Any]]:
        """Every saved comparison of the LoRAs in the Lora folder, newest first (read from the files)."""
        return saved_results(Path(self.ctx.lora_dir))

    def saved(self, compare_id: str) -> dict[str, Any]:
        """A finished comparison as saved beside its LoRA (after a restart as well)."""
        found = next((r for r in self.past() if r.get("id") == str(compare_id or "")), None)
        if found is None:
            raise CompareNotFound(f"no comparison {compare_id!r}")
        return found

    def export_picks(self, compare_id: str) -> dict[str, Any]:
        """Add a finished comparison's picks to the preference data, the picked image the winner.

        Into the preference store when there is one ({"store", "added", "already"}; adding the same
        comparison twice adds nothing), else as a DPO pairs.csv beside its images ({"pairs_csv"}).
        """
        try:
            live: Comparison | None = self.get(compare_id)
        except CompareNotFound:
            live = None
        if live is not None and not live.done:
            raise ValueError("the comparison is not finished")
        record = self.saved(compare_id)
        folder = Path(record.get("images") or "")
        if not record.get("images") or not folder.is_dir():
            raise ValueError(f"comparison {compare_id}: its images were not kept (judged from the command line?), nothing to add")
        pairs = [ABPair(**p) for p in record.get("pairs", [])]
        judged = [p for p in pairs if p.lora_won is not None]
        summary = record["summary"]
        try:
            from ..preferences.store import default_store
        except ImportError:  # an install without the store: a pairs file trains as well
            target = folder / "pairs.csv"
            test = ABTest(summary["lora"], float(summary["weight"]), pairs, str(summary.get("judge", "person")))
            names = [f"base-{p.index:03d}.png" for p in pairs], [f"lora-{p.index:03d}.png" for p in pairs]
            with target.open("w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(["caption", "image_0", "image_1", "label_0", "label_1"])
                writer.writerows(test.preference_rows(*names))
            return {"pairs_csv": str(target), "added": len(judged)}
        store = default_store(self.ctx)
        group = f"{PICK_SOURCE}:{record['id']}"
        if store.has_group(group):
            return {"store": str(store.root), "added": 0, "already": True, "source": PICK_SOURCE}
        human = str(summary.get("judge", "person")) == "person"
        settings = {"lora": Path(str(summary["lora"])).stem, "weight": summary["weight"]}
        ids = []
        for pair in judged:  # images first (each durable before a row names it), then the judgements together
            base = store.add_image(folder / f"base-{pair.index:03d}.png", prompt=pair.prompt, seed=pair.seed,
                                   source=PICK_SOURCE, settings={**settings, "weight": 0})
            lora = store.add_image(folder / f"lora-{pair.index:03d}.png", prompt=pair.prompt, seed=pair.seed,
                                   source=PICK_SOURCE, settings=settings)
            if lora != base:  # (a LoRA that left the image unchanged: nothing was preferred)
                ids.append((lora, base) if pair.lora_won else (base, lora))
        with store.batch():
            for winner, loser in ids:
                store.add_judgement(winner, [loser], source=PICK_SOURCE, human=human, group=group)
        if live is not None:
            live.exported = str(store.root)
        return {"store": str(store.root), "added": len(ids), "already": False, "source": PICK_SOURCE}


def for_context(ctx: Any) -> CompareSessions:
    """The host's one set of comparisons."""
    return ctx.service("ab_compare", lambda: CompareSessions(ctx))


__all__ = [
    "CHOICES", "PICK_SOURCE", "CompareNotFound", "CompareSessions", "Comparison", "Pair", "for_context", "lora_files", "resolve_lora",
]  # fmt: skip
