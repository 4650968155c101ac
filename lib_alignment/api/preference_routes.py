"""HTTP API of the preference store, under /alignment/v1/preferences (the WebUI's API auth applies when set).

    POST /preferences/images      {"data": base64 PNG/JPEG/WebP (a data: URL works), "prompt", "negative_prompt",
                                   "seed", "settings", "checkpoint", "checkpoint_hash", "source"} → {"image_id"}
    POST /preferences/labels      {"image": image id or an image object as above, "liked": true|false,
                                   "source": "api", "human": true} → the entry
    POST /preferences/judgements  {"winner": image, "losers": [image, ...], "source", "human", "group"} → the entry
    POST /preferences/rankings    {"images": [image, ...] best first, "source", "human"} → the entry
    POST /preferences/{entry_id}/undo → the entry, marked undone
    GET  /preferences             ?source=a,b&checkpoint=&prompt=&since=&until=&human=&kind=&limit=&offset=
                                  → {"entries": [...], "total"}
    GET  /preferences/counts      (same filters) → {"counts": {...}, "summary": {method: line}}
    GET  /preferences/images/{id} → the image file
    POST /preferences/export      {"layout": "all"|"pairs-csv"|"pickapic"|"kto-csv"|"rankings-csv"|"folder-pairs"|
                                   "folder-labeled", "name": folder name, "filters": {...}} → {"folder", "files", "counts"}
                                  (written to <output_dir>/preference-exports/NAME)
    POST /preferences/import      {"path": a pairs/labeled/rankings file or folder, "source": "import",
                                   "skip_bad_rows": false} → {"entries", "already", ...}

Errors: 422 a bad field (detail.field names it; pydantic's own 422 names it in detail[].loc),
404 an unknown entry or image in the path, 422 with detail.report for data that does not read.
Request models work with pydantic 1 (A1111's FastAPI 0.94) and 2.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from pydantic import BaseModel, Field, StrictBool

from ..preferences import NotInStore, PreferenceError, PreferenceFilter, default_store
from .refine_routes import _PYDANTIC_2, _Strict

_IMAGE_ID = re.compile(r"^[0-9a-f]{64}$")
EXPORTS_DIR = "preference-exports"


class ImageBody(_Strict):
    data: str = Field(..., description="base64 PNG, JPEG or WebP bytes (a data: URL works too)")
    prompt: str = ""
    negative_prompt: str = ""
    seed: Optional[int] = None
    settings: Optional[Dict[str, Any]] = None
    checkpoint: str = ""
    checkpoint_hash: str = ""
    source: Optional[str] = Field(None, description="default: the entry's source")


ImageRef = Union[str, ImageBody]


class LabelBody(_Strict):
    image: ImageRef = Field(..., description="an image id (sha256) or an image object")
    liked: StrictBool
    source: str = "api"
    human: StrictBool = True
    group: Optional[str] = None


class JudgementBody(_Strict):
    winner: ImageRef
    losers: List[ImageRef] = Field(..., min_items=1) if not _PYDANTIC_2 else Field(..., min_length=1)
    source: str = "api"
    human: StrictBool = True
    group: Optional[str] = None


class RankingBody(_Strict):
    images: List[ImageRef] = Field(..., description="best first, at least two")
    source: str = "api"
    human: StrictBool = True
    group: Optional[str] = None


class FilterBody(_Strict):
    source: Optional[Union[str, List[str]]] = None
    checkpoint: str = ""
    prompt: str = ""
    since: Optional[Union[float, str]] = None
    until: Optional[Union[float, str]] = None
    human: Optional[bool] = None
    kinds: Optional[List[str]] = None


class ExportBody(_Strict):
    layout: str = "all"
    name: Optional[str] = Field(None, description="folder name under preference-exports/; default: layout and time")
    filters: Optional[FilterBody] = None


class ImportBody(_Strict):
    path: str
    source: str = "import"
    human: StrictBool = True
    skip_bad_rows: StrictBool = False


def _dump(model: BaseModel) -> Dict[str, Any]:
    return model.model_dump(exclude_none=True) if _PYDANTIC_2 else model.dict(exclude_none=True)


def _decode(data: str, field: str) -> bytes:
    text = data.strip()
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PreferenceError(f"{field}.data: not base64 image bytes", f"{field}.data") from None
    if not raw:
        raise PreferenceError(f"{field}.data: empty", f"{field}.data")
    return raw


def _http(status: int, error: Exception, field: Optional[str] = None) -> Any:
    from fastapi import HTTPException

    return HTTPException(status, detail={"message": str(error), "field": field if field is not None else getattr(error, "field", None)})


def preferences_router(ctx: Any) -> Any:
    """The /preferences routes over the host's store (mounted by `register_routes`)."""
    from fastapi import APIRouter, Query
    from fastapi.responses import FileResponse

    router = APIRouter(tags=["Preferences"])

    def store() -> Any:
        return default_store(ctx)

    def synced() -> Any:
        """The store with the Rank & Refine sessions' rounds brought in (they keep their own records too)."""
        from ..preferences.refine_sync import sync_all

        opened = store()
        sync_all(opened, ctx.output_dir)
        return opened

    def call(fn: Callable[[], Any]) -> Any:
        from ..training.data import DatasetValidationError

        try:
            return fn()
        except DatasetValidationError as error:
            from fastapi import HTTPException

            raise HTTPException(
                422, detail={"message": "the data has problems; nothing was imported", "field": "path", "report": error.report.to_dict(), "text": error.report.format_text()}
            ) from None
        except PreferenceError as error:
            raise _http(422, error) from None

    def image_id(ref: ImageRef, field: str, source: str) -> str:
        if isinstance(ref, str):
            text = ref.strip().lower()
            if not _IMAGE_ID.match(text):
                raise PreferenceError(f"{field}: an image id is 64 hex digits (sha256), or give an image object", field)
            return text
        data = _decode(ref.data, field)
        try:
            return store().add_image(
                data, prompt=ref.prompt, negative_prompt=ref.negative_prompt, seed=ref.seed,
                settings=ref.settings, checkpoint=ref.checkpoint, checkpoint_hash=ref.checkpoint_hash, source=ref.source or source,
            )
        except PreferenceError as error:
            raise PreferenceError(f"{field}: {str(error).split(': ', 1)[-1]}", field) from None

    def entry_payload(entry_id: int) -> Dict[str, Any]:
        return store().entry(entry_id).to_dict()

    def filters_from(source: Optional[str], checkpoint: str, prompt: str, since: Optional[str], until: Optional[str], human: Optional[bool], kind: Optional[str]) -> PreferenceFilter:
        return PreferenceFilter.from_dict(
            {"source": source or None, "checkpoint": checkpoint, "prompt": prompt, "since": since, "until": until, "human": human,
             "kinds": [k for k in (kind or "").split(",") if k] or None}
        )

    @router.post("/preferences/images")
    def add_image(body: ImageBody) -> Dict[str, Any]:
        return call(lambda: {"image_id": image_id(body, "image", body.source or "api")})

    @router.post("/preferences/labels")
    def add_label(body: LabelBody) -> Dict[str, Any]:
        def run() -> Dict[str, Any]:
            image = image_id(body.image, "image", body.source)
            return entry_payload(store().add_label(image, body.liked, source=body.source, human=body.human, group=body.group))

        return call(run)

    @router.post("/preferences/judgements")
    def add_judgement(body: JudgementBody) -> Dict[str, Any]:
        def run() -> Dict[str, Any]:
            winner = image_id(body.winner, "winner", body.source)
            losers = [image_id(ref, f"losers.{i}", body.source) for i, ref in enumerate(body.losers)]
            try:
                entry = store().add_judgement(winner, losers, source=body.source, human=body.human, group=body.group)
            except NotInStore as error:
                raise PreferenceError(str(error).replace("winner_id", "winner").replace("loser_ids", "losers"), "winner" if error.field == "winner_id" else "losers") from None
            except PreferenceError as error:
                raise PreferenceError(str(error).replace("loser_ids", "losers"), "losers" if error.field == "loser_ids" else error.field) from None
            return entry_payload(entry)

        return call(run)

    @router.post("/preferences/rankings")
    def add_ranking(body: RankingBody) -> Dict[str, Any]:
        def run() -> Dict[str, Any]:
            ids = [image_id(ref, f"images.{i}", body.source) for i, ref in enumerate(body.images)]
            try:
                entry = store().add_ranking(ids, source=body.source, human=body.human, group=body.group)
            except PreferenceError as error:
                raise PreferenceError(str(error).replace("image_ids", "images"), "images") from None
            return entry_payload(entry)

        return call(run)

    @router.post("/preferences/{entry_id}/undo")
    def undo(entry_id: int) -> Dict[str, Any]:
        try:
            store().undo(entry_id)
        except NotInStore as error:
            raise _http(404, error) from None
        return entry_payload(entry_id)

    @router.get("/preferences")
    def list_entries(
        source: Optional[str] = None,
        checkpoint: str = "",
        prompt: str = "",
        since: Optional[str] = None,
        until: Optional[str] = None,
        human: Optional[bool] = None,
        kind: Optional[str] = None,
        limit: int = Query(100, ge=1, le=10_000),
        offset: int = Query(0, ge=0),
    ) -> Dict[str, Any]:
        def run() -> Dict[str, Any]:
            filters = filters_from(source, checkpoint, prompt, since, until, human, kind)
            entries = synced().list(filters, limit=limit, offset=offset)
            return {"entries": [e.to_dict() for e in entries], "total": store().counts(filters)["entries"], "filters": filters.to_dict()}

        return call(run)

    @router.get("/preferences/counts")
    def counts(
        source: Optional[str] = None,
        checkpoint: str = "",
        prompt: str = "",
        since: Optional[str] = None,
        until: Optional[str] = None,
        human: Optional[bool] = None,
        kind: Optional[str] = None,
    ) -> Dict[str, Any]:
        def run() -> Dict[str, Any]:
            from ..preferences.exchange import training_sets
            from ..preferences.training import summary

            filters = filters_from(source, checkpoint, prompt, since, until, human, kind)
            sets = training_sets(synced(), filters)
            return {
                "counts": store().counts(filters),
                "summary": {method: summary(sets, method, filters) for method in ("dpo", "kto", "listwise")},
                "filters": filters.to_dict(),
            }

        return call(run)

    @router.get("/preferences/images/{image_id}")
    def image_file(image_id: str) -> Any:
        if not _IMAGE_ID.match(image_id):
            raise _http(404, PreferenceError("image_id: an image id is 64 hex digits"), "image_id")
        try:
            record = store().image(image_id)
        except NotInStore as error:
            raise _http(404, error) from None
        media = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}[record.ext]
        return FileResponse(str(store().image_file(image_id, record.ext)), media_type=media)

    @router.post("/preferences/export")
    def export(body: ExportBody) -> Dict[str, Any]:
        def run() -> Dict[str, Any]:
            from ..paths import confine, safe_name
            from ..preferences.exchange import export_store

            values = _dump(body.filters) if body.filters is not None else {}
            filters = PreferenceFilter.from_dict(values)
            name = body.name or f"{body.layout}-{time.strftime('%Y%m%d-%H%M%S')}"
            try:
                target = confine(Path(ctx.output_dir) / EXPORTS_DIR, safe_name(name, "name"), "name")
            except ValueError as error:
                raise PreferenceError(str(error), "name") from None
            if target.exists():
                raise PreferenceError(f"name: an export named {name!r} exists already; choose another name", "name")
            return export_store(synced(), target, body.layout, filters).to_dict()

        return call(run)

    @router.post("/preferences/import")
    def import_(body: ImportBody) -> Dict[str, Any]:
        def run() -> Dict[str, Any]:
            from ..jobs.datasets import resolve_path
            from ..preferences.exchange import import_data

            if not body.path.strip():
                raise PreferenceError("path: a file or folder is required", "path")
            path = resolve_path(body.path, Path(ctx.output_dir))
            return import_data(store(), path, source=body.source, human=body.human, skip_bad_rows=body.skip_bad_rows).to_dict()

        return call(run)

    return router
