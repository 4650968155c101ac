"""Where a job's preference data comes from, and its validation report before anything starts.

Sources: a path (file or folder the data loader reads), an upload (a .zip of
a dataset folder, or a self-contained .csv/.tsv/.parquet) unpacked into a
staging folder, or the user's Rank & Refine rankings (every session under
<output_dir>/refine/, exported to the pairs/labeled CSVs the loader reads).
A job gets its own copy of uploaded and exported data, so later ranking or
re-uploading cannot change what it trained on.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
import zipfile
from pathlib import Path
from typing import Any

from ..paths import confine

#: The `dataset` value that means "my Rank & Refine rankings".
RANK_REFINE = "@rank_refine"
UPLOAD_SUFFIXES = (".zip", ".csv", ".tsv", ".parquet")
MAX_UNPACKED_BYTES = 16 * 2**30
MAX_MEMBERS = 500_000


def data_methods() -> tuple[str, ...]:
    """The trainer's methods that learn from a dataset (the others, such as DDPO, sample their own images)."""
    from ..training import config

    return tuple(m for m in config.METHODS if m not in getattr(config, "REWARD_METHODS", ()))


class DatasetError(ValueError):
    """The data cannot be used; `.report` (a ValidationReport) says why, row by row."""

    def __init__(self, report: Any) -> None:
        self.report = report
        super().__init__(report.format_text())


def _report(source: str, message: str, code: str = "invalid") -> Any:
    from ..training.data import Problem, ValidationReport

    report = ValidationReport(source=source)
    report.add(Problem(source, None, None, message, code=code, skippable=False))
    return report


# ------------------------------------------------------------------ Rank & Refine


def refine_root(output_dir: Path) -> Path:
    return Path(output_dir) / "refine"


def refine_session_folders(output_dir: Path) -> list[Path]:
    """Session folders of the Rank & Refine tab (each holds session.json), oldest name first."""
    root = refine_root(output_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "session.json").is_file())


def export_rank_refine(output_dir: Path, target: Path, method: str) -> Path:
    """Export every session's ranked rounds to target/ and return the CSV `method` trains on."""
    from ..refine import export_preferences

    folders = refine_session_folders(output_dir)
    root = refine_root(output_dir)
    if not folders:
        raise DatasetError(
            _report(
                str(root),
                "no Rank & Refine sessions yet: rank some images in the Rank & Refine tab first",
                "missing_file",
            )
        )
    try:
        exported = export_preferences(folders, target)
    except (FileNotFoundError, ValueError, KeyError) as error:
        raise DatasetError(_report(str(root), f"could not export the Rank & Refine sessions: {error}")) from error
    if exported.rounds == 0:
        raise DatasetError(
            _report(str(root), f"none of the {len(folders)} Rank & Refine session(s) has a ranked round yet", "too_few")
        )
    if method == "kto":
        return exported.kto_csv
    if method == "listwise" and exported.rankings_csv is not None and exported.rankings == exported.rounds:
        # whole rankings keep the order pairs throw away; when some rounds ranked only the best (or m
        # changed) the rankings file lacks them, and the pairs (rankings of two) lose nothing
        return exported.rankings_csv
    return exported.pairs_csv


# ------------------------------------------------------------------ My preferences (the preference store)


def is_preferences(dataset: str) -> bool:
    """Whether a dataset value means the preference store ("@preferences", optionally with ?filters)."""
    from ..preferences.training import is_spec

    return is_spec(dataset)


def export_store_preferences(
    store_dir: Path, dataset: str, target: Path, method: str, output_dir: Path | None = None
) -> tuple[Path, str, dict[str, int]]:
    """Snapshot the filtered store into target/ for `method`: (file to train on, summary line, counts).

    With output_dir, the Rank & Refine sessions under it are brought into the store first."""
    from ..preferences import PreferenceError
    from ..preferences.refine_sync import sync_all
    from ..preferences.training import open_store, parse_spec, snapshot

    try:
        filters, named = parse_spec(dataset)
        store = open_store(named, Path(store_dir))
        try:
            if output_dir is not None and named is None:
                sync_all(store, output_dir)
            taken = snapshot(store, filters, method, target)
        finally:
            store.close()
    except PreferenceError as error:
        raise DatasetError(_report(dataset, str(error), "too_few" if error.field == "dataset" else "invalid")) from None
    return taken.data, taken.summary, taken.counts


# ------------------------------------------------------------------ uploads


