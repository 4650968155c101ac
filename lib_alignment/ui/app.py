"""The standalone app: both tabs in one gradio page, plus the API routes, on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import rank_refine_tab, training_tab
from .compat import blocks
from .context import AppContext

TABS = (rank_refine_tab, training_tab)


def standalone_context(
    model: str = "tiny", output_dir: Path | None = None, device: str = "auto", tokenizer: Path | None = None
) -> AppContext:
    """Context for `serve`: the app's own model, outputs under ./outputs/alignment."""
    out = (output_dir or Path("outputs") / "alignment").resolve()

    def backend_factory() -> Any:
        from ..generation import DiffusersBackend
        from ..models import load_pipeline

        return DiffusersBackend(load_pipeline(model, device=device, tokenizer=tokenizer), model_name=Path(model).stem if model not in ("tiny", "tiny-random") else model)

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


def serve(ctx: AppContext, port: int = 7861) -> None:
    import uvicorn

    uvicorn.run(build_fastapi_app(ctx), host="127.0.0.1", port=port, log_level="warning")
