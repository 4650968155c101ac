"""The standalone app: both tabs in one gradio page, plus the API routes, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from . import curate_view, rank_refine_tab, training_tab
from .compat import blocks
from .context import AppContext

TABS = (rank_refine_tab, training_tab, curate_view)


def standalone_context(
    model: str = "tiny", output_dir: Path | None = None, device: str = "auto", tokenizer: Path | None = None
) -> AppContext:
    """Context for `serve`: the app's own model, outputs under ./outputs/alignment."""
    out = (output_dir or Path("outputs") / "alignment").resolve()

    def backend_factory() -> Any:
        from ..generation import DiffusersBackend
        from ..lora_prompt import LoraTagBackend
        from ..models import load_pipeline
        from ..quiet import quiet_libraries

        quiet_libraries()
        pipe = load_pipeline(model, device=device, tokenizer=tokenizer)
        inner = DiffusersBackend(pipe, model_name=Path(model).stem if model not in ("tiny", "tiny-random") else model)
        return LoraTagBackend(inner, out / "loras")  # <lora:NAME:w> in prompts, as in the WebUI

    return AppContext(
        host="standalone",
        model_source=lambda: model,
        backend_factory=backend_factory,
        output_dir=out,
        lora_dir=out / "loras",
    )


def build_blocks(ctx: AppContext) -> Any:
    """One page with a tab per feature, the same builders the WebUI tabs use."""
    import gradio as gr

    from .assets import head_html, javascript_text, style_css
    from .compat import gradio_major

    major = gradio_major()
    kwargs: dict[str, Any] = {}
    if major in (4, 5):
        kwargs = {"css": style_css(), "head": head_html()}
    elif major < 4:
        kwargs = {"css": style_css()}
    with blocks(title="Alignment", **kwargs) as demo:
        if major < 4:
            demo.load(None, None, None, _js=f"() => {{ {javascript_text()} }}")
        for tab in TABS:
            with gr.Tab(tab.TITLE, elem_id=f"tab_{tab.ELEM_ID}"):
                tab.build(ctx)
    return demo


def build_fastapi_app(ctx: AppContext) -> Any:
    """FastAPI app with our API routes and the gradio page mounted at /."""
    import gradio as gr
    from fastapi import FastAPI

    from ..api import register_routes
    from .compat import gradio_major

    app = FastAPI(title="Alignment")
    register_routes(app, ctx)
    demo = build_blocks(ctx)
    demo.queue()
    extra: dict[str, Any] = {}
    if gradio_major() >= 6:
        from .assets import head_html, style_css

        extra = {"css": style_css(), "head": head_html()}
    return gr.mount_gradio_app(app, demo, path="/", **extra)


class QuietShutdown(logging.Filter):
    """Drops uvicorn's reports of the open streams it cancels on shutdown (a page's heartbeat, a queue stream):
    ending them is the point of stopping, not an error worth ~150 lines of traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, asyncio.CancelledError):
            return False
        return "timeout graceful shutdown exceeded" not in record.getMessage()


#: Seconds open connections (a browser tab's heartbeat stream never ends by itself) get to finish on shutdown.
SHUTDOWN_GRACE_S = 1.0


def serve(ctx: AppContext, port: int = 7861) -> None:
    """Run the app until SIGTERM or Ctrl-C; then stop within SHUTDOWN_GRACE_S, without a traceback.

    Sessions and jobs are saved as they change (jobs run in their own processes), so nothing is lost.
    """
    import inspect

    import uvicorn

    options: dict[str, Any] = {"host": "127.0.0.1", "port": port, "log_level": "warning"}
    if "timeout_graceful_shutdown" in inspect.signature(uvicorn.Config).parameters:
        options["timeout_graceful_shutdown"] = SHUTDOWN_GRACE_S
    server = uvicorn.Server(uvicorn.Config(build_fastapi_app(ctx), **options))
    quiet = QuietShutdown()
    logging.getLogger("uvicorn.error").addFilter(quiet)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it caught once the server has stopped
        pass
