"""Listing a folder of images fast: names, sizes and times from os.scandir, no file opened."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})


@dataclass(frozen=True)
class ImageFile:
    """One image below the scanned folder: its path relative to it (with '/'), size in bytes, mtime."""

    rel: str
    size: int
    mtime: float


def scan_folder(root: Path, recursive: bool = True) -> list[ImageFile]:
    """Every PNG/JPEG/WebP below root, sorted by path (a WebUI batch stays together).

    Hidden entries and symbolic links are left out, so nothing listed lies outside root."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"folder: {root} is not a folder")
    found: list[ImageFile] = []
    pending = [("", str(root))]
    while pending:
        prefix, folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.is_symlink():
                continue
            if entry.is_dir(follow_symlinks=False):
                if recursive:
                    pending.append((prefix + entry.name + "/", entry.path))
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                stat = entry.stat(follow_symlinks=False)
                found.append(ImageFile(prefix + entry.name, stat.st_size, stat.st_mtime))
    found.sort(key=lambda item: item.rel)
    return found
