"""Read CSV (stdlib only) and parquet (pyarrow, when installed) tables row by row.

Rows carry the number the user sees: for CSV the line in the file where the
record starts (the header is line 1, so the first data row is row 2, as a
spreadsheet numbers it); for parquet the record number counting from 1.
"""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .report import Problem

CSV_SUFFIXES = (".csv", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
TABLE_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES

CSV_ROW_MEANING = "rows are line numbers in the CSV file: the header is row 1, the first data row is row 2, as a spreadsheet shows them"
PARQUET_ROW_MEANING = "rows are record numbers in the parquet file, the first record being row 1"


class TableError(Exception):
    """A problem that stops reading the table at all (missing file, bad encoding...)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(problem.message)


@dataclass
class TableRow:
    """One data row: values keyed by lower-case column name, plus a problem if the row is malformed."""

    number: int
    values: dict[str, Any]
    problem: str | None = None


@dataclass
class Table:
    """A table's columns (lower-case, stripped) and a way to read its rows."""

    file: Path
    columns: list[str]
    row_meaning: str
    _original: dict[str, str] = field(default_factory=dict)

    def rows(self, wanted: list[str]) -> Iterator[TableRow]:
        """Yield every data row, keeping only the ``wanted`` columns (lower-case names)."""
        if self.file.suffix.lower() in PARQUET_SUFFIXES:
            yield from _parquet_rows(self.file, [self._original[c] for c in wanted], wanted)
        else:
            yield from _csv_rows(self.file, wanted)


def _fatal(file: Path, message: str, code: str, row: int | None = None) -> TableError:
    return TableError(Problem(str(file), row, None, message, code=code, skippable=False))


def _sniff_delimiter(first_line: str, suffix: str) -> str:
    """Comma unless the header clearly uses ';' or tab (spreadsheets in some locales)."""
    if suffix == ".tsv":
        return "\t"
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _open_text(file: Path):  # type: ignore[no-untyped-def]
    # utf-8-sig drops the byte-order mark spreadsheet programs write.
    return open(file, encoding="utf-8-sig", newline="")


def open_table(file: Path) -> Table:
    """Read a table's header; raises TableError naming the file when it cannot be read."""
    suffix = file.suffix.lower()
    if not file.is_file():
        raise _fatal(file, "file not found" if not file.exists() else "not a file", "missing_file")
    if suffix in PARQUET_SUFFIXES:
        columns = _parquet_columns(file)
        row_meaning = PARQUET_ROW_MEANING
    elif suffix in CSV_SUFFIXES:
        columns = _csv_columns(file)
        row_meaning = CSV_ROW_MEANING
    else:
        raise _fatal(file, f"unsupported file type {suffix!r}: use .csv, .tsv or .parquet", "unsupported_file")
    original: dict[str, str] = {}
    for name in columns:
        original.setdefault(name.strip().lower(), name)
    return Table(file, list(original), row_meaning, original)


def _not_utf8(file: Path, exc: UnicodeDecodeError) -> TableError:
    """The error for a non-UTF-8 CSV, naming the first line that does not decode."""
    line = None
    with open(file, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                line = number
                break
    return _fatal(file, f"not UTF-8 text ({exc.reason}); save the CSV as UTF-8", "bad_encoding", row=line)


def _csv_columns(file: Path) -> list[str]:
    try:
        with _open_text(file) as handle:
            first = handle.readline()
            if not first.strip():
                raise _fatal(file, "the file is empty: expected a header row with column names", "empty_file", row=1)
            handle.seek(0)
            reader = csv.reader(handle, delimiter=_sniff_delimiter(first, file.suffix.lower()))
            return next(reader)
    except UnicodeDecodeError as exc:
        raise _not_utf8(file, exc) from exc
    except csv.Error as exc:
        raise _fatal(file, f"malformed header row: {exc}", "malformed_csv", row=1) from exc
    except OSError as exc:
        raise _fatal(file, f"cannot read the file: {exc.strerror or exc}", "unreadable_file") from exc


def _csv_rows(file: Path, wanted: list[str]) -> Iterator[TableRow]:
    with _open_text(file) as handle:
        first = handle.readline()
        handle.seek(0)
        reader = csv.reader(handle, delimiter=_sniff_delimiter(first, file.suffix.lower()))
        header = [h.strip().lower() for h in next(reader)]
        index = {name: header.index(name) for name in wanted if name in header}
        last_line = reader.line_num
        while True:
            start = last_line + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                last_line = reader.line_num
                yield TableRow(start, {}, f"malformed CSV row: {exc}")
                continue
            except UnicodeDecodeError as exc:
                raise _not_utf8(file, exc) from exc
            last_line = reader.line_num
            if not any(f.strip() for f in fields):
                continue  # blank line
            values = {name: (fields[i] if i < len(fields) else "") for name, i in index.items()}
            problem = None
            if len(fields) > len(header):
                problem = (
                    f"the row has {len(fields)} fields but the header has {len(header)}: "
                    "a caption containing a comma must be quoted"
                )
            elif len(fields) < len(header):
                problem = f"the row has {len(fields)} fields but the header has {len(header)}"
            yield TableRow(start, values, problem)


def pyarrow_available() -> bool:
    return importlib.util.find_spec("pyarrow") is not None


def _parquet_file(file: Path):  # type: ignore[no-untyped-def]
    if not pyarrow_available():
        raise _fatal(
            file,
            "reading parquet files needs the 'pyarrow' package, which is not installed in this Python "
            "environment: install it (pip install pyarrow) or convert the data to CSV",
            "missing_dependency",
        )
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # installed but built for another numpy, say
        raise _fatal(
            file,
            f"reading parquet files needs the 'pyarrow' package, which is installed but fails to import ({exc}): "
            "install a pyarrow that matches this environment or convert the data to CSV",
            "missing_dependency",
        ) from exc
    try:
        return pq.ParquetFile(str(file))
    except Exception as exc:  # pyarrow raises its own ArrowInvalid / OSError variants
        raise _fatal(file, f"not a readable parquet file: {exc}", "corrupt_file") from exc


def _parquet_columns(file: Path) -> list[str]:
    return list(_parquet_file(file).schema_arrow.names)


def _parquet_rows(file: Path, columns: list[str], names: list[str]) -> Iterator[TableRow]:
    parquet = _parquet_file(file)
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=256, columns=columns):
            data = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            for values in zip(*data):
                number += 1
                yield TableRow(number, dict(zip(names, values)))
    except Exception as exc:
        raise _fatal(file, f"parquet data unreadable after record {number}: {exc}", "corrupt_file", row=number + 1) from exc
