"""load_preference_data: read any supported layout, validate all of it, build the Dataset.

Order of work: read every row (no early exit), check every distinct image once,
find duplicates, then either raise one DatasetValidationError listing all
problems or, with skip_bad_rows, leave the bad rows out and record them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .dataset import LabeledDataset, LabeledRecord, PairDataset, PairRecord, PreferenceDataset
from .folder import detect_folder, parse_labeled_folder, parse_pair_folder
from .formats import (
    FIRST,
    INTERSECTION,
    SECOND,
    TIE,
    UNDESIRABLE,
    Candidate,
    detect_kind,
    parse_table,
    required_columns,
)
from .images import DEFAULT_MAX_PIXELS, ImageProblem, ImageRef, check_image
from .report import DatasetValidationError, Problem, SkippedRow, ValidationReport
from .streaming import check_all_images, load_streaming, streaming_files
from .tables import TableError, open_table

METHODS = ("dpo", "ipo", "dpo_hinge", "kto", "mapo", "orpo", "listwise")
TIE_POLICIES = ("drop", "weight")
FOLDER_ROW_MEANING = "folder layout: problems name the image or pair folder; there are no row numbers"


class _Stop(Exception):
    """Reading cannot go on (missing columns, unreadable file); the report says why."""


def _fatal(report: ValidationReport, file: str, message: str, code: str, field: str | None = None, row: int | None = None) -> _Stop:
    report.add(Problem(file, row, field, message, code=code, skippable=False))
    return _Stop()


def _read_candidates(source: Path, method: str, report: ValidationReport) -> tuple[str, list[Candidate]]:
    """('pairs' | 'labeled', candidates) from a table or folder; raises _Stop after a fatal problem."""
    try:
        table_file = source
        if source.is_dir():
            layout, found = detect_folder(source)
            if layout == "labeled":
                report.row_meaning = FOLDER_ROW_MEANING
                return "labeled", parse_labeled_folder(source)
            if layout == "pairs":
                report.row_meaning = FOLDER_ROW_MEANING
                return "pairs", parse_pair_folder(source)
            assert found is not None
            table_file = found
        table = open_table(table_file)
        report.row_meaning = table.row_meaning
        kind = detect_kind(table.columns) or ("labeled" if method == "kto" else "pairs")
        roles, missing = required_columns(table.columns, kind)
        for role, names in missing:
            report.add(
                Problem(
                    str(table_file),
                    1 if table.file.suffix.lower() in (".csv", ".tsv") else None,
                    role,
                    f"missing column {names} (the file has: {', '.join(table.columns) or 'no columns'})",
                    code="missing_column",
                    skippable=False,
                )
            )
        if missing:
            raise _Stop()
        return kind, parse_table(table, kind, roles)
    except TableError as exc:
        report.add(exc.problem)
        raise _Stop() from exc


def _check_images(candidates: list[Candidate], max_pixels: int, progress: Callable[[int, int], None] | None) -> int:
    """Check each distinct image once; attach its problem to every row using it. Returns the image count."""
    refs: dict[str, ImageRef] = {}
    for cand in candidates:
        for _, ref in cand.images:
            if ref is not None:
                refs.setdefault(ref.key, ref)
    results: dict[str, ImageProblem | None] = {}
    for done, (key, ref) in enumerate(refs.items(), 1):
        results[key] = check_image(ref, max_pixels)
        if progress is not None:
            progress(done, len(refs))
    for cand in candidates:
        for field, ref in cand.images:
            problem = results.get(ref.key) if ref is not None else None
            if problem is not None:
                cand.problem(field, str(problem), problem.code, image=ref.display if ref else None)
    return len(refs)


def _check_pair_images_differ(candidates: list[Candidate]) -> None:
    for cand in candidates:
        refs = [ref for _, ref in cand.images if ref is not None]
        if len(refs) == 2 and refs[0].key == refs[1].key:
            cand.problem(cand.images[1][0], f"both images of the pair are the same image ({refs[1].display})", "same_image", image=refs[1].display)


def _where(cand: Candidate) -> str:
    return f"row {cand.row}" if cand.row is not None else Path(cand.file).name


def _verdict(cand: Candidate) -> str | None:
    """What a row says, independent of column order: the preferred image's key, 'tie', or the label."""
    if cand.outcome in (FIRST, SECOND):
        ref = cand.images[0 if cand.outcome == FIRST else 1][1]
        return ref.key if ref is not None else None
    return cand.outcome


def _check_duplicates(candidates: list[Candidate]) -> None:
    """Same caption and same image(s) as an earlier row: the later row is the problem."""
    first: dict[tuple[str, frozenset[str]], Candidate] = {}
    for cand in candidates:
        keys = [ref.key for _, ref in cand.images if ref is not None]
        if len(keys) != len(cand.images) or not cand.caption:
            continue
        dup_key = (cand.caption, frozenset(keys))
        earlier = first.setdefault(dup_key, cand)
        if earlier is not cand:
            differs = " with a different label" if _verdict(earlier) != _verdict(cand) else ""
            cand.problem(
                cand.images[0][0],
                f"duplicate of {_where(earlier)} (same caption and image{'s' if len(keys) > 1 else ''}){differs}",
                "duplicate",
            )


