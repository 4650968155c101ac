"""Export the store to the layouts the training data reader accepts, and import them back.

Layouts (see lib_alignment/training/data/README.md for how each is read):

* ``pairs-csv``     pairs.csv (caption, image_0, image_1, label_0, label_1; image_0 preferred) + images/
* ``pickapic``      pairs.parquet with the image bytes inline (caption, jpg_0, jpg_1, label_0, label_1)
* ``kto-csv``       kto.csv (file_name, caption, label = exclusive_win / exclusive_lose / intersections) + images/
* ``rankings-csv``  rankings.csv (caption, image_1 … image_m, best first) + images/
* ``folder-pairs``  one folder per pair: chosen.*, rejected.*, prompt.txt
* ``folder-labeled`` liked/ and disliked/ with a <image>.txt caption beside each image
                     (intersections go to liked/, as the reader counts them by default)
* ``all``           pairs.csv, kto.csv and, when there are rankings, rankings.csv, sharing images/

An export is written into a hidden folder beside the target and renamed into
place, so a target either holds a complete export or nothing. Imports read a
file or folder through the training data reader (so every row is checked first)
and add one entry per row; importing the same file again adds nothing (each row's
entry carries the file's hash and row as its group).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..paths import atomic_write_text, make_temp_dir
from .derive import INTERSECTION, LOSE, TrainingSets, derive
from .store import PreferenceError, PreferenceFilter, PreferenceStore

LAYOUTS = ("all", "pairs-csv", "pickapic", "kto-csv", "rankings-csv", "folder-pairs", "folder-labeled")


@dataclass
class ExportResult:
    """What an export wrote: the folder, the file to train on per layout, and item counts."""

    folder: Path
    layout: str
    files: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "layout": self.layout, "files": {k: str(v) for k, v in self.files.items()}, "counts": dict(self.counts)}


def training_sets(store: PreferenceStore, filters: PreferenceFilter | None = None) -> TrainingSets:
    entries = store.list(filters, newest_first=False)
    return derive(entries)


def _csv_text(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


class _Images:
    """Copies store images into <folder>/images/ once each, named by id."""

    def __init__(self, store: PreferenceStore, folder: Path, link: bool) -> None:
        self.store, self.folder, self.link, self.done = store, folder, link, {}  # type: ignore[var-annotated]
        self.records = {}  # type: ignore[var-annotated]

    def relative(self, image_id: str) -> str:
        if image_id not in self.done:
            record = self.records.get(image_id) or self.store.image(image_id)
            target = self.folder / "images" / f"{image_id}.{record.ext}"
            target.parent.mkdir(parents=True, exist_ok=True)
            _copy(self.store.image_file(image_id, record.ext), target, self.link)
            self.done[image_id] = target.relative_to(self.folder).as_posix()
        return self.done[image_id]


def _copy(source: Path, target: Path, link: bool = False) -> None:
    """A copy; a hard link for job snapshots (nobody edits those, and a copy of every image would double the disk)
    where the file system allows it. User-facing exports copy: editing one in place must not change the store."""
    if link:
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copyfile(source, target)


def export_store(
    store: PreferenceStore,
    out_dir: str | Path,
    layout: str = "all",
    filters: PreferenceFilter | None = None,
    sets: TrainingSets | None = None,
    link: bool = False,
) -> ExportResult:
    """Write the filtered preferences to out_dir (which must not exist or be empty) in `layout`.

    link: hard-link the images instead of copying them (job snapshots)."""
    if layout not in LAYOUTS:
        raise PreferenceError(f"layout: {layout!r} is not one of {', '.join(LAYOUTS)}", "layout")
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PreferenceError(f"out_dir: {out} exists and is not an empty folder; export into a new folder", "out_dir")
    sets = sets if sets is not None else training_sets(store, filters)
    temp = make_temp_dir(out)
    try:
        result = _write(store, sets, temp, layout, link)
        if out.exists():
            out.rmdir()
        temp.rename(out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    result.folder = out
    result.files = {name: out / path.relative_to(temp) for name, path in result.files.items()}
    return result


def _write(store: PreferenceStore, sets: TrainingSets, folder: Path, layout: str, link: bool) -> ExportResult:
    result = ExportResult(folder, layout, counts=sets.counts())
    images = _Images(store, folder, link)
    images.records = store.images({p.winner for p in sets.pairs} | {p.loser for p in sets.pairs} | {x.image for x in sets.labels} | {i for r in sets.rankings for i in r.images})
    if layout in ("all", "pairs-csv"):
        rows = [[p.caption, images.relative(p.winner), images.relative(p.loser), 1, 0] for p in sets.pairs]
        path = folder / "pairs.csv"
        atomic_write_text(path, _csv_text(["caption", "image_0", "image_1", "label_0", "label_1"], rows))
        result.files["pairs"] = path
    if layout in ("all", "kto-csv"):
        rows = [[images.relative(x.image), x.caption, x.label] for x in sets.labels]
        path = folder / "kto.csv"
        atomic_write_text(path, _csv_text(["file_name", "caption", "label"], rows))
        result.files["kto"] = path
    if layout == "rankings-csv" or (layout == "all" and sets.rankings):
        m = len(sets.rankings[0].images) if sets.rankings else 2
        rows = [[r.caption, *(images.relative(i) for i in r.images)] for r in sets.rankings]
        path = folder / "rankings.csv"
        atomic_write_text(path, _csv_text(["caption", *(f"image_{k + 1}" for k in range(m))], rows))
        result.files["rankings"] = path
    if layout == "pickapic":
        result.files["pairs"] = _write_parquet(store, sets, folder / "pairs.parquet", images.records)
    if layout == "folder-pairs":
        width = max(5, len(str(len(sets.pairs))))
        for number, pair in enumerate(sets.pairs, 1):
            sub = folder / f"pair-{number:0{width}d}"
            sub.mkdir()
            for stem, image_id in (("chosen", pair.winner), ("rejected", pair.loser)):
                record = images.records[image_id]
                _copy(store.image_file(image_id, record.ext), sub / f"{stem}.{record.ext}", link)
            atomic_write_text(sub / "prompt.txt", pair.caption + "\n")
        result.files["pairs"] = folder
    if layout == "folder-labeled":
        for sub in ("liked", "disliked"):
            (folder / sub).mkdir()
        for x in sets.labels:
            record = images.records[x.image]
            sub = folder / ("disliked" if x.label == LOSE else "liked")
            _copy(store.image_file(x.image, record.ext), sub / f"{x.image}.{record.ext}", link)
            atomic_write_text(sub / f"{x.image}.txt", x.caption + "\n")
        result.files["kto"] = folder
    return result


def _write_parquet(store: PreferenceStore, sets: TrainingSets, path: Path, records: dict[str, Any]) -> Path:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as error:
        raise PreferenceError(f"layout: the Pick-a-Pic parquet needs the 'pyarrow' package ({error}); export pairs-csv instead", "layout") from None

    def data(image_id: str) -> bytes:
        return store.image_file(image_id, records[image_id].ext).read_bytes()

    table = pa.table(
        {
            "caption": [p.caption for p in sets.pairs],
            "jpg_0": pa.array([data(p.winner) for p in sets.pairs], type=pa.binary()),
            "jpg_1": pa.array([data(p.loser) for p in sets.pairs], type=pa.binary()),
            "label_0": pa.array([1.0] * len(sets.pairs), type=pa.float64()),
            "label_1": pa.array([0.0] * len(sets.pairs), type=pa.float64()),
        }
    )
    pq.write_table(table, str(path))
    return path


# ---------------------------------------------------------------------- import


@dataclass
class ImportResult:
    source: str
    kind: str
    entries: int = 0
    already: int = 0
    ties: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "kind": self.kind, "entries": self.entries, "already": self.already, "ties": self.ties, "notes": list(self.notes)}


def _fingerprint(path: Path) -> str:
    """sha256 of a file, or of a folder's file names and contents (for idempotent imports)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(file.relative_to(path if path.is_dir() else path.parent).as_posix().encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _kind(path: Path) -> str:
    """'rankings', 'pairs' or 'labeled': what the reader would make of the file or folder."""
    from ..training.data.folder import detect_folder
    from ..training.data.formats import detect_kind
    from ..training.data.rankings import is_ranking_table
    from ..training.data.tables import TableError, open_table

    try:
        table = path
        if path.is_dir():
            layout, found = detect_folder(path)
            if layout in ("pairs", "labeled"):
                return layout
            assert found is not None
            table = found
        if is_ranking_table(table):
            return "rankings"
        return detect_kind(open_table(table).columns) or "pairs"
    except TableError as error:
        problem = error.problem
        raise PreferenceError(f"path: {problem.file}: {problem.message}", "path") from None


