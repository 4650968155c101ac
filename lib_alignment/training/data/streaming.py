"""Preference data at real scale: a structural check that streams over the table, images read lazily.

Before the first step only the small columns are read, group by group
(caption, labels, ``are_different``, ``has_label``, image uids or paths):
missing columns, unknown labels and empty captions are problems with their
file and row; pairs that are not different (``are_different`` false, or the
same uid on both sides) and duplicates (same caption and the same two images
as an earlier row) are left out and counted; ties follow the tie policy. What
remains is an index of (shard, group, row, flag) in numpy arrays, a few bytes
per item.

Images are decoded when an item is read, in DataLoader workers. An unreadable
image does not raise: the item comes back marked ``skipped`` (with file, row,
column and reason) and ``data_stream.collate`` leaves it out of the batch; so
does a pair whose two images are byte-identical. ``data_stream.BadImageGuard``
counts them in the training process and stops the run when too many are bad.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .formats import FIRST, SECOND, TIE, detect_kind, kto_outcome, pair_outcome, required_columns
from .formats import INTERSECTION, DESIRABLE
from .images import DEFAULT_MAX_PIXELS, ImageProblem, ImageRef, load_image_tensor, resolve_image_path
from .report import DatasetValidationError, Problem, ValidationReport
from .shards import GroupReader, Shard, describe, open_shard, shard_files
from .tables import CSV_SUFFIXES, PARQUET_SUFFIXES, TableError

#: Tables with more rows than this are streamed even when they are a single file.
STREAM_MIN_ROWS = 20_000
#: Most items whose latents cache_latents keeps in memory.
CACHE_MAX_ITEMS = 20_000
ARE_DIFFERENT, HAS_LABEL = "are_different", "has_label"
UID_COLUMNS = ("image_0_uid", "image_1_uid")
ProgressFn = Callable[[int, int], None]


def _count_lines(file: Path) -> int:
    count = 0
    with open(file, "rb") as handle:
        while chunk := handle.read(1 << 22):
            count += chunk.count(b"\n")
    return count


def streaming_files(source: Path, strict_images: bool | None) -> list[Path] | None:
    """The files to stream, or None for the up-front check (small tables, folder layouts, strict_images)."""
    files = shard_files(source)
    if files is not None or strict_images is True:  # strict: sharded sources still stream, after a full check
        return files
    file = source
    if source.is_dir():
        tables = [p for p in source.iterdir() if p.is_file() and p.suffix.lower() in PARQUET_SUFFIXES + CSV_SUFFIXES]
        from .folder import detect_folder

        try:
            layout, found = detect_folder(source)
        except TableError:
            return None
        if layout != "table" or found is None or len(tables) != 1:
            return None
        file = found
    suffix = file.suffix.lower()
    if strict_images is False and suffix in PARQUET_SUFFIXES + CSV_SUFFIXES:
        return [file]
    try:
        if suffix in PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            rows = pq.ParquetFile(str(file)).metadata.num_rows
        elif suffix in CSV_SUFFIXES:
            rows = _count_lines(file) - 1
        else:
            return None
    except Exception:  # unreadable or no pyarrow: the up-front reader says why
        return None
    return [file] if rows > STREAM_MIN_ROWS else None


def _strings(column: Any) -> list[Any]:
    return column.to_pylist()


def _floats(column: Any) -> list[Any]:
    return column.to_pylist()


def _truth(column: Any) -> list[bool | None]:
    """Booleans of a bool, number or text column ('false', '0', 'no' are false); None where empty."""
    out: list[bool | None] = []
    for value in column.to_pylist():
        if value is None or isinstance(value, bool):
            out.append(value)
        elif isinstance(value, (int, float)):
            out.append(None if value != value else bool(value))
        else:
            text = str(value).strip().lower()
            out.append(None if not text else text not in ("false", "0", "no", "0.0"))
    return out


def _lower_map(columns: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in columns:
        out.setdefault(name.strip().lower(), name)
    return out


class _Scan:
    """The streaming structural check of every shard; builds the item index and the report."""

    def __init__(self, shards: list[Shard], method: str, tie_policy: str, skip_bad_rows: bool, intersections_as_wins: bool, report: ValidationReport) -> None:
        self.shards = shards
        self.method = method
        self.tie_policy = tie_policy
        self.skip_bad_rows = skip_bad_rows
        self.intersections_as_wins = intersections_as_wins
        self.report = report
        self.parts: dict[str, list[np.ndarray]] = {k: [] for k in ("shard", "group", "row", "flag", "weight", "key", "record")}
        self.counts = {"rows": 0, "not_different": 0, "unlabeled": 0, "same_image": 0, "duplicates": 0, "ties": 0, "bad_rows": 0}

    def _problem(self, shard: Shard, row: int, field: str | None, message: str, code: str) -> None:
        self.report.add(Problem(str(shard.path), row, field, message, code=code))
        self.counts["bad_rows"] += 1

    def _add(self, s: int, g: int, rows: list[int], flags: list[int], weights: list[float], keys: list[int], base: int) -> None:
        """Items of one group; ``keys`` identify (caption, images) for the duplicate search (0: none)."""
        n = len(rows)
        if not n:
            return
        self.parts["key"].append(np.asarray(keys, np.int64))
        self.parts["record"].append(np.asarray(rows, np.int64) + (base + (s << 40)))
        self.parts["shard"].append(np.full(n, s, np.int32))
        self.parts["group"].append(np.full(n, g, np.int32))
        self.parts["row"].append(np.asarray(rows, np.int32))
        self.parts["flag"].append(np.asarray(flags, np.int8))
        self.parts["weight"].append(np.asarray(weights, np.float32))

    def run(self, kind: str, roles: dict[str, str], original: dict[str, str], progress: ProgressFn | None) -> None:
        total = sum(len(s.groups) for s in self.shards)
        reader = GroupReader(self.shards, keep=1)
        done = 0
        for s, shard in enumerate(self.shards):
            names = _lower_map(shard.columns)
            missing = [c for c in original.values() if c.lower() not in names]
            if missing:
                self.report.add(Problem(str(shard.path), None, missing[0], f"missing column {missing[0]!r} that the first file has (this file has: {', '.join(shard.columns)})", code="missing_column", skippable=False))
                return
            wanted = [names[c.lower()] for c in original.values()]
            base = 0
            for g, size in enumerate(shard.groups):
                table = reader.read(s, g, wanted)
                columns = {role: table.column(names[original[role].lower()]) for role in original}
                if kind == "pairs":
                    self._pairs(s, g, base, shard, roles, columns)
                else:
                    self._labeled(s, g, base, shard, roles, columns)
                self.counts["rows"] += size
                base += size
                done += 1
                if progress is not None:
                    progress(done, total)
            reader.close()

    def _pairs(self, s: int, g: int, base: int, shard: Shard, roles: dict[str, str], cols: dict[str, Any]) -> None:
        import pyarrow as pa

        numeric = all(pa.types.is_floating(cols[c].type) or pa.types.is_integer(cols[c].type) for c in ("label_0", "label_1") if c in cols)
        flags_ok = all(pa.types.is_boolean(cols[c].type) for c in (ARE_DIFFERENT, HAS_LABEL) if c in cols)
        if numeric and flags_ok and pa.types.is_string(cols["caption"].type) and ("uid_0" not in cols or pa.types.is_string(cols["uid_0"].type)):
            self._pairs_vectorized(s, g, base, shard, roles, cols)
            return
        self._pairs_rows(s, g, base, shard, roles, cols)

    def _pairs_vectorized(self, s: int, g: int, base: int, shard: Shard, roles: dict[str, str], cols: dict[str, Any]) -> None:
        """Pick-a-Pic's own column types (float labels, bool flags, string uids): arrow/numpy over the whole group."""
        import pyarrow.compute as pc

        def floats(name: str) -> np.ndarray:
            return pc.fill_null(pc.cast(cols[name], "float64"), float("nan")).to_numpy(zero_copy_only=False)

        def truth(name: str, n: int) -> np.ndarray:
            return pc.fill_null(cols[name], True).to_numpy(zero_copy_only=False).astype(bool) if name in cols else np.ones(n, bool)

        caption = cols["caption"]
        n = len(caption)
        empty = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(caption)), 0), True).to_numpy(zero_copy_only=False).astype(bool)
        l0 = floats("label_0")
        l1 = floats("label_1") if "label_1" in cols else 1.0 - l0
        near = lambda a, b: np.abs(a - b) < 1e-6  # noqa: E731
        first, second = near(l0, 1) & near(l1, 0), near(l0, 0) & near(l1, 1)
        tie = near(l0, 0.5) & near(l1, 0.5)
        labelled, different = truth(HAS_LABEL, n), truth(ARE_DIFFERENT, n)
        self.counts["unlabeled"] += int((~labelled).sum())
        bad_caption = labelled & empty
        bad_label = labelled & ~empty & ~(first | second | tie)
        for r in np.flatnonzero(bad_caption | bad_label):
            if bad_caption[r]:
                self._problem(shard, base + int(r) + 1, roles["caption"], "empty caption: every example needs the prompt it was generated from", "empty_caption")
            else:
                _, field, message = pair_outcome(cols["label_0"][int(r)].as_py(), cols["label_1"][int(r)].as_py() if "label_1" in cols else None, "label_1" in cols)
                self._problem(shard, base + int(r) + 1, field, message, "unknown_label")
        usable = labelled & ~empty & (first | second | tie)
        not_different = usable & ~different
        self.counts["not_different"] += int(not_different.sum())
        usable &= different
        keys = np.zeros(n, np.int64)
        if "uid_0" in cols:
            u0, u1 = cols["uid_0"], cols["uid_1"]
            same = pc.fill_null(pc.equal(u0, u1), False).to_numpy(zero_copy_only=False).astype(bool) & usable
            self.counts["same_image"] += int(same.sum())
            usable &= ~same
            low = pc.if_else(pc.less(u0, u1), u0, u1)
            high = pc.if_else(pc.less(u0, u1), u1, u0)
            joined = pc.binary_join_element_wise(pc.utf8_trim_whitespace(caption), pc.cast(low, "string"), pc.cast(high, "string"), "\x1f")
            keys = np.fromiter(((hash(x) or 1) if x is not None else 1 for x in joined.to_pylist()), np.int64, count=n)
        ties = usable & tie
        self.counts["ties"] += int(ties.sum())
        if self.tie_policy != "weight":
            usable &= ~tie
        rows = np.flatnonzero(usable)
        repeat = np.where(tie[rows], 2, 1)
        items = np.repeat(rows, repeat)
        is_tie = tie[items]
        second_of_tie = np.zeros(len(items), bool)
        if is_tie.any():
            starts = np.concatenate([[0], np.cumsum(repeat)[:-1]])
            second_of_tie[starts[repeat == 2] + 1] = True
        flags = np.where(is_tie, second_of_tie, second[items]).astype(np.int8)
        weights = np.where(is_tie, 0.5, 1.0)
        self._add(s, g, items.tolist(), flags.tolist(), weights.tolist(), keys[items].tolist(), base)

    def _pairs_rows(self, s: int, g: int, base: int, shard: Shard, roles: dict[str, str], cols: dict[str, Any]) -> None:
        """Any column types (CSV text): row by row, with the up-front loader's label rules."""
        captions = _strings(cols["caption"])
        l0 = _floats(cols["label_0"])
        l1 = _floats(cols["label_1"]) if "label_1" in cols else None
        different = _truth(cols[ARE_DIFFERENT]) if ARE_DIFFERENT in cols else None
        labelled = _truth(cols[HAS_LABEL]) if HAS_LABEL in cols else None
        uids = [_strings(cols["uid_0"]), _strings(cols["uid_1"])] if "uid_0" in cols else None
        rows: list[int] = []
        flags: list[int] = []
        weights: list[float] = []
        keys: list[int] = []
        for r, caption in enumerate(captions):
            number = base + r + 1
            text = "" if caption is None else str(caption).strip()
            outcome, bad, message = pair_outcome(l0[r], l1[r] if l1 is not None else None, l1 is not None)
            if labelled is not None and labelled[r] is not None and not labelled[r]:
                self.counts["unlabeled"] += 1
                continue
            if not text:
                self._problem(shard, number, roles["caption"], "empty caption: every example needs the prompt it was generated from", "empty_caption")
                continue
            if outcome is None:
                self._problem(shard, number, bad, message, "unknown_label")
                continue
            if different is not None and different[r] is not None and not different[r]:
                self.counts["not_different"] += 1
                continue
            key = 0
            if uids is not None:
                a, b = uids[0][r], uids[1][r]
                if a is not None and a == b:
                    self.counts["same_image"] += 1
                    continue
                key = hash((text, min(str(a), str(b)), max(str(a), str(b)))) or 1
            if outcome == TIE:
                self.counts["ties"] += 1
                if self.tie_policy != "weight":
                    continue
                rows += [r, r]
                flags += [0, 1]
                weights += [0.5, 0.5]
                keys += [key, key]
                continue
            rows.append(r)
            flags.append(0 if outcome == FIRST else 1)
            weights.append(1.0)
            keys.append(key)
        self._add(s, g, rows, flags, weights, keys, base)

    def _labeled(self, s: int, g: int, base: int, shard: Shard, roles: dict[str, str], cols: dict[str, Any]) -> None:
        captions = _strings(cols["caption"])
        images = _strings(cols["image"])
        labels = _strings(cols["label"])
        rows: list[int] = []
        flags: list[int] = []
        keys: list[int] = []
        for r, caption in enumerate(captions):
            number = base + r + 1
            text = "" if caption is None else str(caption).strip()
            outcome = kto_outcome(labels[r])
            if not text:
                self._problem(shard, number, roles["caption"], "empty caption: every example needs the prompt it was generated from", "empty_caption")
                continue
            if outcome is None:
                self._problem(shard, number, roles["label"], f"unknown label {labels[r]!r}: use exclusive_win, exclusive_lose or intersections", "unknown_label")
                continue
            if outcome == INTERSECTION:
                self.counts["intersections"] = self.counts.get("intersections", 0) + 1
                if not self.intersections_as_wins:
                    continue
            keys.append(hash((text, str(images[r]))) or 1)
            rows.append(r)
            flags.append(1 if outcome in (DESIRABLE, INTERSECTION) else 0)
        self._add(s, g, rows, flags, [1.0] * len(rows), keys, base)

    def arrays(self) -> dict[str, np.ndarray]:
        """The item index, duplicates (same key as an item of an earlier row) left out and counted."""
        dtypes = {"shard": np.int32, "group": np.int32, "row": np.int32, "flag": np.int8, "weight": np.float32, "key": np.int64, "record": np.int64}
        out = {k: (np.concatenate(v) if v else np.zeros(0, dtypes[k])) for k, v in self.parts.items()}
        self.parts.clear()
        key, record = out.pop("key"), out.pop("record")
        with_key = np.flatnonzero(key != 0)
        if len(with_key):
            _, first, inverse = np.unique(key[with_key], return_index=True, return_inverse=True)
            first_item = with_key[first][inverse.reshape(-1)]
            duplicate = with_key[record[first_item] != record[with_key]]
            if len(duplicate):
                self.counts["duplicates"] += int(len(np.unique(record[duplicate])))
                keep = np.ones(len(key), dtype=bool)
                keep[duplicate] = False
                out = {k: v[keep] for k, v in out.items()}
        return out


