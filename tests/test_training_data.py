"""Preference data: formats, validation report (file/row/field for every problem), preprocessing."""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import sys
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from lib_alignment.toyworld import redness
from lib_alignment.training.data import DatasetValidationError, ValidationReport, load_preference_data
from lib_alignment.training.data import tables as tables_module
from lib_alignment.training.data.synthetic import make_toy_kto, make_toy_pairs

R = 32
RED, BLUE, GREEN = (220, 30, 30), (30, 60, 220), (30, 170, 40)


def png(path: Path, color=RED, size=(R, R)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


PAIR_HEADER = ["caption", "image_0", "image_1", "label_0", "label_1"]


@pytest.fixture
def pair_dir(tmp_path: Path) -> Path:
    """A dataset folder with a red and a blue image."""
    png(tmp_path / "data" / "red.png", RED)
    png(tmp_path / "data" / "blue.png", BLUE)
    png(tmp_path / "data" / "green.png", GREEN)
    return tmp_path / "data"


def problems_of(exc_info: pytest.ExceptionInfo[DatasetValidationError]):
    return exc_info.value.report.problems


def only_problem(path: Path, method: str = "dpo", **kwargs):
    with pytest.raises(DatasetValidationError) as exc_info:
        load_preference_data(path, method, resolution=R, **kwargs)
    problems = [p for p in problems_of(exc_info) if p.code != "too_few"]
    assert len(problems) == 1, exc_info.value.report.format_text()
    return problems[0], exc_info.value


# --- every bad input names file, row and field -------------------------------------------------


def test_missing_columns_are_each_named_at_the_header_row(pair_dir: Path) -> None:
    file = write_csv(pair_dir / "pairs.csv", ["caption", "image_0", "label_0"], [["x", "red.png", 1]])
    with pytest.raises(DatasetValidationError) as exc_info:
        load_preference_data(file, "dpo", resolution=R)
    (problem,) = problems_of(exc_info)
    assert (problem.file, problem.row, problem.field, problem.code) == (str(file), 1, "image_1", "missing_column")
    assert "image_1 or jpg_1" in problem.message and not problem.skippable
    # skip_bad_rows cannot fix a missing column
    with pytest.raises(DatasetValidationError):
        load_preference_data(file, "dpo", resolution=R, skip_bad_rows=True)


def test_missing_image_names_file_row_field_and_image(pair_dir: Path) -> None:
    file = write_csv(pair_dir / "pairs.csv", PAIR_HEADER, [["a", "red.png", "blue.png", 1, 0], ["b", "red.png", "gone.png", 1, 0]])
    problem, exc = only_problem(file)
    assert (problem.file, problem.row, problem.field, problem.code, problem.image) == (str(file), 3, "image_1", "missing_image", "gone.png")
    assert "pairs.csv, row 3, image_1: image file not found: gone.png" in str(exc)


@pytest.mark.parametrize(
    "make_bad, code",
    [
        (lambda p: p.write_bytes(b"this is not a picture at all"), "corrupt_image"),
        (lambda p: p.write_bytes(png(p.with_name("src.png"), size=(48, 48)).read_bytes()[:60]), "corrupt_image"),
        (lambda p: p.mkdir(), "unreadable_image"),
    ],
    ids=["garbage", "truncated", "directory"],
)
def test_corrupt_truncated_and_unreadable_images(pair_dir: Path, make_bad, code: str) -> None:
    make_bad(pair_dir / "bad.png")
    file = write_csv(pair_dir / "pairs.csv", PAIR_HEADER, [["a", "red.png", "blue.png", 1, 0], ["b", "bad.png", "blue.png", 0, 1]])
    problem, _ = only_problem(file)
    assert (problem.row, problem.field, problem.code, problem.image) == (3, "image_0", code, "bad.png")


def test_truncated_jpeg_data_is_caught_by_decoding(pair_dir: Path) -> None:
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 60).convert("RGB").save(buffer, format="JPEG", quality=95)
    (pair_dir / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    file = write_csv(pair_dir / "pairs.csv", PAIR_HEADER, [["a", "red.png", "cut.jpg", 1, 0]])
    problem, _ = only_problem(file)
    assert (problem.row, problem.field, problem.code) == (2, "image_1", "corrupt_image")


@pytest.mark.parametrize("kind", ["dotdot", "backslash_dotdot", "absolute", "symlink"])
def test_paths_escaping_the_dataset_folder_are_refused(tmp_path: Path, pair_dir: Path, kind: str) -> None:
    outside = png(tmp_path / "outside.png", GREEN)
    if kind == "symlink":
        os.symlink(outside, pair_dir / "link.png")
        value = "link.png"
    else:
        value = {"dotdot": "../outside.png", "backslash_dotdot": "..\\outside.png", "absolute": str(outside)}[kind]
    file = write_csv(pair_dir / "pairs.csv", PAIR_HEADER, [["a", "red.png", value, 1, 0]])
    problem, _ = only_problem(file)
    assert (problem.row, problem.field, problem.code) == (2, "image_1", "path_escapes")
    assert ("absolute" in problem.message) == (kind == "absolute")
    assert ("symbolic link" in problem.message) == (kind == "symlink")


def test_symlink_inside_the_folder_is_fine(pair_dir: Path) -> None:
    os.symlink(pair_dir / "blue.png", pair_dir / "alias.png")
    file = write_csv(pair_dir / "pairs.csv", PAIR_HEADER, [["a", "red.png", "alias.png", 1, 0]])
    assert len(load_preference_data(file, "dpo", resolution=R)) == 1


@pytest.mark.parametrize(
    "labels, field",
    [((2, 0), "label_0"), ((1, 1), "label_1"), (("yes", 0), "label_0"), ((0.5, 0.4), "label_1")],
)
def test_unknown_pair_labels(pair_dir: Path, labels, field: str) -> None:
    file = write_csv(pair_dir / "pairs.csv", PAIR_HEADER, [["a", "red.png", "blue.png", *labels]])
    problem, _ = only_problem(file)
    assert (problem.row, problem.field, problem.code) == (2, field, "unknown_label")


def test_unknown_kto_label(pair_dir: Path) -> None:
    file = write_csv(
        pair_dir / "kto.csv",
        ["file_name", "caption", "label"],
        [["red.png", "a", "exclusive_win"], ["blue.png", "b", "exclusive_lose"], ["green.png", "c", "maybe"]],
    )
    problem, _ = only_problem(file, "kto")
    assert (problem.row, problem.field, problem.code) == (4, "label", "unknown_label")
    assert "'maybe'" in problem.message


def test_empty_caption(pair_dir: Path) -> None:
    file = write_csv(pair_dir / "pairs.csv", PAIR_HEADER, [["a", "red.png", "blue.png", 1, 0], ["   ", "red.png", "green.png", 1, 0]])
    problem, _ = only_problem(file)
    assert (problem.row, problem.field, problem.code) == (3, "caption", "empty_caption")


def test_duplicates_point_at_the_first_occurrence(pair_dir: Path) -> None:
    rows = [
        ["a", "red.png", "blue.png", 1, 0],
        ["a", "green.png", "blue.png", 1, 0],
        ["a", "blue.png", "red.png", 0, 1],  # same pair, columns swapped, same verdict
        ["a", "red.png", "blue.png", 0, 1],  # same pair, opposite verdict
        ["b", "red.png", "blue.png", 1, 0],  # other caption: not a duplicate
    ]
    file = write_csv(pair_dir / "pairs.csv", PAIR_HEADER, rows)
    with pytest.raises(DatasetValidationError) as exc_info:
        load_preference_data(file, "dpo", resolution=R)
    dups = problems_of(exc_info)
    assert [(p.row, p.code) for p in dups] == [(4, "duplicate"), (5, "duplicate")]
    assert "duplicate of row 2" in dups[0].message and "different label" not in dups[0].message
    assert "different label" in dups[1].message


def test_same_image_on_both_sides_of_a_pair(pair_dir: Path) -> None:
    file = write_csv(pair_dir / "pairs.csv", PAIR_HEADER, [["a", "red.png", "./red.png", 1, 0]])
    problem, _ = only_problem(file)
    assert (problem.row, problem.field, problem.code) == (2, "image_1", "same_image")


def _png_with_declared_size(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims width x height: a bomb's header without a bomb's bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


@pytest.mark.parametrize("side, shown", [(9000, "9000x9000"), (12000, "144000000")], ids=["our_64MP_limit", "PIL_limit"])
def test_decompression_bomb_header_is_refused_before_decoding(pair_dir: Path, side: int, shown: str) -> None:
    (pair_dir / "bomb.png").write_bytes(_png_with_declared_size(side, side))
    file = write_csv(pair_dir / "pairs.csv", PAIR_HEADER, [["a", "red.png", "bomb.png", 1, 0]])
    problem, _ = only_problem(file)
    assert (problem.row, problem.field, problem.code) == (2, "image_1", "decompression_bomb")
    assert shown in problem.message


def test_decompression_limit_is_a_parameter(pair_dir: Path) -> None:
    file = write_csv(pair_dir / "pairs.csv", PAIR_HEADER, [["a", "red.png", "blue.png", 1, 0]])
    with pytest.raises(DatasetValidationError) as exc_info:
        load_preference_data(file, "dpo", resolution=R, max_pixels=R * R - 1)
    found = {(p.field, p.code) for p in problems_of(exc_info)}
    assert found == {("image_0", "decompression_bomb"), ("image_1", "decompression_bomb"), (None, "too_few")}
    assert len(load_preference_data(file, "dpo", resolution=R, max_pixels=R * R)) == 1


def test_too_few_of_a_class(pair_dir: Path) -> None:
    file = write_csv(
        pair_dir / "kto.csv",
        ["file_name", "caption", "label"],
        [["red.png", "a", "exclusive_win"], ["green.png", "a", "exclusive_win"], ["blue.png", "b", "exclusive_lose"]],
    )
    assert load_preference_data(file, "kto", resolution=R, min_per_class=1).labels() == [1.0, 1.0, 0.0]
    with pytest.raises(DatasetValidationError) as exc_info:
        load_preference_data(file, "kto", resolution=R, min_per_class=2)
    (problem,) = problems_of(exc_info)
    assert (problem.file, problem.row, problem.field, problem.code) == (str(file), None, "label", "too_few")
    assert "2 undesirable" in problem.message and "found 1" in problem.message
    with pytest.raises(DatasetValidationError, match="skipping bad rows cannot fix"):
        load_preference_data(file, "kto", resolution=R, min_per_class=2, skip_bad_rows=True)


def test_pairs_need_at_least_one_usable_pair(pair_dir: Path) -> None:
    file = write_csv(pair_dir / "pairs.csv", PAIR_HEADER, [["a", "red.png", "blue.png", 0.5, 0.5]])
    with pytest.raises(DatasetValidationError) as exc_info:
        load_preference_data(file, "dpo", resolution=R)
    assert [p.code for p in problems_of(exc_info)] == ["too_few"]


def test_labeled_data_is_refused_for_dpo(pair_dir: Path) -> None:
    file = write_csv(pair_dir / "kto.csv", ["file_name", "caption", "label"], [["red.png", "a", "exclusive_win"]])
    with pytest.raises(DatasetValidationError, match="DPO trains on pairs"):
        load_preference_data(file, "dpo", resolution=R)


# --- one report for everything; skipping --------------------------------------------------------


def _messy_csv(pair_dir: Path) -> Path:
    (pair_dir / "bad.png").write_bytes(b"junk")
    with open(pair_dir / "pairs.csv", "w", encoding="utf-8", newline="") as handle:
        handle.write("caption,image_0,image_1,label_0,label_1\n")
        handle.write("good one,red.png,blue.png,1,0\n")  # row 2
        handle.write('"a caption\nover two lines",red.png,green.png,0,1\n')  # rows 3-4: fine
        handle.write(",missing.png,blue.png,1,0\n")  # row 5: empty caption + missing image
        handle.write("c,bad.png,../x.png,3,0\n")  # row 6: corrupt, escape, label
        handle.write("d,red,with comma,green.png,blue.png,1,0\n")  # row 7: unquoted comma
        handle.write("good one,red.png,blue.png,1,0\n")  # row 8: duplicate of row 2
        handle.write("e,green.png,blue.png,1,0\n")  # row 9: fine
    return pair_dir / "pairs.csv"


def test_every_problem_in_one_report_with_line_numbers(pair_dir: Path) -> None:
    file = _messy_csv(pair_dir)
    with pytest.raises(DatasetValidationError) as exc_info:
        load_preference_data(file, "dpo", resolution=R)
    found = {(p.row, p.field, p.code) for p in problems_of(exc_info)}
    assert found == {
        (5, "caption", "empty_caption"),
        (5, "image_0", "missing_image"),
        (6, "image_0", "corrupt_image"),
        (6, "image_1", "path_escapes"),
        (6, "label_0", "unknown_label"),
        (7, None, "malformed_row"),  # its shifted cells are not checked
        (8, "image_0", "duplicate"),
    }
    text = str(exc_info.value)
    assert text.count("pairs.csv, row ") == len(found)
    assert "4 row(s)" in text and "skip bad rows" in text
    json.dumps(exc_info.value.report.to_dict())  # the API can send it


def test_skip_bad_rows_keeps_good_rows_and_records_skipped(pair_dir: Path) -> None:
    file = _messy_csv(pair_dir)
    data = load_preference_data(file, "dpo", resolution=R, skip_bad_rows=True)
    assert [r.row for r in data.records] == [2, 3, 9]
    assert [(s.file, s.row) for s in data.report.skipped] == [(str(file), n) for n in (5, 6, 7, 8)]
    assert data.report.problems and not data.report.blocking and not data.report.ok
    assert data.records[1].caption == "a caption\nover two lines"
    assert "[skipped]" in data.report.format_text()


def test_missing_pyarrow_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "pairs.parquet"
    file.write_bytes(b"PAR1")
    monkeypatch.setattr(tables_module, "pyarrow_available", lambda: False)
    problem, _ = only_problem(file)
    assert problem.code == "missing_dependency" and "'pyarrow'" in problem.message and "not installed" in problem.message


def test_broken_pyarrow_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "pairs.parquet"
    file.write_bytes(b"PAR1")
    monkeypatch.setattr(tables_module, "pyarrow_available", lambda: True)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import raises ImportError
    problem, _ = only_problem(file)
    assert problem.code == "missing_dependency" and "fails to import" in problem.message


def test_not_utf8_csv_is_named(pair_dir: Path) -> None:
    (pair_dir / "pairs.csv").write_bytes("caption,image_0,image_1,label_0\ncaf\u00e9,red.png,blue.png,1\n".encode("latin-1"))
    problem, _ = only_problem(pair_dir / "pairs.csv")
    assert problem.code == "bad_encoding" and problem.row == 2


# --- formats -------------------------------------------------------------------------------------


def _pyarrow():  # type: ignore[no-untyped-def]
    """pyarrow, or a skip where it is absent or cannot import (a host stack with an older numpy)."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"pyarrow unusable here: {exc}")
    return pyarrow


def test_pickapic_parquet_with_image_bytes(tmp_path: Path) -> None:
    _pyarrow()
    file = make_toy_pairs(tmp_path, 4, resolution=R, seed=3, layout="parquet")
    data = load_preference_data(file, "dpo", resolution=R)
    assert data.kind == "pairs" and len(data) == 4
    assert all(r.preferred.data is not None for r in data.records)
    for i in range(4):
        preferred, other = data[i]["pixel_values"]
        assert _has_colour(preferred, RED) and not _has_colour(other, RED)
    assert data.report.row_meaning.startswith("rows are record numbers")


def test_parquet_problems_name_record_numbers(tmp_path: Path) -> None:
    pa = _pyarrow()
    import pyarrow.parquet as pq

    good = io.BytesIO()
    Image.new("RGB", (R, R), RED).save(good, format="PNG")
    pq.write_table(
        pa.table(
            {
                "caption": ["a", "b", "c"],
                "jpg_0": [good.getvalue(), b"broken", good.getvalue()],
                "jpg_1": [{"bytes": b, "path": None} for b in (good.getvalue()[:-20], _png_with_declared_size(2, 2), good.getvalue())],
                "label_0": [1.0, 0.0, 1.0],
                "label_1": [0.0, 1.0, 0.0],
            }
        ),
        tmp_path / "p.parquet",
    )
    with pytest.raises(DatasetValidationError) as exc_info:
        load_preference_data(tmp_path / "p.parquet", "dpo", resolution=R)
    found = {(p.row, p.field, p.code) for p in problems_of(exc_info)}
    assert found == {
        (1, "jpg_1", "corrupt_image"),  # truncated, inside a Hugging Face {bytes, path} struct
        (2, "jpg_0", "corrupt_image"),
        (2, "jpg_1", "corrupt_image"),  # header promises more pixels than the data holds
        (3, "jpg_1", "same_image"),  # identical bytes on both sides
        (None, None, "too_few"),  # no usable pair left
    }


@pytest.mark.parametrize("image_column, label_column", [("file_name", "label"), ("file_path", "label"), ("file_name", "split")])
def test_kto_csv_column_namings(tmp_path: Path, image_column: str, label_column: str) -> None:
    file = make_toy_kto(tmp_path, 6, resolution=R, desirable_fraction=0.5, image_column=image_column, label_column=label_column)
    data = load_preference_data(file, "kto", resolution=R)
    assert data.kind == "labeled" and sorted(data.labels()) == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    rows = {r[image_column]: r[label_column] for r in csv.DictReader(file.open())}
    assert {Path(r.image.path or "").relative_to(tmp_path).as_posix(): r.label for r in data.records} == {
        name: 1.0 if label == "exclusive_win" else 0.0 for name, label in rows.items()
    }
    for i in range(len(data)):
        item = data[i]
        assert item["pixel_values"].shape == (3, R, R)
        assert _has_colour(item["pixel_values"], RED) == (item["label"] == 1.0)


def test_kto_intersections_count_as_wins_unless_told_otherwise(pair_dir: Path) -> None:
    file = write_csv(
        pair_dir / "kto.csv",
        ["file_name", "caption", "split"],
        [["red.png", "a", "exclusive_win"], ["green.png", "a", "intersections"], ["blue.png", "a", "Exclusive_Lose"]],
    )
    assert load_preference_data(file, "kto", resolution=R).labels() == [1.0, 1.0, 0.0]
    data = load_preference_data(file, "kto", resolution=R, intersections_as_wins=False)
    assert data.labels() == [1.0, 0.0] and [r.row for r in data.records] == [2, 4]


def test_rank_refine_pairs_split_for_kto(pair_dir: Path) -> None:
    rows = [
        ["a", "red.png", "blue.png", 1, 0],  # red wins, blue loses
        ["a", "green.png", "red.png", 1, 0],  # green wins, red loses -> red is an intersection
        ["a", "green.png", "blue.png", 0.5, 0.5],  # tie: unused
    ]
    file = write_csv(pair_dir / "pairs.csv", PAIR_HEADER, rows)
    data = load_preference_data(file, "kto", resolution=R)
    by_image = {Path(r.image.path or "").name: r.label for r in data.records}
    assert by_image == {"red.png": 1.0, "blue.png": 0.0, "green.png": 1.0}
    strict = load_preference_data(file, "kto", resolution=R, intersections_as_wins=False)
    assert {Path(r.image.path or "").name: r.label for r in strict.records} == {"blue.png": 0.0, "green.png": 1.0}
    assert "1 tie(s) not used" in data.report.format_text()


def test_ties_dropped_or_weighted_in_both_orders(pair_dir: Path) -> None:
    rows = [["a", "red.png", "blue.png", 1, 0], ["b", "red.png", "green.png", 0.5, 0.5]]
    file = write_csv(pair_dir / "pairs.csv", PAIR_HEADER, rows)
    dropped = load_preference_data(file, "dpo", resolution=R)
    assert [(r.row, r.weight) for r in dropped.records] == [(2, 1.0)]
    weighted = load_preference_data(file, "dpo", resolution=R, tie_policy="weight")
    assert [(r.row, r.weight, r.tie) for r in weighted.records] == [(2, 1.0, False), (3, 0.5, True), (3, 0.5, True)]
    first, second = weighted[1]["pixel_values"], weighted[2]["pixel_values"]
    assert torch.equal(first[0], second[1]) and torch.equal(first[1], second[0])
    assert weighted[1]["weight"] == 0.5


def test_flipped_labels_put_the_preferred_image_first(pair_dir: Path) -> None:
    rows = [["a", "red.png", "blue.png", 1, 0], ["b", "blue.png", "red.png", 0, 1], ["c", "blue.png", "green.png", "0.0", "1.0"]]
    file = write_csv(pair_dir / "pairs.csv", PAIR_HEADER, rows)
    data = load_preference_data(file, "mapo", resolution=R)
    preferred = [Path(r.preferred.path or "").name for r in data.records]
    assert preferred == ["red.png", "red.png", "green.png"]
    assert _redness(data[1]["pixel_values"][0]) > 0.5 > _redness(data[1]["pixel_values"][1])


def test_label_1_is_optional(pair_dir: Path) -> None:
    file = write_csv(pair_dir / "pairs.csv", ["caption", "image_0", "image_1", "label_0"], [["a", "blue.png", "red.png", 0]])
    assert Path(load_preference_data(file, "dpo", resolution=R).records[0].preferred.path or "").name == "red.png"


def test_labeled_folder_layout_with_all_caption_sources(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    png(root / "liked" / "one.png", RED)
    (root / "liked" / "one.txt").write_text("a red circle\n")
    png(root / "liked" / "two.jpg", RED)
    png(root / "disliked" / "three.png", BLUE)
    png(root / "disliked" / "four.webp", BLUE)
    write_csv(root / "captions.csv", ["file_name", "caption"], [["liked/two.jpg", "from the csv"]])
    (root / "prompt.txt").write_text("the default\n")
    (root / "disliked" / "notes.md").write_text("ignored")
    data = load_preference_data(root, "kto", resolution=R)
    got = {Path(r.file).name: (r.caption, r.label) for r in data.records}
    assert got == {
        "one.png": ("a red circle", 1.0),
        "two.jpg": ("from the csv", 1.0),
        "three.png": ("the default", 0.0),
        "four.webp": ("the default", 0.0),
    }
    (root / "prompt.txt").unlink()
    with pytest.raises(DatasetValidationError) as exc_info:
        load_preference_data(root, "kto", resolution=R)
    found = {(p.file, p.row, p.field, p.code) for p in problems_of(exc_info) if p.code != "too_few"}
    disliked = (root / "disliked").resolve()
    assert found == {(str(disliked / name), None, "caption", "empty_caption") for name in ("three.png", "four.webp")}
    assert "disliked/four.webp, caption: empty caption" in str(exc_info.value)


def test_pair_folder_layout(tmp_path: Path) -> None:
    root = make_toy_pairs(tmp_path / "pairs", 3, resolution=R, layout="folder")
    data = load_preference_data(root, "dpo", resolution=R)
    assert len(data) == 3 and all(r.caption.endswith("background") for r in data.records)
    assert all(_has_colour(data[i]["pixel_values"][0], RED) and not _has_colour(data[i]["pixel_values"][1], RED) for i in range(3))
    (root / "pair_00001" / "rejected.png").unlink()
    problem, _ = only_problem(root)
    assert (Path(problem.file).name, problem.row, problem.field, problem.code) == ("pair_00001", None, "rejected", "missing_image")
    assert len(load_preference_data(root, "kto", resolution=R, skip_bad_rows=True)) == 4


def test_folder_symlink_escape(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    png(root / "liked" / "one.png", RED)
    png(root / "disliked" / "two.png", BLUE)
    (root / "prompt.txt").write_text("p")
    os.symlink(png(tmp_path / "secret.png", GREEN), root / "liked" / "sneaky.png")
    problem, _ = only_problem(root, "kto")
    assert (Path(problem.file).name, problem.field, problem.code) == ("sneaky.png", "image", "path_escapes")


# --- preprocessing -------------------------------------------------------------------------------


def _has_colour(pixels: torch.Tensor, colour: tuple[int, int, int]) -> bool:
    """Whether a few pixels show exactly this toy colour (toy backgrounds never use the shape's)."""
    target = torch.tensor(colour, dtype=torch.float32).view(3, 1, 1) / 127.5 - 1
    return int(((pixels - target).abs().amax(dim=0) < 0.05).sum()) >= 4


def _redness(pixels: torch.Tensor) -> float:
    return redness(Image.fromarray(((pixels.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()))


@pytest.mark.parametrize("size", [(3 * R, R), (R * 2, R * 6)], ids=["wide", "tall"])
def test_center_crop_keeps_the_middle_of_non_square_images(pair_dir: Path, size: tuple[int, int]) -> None:
    w, h = size
    image = Image.new("RGB", size, GREEN)
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image.paste(Image.new("RGB", (side, side), RED), (left, top))
    image.save(pair_dir / "odd.png")
    file = write_csv(pair_dir / "pairs.csv", PAIR_HEADER, [["a", "odd.png", "blue.png", 1, 0]])
    pixels = load_preference_data(file, "dpo", resolution=16)[0]["pixel_values"]
    assert pixels.shape == (2, 3, 16, 16) and pixels.dtype == torch.float32
    expected = torch.tensor(RED, dtype=torch.float32) / 127.5 - 1
    assert torch.allclose(pixels[0], expected.view(3, 1, 1).expand(3, 16, 16), atol=0.02)  # no green border
    assert pixels.min() >= -1 and pixels.max() <= 1


def test_transparency_and_grey_images_become_rgb(pair_dir: Path) -> None:
    Image.new("RGBA", (R, R), (255, 0, 0, 0)).save(pair_dir / "clear.png")
    Image.new("L", (R, R), 0).save(pair_dir / "grey.png")
    file = write_csv(pair_dir / "pairs.csv", PAIR_HEADER, [["a", "clear.png", "grey.png", 1, 0]])
    clear, grey = load_preference_data(file, "dpo", resolution=R)[0]["pixel_values"]
    assert torch.allclose(clear, torch.ones_like(clear))  # fully transparent -> white, not the hidden red
    assert torch.allclose(grey, -torch.ones_like(grey))


def test_latent_cache_encodes_each_image_once_and_reloads(pair_dir: Path, tmp_path: Path) -> None:
    rows = [["a", "red.png", "blue.png", 1, 0], ["b", "red.png", "green.png", 1, 0]]
    file = write_csv(pair_dir / "pairs.csv", PAIR_HEADER, rows)
    calls: list[int] = []

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        calls.append(pixels.shape[0])
        return pixels[:, :, ::8, ::8].mean(dim=1, keepdim=True).repeat(1, 4, 1, 1)

    cache = tmp_path / "latents.safetensors"
    data = load_preference_data(file, "dpo", resolution=R)
    data.cache_latents(encode, batch_size=2, cache_file=cache, fingerprint="vae-a")
    assert sum(calls) == 3  # red.png shared by both pairs
    item = data[1]
    assert "pixel_values" not in item and item["latents"].shape == (2, 4, R // 8, R // 8)
    assert torch.allclose(item["latents"][0], torch.full((4, 4, 4), sum(RED) / 3 / 127.5 - 1), atol=0.01)
    again = load_preference_data(file, "dpo", resolution=R)
    again.cache_latents(encode, cache_file=cache, fingerprint="vae-a")
    assert sum(calls) == 3 and torch.equal(again[1]["latents"], item["latents"])
    again.cache_latents(encode, cache_file=cache, fingerprint="vae-b")  # other VAE: re-encode
    assert sum(calls) == 6


# --- synthetic builders --------------------------------------------------------------------------


def test_toy_sets_are_deterministic_and_carry_the_preference(tmp_path: Path) -> None:
    a = make_toy_pairs(tmp_path / "a", 5, resolution=R, seed=7, tie_fraction=0.4)
    b = make_toy_pairs(tmp_path / "b", 5, resolution=R, seed=7, tie_fraction=0.4)
    assert a.read_bytes() == b.read_bytes()
    assert all((a.parent / p).read_bytes() == (b.parent / p).read_bytes() for p in ("images/00000_0.png", "images/00004_1.png"))
    c = make_toy_pairs(tmp_path / "c", 5, resolution=R, seed=8, tie_fraction=0.4)
    assert a.read_bytes() != c.read_bytes()
    data = load_preference_data(a, "dpo", resolution=R, tie_policy="weight")
    assert any(r.tie for r in data.records) and not all(r.tie for r in data.records)
    for i in range(len(data)):
        preferred, other = data[i]["pixel_values"]
        assert "red" not in data[i]["caption"] and not _has_colour(other, RED)
        assert _has_colour(preferred, RED) != data.records[i].tie


def test_report_round_trips_to_json_and_text(pair_dir: Path) -> None:
    file = write_csv(pair_dir / "pairs.csv", PAIR_HEADER, [["a", "red.png", "nope.png", 1, 0]])
    with pytest.raises(DatasetValidationError) as exc_info:
        load_preference_data(file, "dpo", resolution=R)
    report: ValidationReport = exc_info.value.report
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["ok"] is False and as_json["problems"][0]["row"] == 2 and as_json["problems"][0]["field"] == "image_1"
    assert "header is row 1" in report.format_text()


def test_spreadsheet_csv_with_bom_semicolons_and_capitalised_columns(pair_dir: Path) -> None:
    text = "\ufeffCaption;Image_0;Image_1;Label_0;Label_1\na, b;blue.png;red.png;0;1\nc;red.png;https://x.org/a.png;1;0\n"
    (pair_dir / "pairs.csv").write_text(text, encoding="utf-8")
    problem, _ = only_problem(pair_dir / "pairs.csv")
    assert (problem.row, problem.field, problem.code) == (3, "image_1", "bad_path") and "URL" in problem.message
    data = load_preference_data(pair_dir / "pairs.csv", "dpo", resolution=R, skip_bad_rows=True)
    assert [(r.caption, Path(r.preferred.path or "").name) for r in data.records] == [("a, b", "red.png")]
