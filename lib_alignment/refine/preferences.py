"""Preference data from ranked rounds, in the CSV layouts the DPO and KTO trainers read.

Each ranked round is a preference record (round.json: prompt, settings, image
files, latents, the best-first order of display indices). `export_preferences`
copies the images it needs into <out>/images/ and writes, next to them:

* pairs.csv — columns caption, image_0, image_1, label_0, label_1 (Pick-a-Pic-like).
  One row per (better, worse) pair the ranking implies: every ranked image
  beats each image ranked after it and every unranked image of its round.
  The preferred image is always image_0: label_0 = 1, label_1 = 0 (no ties).
* kto.csv — columns file_name, caption, label with label exclusive_win or
  exclusive_lose. Per round, the top-ranked image is exclusive_win; the images
  the user left unranked are exclusive_lose, and when the ranking covers the
  whole round (all, or all but one) its last image is exclusive_lose. Middle
  ranks are left out: they are neither clearly good nor clearly bad.
* rankings.csv — columns caption, image_1 … image_m, best first, for the listwise
  trainer: every round whose ranking orders all its images (all, or all but one,
  the one left being the worst), of the most common round size m.

Every CSV ends with a column human: 1 when a person ranked the round, 0 when the
session's scorer did (auto rounds); the trainers read columns by name and ignore it.
Rounds ranked before the source was recorded count as human.

Image paths are relative to the CSV's folder and use "/" separators.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..paths import atomic_write_text
from ..zo import ranking_pairs

PAIRS_COLUMNS = ("caption", "image_0", "image_1", "label_0", "label_1", "human")
KTO_COLUMNS = ("file_name", "caption", "label", "human")
WIN, LOSE = "exclusive_win", "exclusive_lose"


@dataclass
class PreferenceExport:
    pairs_csv: Path
    kto_csv: Path
    pairs: int
    kto_rows: int
    rounds: int
    rankings_csv: Path | None = None
    rankings: int = 0


def ranked_records(session_folder: str | Path) -> list[dict[str, Any]]:
    """The ranked live rounds of a session folder, each round.json plus its "folder"."""
    folder = Path(session_folder)
    session_file = folder / "session.json"
    if not session_file.is_file():
        raise FileNotFoundError(f"{folder} holds no refine session (session.json is missing)")
    data = json.loads(session_file.read_text(encoding="utf-8"))
    records = []
    for round_id in data.get("rounds", []):
        round_folder = folder / "rounds" / f"{int(round_id):04d}"
        path = round_folder / "round.json"
        if not path.is_file():
            raise FileNotFoundError(f"round record {path} is missing")
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("order"):
            records.append({**record, "folder": round_folder})
    return records


def kto_labels(order: Sequence[int], n: int) -> list[tuple[int, str]]:
    """(index, label) for one round; see the module doc for the rule."""
    ranked = list(order)
    labels = [(ranked[0], WIN)]
    unranked = [i for i in range(n) if i not in set(ranked)]
    losers = unranked or [ranked[-1]]
    labels.extend((i, LOSE) for i in losers if i != ranked[0])
    return labels


def _csv_text(columns: Iterable[str], rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def export_preferences(sources: Sequence[Any], out_dir: str | Path) -> PreferenceExport:
    """Write pairs.csv, kto.csv and images/ for the ranked rounds of sessions (objects or folders)."""
    out = Path(out_dir)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    pair_rows: list[tuple[str, str, str, int, int, int]] = []
    kto_rows: list[tuple[str, str, str, int]] = []
    used_names: set[str] = set()
    ranking_rows: list[list[str]] = []
    rounds = 0
    for source in sources:
        folder = Path(getattr(source, "folder", source))
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", folder.resolve().name) or "session"
        name, suffix = base, 2
        while name in used_names:
            name, suffix = f"{base}-{suffix}", suffix + 1
        used_names.add(name)
        for record in ranked_records(folder):
            rounds += 1
            files = record["images"]
            order = [int(i) for i in record["order"]]
            caption = record["prompt"]
            human = 0 if record.get("source") == "scorer" else 1
            copied: dict[int, str] = {}

            def relative(index: int, record: dict[str, Any] = record, files: list[str] = files) -> str:
                if index not in copied:
                    target = images_dir / f"{name}-r{int(record['round']):04d}-c{index}.png"
                    source_file = Path(record["folder"]) / files[index]
                    if not source_file.is_file():
                        raise FileNotFoundError(f"image {source_file} named in {record['folder']}/round.json is missing")
                    shutil.copyfile(source_file, target)
                    copied[index] = target.relative_to(out).as_posix()
                return copied[index]

            for better, worse in ranking_pairs(order, len(files)):
                pair_rows.append((caption, relative(better), relative(worse), 1, 0, human))
            for index, label in kto_labels(order, len(files)):
                kto_rows.append((relative(index), caption, label, human))
            full = complete_order(order, len(files))
            if full is not None:
                ranking_rows.append([caption, *(relative(i) for i in full), str(human)])
    pairs_csv, kto_csv = out / "pairs.csv", out / "kto.csv"
    atomic_write_text(pairs_csv, _csv_text(PAIRS_COLUMNS, pair_rows))
    atomic_write_text(kto_csv, _csv_text(KTO_COLUMNS, kto_rows))
    rankings_csv, rankings = None, 0
    if ranking_rows:
        sizes = [len(row) - 2 for row in ranking_rows]
        m = max(set(sizes), key=lambda size: (sizes.count(size), size))
        kept = [row for row in ranking_rows if len(row) - 2 == m]
        rankings_csv, rankings = out / "rankings.csv", len(kept)
        atomic_write_text(rankings_csv, _csv_text(["caption", *(f"image_{k + 1}" for k in range(m)), "human"], kept))
    return PreferenceExport(pairs_csv=pairs_csv, kto_csv=kto_csv, pairs=len(pair_rows), kto_rows=len(kto_rows), rounds=rounds,
                            rankings_csv=rankings_csv, rankings=rankings)


def complete_order(order: Sequence[int], n: int) -> list[int] | None:
    """The round's full best-first order when the ranking fixes it (all ranked, or all but the one left last); else None."""
    ranked = list(dict.fromkeys(order))
    rest = [i for i in range(n) if i not in set(ranked)]
    if len(rest) > 1 or n < 2:
        return None
    return ranked + rest
