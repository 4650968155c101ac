"""Likes from the WebUI's txt2img/img2img result galleries, into the preference store.

    POST /preferences/gallery       {"action": "like"|"dislike"|"prefer", "index": shown image,
                                     "images": [{"src": the gallery image's URL, "data": base64 (only when the
                                                 WebUI holds no file for it)}, ...] (the whole gallery, in order),
                                     "generation_info": the WebUI's generation-info JSON (optional),
                                     "infotext": the shown infotext (optional), "tab": "txt2img"|"img2img"}
                                     → {"entry", "image_id", "losers", "message"}
    POST /preferences/gallery/undo  {"entry": id} → {"undone": true}

Auth: the WebUI's API auth or the page's token (see page_auth). An image given by URL must be a file in one
of the WebUI's output or temporary folders. Its prompt, negative prompt, seed, settings and checkpoint come
from the generation info of that image, else the file's own infotext, else the shown infotext. "prefer"
stores one judgement: the shown image over every other image of the batch (grids left out).
Errors: 422 naming the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..curate.metadata import ImageMeta, parse_infotext, read_metadata
from . import page_auth

SOURCE = "gallery"
ACTIONS = ("like", "dislike", "prefer")
MAX_IMAGES = 64


class GalleryError(ValueError):
    """A bad request; the message starts with the field."""


def allowed_folders(ctx: Any) -> list[Path]:
    """Where gallery images may be read from: the WebUI's image folders, or a context's own list."""
    own = getattr(ctx, "image_folders", None)
    if callable(own):
        return [Path(p) for p in own()]
    if getattr(ctx, "in_webui", False):
        from .. import webui_facade

        return webui_facade.image_folders()
    return [Path(ctx.output_dir)]


def src_path(src: str, folders: list[Path], field: str) -> Path | None:
    """The file behind a gallery URL (".../file=/abs/path.png?mtime"), confined to `folders`; None for a
    URL that names no file (a data: or blob: URL)."""
    if not isinstance(src, str) or not src:
        raise GalleryError(f"{field}: the image's URL is missing")
    if src.startswith(("data:", "blob:")):
        return None
    marker = src.find("file=")
    if marker < 0:
        raise GalleryError(f"{field}: not a WebUI file URL (no file=...)")
    raw = urllib.parse.unquote(src[marker + len("file=") :].split("?", 1)[0])
    path = Path(raw)
    if not path.is_absolute():
        path = Path.cwd() / path
    resolved = path.resolve()
    for folder in folders:
        root = folder.resolve()
        if resolved == root or root in resolved.parents:
            if not resolved.is_file():
                raise GalleryError(f"{field}: the file {resolved} no longer exists")
            return resolved
    raise GalleryError(f"{field}: {resolved} is not in the WebUI's output or temporary folders")


def _bytes(data: Any, field: str) -> bytes:
    if not isinstance(data, str) or not data:
        raise GalleryError(f"{field}: the WebUI holds no file for this image and no image data was sent")
    if data.startswith("data:"):
        data = data.split(",", 1)[-1]
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise GalleryError(f"{field}: not base64 image data") from None


def _generation_info(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip():
        try:
            parsed = json.loads(value)
        except ValueError:
            raise GalleryError("generation_info: not JSON") from None
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _image_size(path: Path | None, data: bytes | None) -> tuple[int, int] | None:
    import io

    from PIL import Image

    try:
        with Image.open(path if path is not None else io.BytesIO(data or b"")) as image:
            return image.size
    except OSError:
        return None


class GalleryBatch:
    """The gallery as the page sent it: files or bytes, infotexts, which entries are grids."""

    def __init__(self, body: dict[str, Any], folders: list[Path]) -> None:
        images = body.get("images")
        if not isinstance(images, list) or not images:
            raise GalleryError("images: the gallery's images, a non-empty list")
        if len(images) > MAX_IMAGES:
            raise GalleryError(f"images: at most {MAX_IMAGES}")
        try:
            self.index = int(body.get("index", 0))
        except (TypeError, ValueError):
            raise GalleryError("index: a whole number") from None
        if not 0 <= self.index < len(images):
            raise GalleryError(f"index: {self.index} is not an image of the gallery (0..{len(images) - 1})")
        self.info = _generation_info(body.get("generation_info"))
        self.shown_infotext = body.get("infotext") if isinstance(body.get("infotext"), str) else ""
        self.tab = str(body.get("tab") or "txt2img")
        self.entries = []
        for i, item in enumerate(images):
            if isinstance(item, str):
                item = {"src": item}
            if not isinstance(item, dict):
                raise GalleryError(f"images[{i}]: an object with src")
            self.entries.append(item)
        self.folders = folders
        self._paths: dict[int, Path | None] = {}

    def path(self, i: int) -> Path | None:
        if i not in self._paths:
            self._paths[i] = src_path(self.entries[i].get("src", ""), self.folders, f"images[{i}].src")
        return self._paths[i]

    def image(self, i: int) -> Path | bytes:
        path = self.path(i)
        return path if path is not None else _bytes(self.entries[i].get("data"), f"images[{i}].data")

    def grids(self) -> set[int]:
        """Gallery entries that are grids: the generation info says how many come first; without it, a
        file named grid-… or a first image whose size differs from the others'."""
        if "index_of_first_image" in self.info:
            return set(range(int(self.info.get("index_of_first_image") or 0)))
        found = set()
        for i, entry in enumerate(self.entries):
            name = urllib.parse.unquote(str(entry.get("src", ""))).split("?", 1)[0].rsplit("/", 1)[-1]
            if name.startswith("grid-"):
                found.add(i)
        if not found and len(self.entries) > 2:
            sizes = [_image_size(self.path(i), None) if self.path(i) else None for i in range(3)]
            if sizes[0] and sizes[1] and sizes[0] != sizes[1] and sizes[1] == sizes[2]:
                found.add(0)
        return found

    def meta(self, i: int) -> ImageMeta:
        infotexts = self.info.get("infotexts")
        if isinstance(infotexts, list) and len(infotexts) == len(self.entries) and isinstance(infotexts[i], str):
            meta = parse_infotext(infotexts[i])
        else:
            path = self.path(i)
            meta = read_metadata(path) if path is not None else ImageMeta(reason="no file")
            if not meta.readable and i == self.index and self.shown_infotext.strip():
                meta = parse_infotext(self.shown_infotext)
        if not meta.readable:
            raise GalleryError(f"images[{i}]: no prompt found ({meta.reason or 'no infotext'})")
        meta.checkpoint = meta.checkpoint or str(self.info.get("sd_model_name") or "")
        meta.checkpoint_hash = meta.checkpoint_hash or str(self.info.get("sd_model_hash") or "")
        return meta

    def store_image(self, store: Any, i: int) -> str:
        meta = self.meta(i)
        path = self.path(i)
        settings = {**meta.settings, "tab": self.tab, "liked_at": time.time()}
        return store.add_image(
            self.image(i),
            prompt=meta.prompt or "",
            negative_prompt=meta.negative_prompt,
            seed=meta.seed,
            settings=settings,
            checkpoint=meta.checkpoint,
            checkpoint_hash=meta.checkpoint_hash,
            source=SOURCE,
            path=str(path) if path is not None else None,
        )


