"""HTTP API of the Curate view, under /alignment/v1 (the WebUI's API auth applies when set).

    POST /curate                  {"folder": path (default: the WebUI's outputs)} → the session (below)
    POST /curate/upload           {"files": [{"name", "data": base64}, ...]} → a session over the uploaded images
    GET  /curate/{id}             → {"id", "folder", "files", "indexed", "pair": {"left", "right", "prompt",
                                     "negative_prompt"} or null, "progress": {...}, "unreadable": n}
    POST /curate/{id}/judge       {"winner": image, "loser": image} → the session with the next pair
    POST /curate/{id}/skip        {"left": image, "right": image} → the session
    POST /curate/{id}/undo        → the session ("undone": "judge"|"skip"|null)
    GET  /curate/{id}/unreadable  → {"images": [{"image", "reason"}]} (images read so far without a prompt)
    POST /curate/{id}/caption     {"image": image, "prompt": text} → the session
    GET  /curate/{id}/thumbnail?image=… → a JPEG thumbnail (made when first asked for)

Images are paths relative to the folder, as listed. Judgements go into the preference store (source
"curate"). Errors: 422 a bad field (the message names it), 404 an unknown session or image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..curate.service import CurateNotFound, CurateSessions, decode_upload, for_context
from ..curate.session import CurateSession


def session_payload(session: CurateSession, **extra: Any) -> dict[str, Any]:
    pair = session.next_pair()
    progress = session.progress()
    body: dict[str, Any] = {
        "id": session.key,
        "folder": str(session.folder),
        "files": len(session.files),
        "indexed": session.indexed,
        "pair": None,
        "progress": {
            "judgements": progress.judgements,
            "pairs_implied": progress.implied,
            "pairs_possible": progress.possible,
            "prompts_covered": progress.prompts_covered,
            "prompts": progress.prompts,
            "judged_triples": progress.judged_triples,
            "intransitive_share": progress.intransitive_share,
        },
        "unreadable": len(session.unreadable()),
        **extra,
    }
    if pair is not None:
        meta = session.meta(pair.left)
        body["pair"] = {"left": pair.left, "right": pair.right, "prompt": meta.prompt, "negative_prompt": meta.negative_prompt}
    return body


def _text(body: Any, name: str) -> str:
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: an image of the folder (its path relative to the folder)")
    return value


def curate_router(ctx: Any, sessions: CurateSessions | None = None) -> Any:
    """The /curate routes over the host context's sessions (mounted by `register_routes`)."""
    from fastapi import APIRouter, Body, HTTPException
    from fastapi.responses import FileResponse

    router = APIRouter(tags=["Curate"])
    registry = sessions or for_context(ctx)

    def call(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (CurateNotFound, FileNotFoundError) as error:
            raise HTTPException(404, detail=str(error).strip("'\"")) from None
        except (ValueError, TypeError) as error:
            raise HTTPException(422, detail=str(error)) from None

    @router.post("/curate")
    def open_folder(body: dict = Body(default={})) -> dict[str, Any]:  # noqa: B008 - FastAPI idiom
        return call(lambda: session_payload(registry.open((body or {}).get("folder"))))

    @router.post("/curate/upload")
    def upload(body: dict = Body(...)) -> dict[str, Any]:  # noqa: B008
        def run() -> dict[str, Any]:
            files = body.get("files") if isinstance(body, dict) else None
            if not isinstance(files, list):
                raise TypeError("files: a list of {name, data}")
            return session_payload(registry.upload([decode_upload(item, f"files[{i}]") for i, item in enumerate(files)]))

        return call(run)

    @router.get("/curate/{session_id}")
    def state(session_id: str) -> dict[str, Any]:
        return call(lambda: session_payload(registry.get(session_id)))

    @router.post("/curate/{session_id}/judge")
    def judge(session_id: str, body: dict = Body(...)) -> dict[str, Any]:  # noqa: B008
        def run() -> dict[str, Any]:
            session = registry.get(session_id)
            record = session.judge(_text(body, "winner"), _text(body, "loser"))
            return session_payload(session, entry=record["entry"])

        return call(run)

    @router.post("/curate/{session_id}/skip")
    def skip(session_id: str, body: dict = Body(...)) -> dict[str, Any]:  # noqa: B008
        def run() -> dict[str, Any]:
            session = registry.get(session_id)
            session.skip(_text(body, "left"), _text(body, "right"))
            return session_payload(session)

        return call(run)

    @router.post("/curate/{session_id}/undo")
    def undo(session_id: str) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            session = registry.get(session_id)
            return session_payload(session, undone=session.undo())

        return call(run)

    @router.get("/curate/{session_id}/unreadable")
    def unreadable(session_id: str) -> dict[str, Any]:
        return call(lambda: {"images": [{"image": rel, "reason": why} for rel, why in registry.get(session_id).unreadable()]})

    @router.post("/curate/{session_id}/caption")
    def caption(session_id: str, body: dict = Body(...)) -> dict[str, Any]:  # noqa: B008
        def run() -> dict[str, Any]:
            session = registry.get(session_id)
            prompt = body.get("prompt") if isinstance(body, dict) else None
            if not isinstance(prompt, str):
                raise TypeError("prompt: the caption text")
            session.caption(_text(body, "image"), prompt)
            return session_payload(session)

        return call(run)

    @router.get("/curate/{session_id}/thumbnail")
    def thumbnail(session_id: str, image: str) -> Any:
        from ..curate.thumbs import thumbnail as make

        def run() -> Any:
            session = registry.get(session_id)
            try:
                path = session.path_of(image)
            except ValueError as error:
                raise FileNotFoundError(str(error)) from None
            return FileResponse(make(path, registry.state_dir / "thumbs"), media_type="image/jpeg")

        return call(run)

    return router
