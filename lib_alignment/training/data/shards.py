"""Large tables as shards of row groups: Pick-a-Pic's parquet shards, `datasets` folders, big CSVs.

A source is a list of ``Shard`` s, each a file whose rows come in groups read
one at a time (a parquet row group, an arrow record batch, a slice of a CSV),
so nothing ever holds all image bytes:

* a folder (or glob) of parquet shards: Pick-a-Pic v2 as downloaded,
  ``data/train-00000-of-00645.parquet`` ...; when shards of several splits lie
  together (``train-``, ``validation-``, ``test-``) the ``train`` ones are used;
* a folder written by ``datasets``' ``save_to_disk`` (``*.arrow`` files in
  arrow's IPC stream format beside ``state.json``; a DatasetDict's ``train/``):
  read with pyarrow's IPC stream reader over a memory map, which is what
  ``datasets`` itself does (``datasets`` is not installed in the WebUI's
  Python, and pyarrow reads these files without it);
* one parquet, CSV or TSV file (CSVs through ``pyarrow.csv``; their columns
  hold paths, captions and labels, never image bytes, so they are kept whole).
"""

from __future__ import annotations

import glob
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .report import Problem
from .tables import CSV_SUFFIXES, PARQUET_SUFFIXES, TableError

#: Rows per group of a CSV, which has no row groups of its own.
CSV_GROUP_ROWS = 8192
_SPLIT_SHARD = re.compile(r"^(?P<split>[A-Za-z_]+)-\d{5}-of-\d{5}\.(parquet|arrow)$")


@dataclass(frozen=True)
class Shard:
    """One file of a source: its format and the number of rows in each of its groups."""

    path: Path
    fmt: str  # "parquet", "arrow" or "csv"
    groups: tuple[int, ...]
    columns: tuple[str, ...]

    @property
    def rows(self) -> int:
        return sum(self.groups)


def _fatal(file: Path | str, message: str, code: str) -> TableError:
    return TableError(Problem(str(file), None, None, message, code=code, skippable=False))


def _pyarrow(file: Path | str) -> Any:
    try:
        import pyarrow
    except ImportError:
        raise _fatal(
            file,
            "reading parquet or arrow data needs the 'pyarrow' package, which is not installed in this Python "
            "environment: install it (pip install pyarrow; the extension's install.py adds it) or convert the data to CSV",
            "missing_dependency",
        ) from None
    return pyarrow


def _pick_split(files: list[Path]) -> list[Path]:
    """Of ``split-XXXXX-of-NNNNN`` shards of several splits, the train split's (else all files)."""
    splits: dict[str, list[Path]] = {}
    for file in files:
        match = _SPLIT_SHARD.match(file.name)
        splits.setdefault(match.group("split").lower() if match else "", []).append(file)
    if len(splits) > 1 and "train" in splits:
        return splits["train"]
    return files


def shard_files(source: str | Path) -> list[Path] | None:
    """The shard files a path or glob names, or None when it is not a sharded source.

    Sharded: a glob, a folder holding parquet shards (directly or in ``data/``)
    with more than one file, or a ``save_to_disk`` folder.
    """
    text = str(source)
    if any(ch in text for ch in "*?["):
        found = sorted(Path(p) for p in glob.glob(str(Path(text).expanduser())) if Path(p).suffix.lower() in PARQUET_SUFFIXES + (".arrow",))
        return _pick_split(found) if found else []
    root = Path(text).expanduser()
    if not root.is_dir():
        return None
    if (root / "dataset_dict.json").is_file() and (root / "train").is_dir():
        root = root / "train"
    arrow = sorted(p for p in root.glob("*.arrow") if p.is_file())
    if arrow and (root / "state.json").is_file():
        return arrow
    for folder in (root / "data", root):
        parquet = sorted(p for p in folder.glob("*") if p.is_file() and p.suffix.lower() in PARQUET_SUFFIXES)
        if len(parquet) > 1 or (parquet and folder != root):
            return _pick_split(parquet)
    return None


