"""Recognise the table formats and parse each row into a candidate example with its problems.

Pairs (Pick-a-Pic, Rank & Refine): caption, image_0 / image_1 (paths relative to
the table's folder) or jpg_0 / jpg_1 (image bytes, as in Pick-a-Pic's parquet),
label_0 and optionally label_1: 1/0 means image_0 is preferred, 0/1 image_1,
0.5/0.5 a tie.

Labeled (Diffusion-KTO, Rank & Refine's KTO export): caption, an image column
named file_name (KTO's code, Rank & Refine) or file_path (KTO's README), and a
label column named label or split with exclusive_win / exclusive_lose /
intersections (an image that both won and lost; a win unless told otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .images import ImageProblem, ImageRef, resolve_image_path
from .report import Problem
from .tables import Table

CAPTION_COLUMNS = ("caption", "prompt")
PAIR_IMAGE_COLUMNS = (("image_0", "jpg_0"), ("image_1", "jpg_1"))
LABEL_0, LABEL_1 = "label_0", "label_1"
KTO_IMAGE_COLUMNS = ("file_name", "file_path", "image")
KTO_LABEL_COLUMNS = ("label", "split")

WIN, LOSE, INTERSECTION = "exclusive_win", "exclusive_lose", "intersections"
KTO_LABELS = (WIN, LOSE, INTERSECTION)

# Outcomes of a candidate.
FIRST, SECOND, TIE = "first", "second", "tie"  # pairs: which image is preferred
DESIRABLE, UNDESIRABLE = "desirable", "undesirable"  # labeled


@dataclass
class Candidate:
    """One row (or folder item) on its way to becoming training examples.

    images: (field, ref or None when the value was unusable) in column order;
    outcome: FIRST/SECOND/TIE for pairs, DESIRABLE/UNDESIRABLE/INTERSECTION for labeled.
    """

    file: str
    row: int | None
    caption: str
    images: list[tuple[str, ImageRef | None]]
    outcome: str | None
    problems: list[Problem] = field(default_factory=list)

    def problem(self, field_name: str | None, message: str, code: str, image: str | None = None) -> None:
        self.problems.append(Problem(self.file, self.row, field_name, message, code=code, image=image))


def _first_present(columns: list[str], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in columns), None)


def detect_kind(columns: list[str]) -> str | None:
    """'pairs', 'labeled' or None from the column names."""
    if any(_first_present(columns, pair) for pair in PAIR_IMAGE_COLUMNS) or LABEL_0 in columns:
        return "pairs"
    if _first_present(columns, KTO_IMAGE_COLUMNS) or _first_present(columns, KTO_LABEL_COLUMNS):
        return "labeled"
    return None


def required_columns(columns: list[str], kind: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The column used for each role, and (role, accepted names) for every missing role."""
    roles: dict[str, tuple[str, ...]] = {"caption": CAPTION_COLUMNS}
    if kind == "pairs":
        roles.update({"image_0": PAIR_IMAGE_COLUMNS[0], "image_1": PAIR_IMAGE_COLUMNS[1], LABEL_0: (LABEL_0,)})
    else:
        roles.update({"image": KTO_IMAGE_COLUMNS, "label": KTO_LABEL_COLUMNS})
    found: dict[str, str] = {}
    missing: list[tuple[str, str]] = []
    for role, names in roles.items():
        name = _first_present(columns, names)
        if name is None:
            missing.append((role, " or ".join(names)))
        else:
            found[role] = name
    if kind == "pairs" and LABEL_1 in columns:
        found[LABEL_1] = LABEL_1
    return found, missing


def _caption(value: Any) -> str:
    return "" if value is None else str(value).strip()


def image_ref(root: Path, value: Any, column: str, row_label: str) -> ImageRef:
    """An ImageRef from a cell: bytes, a {'bytes', 'path'} struct (Hugging Face Image), or a path."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if not data:
            raise ImageProblem("missing_value", "empty image bytes")
        return ImageRef.from_bytes(data, f"<image bytes in {column}, {row_label}>")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise ImageProblem("missing_value", "no image given")
    text = str(value)
    path = resolve_image_path(root, text)
    return ImageRef.from_path(path, text.strip())


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    try:
        number = float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    except ValueError:
        return None
    return None if math.isnan(number) else number


def pair_outcome(label_0: Any, label_1: Any, has_label_1: bool) -> tuple[str | None, str | None, str]:
    """(outcome, None, '') or (None, bad field, message) from Pick-a-Pic labels."""
    l0 = _number(label_0)
    if l0 is None:
        return None, LABEL_0, f"label_0 {_show(label_0)} is not a number: use 1, 0 or 0.5"
    l1 = 1.0 - l0
    if has_label_1:
        parsed = _number(label_1)
        if parsed is None:
            return None, LABEL_1, f"label_1 {_show(label_1)} is not a number: use 1, 0 or 0.5"
        l1 = parsed
    close = lambda a, b: abs(a - b) < 1e-6  # noqa: E731
    if close(l0, 1) and close(l1, 0):
        return FIRST, None, ""
    if close(l0, 0) and close(l1, 1):
        return SECOND, None, ""
    if close(l0, 0.5) and close(l1, 0.5):
        return TIE, None, ""
    l0_valid = any(close(l0, x) for x in (0.0, 0.5, 1.0))
    bad = LABEL_1 if has_label_1 and l0_valid else LABEL_0
    return None, bad, (
        f"labels label_0={_show(label_0)}, label_1={_show(label_1) if has_label_1 else '(none)'} are not a preference: "
        "use 1/0 (image_0 preferred), 0/1 (image_1 preferred) or 0.5/0.5 (a tie)"
    )


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def kto_outcome(value: Any) -> str | None:
    text = _caption(value).lower()
    if text == WIN:
        return DESIRABLE
    if text == LOSE:
        return UNDESIRABLE
    if text == INTERSECTION:
        return INTERSECTION
    return None


def parse_table(table: Table, kind: str, roles: dict[str, str]) -> list[Candidate]:
    """Every data row of ``table`` as a Candidate with the problems its cells show."""
    root = table.file.parent.resolve()
    file = str(table.file)
    candidates: list[Candidate] = []
    for row in table.rows(list(dict.fromkeys(roles.values()))):
        row_label = f"row {row.number}"
        cand = Candidate(file, row.number, "", [], None)
        candidates.append(cand)
        if row.problem:  # cells of a malformed row are shifted: checking them would only add noise
            cand.problem(None, row.problem, "malformed_row")
            continue
        v = row.values
        cand.caption = _caption(v.get(roles["caption"]))
        if not cand.caption:
            cand.problem(roles["caption"], "empty caption: every example needs the prompt it was generated from", "empty_caption")
        image_roles = ("image_0", "image_1") if kind == "pairs" else ("image",)
        for role in image_roles:
            column = roles[role]
            try:
                ref: ImageRef | None = image_ref(root, v.get(column), column, row_label)
            except ImageProblem as exc:
                ref = None
                cand.problem(column, str(exc), exc.code, image=_caption(v.get(column)) or None)
            cand.images.append((column, ref))
        if kind == "pairs":
            outcome, bad, message = pair_outcome(v.get(LABEL_0), v.get(LABEL_1), LABEL_1 in roles)
            if outcome is None:
                cand.problem(bad, message, "unknown_label")
            cand.outcome = outcome
        else:
            column = roles["label"]
            cand.outcome = kto_outcome(v.get(column))
            if cand.outcome is None:
                cand.problem(
                    column,
                    f"unknown label {_show(v.get(column))}: use exclusive_win, exclusive_lose or intersections",
                    "unknown_label",
                )
    return candidates