def _item_label(outcome_flag: int) -> float:
    return float(outcome_flag)


class StreamingDataset(Dataset):
    """Items of a sharded table, read a group at a time and decoded on access (see the module docstring).

    ``kind`` is "pairs" (items as PairDataset's) or "labeled" (as LabeledDataset's).
    Unreadable images give an item with ``skipped`` set instead of raising.
    """

    streaming = True

    def __init__(self, kind: str, shards: list[Shard], columns: dict[str, str], arrays: dict[str, np.ndarray], resolution: int, report: ValidationReport, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.kind = kind
        self.shards = shards
        self.columns = columns  # role -> original column name (caption, image_0/image_1 or image)
        self.arrays = arrays
        self.resolution = resolution
        self.report = report
        self.max_pixels = max_pixels
        self.reader = GroupReader(shards)
        self.latents: dict[int, Any] | None = None
        self._offsets = [np.concatenate([[0], np.cumsum(s.groups)]).astype(np.int64) for s in shards]

    def __len__(self) -> int:
        return int(len(self.arrays["row"]))

    def block_sizes(self) -> list[int]:
        """Sizes of the runs of consecutive items that share a group (for a group-local shuffle)."""
        shard, group = self.arrays["shard"].astype(np.int64), self.arrays["group"].astype(np.int64)
        if not len(shard):
            return []
        key = shard * (1 << 32) + group
        starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
        return np.diff(np.concatenate([starts, [len(key)]])).tolist()

    def labels(self) -> list[float]:
        if self.kind != "labeled":
            raise TypeError("pair data has no per-item labels")
        return self.arrays["flag"].astype(np.float32).tolist()

    def weights(self) -> list[float]:
        return self.arrays["weight"].tolist()

    def locate(self, index: int) -> dict[str, Any]:
        """Where item ``index`` lives: shard file, row group, row in the group, record number in the file."""
        s, g, r = (int(self.arrays[k][index]) for k in ("shard", "group", "row"))
        return {"shard": str(self.shards[s].path), "row_group": g, "row": r, "record": int(self._offsets[s][g]) + r + 1}

    def cache_latents(self, encode: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 8, progress: ProgressFn | None = None, **_: Any) -> None:
        """Encode every item once and keep the latents in memory: for small streamed sets only (the CPU preset's choice)."""
        if len(self) > CACHE_MAX_ITEMS:
            raise ValueError(
                f"cache_latents keeps every latent in memory, and this data has {len(self)} items (at most {CACHE_MAX_ITEMS}): "
                "turn it off; images are decoded lazily in DataLoader workers (raise dataloader_workers if the data side is slow)"
            )
        cache: dict[int, Any] = {}
        for start in range(0, len(self), batch_size):
            items = [(i, self[i]) for i in range(start, min(start + batch_size, len(self)))]
            good = [(i, item) for i, item in items if "skipped" not in item]
            for i, item in items:
                if "skipped" in item:
                    cache[i] = item
            if good:
                pixels = torch.stack([item["pixel_values"] for _, item in good])
                flat = pixels.flatten(0, 1) if pixels.ndim == 5 else pixels
                with torch.no_grad():
                    latents = encode(flat).detach().cpu()
                if pixels.ndim == 5:
                    latents = latents.view(pixels.shape[0], pixels.shape[1], *latents.shape[1:])
                for (i, item), latent in zip(good, latents):
                    cache[i] = {**{k: v for k, v in item.items() if k != "pixel_values"}, "latents": latent.contiguous()}
            if progress is not None:
                progress(min(start + batch_size, len(self)), len(self))
        self.latents = cache
        self.reader.close()

    def _ref(self, cell: Any, column: str, shard: Shard, record: int) -> ImageRef:
        if isinstance(cell, dict):
            cell = cell.get("bytes") or cell.get("path")
        display = f"{shard.path.name}, row {record}, {column}"
        if isinstance(cell, (bytes, bytearray, memoryview)):
            if not len(cell):
                raise ImageProblem("missing_value", "empty image bytes")
            return ImageRef(key=display, display=display, data=bytes(cell))
        if cell is None or (isinstance(cell, float) and math.isnan(cell)):
            raise ImageProblem("missing_value", "no image given")
        return ImageRef.from_path(resolve_image_path(shard.path.parent.resolve(), str(cell)), str(cell))

    def _pixels(self, ref: ImageRef) -> torch.Tensor:
        if ref.path is not None and not Path(ref.path).is_file():
            raise ImageProblem("missing_image", f"image file not found: {ref.display}")
        try:
            return load_image_tensor(ref, self.resolution, self.max_pixels)
        except ImageProblem:
            raise
        except Exception as exc:  # PIL's OSError / SyntaxError / ValueError for damaged data
            raise ImageProblem("corrupt_image", f"damaged, truncated or unknown image: {type(exc).__name__}: {exc}") from None

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.latents is not None:
            return dict(self.latents[index])
        s, g, r, flag = (int(self.arrays[k][index]) for k in ("shard", "group", "row", "flag"))
        shard = self.shards[s]
        record = int(self._offsets[s][g]) + r + 1
        roles = ("image_0", "image_1") if self.kind == "pairs" else ("image",)
        table = self.reader.read(s, g, [self.columns["caption"], *(self.columns[role] for role in roles)])
        caption = str(table.column(0)[r].as_py() or "").strip()
        cells = [table.column(i + 1)[r].as_py() for i in range(len(roles))]
        item: dict[str, Any] = {"caption": caption}
        if self.kind == "pairs":
            item["weight"] = float(self.arrays["weight"][index])
            empty = torch.empty(2, 3, 0, 0)
        else:
            item["label"] = _item_label(flag)
            empty = torch.empty(3, 0, 0)
        tensors = []
        refs = []
        for role, cell in zip(roles, cells):
            column = self.columns[role]
            try:
                ref = self._ref(cell, column, shard, record)
                refs.append(ref)
                tensors.append(self._pixels(ref))
            except ImageProblem as exc:
                item["pixel_values"] = empty
                item["skipped"] = {"file": str(shard.path), "row": record, "field": column, "code": exc.code, "message": str(exc), "bad": True}
                return item
        if self.kind == "pairs":
            if refs[0].data is not None and refs[0].data == refs[1].data:
                item["pixel_values"] = empty
                item["skipped"] = {"file": str(shard.path), "row": record, "field": self.columns["image_1"], "code": "same_image", "message": "both images of the pair are byte-identical", "bad": False}
                return item
            first, second = (tensors[0], tensors[1]) if flag == 0 else (tensors[1], tensors[0])
            item["pixel_values"] = torch.from_numpy(np.stack([first.numpy(), second.numpy()]))
        else:
            item["pixel_values"] = tensors[0]
        return item


def load_streaming(
    files: list[Path],
    method: str,
    resolution: int,
    skip_bad_rows: bool,
    min_per_class: int,
    tie_policy: str,
    intersections_as_wins: bool,
    max_pixels: int,
    source: Path,
    progress: ProgressFn | None = None,
) -> StreamingDataset:
    """Check the structure of ``files`` (small columns only) and return the lazily decoding dataset."""
    report = ValidationReport(source=str(source), skip_bad_rows=skip_bad_rows)
    report.row_meaning = "rows are record numbers in each file, the first record being row 1"
    if not files:
        report.add(Problem(str(source), None, None, "no .parquet or .arrow files match", code="missing_file", skippable=False))
        raise DatasetValidationError(report)
    try:
        shards = [open_shard(f) for f in files]
    except TableError as exc:
        report.add(exc.problem)
        raise DatasetValidationError(report) from None
    first = shards[0]
    lower = _lower_map(first.columns)
    kind = detect_kind(list(lower)) or ("labeled" if method == "kto" else "pairs")
    roles, missing = required_columns(list(lower), kind)
    for role, names in missing:
        report.add(Problem(str(first.path), None, role, f"missing column {names} (the file has: {', '.join(first.columns)})", code="missing_column", skippable=False))
    if missing:
        raise DatasetValidationError(report)
    if kind == "labeled" and method != "kto":
        report.add(Problem(str(source), None, None, f"{method.upper()} trains on pairs, but this is labeled (liked/disliked) data: use KTO, or pair data", code="wrong_kind", skippable=False))
        raise DatasetValidationError(report)
    if kind == "pairs" and method == "kto":
        report.add(Problem(str(source), None, None, "KTO on streamed pair shards is not supported yet: use DPO, or pass --strict-images to split a small set into liked/disliked images", code="wrong_kind", skippable=False))
        raise DatasetValidationError(report)
    # role -> original column name, for the small columns the scan reads
    small: dict[str, str] = {"caption": lower[roles["caption"]]}
    if kind == "pairs":
        small["label_0"] = lower[roles["label_0"]]
        if "label_1" in roles:
            small["label_1"] = lower["label_1"]
        for name in (ARE_DIFFERENT, HAS_LABEL):
            if name in lower:
                small[name] = lower[name]
        image_cols = [roles["image_0"], roles["image_1"]]
        if all(u in lower for u in UID_COLUMNS):
            small["uid_0"], small["uid_1"] = lower[UID_COLUMNS[0]], lower[UID_COLUMNS[1]]
        elif not any(c.startswith("jpg") for c in image_cols):  # paths identify the images
            small["uid_0"], small["uid_1"] = lower[image_cols[0]], lower[image_cols[1]]
        else:
            report.notes.append("no image_0_uid / image_1_uid columns: duplicates are not looked for (that would read every image)")
        columns = {"caption": small["caption"], "image_0": lower[image_cols[0]], "image_1": lower[image_cols[1]]}
    else:
        small["image"] = lower[roles["image"]]
        small["label"] = lower[roles["label"]]
        columns = {"caption": small["caption"], "image": small["image"]}
    scan = _Scan(shards, method, tie_policy, skip_bad_rows, intersections_as_wins, report)
    scan.run(kind, roles, small, progress)
    if report.blocking:
        raise DatasetValidationError(report)
    arrays = scan.arrays()
    counts = scan.counts
    report.counts.update({"files": len(shards), "rows": counts["rows"]})
    n = len(arrays["row"])
    if kind == "pairs":
        report.counts["pairs"] = n
    else:
        report.counts["desirable"] = int((arrays["flag"] == 1).sum())
        report.counts["undesirable"] = int((arrays["flag"] == 0).sum())
    for name in ("not_different", "unlabeled", "same_image", "duplicates", "ties", "intersections"):
        if counts.get(name):
            report.counts[name] = counts[name]
    if skip_bad_rows:
        report.counts["skipped"] = counts["bad_rows"]
    left_out = [f"{counts[k]} {label}" for k, label in (
        ("not_different", "with are_different false"), ("unlabeled", "with has_label false"), ("same_image", "with the same image uid on both sides"),
        ("duplicates", "duplicate(s) of an earlier row (same caption and images)"),
    ) if counts.get(k)]
    if kind == "pairs" and counts["ties"]:
        left_out.append(f"{counts['ties']} tie(s) {'kept, weighted 0.5 in both orders' if tie_policy == 'weight' else 'dropped (tie policy)'}")
    report.notes.append(
        f"streamed {describe(files)}: structure of {counts['rows']} rows checked; images are checked as they are read "
        "(a bad one is skipped, counted and named; --strict-images checks them all first)"
        + (f"; left out: {', '.join(left_out)}" if left_out else "")
    )
    needed = max(1, min_per_class)
    if kind == "pairs" and n < needed:
        report.add(Problem(str(source), None, None, f"{method.upper()} needs at least {needed} usable pair(s); found {n}", code="too_few", skippable=False))
    if kind == "labeled":
        for value, name in ((1, "desirable"), (0, "undesirable")):
            if int((arrays["flag"] == value).sum()) < min_per_class:
                report.add(Problem(str(source), None, "label", f"KTO needs at least {min_per_class} {name} example(s); found {int((arrays['flag'] == value).sum())}", code="too_few", skippable=False))
    if report.blocking:
        raise DatasetValidationError(report)
    return StreamingDataset(kind, shards, columns, arrays, resolution, report, max_pixels)


def check_all_images(dataset: StreamingDataset, skip_bad_rows: bool, progress: ProgressFn | None = None) -> StreamingDataset:
    """--strict-images on streamed data: decode every item first; bad ones are problems (or left out with skip_bad_rows)."""
    report = dataset.report
    keep = np.ones(len(dataset), dtype=bool)
    for index in range(len(dataset)):
        info = dataset[index].get("skipped")
        if info is not None:
            keep[index] = False
            if info.get("bad", True):
                report.add(Problem(info["file"], info["row"], info["field"], info["message"], code=info["code"]))
            else:
                report.counts["same_image"] = report.counts.get("same_image", 0) + 1
        if progress is not None:
            progress(index + 1, len(dataset))
    dataset.reader.close()
    if report.blocking:
        raise DatasetValidationError(report)
    dataset.arrays = {k: v[keep] for k, v in dataset.arrays.items()}
    if dataset.kind == "pairs":
        report.counts["pairs"] = len(dataset)
    if skip_bad_rows:
        report.counts["skipped"] = report.counts.get("skipped", 0) + int((~keep).sum())
    return dataset
