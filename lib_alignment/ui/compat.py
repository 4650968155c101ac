"""Small shims over the gradio differences between 3.41 (A1111), 4.40 (Forge) and current releases."""

from __future__ import annotations

from typing import Any

import gradio as gr


def gradio_major() -> int:
    return int(gr.__version__.split(".")[0])


def blocks(**kwargs: Any) -> gr.Blocks:
    """A gr.Blocks with analytics off (an offline WebUI must not phone home)."""
    return gr.Blocks(analytics_enabled=False, **kwargs)


def gallery_images(value: Any) -> list[Any]:
    """Image entries of a Gallery value: 3.41 gives dicts, 4+ gives (image, caption) tuples."""
    images = []
    for item in value or []:
        if isinstance(item, dict):
            images.append(item.get("name") or item.get("image") or item.get("path"))
        elif isinstance(item, (list, tuple)):
            images.append(item[0])
        else:
            images.append(item)
    return images


def poll(seconds: float, fn: Any, inputs: list[Any], outputs: list[Any]) -> Any:
    """Call fn every `seconds` while the page is open, without a progress overlay.

    gradio 4.40+ has gr.Timer; 3.41 (A1111) runs a load event of the Blocks being built with `every=`
    (it survives A1111 rendering the tab's Blocks into its page)."""
    if hasattr(gr, "Timer"):
        return gr.Timer(seconds).tick(fn, inputs=inputs, outputs=outputs, show_progress="hidden")
    from gradio.context import Context

    root = Context.root_block
    if root is None:
        raise RuntimeError("poll() must be called while a gr.Blocks is being built")
    return root.load(fn, inputs=inputs, outputs=outputs, every=seconds, show_progress="hidden")


def file_path(value: Any) -> str | None:
    """The local path of a gr.File value: 3.41 gives a tempfile wrapper (.name), 4+ a path string or FileData."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return value.get("path") or value.get("name")
    return getattr(value, "path", None) or getattr(value, "name", None)