def staging_root(jobs_root: Path) -> Path:
    return jobs_root / ".staging"


def stage_upload(upload: str | Path, jobs_root: Path) -> Path:
    """Copy or unpack an uploaded dataset into a fresh staging folder; returns the path to train on."""
    source = Path(upload)
    suffix = source.suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise DatasetError(
            _report(
                source.name,
                f"uploads must be one of {', '.join(UPLOAD_SUFFIXES)} (a .zip of the dataset folder with its images, or a parquet with image bytes)",
            )
        )
    folder = staging_root(jobs_root) / uuid.uuid4().hex
    folder.mkdir(parents=True)
    if suffix != ".zip":
        target = folder / source.name
        shutil.copyfile(source, target)
        return target
    _unzip(source, folder)
    entries = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    # a zip of one folder: train on that folder
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else folder


def _unzip(archive: Path, folder: Path) -> None:
    """Extract regular files only, each confined to `folder`, within size and count limits."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if len(members) > MAX_MEMBERS:
                raise DatasetError(
                    _report(
                        archive.name, f"the archive holds {len(members)} entries; at most {MAX_MEMBERS} are unpacked"
                    )
                )
            total = sum(m.file_size for m in members)
            if total > MAX_UNPACKED_BYTES:
                raise DatasetError(
                    _report(
                        archive.name,
                        f"the archive unpacks to {total / 2**30:.1f} GiB; at most {MAX_UNPACKED_BYTES / 2**30:.0f} GiB",
                    )
                )
            for member in members:
                name = member.filename.replace("\\", "/")
                if member.is_dir() or name.endswith("/"):
                    continue
                mode = (member.external_attr >> 16) & 0o170000
                if mode == 0o120000:  # a symbolic link
                    raise DatasetError(_report(archive.name, f"{name}: symbolic links are not unpacked"))
                try:
                    target = confine(folder, name, "archive entry")
                except ValueError as error:
                    raise DatasetError(_report(archive.name, str(error))) from None
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
    except zipfile.BadZipFile as error:
        raise DatasetError(_report(archive.name, f"not a readable zip archive: {error}")) from None


def adopt_staged(path: Path, jobs_root: Path, job_data: Path) -> Path:
    """If `path` lies in a staging folder, move that folder to job_data and return the path there."""
    staging = staging_root(jobs_root).resolve()
    resolved = path.resolve()
    if staging not in resolved.parents:
        return path
    token = resolved.relative_to(staging).parts[0]
    job_data.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(staging / token), str(job_data))
    return job_data / resolved.relative_to(staging / token)


# ------------------------------------------------------------------ validation


def resolve_path(value: str, base: Path) -> Path:
    """A user's dataset path: ~ expanded; relative paths are taken from the extension's output folder."""
    path = Path(value.strip()).expanduser()
    return path if path.is_absolute() else (base / path)


def _fingerprint(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (0, 0)
    return (stat.st_mtime_ns, stat.st_size)


class ReportCache:
    """The last reports by (path, method, options, file stamp): Start right after Check reuses the check."""

    def __init__(self, size: int = 16) -> None:
        self._items: dict[tuple, Any] = {}
        self._size = size
        self._lock = threading.Lock()

    def validate(
        self, path: Path, method: str, skip_bad_rows: bool = False, tie_policy: str = "drop", min_per_class: int = 1
    ) -> Any:
        from ..training.data import validate_preference_data

        key = (str(path), method, bool(skip_bad_rows), tie_policy, int(min_per_class), _fingerprint(path))
        with self._lock:
            if key in self._items:
                return self._items[key]
        try:
            # resolution does not change what is checked; a small one keeps it quick
            report = validate_preference_data(
                path,
                method,
                resolution=64,
                skip_bad_rows=skip_bad_rows,
                min_per_class=min_per_class,
                tie_policy=tie_policy,
            )
        except ValueError as error:  # bad arguments rather than bad data
            report = _report(str(path), str(error))
        with self._lock:
            self._items[key] = report
            while len(self._items) > self._size:
                self._items.pop(next(iter(self._items)))
        return report


def remove_stale_staging(jobs_root: Path, older_than_s: float = 7 * 24 * 3600) -> None:
    """Forget uploads nobody started a job with (after a week)."""
    import time

    root = staging_root(jobs_root)
    if not root.is_dir():
        return
    cutoff = time.time() - older_than_s
    for folder in root.iterdir():
        try:
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True) if folder.is_dir() else os.remove(folder)
        except OSError:
            pass
