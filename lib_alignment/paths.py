"""Safe file handling: confine user-given names to a folder, write atomically."""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,127}$")


def safe_name(name: str, what: str = "name") -> str:
    """A file or job name without separators or leading dots; raises ValueError naming the field."""
    cleaned = name.strip()
    if not _SAFE_NAME.match(cleaned) or ".." in cleaned:
        raise ValueError(
            f"{what} {name!r} is not allowed: use letters, digits, '.', '_', '-' and spaces (up to 128), starting with a letter or digit"
        )
    return cleaned


def confine(base: Path, relative: str | Path, what: str = "path") -> Path:
    """base/relative, refusing absolute paths and anything that resolves outside base (symlinks too)."""
    rel = Path(relative)
    if rel.is_absolute():
        raise ValueError(f"{what} {str(relative)!r} must be relative to {base}")
    root = base.resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise ValueError(f"{what} {str(relative)!r} escapes the folder {base}")
    return target


def _temp_name(path: Path) -> Path:
    """A hidden, unpredictable sibling name for staging `path`."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


def create_temp_file(path: Path) -> tuple[int, Path]:
    """(fd, name) of a new hidden file beside `path`, opened for writing.

    Unlike tempfile.mkstemp (always 0600) the file is created with mode 0666 and the
    process's umask applied by the kernel, so the renamed result is readable by
    whoever the user's umask lets read their files (the WebUI, a file browser, ...).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = _temp_name(path)
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def make_temp_dir(path: Path) -> Path:
    """A new hidden folder beside `path` for staging it (mode 0777 less the umask, unlike tempfile.mkdtemp's 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = _temp_name(path)
        try:
            tmp.mkdir(mode=0o777)
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `path` through a temporary sibling and a rename; the file's mode follows the umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def atomic_save_image(image: Any, path: Path, **save_kwargs: Any) -> None:
    """Save a PIL image via a temp file in the same folder, then rename."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format=(path.suffix.lstrip(".") or "png").upper().replace("JPG", "JPEG"), **save_kwargs)
    atomic_write_bytes(path, buffer.getvalue())