def _in_column_order(cand: Candidate) -> list[Problem]:
    """Whole-row problems, caption, images, labels: the usual column order, whatever order checks ran in."""
    images = [f for f, _ in cand.images]

    def rank(problem: Problem) -> tuple[int, int]:
        if problem.field is None:
            return (0, 0)
        if problem.code in ("empty_caption", "unreadable_caption"):
            return (1, 0)
        if problem.field in images:
            return (2, images.index(problem.field))
        return (3, 0)

    return sorted(cand.problems, key=rank)


def _usable(candidates: list[Candidate], report: ValidationReport, skip_bad_rows: bool) -> list[Candidate]:
    """Record all problems; return the clean candidates (skipping the others only when asked)."""
    good: list[Candidate] = []
    for cand in candidates:
        report.problems.extend(_in_column_order(cand))
        if not cand.problems:
            good.append(cand)
        elif skip_bad_rows:
            report.skipped.append(SkippedRow(cand.file, cand.row))
    return good


def _pairs(good: list[Candidate], tie_policy: str, report: ValidationReport) -> list[PairRecord]:
    records: list[PairRecord] = []
    ties = 0
    for cand in good:
        a, b = (ref for _, ref in cand.images)
        assert a is not None and b is not None
        if cand.outcome == TIE:
            ties += 1
            if tie_policy == "weight":
                records.append(PairRecord(cand.caption, a, b, 0.5, cand.file, cand.row, tie=True))
                records.append(PairRecord(cand.caption, b, a, 0.5, cand.file, cand.row, tie=True))
            continue
        preferred, other = (a, b) if cand.outcome == FIRST else (b, a)
        records.append(PairRecord(cand.caption, preferred, other, 1.0, cand.file, cand.row))
    report.counts["ties"] = ties
    if ties and tie_policy == "drop":
        report.notes.append(f"{ties} tie(s) (0.5/0.5) left out; tie_policy='weight' trains on them")
    elif ties:
        report.notes.append(f"{ties} tie(s) kept as two items each, one per order, with weight 0.5")
    return records


def _labeled(good: list[Candidate], intersections_as_wins: bool, report: ValidationReport) -> list[LabeledRecord]:
    records: list[LabeledRecord] = []
    dropped = 0
    for cand in good:
        ref = cand.images[0][1]
        assert ref is not None
        if cand.outcome == INTERSECTION and not intersections_as_wins:
            dropped += 1
            continue
        label = 0.0 if cand.outcome == UNDESIRABLE else 1.0
        records.append(LabeledRecord(cand.caption, ref, label, cand.file, cand.row))
    if dropped:
        report.notes.append(f"{dropped} intersections row(s) left out (intersections_as_wins is off)")
    return records


def _split_pairs(good: list[Candidate], intersections_as_wins: bool, report: ValidationReport) -> list[LabeledRecord]:
    """Pairs -> one labeled item per distinct (caption, image), as Diffusion-KTO builds its data.

    An image that only ever won is desirable, one that only lost undesirable, and
    one that did both is an "intersection" (desirable unless told otherwise).
    Ties say nothing about either image and are not used.
    """
    stats: dict[tuple[str, str], dict] = {}
    ties = 0
    for cand in good:
        if cand.outcome == TIE:
            ties += 1
            continue
        a, b = (ref for _, ref in cand.images)
        winner, loser = (a, b) if cand.outcome == FIRST else (b, a)
        for ref, won in ((winner, True), (loser, False)):
            assert ref is not None
            entry = stats.setdefault((cand.caption, ref.key), {"ref": ref, "cand": cand, "won": False, "lost": False})
            entry["won" if won else "lost"] = True
    records: list[LabeledRecord] = []
    intersections = 0
    for (caption, _), entry in stats.items():
        if entry["won"] and entry["lost"]:
            intersections += 1
            if not intersections_as_wins:
                continue
        label = 1.0 if entry["won"] else 0.0
        records.append(LabeledRecord(caption, entry["ref"], label, entry["cand"].file, entry["cand"].row))
    report.counts["ties"] = ties
    report.notes.append(
        f"{len(good) - ties} pair(s) split into {sum(r.label == 1.0 for r in records)} desirable and "
        f"{sum(r.label == 0.0 for r in records)} undesirable image(s)"
        + (f"; {intersections} image(s) both won and lost ({'counted as desirable' if intersections_as_wins else 'left out'})" if intersections else "")
        + (f"; {ties} tie(s) not used" if ties else "")
    )
    return records


