"""Route registration: each feature adds an APIRouter; one call mounts them all behind the host's auth."""

from __future__ import annotations

from typing import Any

API_PREFIX = "/alignment/v1"


def register_routes(app: Any, ctx: Any, dependencies: list[Any] | None = None) -> None:
    """Mount every feature's router on `app` under /alignment/v1.

    dependencies: FastAPI dependencies applied to every route (the WebUI's API auth).
    """
    from fastapi import APIRouter

    router = APIRouter(prefix=API_PREFIX, dependencies=dependencies or [])

    @router.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "host": ctx.host, "model": ctx.model_source()}

    from .refine_routes import refine_router

    router.include_router(refine_router(ctx))
    from .job_routes import jobs_router

    router.include_router(jobs_router(ctx))
    from .compare_routes import compare_router

    router.include_router(compare_router(ctx))
    from .preference_routes import preferences_router

    router.include_router(preferences_router(ctx))
    from .curate_routes import curate_router

    router.include_router(curate_router(ctx))
    # Before the main router: its auth also takes the page's token, and /preferences/{entry_id}/undo would
    # otherwise catch /preferences/gallery/undo.
    from .gallery_routes import gallery_router

    app.include_router(gallery_router(ctx), prefix=API_PREFIX)
    app.include_router(router)
