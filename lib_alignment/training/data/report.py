"""The validation report: every problem found in a dataset, with its file, row and field.

Validation reads the whole dataset before it says anything, so the user fixes
everything in one go instead of one error per training attempt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the data.

    file: the file the problem is in (the CSV/parquet for row problems, the image
    or folder for the folder layout); row: the row as the user sees it (see
    ``ValidationReport.row_meaning``), None for whole-file problems; field: the
    column (or "caption", "image", "label" in the folder layout); image: the
    image file concerned, when there is one; code: a stable machine-readable kind
    (``missing_image``, ``duplicate``...); skippable: False for problems that
    ``skip_bad_rows`` cannot fix (missing columns, too few examples...).
    """

    file: str
    row: int | None
    field: str | None
    message: str
    code: str = "invalid"
    image: str | None = None
    skippable: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SkippedRow:
    """A row (or folder item) left out because ``skip_bad_rows`` was set."""

    file: str
    row: int | None


@dataclass
class ValidationReport:
    """Everything validation found: problems, skipped rows, notes and counts."""

    source: str
    row_meaning: str = ""
    problems: list[Problem] = field(default_factory=list)
    skipped: list[SkippedRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    skip_bad_rows: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing at all is wrong (skipped rows count as wrong)."""
        return not self.problems

    @property
    def blocking(self) -> list[Problem]:
        """The problems that stop training under the current skip setting."""
        if self.skip_bad_rows:
            return [p for p in self.problems if not p.skippable]
        return list(self.problems)

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)

    def _display_file(self, file: str) -> str:
        """A path relative to the dataset's folder when inside it: shorter, still unambiguous."""
        base = Path(self.source)
        root = base if base.is_dir() else base.parent
        try:
            relative = Path(file).relative_to(root)
        except ValueError:
            return file
        return file if relative == Path(".") else str(relative)

    def format_text(self, max_problems: int | None = None) -> str:
        """Human-readable text that lists every problem (or the first ``max_problems``)."""
        lines: list[str] = []
        rows = {(p.file, p.row) for p in self.problems if p.skippable}
        unit = "row(s)" if any(row is not None for _, row in rows) else "item(s)"
        if self.problems:
            lines.append(
                f"Dataset check of {self.source}: {len(self.problems)} problem(s)"
                + (f" in {len(rows)} {unit}" if rows else "")
                + "."
            )
        else:
            lines.append(f"Dataset check of {self.source}: no problems.")
        if self.row_meaning and self.problems:
            lines.append(f"({self.row_meaning})")
        shown = self.problems if max_problems is None else self.problems[:max_problems]
        skipped = {(s.file, s.row) for s in self.skipped}
        for p in shown:
            where = self._display_file(p.file)
            if p.row is not None:
                where += f", row {p.row}"
            if p.field:
                where += f", {p.field}"
            mark = " [skipped]" if (p.file, p.row) in skipped else ""
            lines.append(f"  {where}: {p.message}{mark}")
        if len(shown) < len(self.problems):
            lines.append(f"  ... and {len(self.problems) - len(shown)} more")
        blocking = self.blocking
        if self.skipped:
            lines.append(f"{len(self.skipped)} {unit} with problems were left out (skip bad rows is on).")
        if blocking:
            if all(p.skippable for p in blocking):
                lines.append(
                    "Nothing starts until these are fixed, or until you choose to skip bad rows "
                    f"({len(rows)} {unit} would be left out)."
                )
            else:
                lines.append("Nothing starts until these are fixed (skipping bad rows cannot fix all of them).")
        for note in self.notes:
            lines.append(f"Note: {note}")
        if self.counts:
            lines.append("Counts: " + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the HTTP API."""
        return {
            "source": self.source,
            "ok": self.ok,
            "row_meaning": self.row_meaning,
            "skip_bad_rows": self.skip_bad_rows,
            "problems": [p.to_dict() for p in self.problems],
            "blocking": len(self.blocking),
            "skipped": [asdict(s) for s in self.skipped],
            "notes": list(self.notes),
            "counts": dict(self.counts),
        }


class DatasetValidationError(ValueError):
    """Raised before training when the data has problems; ``.report`` holds all of them."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.format_text())
