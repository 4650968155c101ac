"""HTTP API of the blind A/B Compare view, under /alignment/v1 (the WebUI's API auth applies when set).

    POST /compare            {"lora": name or path, "weight": 1, "prompts": [...] or "one per line",
                              "seeds": [1, 2], "steps": 20, "cfg_scale": 7,
                              "size": pixels (default: the model's)} → {"id", "done": false,
                              "pair": {"index", "number", "total", "images": [A, B] (base64 PNG)}}
    POST /compare/{id}/pick  {"choice": "A"|"B"|"skip", "index": optional} → the next pair, or after the last
                              pick {"done": true, "result": {win_rate, interval, per_prompt, ..., "saved"}}
    GET  /compare/{id}       → the same, without images unless ?images=true; a finished comparison is
                              read back from NAME.alignment-compare.json (after a restart too)
    GET  /compare            → {"results": [...]}: every saved comparison of the Lora folder, newest first
    POST /compare/{id}/export → the picks added to the preference data: {"store", "added", "already",
                              "source": "ab-compare"} (the preference store), or {"pairs_csv", "added"}

Which image is the LoRA is never in an answer before the result. Errors: 422 a bad field (the message
names it), 404 an unknown comparison or LoRA.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Body, HTTPException

from ..jobs.ab_compare import CompareNotFound, Comparison, for_context
from .refine_routes import png_base64


def payload(comparison: Comparison, images: bool = True) -> dict[str, Any]:
    """{"id", "lora", "weight", "done", "picked", "total", "pair" (or None), "result" (or None)}."""
    pair = comparison.pair()
    body: dict[str, Any] = {
        "id": comparison.id,
        "lora": comparison.test.lora,
        "weight": comparison.test.weight,
        "done": comparison.done,
        "picked": comparison.picked,
        "total": len(comparison.test.pairs),
        "pair": None,
        "result": comparison.result(),
    }
    if pair is not None:
        body["pair"] = {"index": pair.index, "number": pair.number, "total": pair.total}
        if images:
            body["pair"]["images"] = [png_base64(image) for image in pair.images]
    return body


def saved_payload(record: dict[str, Any]) -> dict[str, Any]:
    """A saved comparison in the shape of `payload` (done, no pair), with its file and whether its images were kept."""
    summary = record["summary"]
    total = len(record.get("pairs") or [])
    result = {**summary, "text": record.get("text", ""), "saved": record.get("file"), "exported": None}
    return {"id": record.get("id"), "lora": summary.get("lora"), "weight": summary.get("weight"), "done": True, "picked": total,
            "total": total, "pair": None, "result": result, "finished": record.get("finished"), "images_kept": bool(record.get("images"))}


def _call(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (CompareNotFound, FileNotFoundError) as error:
        raise HTTPException(404, detail=str(error)) from None
    except (ValueError, TypeError) as error:
        raise HTTPException(422, detail=str(error)) from None


def _list(value: Any, name: str) -> list[Any]:
    if isinstance(value, str):
        if name == "prompts":
            return [part for part in value.splitlines() if part.strip()]
        return value.replace(",", " ").split()
    if isinstance(value, list):
        return value
    raise ValueError(f"{name}: a list (or text)")


def compare_router(ctx: Any) -> APIRouter:
    """The /compare routes over the host context's comparisons (mounted by `register_routes`)."""
    router = APIRouter(tags=["Compare (blind A/B)"])
    sessions = for_context(ctx)

    @router.post("/compare")
    def start(body: dict = Body(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI idiom
        def run() -> dict[str, Any]:
            unknown = set(body) - {"lora", "weight", "prompts", "seeds", "steps", "cfg_scale", "size"}
            if unknown:
                raise ValueError(f"{sorted(unknown)[0]}: unknown field")
            try:
                seeds = [int(s) for s in _list(body.get("seeds", [1, 2, 3, 4]), "seeds")]
            except (TypeError, ValueError):
                raise ValueError("seeds: whole numbers") from None
            comparison = sessions.start(
                str(body.get("lora") or ""),
                float(body.get("weight", 1.0)),
                [str(p) for p in _list(body.get("prompts", []), "prompts")],
                seeds,
                steps=int(body.get("steps", 20)),
                cfg_scale=float(body.get("cfg_scale", 7.0)),
                size=int(body["size"]) if body.get("size") else None,
            )
            return payload(comparison)

        return _call(run)

    @router.get("/compare")
    def past() -> dict[str, Any]:
        return _call(lambda: {"results": [saved_payload(record) for record in sessions.past()]})

    @router.get("/compare/{compare_id}")
    def state(compare_id: str, images: bool = False) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            try:
                return payload(sessions.get(compare_id), images=images)
            except CompareNotFound:
                return saved_payload(sessions.saved(compare_id))

        return _call(run)

    @router.post("/compare/{compare_id}/pick")
    def pick(compare_id: str, body: dict = Body(...)) -> dict[str, Any]:  # noqa: B008
        return _call(lambda: payload(sessions.pick(compare_id, str(body.get("choice")), body.get("index"))))

    @router.post("/compare/{compare_id}/export")
    def export(compare_id: str) -> dict[str, Any]:
        return _call(lambda: sessions.export_picks(compare_id))

    return router