def import_data(
    store: PreferenceStore,
    path: str | Path,
    *,
    source: str = "import",
    human: bool = True,
    skip_bad_rows: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Add a pairs / labeled / rankings file or folder to the store, after the reader has checked every row.

    Pairs become judgements (ties are left out), labeled rows likes (exclusive_win,
    intersections) or dislikes (exclusive_lose), ranking rows rankings. Raises
    DatasetValidationError (its report names file, row and field) for bad data.
    """
    from ..training.data import load_preference_data
    from ..training.data.rankings import load_rankings

    source_path = Path(path).expanduser()
    if not source_path.exists():
        raise PreferenceError(f"path: {source_path} not found", "path")
    kind = _kind(source_path)
    base = f"import:{_fingerprint(source_path)}"
    result = ImportResult(str(source_path), kind)

    def add(ref: Any, caption: str) -> str:
        with ref.open() as handle:
            data = handle.read()
        return store.add_image(data, prompt=caption, source=source, path=ref.path)

    if kind == "rankings":
        table = source_path
        if source_path.is_dir():
            table = next(p for p in source_path.iterdir() if p.suffix.lower() == ".csv")
        data = load_rankings(table, resolution=8)
        records = [(r.row, r.caption, list(r.images)) for r in data.records]
    elif kind == "pairs":
        data = load_preference_data(source_path, "dpo", resolution=8, skip_bad_rows=skip_bad_rows, progress=progress)
        result.ties = int(data.report.counts.get("ties", 0))
        records = [(r.row if r.row is not None else r.file, r.caption, [r.preferred, r.other]) for r in data.records]
    else:
        data = load_preference_data(source_path, "kto", resolution=8, skip_bad_rows=skip_bad_rows, min_per_class=0, progress=progress)
        records = [(r.row if r.row is not None else r.file, r.caption, [r.image], r.label) for r in data.records]  # type: ignore[misc]
    result.notes.extend(data.report.notes)
    for record in records:
        where, caption, refs = record[0], record[1], record[2]
        group = f"{base}:{where}"
        if store.has_group(group):
            result.already += 1
            continue
        ids = [add(ref, caption) for ref in refs]
        with store.batch():  # check and add under the write lock: two imports of one file add it once
            if store.has_group(group):
                result.already += 1
                continue
            if kind == "rankings":
                store.add_ranking(ids, source=source, human=human, group=group)
            elif kind == "pairs":
                store.add_judgement(ids[0], ids[1:], source=source, human=human, group=group)
            else:
                store.add_label(ids[0], bool(record[3] >= 0.5), source=source, human=human, group=group)  # type: ignore[misc]
        result.entries += 1
    if kind == "labeled" and any(n for n in data.report.notes if INTERSECTION in n):
        result.notes.append("intersections rows were imported as likes")
    return result