def record(store: Any, body: dict[str, Any], folders: list[Path]) -> dict[str, Any]:
    """Store one gallery action; returns what the page shows."""
    if not isinstance(body, dict):
        raise GalleryError("body: a JSON object")
    action = body.get("action")
    if action not in ACTIONS:
        raise GalleryError(f"action: one of {', '.join(ACTIONS)}")
    batch = GalleryBatch(body, folders)
    grids = batch.grids()
    if batch.index in grids:
        raise GalleryError("index: that is the grid; show one image of the batch")
    winner = batch.store_image(store, batch.index)
    if action in ("like", "dislike"):
        entry = store.add_label(winner, action == "like", source=SOURCE)
        return {"entry": entry, "image_id": winner, "losers": [], "message": "Liked ✓" if action == "like" else "Disliked ✓"}
    others = [i for i in range(len(batch.entries)) if i != batch.index and i not in grids]
    if not others:
        raise GalleryError("index: Prefer needs a batch of two or more images")
    losers = [batch.store_image(store, i) for i in others]
    losers = [loser for loser in dict.fromkeys(losers) if loser != winner]
    if not losers:
        raise GalleryError("images: the other images of the batch are the same picture")
    group = f"gallery:{batch.info.get('job_timestamp') or ''}:{winner[:12]}"
    entry = store.add_judgement(winner, losers, source=SOURCE, group=group)
    return {"entry": entry, "image_id": winner, "losers": losers, "message": f"Preferred over {len(losers)} ✓"}


def gallery_router(ctx: Any, store_factory: Callable[[], Any] | None = None) -> Any:
    """The gallery routes; mounted under /alignment/v1 by `register_routes`, with their own auth."""
    from fastapi import APIRouter, Body, HTTPException

    router = APIRouter(prefix="/preferences/gallery", tags=["Preferences"], dependencies=[page_auth.dependency()])

    def store() -> Any:
        if store_factory is not None:
            return store_factory()
        from ..preferences import default_store

        return default_store(ctx)

    def call(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        from ..preferences import PreferenceError

        try:
            return fn()
        except (GalleryError, PreferenceError) as error:
            raise HTTPException(422, detail=str(error)) from None

    @router.post("")
    def label(body: dict = Body(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI idiom
        return call(lambda: record(store(), body, allowed_folders(ctx)))

    @router.post("/undo")
    def undo(body: dict = Body(...)) -> dict[str, Any]:  # noqa: B008
        def run() -> dict[str, Any]:
            entry = body.get("entry") if isinstance(body, dict) else None
            if isinstance(entry, bool) or not isinstance(entry, int):
                raise GalleryError("entry: the entry number the label returned")
            return {"undone": bool(store().undo(entry))}

        return call(run)

    return router
