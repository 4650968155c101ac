"""The plain folder layouts, for people who bring their own images.

Liked / disliked (KTO; or any method that takes labeled data)::

    DATASET/
      liked/      a.png  a.txt  b.jpg ...     images you want more of
      disliked/   c.png  c.txt ...            images you want less of
      captions.csv   (optional: columns file_name, caption; file_name like liked/b.jpg)
      prompt.txt     (optional: one caption for every image without its own)

An image's caption is its sidecar ``<image name>.txt``, else its row in
captions.csv, else prompt.txt. Only files directly inside liked/ and disliked/
count (no subfolders); images are .png, .jpg, .jpeg, .webp or .bmp.

Pairs (DPO, MaPO; KTO splits them into liked and disliked)::

    DATASET/
      any-name-1/   chosen.png  rejected.png  prompt.txt
      any-name-2/   chosen.jpg  rejected.jpg  prompt.txt
      prompt.txt    (optional: the caption of pairs without their own)

Each subfolder is one pair: the preferred image ``chosen.*``, the other
``rejected.*`` and the caption in ``prompt.txt``. Folders starting with '.' are
ignored. A folder with neither layout but exactly one .csv/.tsv/.parquet file
reads that table. Every file must resolve inside DATASET (symbolic links that
point elsewhere are refused).
"""

from __future__ import annotations

from pathlib import Path

from .formats import CAPTION_COLUMNS, DESIRABLE, FIRST, UNDESIRABLE, Candidate
from .images import IMAGE_SUFFIXES, ImageProblem, ImageRef, resolve_image_path
from .report import Problem
from .tables import TABLE_SUFFIXES, TableError, open_table

LIKED, DISLIKED = "liked", "disliked"
CHOSEN, REJECTED = "chosen", "rejected"
PROMPT_FILE = "prompt.txt"
CAPTIONS_CSV = "captions.csv"


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _subfolders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _named_images(folder: Path, stem: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.stem.lower() == stem and _is_image(p))


def detect_folder(root: Path) -> tuple[str, Path | None]:
    """('labeled', None), ('pairs', None) or ('table', file); raises TableError naming the folder."""
    if (root / LIKED).is_dir() or (root / DISLIKED).is_dir():
        return "labeled", None
    if any(_named_images(sub, CHOSEN) or _named_images(sub, REJECTED) for sub in _subfolders(root)):
        return "pairs", None
    tables = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES)
    if len(tables) == 1:
        return "table", tables[0]
    found = f"; it holds several tables ({', '.join(p.name for p in tables)}): pass one file" if tables else ""
    raise TableError(
        Problem(
            str(root),
            None,
            None,
            "not a dataset folder: expected liked/ and disliked/ subfolders, or one subfolder per pair holding "
            "chosen.png, rejected.png and prompt.txt, or a single .csv/.parquet file" + found,
            code="unknown_layout",
            skippable=False,
        )
    )


def _read_caption(root: Path, path: Path) -> tuple[str | None, str | None]:
    """(caption, None) when ``path`` exists and reads, (None, error) when it is bad, (None, None) if absent."""
    if not path.exists() and not path.is_symlink():
        return None, None
    try:
        target = resolve_image_path(root, path.relative_to(root).as_posix())
        return target.read_text(encoding="utf-8-sig").strip(), None
    except ImageProblem as exc:
        return None, str(exc)
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read {path.name} as UTF-8 text: {exc}"


def _captions_csv(root: Path) -> dict[str, str]:
    """captions.csv as {relative posix path (lower-case): caption}; raises TableError on a bad file."""
    file = root / CAPTIONS_CSV
    if not file.is_file():
        return {}
    table = open_table(file)
    caption_column = next((c for c in CAPTION_COLUMNS if c in table.columns), None)
    missing = [name for name, ok in (("file_name", "file_name" in table.columns), ("caption", caption_column)) if not ok]
    if missing:
        raise TableError(
            Problem(str(file), 1, missing[0], f"missing column {missing[0]!r} (captions.csv needs file_name and caption)", code="missing_column", skippable=False)
        )
    assert caption_column is not None
    return {
        row.values.get("file_name", "").strip().replace("\\", "/").lower(): str(row.values.get(caption_column) or "").strip()
        for row in table.rows(["file_name", caption_column])
    }


def _image(cand: Candidate, root: Path, path: Path, field: str) -> None:
    relative = path.relative_to(root).as_posix()
    try:
        cand.images.append((field, ImageRef.from_path(resolve_image_path(root, relative), relative)))
    except ImageProblem as exc:
        cand.images.append((field, None))
        cand.problem(field, str(exc), exc.code, image=relative)


def parse_labeled_folder(root: Path) -> list[Candidate]:
    """liked/ and disliked/ images as labeled candidates, one per image file."""
    root = root.resolve()
    captions = _captions_csv(root)
    default, default_error = _read_caption(root, root / PROMPT_FILE)
    candidates: list[Candidate] = []
    for sub, outcome in ((LIKED, DESIRABLE), (DISLIKED, UNDESIRABLE)):
        folder = root / sub
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.iterdir() if _is_image(p)):
            cand = Candidate(str(path), None, "", [], outcome)
            candidates.append(cand)
            _image(cand, root, path, "image")
            caption, error = _read_caption(root, path.with_suffix(".txt"))
            if caption is None and error is None:
                caption = captions.get(path.relative_to(root).as_posix().lower())
            if caption is None and error is None:
                caption, error = default, default_error
            cand.caption = caption or ""
            if error:
                cand.problem("caption", error, "unreadable_caption")
            elif not cand.caption:
                cand.problem(
                    "caption",
                    f"empty caption: add {path.stem}.txt beside the image, a row in {CAPTIONS_CSV}, or {PROMPT_FILE}",
                    "empty_caption",
                )
    return candidates


def parse_pair_folder(root: Path) -> list[Candidate]:
    """Each subfolder with chosen.* / rejected.* / prompt.txt as one pair candidate."""
    root = root.resolve()
    default, default_error = _read_caption(root, root / PROMPT_FILE)
    candidates: list[Candidate] = []
    for sub in _subfolders(root):
        cand = Candidate(str(sub), None, "", [], FIRST)
        candidates.append(cand)
        for stem in (CHOSEN, REJECTED):
            found = _named_images(sub, stem)
            if len(found) == 1:
                _image(cand, root, found[0], stem)
                continue
            cand.images.append((stem, None))
            if not found:
                cand.problem(stem, f"no {stem}.png (or .jpg, .jpeg, .webp, .bmp) in this pair folder", "missing_image")
            else:
                cand.problem(stem, f"several {stem} images ({', '.join(p.name for p in found)}): keep one", "ambiguous_image")
        caption, error = _read_caption(root, sub / PROMPT_FILE)
        if caption is None and error is None:
            caption, error = default, default_error
        cand.caption = caption or ""
        if error:
            cand.problem("caption", error, "unreadable_caption")
        elif not cand.caption:
            cand.problem("caption", f"empty caption: put the prompt in {PROMPT_FILE} inside the pair folder", "empty_caption")
    return candidates
