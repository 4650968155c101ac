"""The open Curate sessions of a host, shared by the Curate tab and the /curate API: where state lives,
which folders may be curated, uploads.

State, the metadata cache and thumbnails live beside the preference store (<data dir>/alignment/curate);
the judgements themselves go into the store. A folder given by the user must lie under the WebUI's outputs
(or the app's), the uploads folder, or a folder named in ALIGNMENT_CURATE_ROOTS (os.pathsep-separated).
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
import time
from pathlib import Path
from typing import Any

from ..paths import atomic_write_bytes, safe_name
from .scan import IMAGE_SUFFIXES
from .session import CurateSession, folder_key

SERVICE = "curate_sessions"


class CurateNotFound(LookupError):
    """No open session with that id."""


class CurateSessions:
    """Sessions by id (the folder's key): opening a folder again returns the same session."""

    def __init__(self, ctx: Any) -> None:
        from ..preferences import store_root

        self.ctx = ctx
        self.state_dir = store_root(ctx).parent / "curate"
        self._lock = threading.Lock()
        self._sessions: dict[str, CurateSession] = {}

    def store(self) -> Any:
        from ..preferences import default_store

        return default_store(self.ctx)

    def default_folder(self) -> Path:
        """The WebUI's image outputs (its facade), or the standalone app's outputs folder."""
        if getattr(self.ctx, "in_webui", False):
            from .. import webui_facade

            return webui_facade.images_dir()
        return Path(self.ctx.output_dir).resolve().parent

    def roots(self) -> list[Path]:
        roots = [self.default_folder(), self.state_dir / "uploads"]
        if getattr(self.ctx, "in_webui", False):
            from .. import webui_facade

            roots += [webui_facade.data_dir() / "outputs", *webui_facade.image_folders()]
        roots += [Path(p) for p in os.environ.get("ALIGNMENT_CURATE_ROOTS", "").split(os.pathsep) if p.strip()]
        return roots

    def check_folder(self, folder: str | Path | None) -> Path:
        """The folder to curate (default: the outputs), refused unless it lies under an allowed root."""
        path = Path(folder).expanduser() if folder and str(folder).strip() else self.default_folder()
        if not path.is_absolute():
            path = self.default_folder() / path
        resolved = path.resolve()
        for root in self.roots():
            root = root.resolve()
            if resolved == root or root in resolved.parents:
                if not resolved.is_dir():
                    raise ValueError(f"folder: {resolved} is not a folder")
                return resolved
        allowed = ", ".join(str(r) for r in self.roots()[:3])
        raise ValueError(f"folder: {resolved} is outside the folders that may be curated ({allowed}, or ALIGNMENT_CURATE_ROOTS)")

    def open(self, folder: str | Path | None = None) -> CurateSession:
        path = self.check_folder(folder)
        key = folder_key(path)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = CurateSession(path, self.state_dir, store=self.store())
                self._sessions[key] = session
            return session

    def get(self, session_id: str) -> CurateSession:
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise CurateNotFound(f"no open Curate session {session_id!r} (open its folder again)")
        return session

    def upload(self, files: list[tuple[str, bytes]]) -> CurateSession:
        """Save uploaded images into a new folder under uploads/ and open it."""
        if not files:
            raise ValueError("files: no images uploaded")
        folder = self.state_dir / "uploads" / time.strftime("%Y%m%d-%H%M%S")
        n = 0
        while folder.exists():
            n += 1
            folder = folder.with_name(f"{folder.name.split('_')[0]}_{n}")
        for i, (name, data) in enumerate(files):
            base = safe_name(Path(name).name or f"image-{i}.png", f"files[{i}].name")
            if Path(base).suffix.lower() not in IMAGE_SUFFIXES:
                raise ValueError(f"files[{i}].name: {base!r} is not a PNG, JPEG or WebP file")
            atomic_write_bytes(folder / base, data)
        return self.open(folder)


def for_context(ctx: Any) -> CurateSessions:
    return ctx.service(SERVICE, lambda: CurateSessions(ctx))


def decode_upload(item: Any, field: str) -> tuple[str, bytes]:
    """{"name", "data": base64 or a data: URL} → (name, bytes)."""
    if not isinstance(item, dict) or not isinstance(item.get("data"), str):
        raise TypeError(f"{field}: an object with name and data (base64)")
    data = item["data"].split(",", 1)[-1] if item["data"].startswith("data:") else item["data"]
    try:
        return str(item.get("name") or "image.png"), base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{field}.data: not base64") from None
