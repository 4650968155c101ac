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
