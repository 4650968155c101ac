"""Registration of the tabs and API routes inside A1111/Forge, through the facade only."""

from __future__ import annotations

from typing import Any

from .. import webui_facade as webui
from . import curate_view, rank_refine_tab, training_tab
from .compat import blocks
from .context import AppContext

_context: AppContext | None = None


def webui_context() -> AppContext:
    """One context per WebUI process: the loaded checkpoint, the WebUI's sampler and Lora folder."""
    global _context
    if _context is None:

        def model_source() -> str:
            checkpoint = webui.loaded_checkpoint()
            if checkpoint is None:
                raise RuntimeError("no checkpoint is loaded in the WebUI")
            return str(checkpoint.path)

        def backend_factory() -> Any:
            from ..webui_backend import WebUIBackend

            return WebUIBackend()

        _context = AppContext(
            host=webui.host_name(),
            model_source=model_source,
            backend_factory=backend_factory,
            output_dir=webui.output_dir(),
            lora_dir=webui.lora_dir(),
        )
    return _context


def ui_tabs() -> list[tuple[Any, str, str]]:
    """The on_ui_tabs callback: one gr.Blocks per top-level tab."""
    ctx = webui_context()
    tabs = []
    for tab in (rank_refine_tab, training_tab, curate_view):
        with blocks() as block:
            tab.build(ctx)
        tabs.append((block, tab.TITLE, tab.ELEM_ID))
    return tabs


def app_started(_demo: Any, app: Any) -> None:
    """The on_app_started callback: our routes, behind the WebUI's API auth when it is set."""
    from ..api import register_routes

    register_routes(app, webui_context(), dependencies=webui.api_dependencies())


def register() -> None:
    webui.on_ui_tabs(ui_tabs)
    webui.on_app_started(app_started)