def load_preference_data(
    path: str | Path,
    method: str = "dpo",
    resolution: int = 512,
    skip_bad_rows: bool = False,
    min_per_class: int = 1,
    tie_policy: str = "drop",
    *,
    intersections_as_wins: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Callable[[int, int], None] | None = None,
    strict_images: bool | None = None,
) -> PreferenceDataset:
    """Validate and load preference data for ``method`` (dpo, mapo: pairs; kto: labeled, or pairs split).

    ``path`` is a .csv/.tsv/.parquet file or a folder (see folder.py). Raises
    DatasetValidationError listing every problem unless the data is clean, or
    ``skip_bad_rows`` is set and only row problems remain. ``progress(done,
    total)`` is called while images are checked. ``min_per_class``: KTO needs at
    least this many desirable and undesirable items; DPO/MaPO this many pairs
    (and always one). ``strict_images``: None streams sharded sources (a folder
    or glob of parquet shards, a ``datasets`` folder) and tables of more than
    streaming.STREAM_MIN_ROWS rows, checking their structure up front and their
    images as they are read; True checks every image first (today's full check);
    False streams any table.
    """
    method = method.lower()
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if tie_policy not in TIE_POLICIES:
        raise ValueError(f"tie_policy must be one of {TIE_POLICIES}, not {tie_policy!r}")
    if resolution <= 0 or resolution % 8:
        raise ValueError(f"resolution must be a positive multiple of 8, not {resolution}")
    if min_per_class < 0:
        raise ValueError("min_per_class must be >= 0")
    streamed = streaming_files(Path(path).expanduser(), strict_images) if method != "kto" or strict_images is not None or not _is_pair_table(path) else None
    if streamed is not None:  # pairs (rankings of two, for listwise) or labeled images, read lazily
        streaming = load_streaming(
            streamed, "dpo" if method == "listwise" else method, resolution, skip_bad_rows, min_per_class, tie_policy,
            intersections_as_wins, max_pixels, Path(path).expanduser(), None if strict_images else progress,
        )
        return check_all_images(streaming, skip_bad_rows, progress) if strict_images else streaming  # type: ignore[return-value]
    if method == "listwise":  # a ranking table, or pair data as rankings of two
        from .rankings import is_ranking_table, load_rankings, pairs_as_rankings

        if is_ranking_table(Path(path).expanduser()):
            return load_rankings(path, resolution, max_pixels)
        pairs = load_preference_data(path, "dpo", resolution, skip_bad_rows, min_per_class, tie_policy, max_pixels=max_pixels, progress=progress)
        return pairs_as_rankings(pairs)  # type: ignore[arg-type]
    source = Path(path).expanduser()
    report = ValidationReport(source=str(source), skip_bad_rows=skip_bad_rows)
    if not source.exists():
        report.add(Problem(str(source), None, None, "file or folder not found", code="missing_file", skippable=False))
        raise DatasetValidationError(report)
    try:
        kind, candidates = _read_candidates(source, method, report)
    except _Stop:
        raise DatasetValidationError(report) from None
    report.counts["rows"] = len(candidates)
    report.counts["images"] = _check_images(candidates, max_pixels, progress)
    if kind == "pairs":
        _check_pair_images_differ(candidates)
    _check_duplicates(candidates)
    good = _usable(candidates, report, skip_bad_rows)
    bad_rows = len(candidates) - len(good)
    not_counted = f" ({bad_rows} row(s) with problems not counted)" if bad_rows else ""
    file = str(source)

    dataset: PreferenceDataset
    if kind == "labeled" and method != "kto":
        report.add(
            Problem(file, None, None, f"{method.upper()} trains on pairs, but this is labeled (liked/disliked) data: use KTO, or pair data", code="wrong_kind", skippable=False)
        )
        raise DatasetValidationError(report)
    if method == "kto":
        labeled = _split_pairs(good, intersections_as_wins, report) if kind == "pairs" else _labeled(good, intersections_as_wins, report)
        for value, name, hint in ((1.0, "desirable", "exclusive_win / liked"), (0.0, "undesirable", "exclusive_lose / disliked")):
            count = sum(r.label == value for r in labeled)
            report.counts[name] = count
            if count < min_per_class:
                report.add(
                    Problem(
                        file, None, "label",
                        f"KTO needs at least {min_per_class} {name} example(s) ({hint}); found {count}{not_counted}",
                        code="too_few", skippable=False,
                    )
                )
        dataset = LabeledDataset(labeled, resolution, report, max_pixels)
    else:
        pairs = _pairs(good, tie_policy, report)
        report.counts["pairs"] = len(pairs)
        needed = max(1, min_per_class)
        if len(pairs) < needed:
            report.add(
                Problem(file, None, None, f"{method.upper()} needs at least {needed} usable pair(s); found {len(pairs)}{not_counted}", code="too_few", skippable=False)
            )
        dataset = PairDataset(pairs, resolution, report, max_pixels)
    if skip_bad_rows:
        report.counts["skipped"] = len(report.skipped)
    if report.blocking:
        raise DatasetValidationError(report)
    return dataset


def _is_pair_table(path: str | Path) -> bool:
    """Whether a single table holds pairs (KTO splits those itself, so they keep the up-front path by default)."""
    try:
        table = open_table(Path(path).expanduser())
    except (TableError, OSError):
        return False
    return detect_kind(table.columns) == "pairs"


def validate_preference_data(path: str | Path, method: str = "dpo", **kwargs: object) -> ValidationReport:
    """The report alone (for the UI's "check data" button): never raises for bad data."""
    try:
        return load_preference_data(path, method, **kwargs).report  # type: ignore[arg-type]
    except DatasetValidationError as exc:
        return exc.report
