"""HTTP API of Rank & Refine, under /alignment/v1 (the WebUI's API auth applies when set).

    POST /refine                 {"prompt", "negative_prompt", "seed", "steps", "cfg_scale", "width",
                                  "height", "sampler_name", "m", "mu", "lr", img2img: "init_image" (base64)
                                  and "denoising_strength", hires fix: "hires_scale", "hires_denoising",
                                  "hires_steps"} → a round (below)
                                 scorer assistance: "scorer" (an oracle spec: brightness, colourfulness,
                                  jpeg_size, color:red, clip:FOLDER / aesthetic:WEIGHTS,FOLDER inside the
                                  models folder, package.module:function), "auto_rounds"; "variety":
                                  subtle | medium | bold (or "mu" itself)
    POST /refine/{id}/rank       {"order": [display indices, best first], "round": optional} → next round
                                 (after the session's auto rounds, when it has some)
    POST /refine/{id}/auto       {"rounds": n} → the scorer ranks n rounds now; the round after them
    GET  /refine/{id}/rounds     → {"rounds": [{"round", "type", "scorer_order", "order", "source"}]}
    POST /refine/{id}/undo       → the previous round again
    POST /refine/{id}/reset      → back to the seed's noise (undo-able)
    POST /refine/{id}/params     {"m", "mu", "lr", "variety", "scorer", "auto_rounds"} (any) → state; from the next round
    POST /refine/{id}/export     → {"image": PNG with infotext, "infotext", "image_file", "latent_file"}
    GET  /refine/{id}            → state (?images=false leaves the images out)
    GET  /refine                 → {"sessions": [...]}, newest first

A round is {"id", "round", "type", "roles", "images": [base64 PNG, display order], "current":
base64 PNG of the current point, "rounds_ranked", "can_undo", "scorer_order": the scorer's best-first
order of the candidates (null without a scorer; a page shows it pre-ranked)}. Under the WebUI's
--api-auth a session belongs to the user who started it: other users get 404 for it and do not
list it (sessions saved without an owner are everybody's); without auth every client sees every session. Errors: 422 names the field,
404 unknown id, 409 a ranking for a round no longer shown / nothing to undo / session made
with another model / interrupted. Request models work with pydantic 1 (A1111) and 2.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any, Optional

import pydantic
from pydantic import BaseModel, Field, StrictInt

from ..ui.refine_sessions import (
    LIMITS,
    RefineRequest,
    SessionNotFound,
    SessionUnavailable,
    StaleRound,
    for_context,
    request_fields,
)
from ..zo import DEFAULT_LR, DEFAULT_MU

_PYDANTIC_2 = int(pydantic.VERSION.split(".")[0]) >= 2


class _Strict(BaseModel):
    """Unknown fields are an error (a misspelt "sampler" must not silently fall back to a default)."""

    if _PYDANTIC_2:
        model_config = {"extra": "forbid"}
    else:

        class Config:
            extra = "forbid"


class RefineStartBody(_Strict):
    prompt: str
    negative_prompt: str = ""
    seed: int = Field(-1, ge=-1, lt=2**32, description="-1 draws a seed")
    steps: int = Field(20, ge=LIMITS["steps"][0], le=LIMITS["steps"][1])
    cfg_scale: float = Field(7.0, ge=LIMITS["cfg_scale"][0], le=LIMITS["cfg_scale"][1])
    width: int | None = Field(None, description="pixels, multiple of 8; default: the model's size")
    height: int | None = Field(None, description="pixels, multiple of 8; default: the model's size")
    sampler_name: str | None = Field(None, description="one of the host's samplers; default: a deterministic one")
    m: int = Field(6, ge=LIMITS["m"][0], le=LIMITS["m"][1], description="candidates per round")
    mu: Optional[float] = Field(None, gt=0, le=LIMITS["mu"][1], description=f"perturbation scale (default {DEFAULT_MU})")
    variety: Optional[str] = Field(None, description="subtle | medium | bold: μ in words (give it or mu)")
    scorer: Optional[str] = Field(None, description="oracle that pre-ranks each round (and ranks auto rounds)")
    auto_rounds: int = Field(0, ge=0, le=LIMITS["auto_rounds"][1], description="rounds the scorer ranks after each of yours")
    lr: float = Field(DEFAULT_LR, gt=0, le=LIMITS["lr"][1], description="line-search step")
    init_image: str | None = Field(None, description="img2img: base64 image (PNG/JPEG, data URL allowed); none: txt2img")
    denoising_strength: float = Field(0.75, ge=0.01, le=1.0, description="img2img: how much of the init image is redrawn")
    hires_scale: float = Field(0.0, ge=0.0, le=4.0, description="hires fix (txt2img): 0 off, else the upscale factor")
    hires_denoising: float = Field(0.5, ge=0.01, le=1.0, description="hires fix: the second pass's denoising strength")
    hires_steps: int = Field(0, ge=0, le=LIMITS["steps"][1], description="hires fix: second-pass steps (0: as the first)")


class RankBody(_Strict):
    order: list[StrictInt] = Field(..., description="display indices, best first: all, the top k, or just the best")
    round: int | None = Field(
        None, description="the round ranked; a mismatch answers 409 instead of ranking another round"
    )


class ParamsBody(_Strict):
    m: int | None = Field(None, ge=LIMITS["m"][0], le=LIMITS["m"][1])
    mu: float | None = Field(None, gt=0, le=LIMITS["mu"][1])
    lr: float | None = Field(None, gt=0, le=LIMITS["lr"][1])
    variety: Optional[str] = None
    scorer: Optional[str] = Field(None, description='an oracle spec; "" or "none" turns the scorer off')
    auto_rounds: Optional[int] = Field(None, ge=0, le=LIMITS["auto_rounds"][1])


class AutoBody(_Strict):
    rounds: int = Field(..., ge=1, le=LIMITS["auto_rounds"][1], description="rounds the scorer ranks now")


def api_user(ctx: Any) -> Callable[..., Optional[str]]:
    """A FastAPI dependency giving the request's user: the HTTP basic user name under the WebUI's --api-auth
    (the router's auth dependency has checked the password by then), None without auth."""

    def user(request: Any) -> Optional[str]:
        if not ctx.in_webui:
            return None
        from ..webui_facade import api_credentials

        if not api_credentials():
            return None
        scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            name = base64.b64decode(value).decode("utf-8").partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            return None
        return name or None

    from fastapi import Request

    user.__annotations__ = {"request": Request, "return": Optional[str]}  # FastAPI 0.94 reads them as given
    return user


def _fields(model: BaseModel) -> dict[str, Any]:
    return model.model_dump() if _PYDANTIC_2 else model.dict()


def png_base64(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def round_payload(session_id: str, session: Any, rnd: Any, images: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": session_id,
        "round": rnd.id,
        "type": rnd.round_type,
        "roles": list(rnd.roles),
        "rounds_ranked": session.rounds_ranked,
        "can_undo": session.can_undo,
        "scorer_order": None if rnd.scorer_order is None else list(rnd.scorer_order),
    }
    if images:
        body["images"] = [png_base64(image) for image in rnd.images]
        body["current"] = png_base64(rnd.current_image)
    return body


def state_payload(session_id: str, session: Any, images: bool) -> dict[str, Any]:
    from dataclasses import asdict

    rnd = session.current_round
    body: dict[str, Any] = {
        "id": session_id,
        "seed": session.seed,
        "model": session.backend.model_name,
        "settings": {key: value for key, value in asdict(session.settings).items() if key != "extra"},
        "params": asdict(session.params),
        "rounds": session.round_ids,
        "rounds_ranked": session.rounds_ranked,
        "can_undo": session.can_undo,
        "round": rnd.id if rnd is not None else None,
    }
    if rnd is not None:
        body.update(
            {key: value for key, value in round_payload(session_id, session, rnd, images).items() if key not in body}
        )
    return body


def _call(fn: Callable[[], Any]) -> Any:
    """Run a session step; map its errors onto HTTP statuses with the message."""
    from fastapi import HTTPException

    from ..webui_facade import Interrupted

    try:
        return fn()
    except SessionNotFound as error:
        raise HTTPException(status_code=404, detail=str(error)) from error
    except (StaleRound, SessionUnavailable, Interrupted) as error:
        raise HTTPException(status_code=409, detail=str(error)) from error
    except ValueError as error:
        raise HTTPException(status_code=422, detail=str(error)) from error


def refine_router(ctx: Any) -> Any:
    """The /refine routes over the host context's sessions (mounted by `register_routes`)."""
    from fastapi import APIRouter

    from fastapi import Depends

    router = APIRouter(tags=["Rank & Refine"])
    sessions = for_context(ctx)
    who = Depends(api_user(ctx))

    @router.get("/refine")
    def list_sessions(user: Optional[str] = who) -> dict[str, Any]:
        return {"sessions": [summary.__dict__ for summary in sessions.summaries(user)]}

    @router.post("/refine")
    def start(body: RefineStartBody, user: Optional[str] = who) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            session_id, session, first = sessions.start(RefineRequest(**request_fields(_fields(body))), user=user)
            return round_payload(session_id, session, first)

        return _call(run)

    @router.get("/refine/{session_id}")
    def state(session_id: str, images: bool = True, user: Optional[str] = who) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            session, _ = sessions.current(session_id, user=user)
            return state_payload(session_id, session, images)

        return _call(run)

    @router.post("/refine/{session_id}/rank")
    def rank(session_id: str, body: RankBody, user: Optional[str] = who) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            nxt = sessions.rank(session_id, body.order, round_id=body.round, user=user)
            return round_payload(session_id, sessions.get(session_id, user), nxt)

        return _call(run)

    @router.post("/refine/{session_id}/auto")
    def auto(session_id: str, body: AutoBody, user: Optional[str] = who) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            nxt = sessions.auto(session_id, body.rounds, user=user)
            return round_payload(session_id, sessions.get(session_id, user), nxt)

        return _call(run)

    @router.get("/refine/{session_id}/rounds")
    def rounds(session_id: str, user: Optional[str] = who) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            return {"id": session_id, "rounds": sessions.get(session_id, user).round_log()}

        return _call(run)

    @router.post("/refine/{session_id}/undo")
    def undo(session_id: str, user: Optional[str] = who) -> dict[str, Any]:
        return _call(lambda: round_payload(session_id, sessions.get(session_id, user), sessions.undo(session_id, user=user)))

    @router.post("/refine/{session_id}/reset")
    def reset(session_id: str, user: Optional[str] = who) -> dict[str, Any]:
        return _call(lambda: round_payload(session_id, sessions.get(session_id, user), sessions.reset(session_id, user=user)))

    @router.post("/refine/{session_id}/params")
    def params(session_id: str, body: ParamsBody, user: Optional[str] = who) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            sessions.set_params(
                session_id,
                m=body.m,
                mu=body.mu,
                lr=body.lr,
                variety=body.variety,
                scorer=body.scorer,
                auto_rounds=body.auto_rounds,
                user=user,
            )
            return state_payload(session_id, sessions.get(session_id, user), images=False)

        return _call(run)

    @router.post("/refine/{session_id}/export")
    def export(session_id: str, user: Optional[str] = who) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            result = sessions.export(session_id, user=user)
            return {
                "image": base64.b64encode(result.image_path.read_bytes()).decode("ascii"),
                "infotext": result.infotext,
                "image_file": result.image_path.name,
                "latent_file": result.latent_path.name,
            }

        return _call(run)

    return router
