"""Thumbnails made when an image is first shown, kept in a cache folder keyed by path, size and mtime."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..paths import atomic_save_image


def thumbnail(path: Path, cache_dir: Path, size: int = 384) -> Path:
    """A JPEG of at most size×size pixels for `path`, made once (a changed file gets a new one)."""
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{size}".encode()).hexdigest()[:24]
    target = cache_dir / key[:2] / f"{key}.jpg"
    if target.is_file():
        return target
    from PIL import Image

    with Image.open(path) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
        image.thumbnail((size, size))
        atomic_save_image(image.convert("RGB"), target, quality=85)
    return target
