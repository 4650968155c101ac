"""Rankings: m images of one caption, best first, for the listwise (Plackett–Luce) objective.

A ranking table is a CSV with ``caption`` and ``image_1`` … ``image_m`` (paths
relative to the file's folder), best first; every row ranks the same number of
images. Pair data (DPO's tables) also loads as rankings of two. The same
rankings become pairwise data with `rankings_to_pairs` (every image beats each
image ranked after it), so both objectives can train on identical data.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .dataset import PairDataset, PairRecord, PreferenceDataset
from .images import DEFAULT_MAX_PIXELS, ImageRef, check_image
from .report import DatasetValidationError, Problem, ValidationReport

_IMAGE_COLUMN = re.compile(r"^image_(\d+)$")


@dataclass(frozen=True)
class RankingRecord:
    """``images`` of ``caption``, best first."""

    caption: str
    images: tuple[ImageRef, ...]
    file: str
    row: int | None
    weight: float = 1.0


class RankingDataset(PreferenceDataset):
    """Items: caption, pixel_values [m, 3, R, R] (best first) or latents [m, C, h, w], weight."""

    kind = "rankings"
    records: list[RankingRecord]

    def _refs(self, record: RankingRecord) -> list[ImageRef]:
        return list(record.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        images = [self._image(ref) for ref in record.images]
        stacked = torch.from_numpy(np.stack([value.numpy() for _, value in images]))
        return {"caption": record.caption, images[0][0]: stacked, "weight": record.weight}


def is_ranking_table(path: Path) -> bool:
    """A CSV whose header has image_1 and image_2 (rankings) rather than image_0/image_1 (pairs)."""
    if path.suffix.lower() != ".csv" or not path.is_file():
        return False
    with path.open(encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle), [])
    return "image_1" in header and "image_2" in header and "image_0" not in header


def load_rankings(path: str | Path, resolution: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> RankingDataset:
    """Read and check a ranking table; one DatasetValidationError lists every problem."""
    source = Path(path).expanduser()
    report = ValidationReport(source=str(source))
    file = str(source)
    with source.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        columns = sorted((int(m.group(1)), name) for name in header if (m := _IMAGE_COLUMN.match(name)))
        if "caption" not in header or len(columns) < 2:
            report.add(Problem(file, None, None, "a ranking table needs columns caption, image_1, image_2, … (best first)", code="missing_column", skippable=False))
            raise DatasetValidationError(report)
        records = []
        for row_number, row in enumerate(reader, start=2):
            names = [(row.get(name) or "").strip() for _, name in columns]
            names = [n for n in names if n]
            caption = (row.get("caption") or "").strip()
            refs = [ImageRef.from_path((source.parent / n).resolve(), f"{file}:{row_number} {n}") for n in names]
            problems = []
            if len(refs) != len(columns):
                problems.append(f"ranks {len(refs)} images; every row must rank {len(columns)}")
            if len({r.key for r in refs}) != len(refs):
                problems.append("the same image appears twice in the ranking")
            for ref in refs:
                bad = check_image(ref, max_pixels)
                if bad is not None:
                    problems.append(f"{ref.display}: {bad}")
            for message in problems:
                report.add(Problem(file, row_number, None, message, code="bad_row", skippable=False))
            if not problems:
                records.append(RankingRecord(caption, tuple(refs), file, row_number))
    report.counts["rows"] = len(records)
    if not records:
        report.add(Problem(file, None, None, "no usable rankings", code="too_few", skippable=False))
    if report.blocking:
        raise DatasetValidationError(report)
    return RankingDataset(records, resolution, report, max_pixels)


def pairs_as_rankings(pairs: PairDataset) -> RankingDataset:
    """Pair data as rankings of two (preferred first), keeping tie weights."""
    records = [RankingRecord(r.caption, (r.preferred, r.other), r.file, r.row, r.weight) for r in pairs.records]
    return RankingDataset(records, pairs.resolution, pairs.report, pairs.max_pixels)


def rankings_to_pairs(rankings: RankingDataset) -> PairDataset:
    """Every (better, worse) pair a ranking implies: m(m−1)/2 pairs per ranking."""
    pairs = []
    for record in rankings.records:
        for i, better in enumerate(record.images):
            for worse in record.images[i + 1 :]:
                pairs.append(PairRecord(record.caption, better, worse, record.weight, record.file, record.row))
    return PairDataset(pairs, rankings.resolution, rankings.report, rankings.max_pixels)


__all__ = ["RankingDataset", "RankingRecord", "is_ranking_table", "load_rankings", "pairs_as_rankings", "rankings_to_pairs"]
