"""A1111-style generation parameters ("infotext") for PNG files.

The WebUI writes them into the PNG "parameters" text chunk, so images saved by
us paste back into txt2img with "PNG Info" like its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PIL import PngImagePlugin

from .generation import GenerationSettings


def format_infotext(settings: GenerationSettings, seed: int | None, model: str, extra: Mapping[str, Any] | None = None) -> str:
    """"prompt\\nNegative prompt: …\\nSteps: 20, Sampler: DDIM, CFG scale: 7, Seed: 1, Size: WxH, Model: …"."""
    fields: dict[str, Any] = {
        "Steps": settings.steps,
        "Sampler": settings.sampler,
        "CFG scale": _number(settings.cfg_scale),
    }
    if seed is not None:
        fields["Seed"] = seed
    fields["Size"] = f"{settings.width}x{settings.height}"
    fields["Model"] = model
    fields.update(extra or {})
    lines = [settings.prompt]
    if settings.negative_prompt:
        lines.append(f"Negative prompt: {settings.negative_prompt}")
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in fields.items() if value is not None))
    return "\n".join(lines)


def png_info(infotext: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", infotext)
    return info


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _quote(value: Any) -> str:
    """Values with commas or colons are JSON-quoted, as the WebUI does."""
    import json

    text = str(value)
    return json.dumps(text) if ("," in text or ":" in text or "\n" in text) else text
