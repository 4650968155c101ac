"""Synthetic preference sets from the toy world, for tests and benchmarks.

The preferred image shows the shape in the ``preferred`` colour, the other the
same shape, size, place and background in another colour; captions never name
the shape's colour, so what the data teaches is visible and measurable
(toyworld.redness). Everything is deterministic in ``seed``, and the files are
written in the same formats users bring (Rank & Refine CSV, Pick-a-Pic parquet,
Diffusion-KTO CSV, folder layouts).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import random
from pathlib import Path

from ...paths import atomic_save_image, atomic_write_bytes, atomic_write_text
from ...toyworld import COLORS, Scene, render, sample_scene
from .folder import CHOSEN, DISLIKED, LIKED, PROMPT_FILE, REJECTED

PAIR_LAYOUTS = ("csv", "parquet", "folder")
KTO_LAYOUTS = ("csv", "folder")


def _scenes(rng: random.Random, preferred: str, n_others: int) -> tuple[Scene, list[Scene], str]:
    """A scene in the preferred colour, ``n_others`` variants in other colours, and the caption."""
    if preferred not in COLORS:
        raise ValueError(f"preferred colour {preferred!r} is not one of {list(COLORS)}")
    base = sample_scene(rng)
    others = rng.sample([c for c in COLORS if c != preferred], n_others)
    background = rng.choice([c for c in COLORS if c != preferred and c not in others])
    good = dataclasses.replace(base, color=preferred, background=background)
    variants = [dataclasses.replace(base, color=c, background=background) for c in others]
    return good, variants, f"a {base.shape} on a {background} background"


def _png(scene: Scene, resolution: int) -> bytes:
    buffer = io.BytesIO()
    render(scene, resolution).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def make_toy_pairs(
    folder: str | Path,
    n: int,
    preferred: str = "red",
    resolution: int = 128,
    seed: int = 0,
    tie_fraction: float = 0.0,
    layout: str = "csv",
) -> Path:
    """Write ``n`` pairs and return the file (csv: pairs.csv, parquet: pairs.parquet) or folder to load.

    csv is the Rank & Refine export (caption, image_0, image_1, label_0,
    label_1; PNGs under images/), parquet the Pick-a-Pic layout (PNG bytes in
    jpg_0 / jpg_1), folder one subfolder per pair. The preferred image lands in
    image_0 or image_1 at random, so both label orders occur. A ``tie_fraction``
    of pairs shows two non-preferred colours labelled 0.5/0.5 (not in folders).
    """
    if layout not in PAIR_LAYOUTS:
        raise ValueError(f"layout must be one of {PAIR_LAYOUTS}")
    if layout == "folder" and tie_fraction:
        raise ValueError("the folder layout cannot express ties")
    root = Path(folder)
    rng = random.Random(seed)
    rows: list[list[object]] = []
    for i in range(n):
        tie = rng.random() < tie_fraction
        good, others, caption = _scenes(rng, preferred, 2 if tie else 1)
        first, second = (others[0], others[1]) if tie else (good, others[0])
        swap = rng.random() < 0.5
        if swap:
            first, second = second, first
        labels = (0.5, 0.5) if tie else ((0, 1) if swap else (1, 0))
        if layout == "folder":
            pair = root / f"pair_{i:05d}"
            atomic_save_image(render(good, resolution), pair / f"{CHOSEN}.png")
            atomic_save_image(render(others[0], resolution), pair / f"{REJECTED}.png")
            atomic_write_text(pair / PROMPT_FILE, caption + "\n")
        elif layout == "parquet":
            rows.append([caption, _png(first, resolution), _png(second, resolution), *labels, f"toy-{seed}-{i}"])
        else:
            names = [f"images/{i:05d}_0.png", f"images/{i:05d}_1.png"]
            for scene, name in zip((first, second), names):
                atomic_save_image(render(scene, resolution), root / name)
            rows.append([caption, *names, *labels])
    if layout == "folder":
        return root
    if layout == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = list(zip(*rows)) if rows else [[]] * 6
        table = pa.table(
            {
                "caption": pa.array(columns[0], pa.string()),
                "jpg_0": pa.array(columns[1], pa.binary()),
                "jpg_1": pa.array(columns[2], pa.binary()),
                "label_0": pa.array(columns[3], pa.float64()),
                "label_1": pa.array(columns[4], pa.float64()),
                "ranking_id": pa.array(columns[5], pa.string()),
            }
        )
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        atomic_write_bytes(root / "pairs.parquet", sink.getvalue().to_pybytes())
        return root / "pairs.parquet"
    _write_csv(root / "pairs.csv", ["caption", "image_0", "image_1", "label_0", "label_1"], rows)
    return root / "pairs.csv"


def make_toy_kto(
    folder: str | Path,
    n: int,
    preferred: str = "red",
    resolution: int = 128,
    seed: int = 0,
    desirable_fraction: float = 0.5,
    layout: str = "csv",
    image_column: str = "file_name",
    label_column: str = "label",
) -> Path:
    """Write ``n`` labeled images; returns kto.csv (csv) or the folder (liked/ + disliked/ with .txt captions).

    Exactly round(n * desirable_fraction) images are desirable (preferred
    colour). Column names default to Rank & Refine's export; pass
    image_column="file_path" (KTO's README) or label_column="split" (KTO's code).
    """
    if layout not in KTO_LAYOUTS:
        raise ValueError(f"layout must be one of {KTO_LAYOUTS}")
    root = Path(folder)
    rng = random.Random(seed)
    wins = round(n * desirable_fraction)
    flags = [True] * wins + [False] * (n - wins)
    rng.shuffle(flags)
    rows: list[list[object]] = []
    for i, desirable in enumerate(flags):
        good, others, caption = _scenes(rng, preferred, 1)
        scene = good if desirable else others[0]
        if layout == "folder":
            sub = LIKED if desirable else DISLIKED
            atomic_save_image(render(scene, resolution), root / sub / f"{i:05d}.png")
            atomic_write_text(root / sub / f"{i:05d}.txt", caption + "\n")
        else:
            name = f"images/{i:05d}.png"
            atomic_save_image(render(scene, resolution), root / name)
            rows.append([name, caption, "exclusive_win" if desirable else "exclusive_lose"])
    if layout == "folder":
        return root
    _write_csv(root / "kto.csv", [image_column, "caption", label_column], rows)
    return root / "kto.csv"


#: The taste a synthetic ranking follows: warm colours first (red best), dark last.
RANKING_TASTE: tuple[str, ...] = ("red", "orange", "yellow", "purple", "green", "blue", "white", "black")


def make_toy_rankings(folder: str | Path, n: int, m: int = 4, resolution: int = 128, seed: int = 0, taste: tuple[str, ...] = RANKING_TASTE) -> Path:
    """Write ``n`` rankings of ``m`` images (the same scene in m colours, best first by ``taste``) as rankings.csv."""
    if not 2 <= m <= len(taste) - 1:
        raise ValueError(f"m must be between 2 and {len(taste) - 1}")
    root = Path(folder)
    rng = random.Random(seed)
    rows: list[list[object]] = []
    for i in range(n):
        base = sample_scene(rng)
        colours = sorted(rng.sample(list(taste), m), key=taste.index)
        background = rng.choice([c for c in COLORS if c not in colours])
        names = [f"images/{i:05d}_{k}.png" for k in range(m)]
        for colour, name in zip(colours, names):
            atomic_save_image(render(dataclasses.replace(base, color=colour, background=background), resolution), root / name)
        rows.append([f"a {base.shape} on a {background} background", *names])
    _write_csv(root / "rankings.csv", ["caption", *(f"image_{k + 1}" for k in range(m))], rows)
    return root / "rankings.csv"


#: Pick-a-Pic v2's 18 columns, in its order.
PICKAPIC_COLUMNS = (
    "are_different", "best_image_uid", "caption", "created_at", "has_label", "image_0_uid", "image_0_url",
    "image_1_uid", "image_1_url", "jpg_0", "jpg_1", "label_0", "label_1", "model_0", "model_1",
    "ranking_id", "user_id", "num_example_per_prompt",
)


def _noise_jpegs(count: int, size: int, seed: int) -> list[bytes]:
    """``count`` JPEGs of random noise (incompressible: each is about size² bytes)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def make_pickapic_shards(
    folder: str | Path,
    n: int,
    shards: int = 2,
    rows_per_group: int = 1000,
    image_size: int = 64,
    seed: int = 0,
    tie_fraction: float = 0.0,
    not_different_fraction: float = 0.0,
    duplicate_fraction: float = 0.0,
    bad_rows: tuple[int, ...] = (),
    identical_rows: tuple[int, ...] = (),
    pool: int = 256,
) -> Path:
    """Write ``n`` rows in Pick-a-Pic v2's layout (FOLDER/data/train-XXXXX-of-NNNNN.parquet, its 18 columns); return FOLDER.

    Images are noise JPEGs from a pool of ``pool``, each made unique (and so
    incompressible across rows) by a row tag after the JPEG's end marker, which
    decoders ignore: fast to write at 500 K rows. Rows ``bad_rows`` (0-based,
    over all shards) get a truncated jpg_0, ``identical_rows`` the same bytes in
    both columns; fractions of ties, ``are_different`` false and duplicate rows
    (same caption and uids as the row before) are drawn with ``seed``.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(folder)
    (root / "data").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = _noise_jpegs(pool, image_size, seed)
    bad, identical = set(bad_rows), set(identical_rows)
    per_shard = -(-n // shards)
    for s in range(shards):
        lo, hi = s * per_shard, min(n, (s + 1) * per_shard)
        rows = range(lo, hi)
        m = len(rows)
        draw = rng.random((m, 3))
        winner = rng.integers(0, 2, m)
        cols: dict[str, list] = {c: [] for c in PICKAPIC_COLUMNS}
        for k, i in enumerate(rows):
            dup = k > 0 and draw[k, 2] < duplicate_fraction
            base = i - 1 if dup else i
            j0, j1 = (2 * base) % pool, (2 * base + 1) % pool
            a = images[j0] + b"row%d-0" % base
            b = images[j1] + b"row%d-1" % base
            if i in bad:
                a = images[j0][: len(images[j0]) // 3]
            if i in identical:
                b = a
            tie = draw[k, 0] < tie_fraction
            l0 = 0.5 if tie else float(winner[k] == 0)
            uid0, uid1 = f"u{base}a", f"u{base}b"
            cols["are_different"].append(not (draw[k, 1] < not_different_fraction))
            cols["best_image_uid"].append("" if tie else (uid0 if l0 == 1.0 else uid1))
            cols["caption"].append(f"a photo of thing {base % 997} number {base}")
            cols["created_at"].append(1_700_000_000_000 + i)
            cols["has_label"].append(True)
            cols["image_0_uid"].append(uid0)
            cols["image_0_url"].append(f"https://example.invalid/{uid0}.png")
            cols["image_1_uid"].append(uid1)
            cols["image_1_url"].append(f"https://example.invalid/{uid1}.png")
            cols["jpg_0"].append(a)
            cols["jpg_1"].append(b)
            cols["label_0"].append(l0)
            cols["label_1"].append(1.0 - l0)
            cols["model_0"].append("sd-v1-5")
            cols["model_1"].append("sdxl")
            cols["ranking_id"].append(i)
            cols["user_id"].append(i % 101)
            cols["num_example_per_prompt"].append(1)
        types = {"are_different": pa.bool_(), "has_label": pa.bool_(), "jpg_0": pa.binary(), "jpg_1": pa.binary(),
                 "label_0": pa.float64(), "label_1": pa.float64(), "created_at": pa.int64(), "ranking_id": pa.int64(),
                 "user_id": pa.int64(), "num_example_per_prompt": pa.int64()}
        table = pa.table({c: pa.array(v, type=types.get(c, pa.string())) for c, v in cols.items()})
        target = root / "data" / f"train-{s:05d}-of-{shards:05d}.parquet"
        tmp = target.with_name(target.name + ".tmp")
        pq.write_table(table, str(tmp), row_group_size=rows_per_group, compression="none")
        tmp.replace(target)
    return root