def open_shard(file: Path) -> Shard:
    """Columns and group sizes of one file (metadata only); raises TableError naming the file."""
    suffix = file.suffix.lower()
    pa = _pyarrow(file)
    try:
        if suffix in PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(str(file)).metadata
            groups = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
            return Shard(file, "parquet", groups, tuple(meta.schema.to_arrow_schema().names))
        if suffix == ".arrow":
            with pa.memory_map(str(file)) as source:
                reader = pa.ipc.open_stream(source)
                groups = tuple(batch.num_rows for batch in reader)
                return Shard(file, "arrow", groups, tuple(reader.schema.names))
        if suffix in CSV_SUFFIXES:
            table = read_csv(file)
            n = table.num_rows
            groups = tuple(min(CSV_GROUP_ROWS, n - s) for s in range(0, n, CSV_GROUP_ROWS))
            return Shard(file, "csv", groups, tuple(table.column_names))
    except TableError:
        raise
    except Exception as exc:  # pyarrow's ArrowInvalid / OSError variants
        raise _fatal(file, f"not a readable {suffix.lstrip('.')} file: {exc}", "corrupt_file") from exc
    raise _fatal(file, f"unsupported file type {suffix!r}: use .parquet, .arrow, .csv or .tsv", "unsupported_file")


def read_csv(file: Path, columns: list[str] | None = None) -> Any:
    """A CSV/TSV as an arrow table of strings (UTF-8; BOM dropped; ',' ';' or tab as the header shows)."""
    import pyarrow.csv as pacsv

    with open(file, encoding="utf-8-sig", errors="replace") as handle:
        first = handle.readline()
    delimiter = "\t" if file.suffix.lower() == ".tsv" else max((",", ";", "\t"), key=first.count)
    header = next(iter(__import__("csv").reader([first], delimiter=delimiter)), [])
    include = None
    if columns is not None:
        include = [name for name in header if name.strip().lower() in columns]
    return pacsv.read_csv(
        str(file),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={name: __import__("pyarrow").string() for name in header},
            include_columns=include,
            strings_can_be_null=False,
        ),
    )


class GroupReader:
    """Reads one group of one shard at a time, with the file handles of the current process.

    Keeps the last ``keep`` groups read (a DataLoader worker walks a group's
    rows in a row), so memory is a few groups' worth whatever the dataset's size.
    """

    def __init__(self, shards: list[Shard], keep: int = 2) -> None:
        self.shards = shards
        self.keep = keep
        self._cache: dict[tuple[int, int, tuple[str, ...]], Any] = {}
        self._handles: dict[int, Any] = {}

    def __getstate__(self) -> dict[str, Any]:  # workers open their own handles
        return {"shards": self.shards, "keep": self.keep, "_cache": {}, "_handles": {}}

    def _handle(self, index: int) -> Any:
        if index not in self._handles:
            shard = self.shards[index]
            if shard.fmt == "parquet":
                import pyarrow.parquet as pq

                self._handles[index] = pq.ParquetFile(str(shard.path))
            elif shard.fmt == "arrow":
                import pyarrow as pa

                self._handles[index] = pa.ipc.open_stream(pa.memory_map(str(shard.path))).read_all().to_batches()
            else:
                self._handles[index] = read_csv(shard.path)
        return self._handles[index]

    def read(self, shard: int, group: int, columns: list[str]) -> Any:
        """Group ``group`` of shard ``shard`` as an arrow table holding ``columns`` (original names)."""
        key = (shard, group, tuple(columns))
        table = self._cache.get(key)
        if table is not None:
            return table
        handle = self._handle(shard)
        fmt = self.shards[shard].fmt
        if fmt == "parquet":
            table = handle.read_row_group(group, columns=columns)
        elif fmt == "arrow":
            import pyarrow as pa

            table = pa.Table.from_batches([handle[group]]).select(columns)
        else:
            table = handle.slice(group * CSV_GROUP_ROWS, CSV_GROUP_ROWS).select(columns)
        self._cache[key] = table
        while len(self._cache) > self.keep:
            self._cache.pop(next(iter(self._cache)))
        return table

    def close(self) -> None:
        self._cache.clear()
        self._handles.clear()


def describe(files: list[Path]) -> str:
    """'N files (first ... last)' for notes."""
    if len(files) == 1:
        return files[0].name
    return f"{len(files)} files ({files[0].name} ... {files[-1].name})"


def dataset_info(files: list[Path]) -> dict[str, Any]:
    """``save_to_disk``'s dataset_info.json beside the files, when there is one (for notes)."""
    info = files[0].parent / "dataset_info.json" if files else None
    if info is None or not info.is_file():
        return {}
    try:
        return json.loads(info.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
