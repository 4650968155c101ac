"""The Rank & Refine tab's "img2img and hires fix" inputs: what the refined noise starts from.

With an init image the session refines the noise img2img adds to that image's latent (the
denoising strength says how much is redrawn); without one, hires fix can upscale each candidate
(the first pass's noise is refined, the hires pass follows). Kept apart from the tab so its
fields and their checks stay in one small place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from .fields import number

STRENGTH_LABEL = "Denoising strength (img2img: how much of the init image is redrawn)"
HIRES_SCALE_LABEL = "Hires fix: upscale by (1: off; txt2img only)"
HIRES_DENOISING_LABEL = "Hires fix: denoising strength"


@dataclass
class SourceInputs:
    init_image: Any
    strength: Any
    hires_scale: Any
    hires_denoising: Any

    def components(self) -> list[Any]:
        return [self.init_image, self.strength, self.hires_scale, self.hires_denoising]


def build_source_inputs(elem_prefix: str) -> SourceInputs:
    """The accordion with the init image, its strength and the hires-fix settings (call inside the tab)."""
    with gr.Accordion("img2img and hires fix", open=False, elem_id=f"{elem_prefix}_source"):
        init_image = gr.Image(label="Init image (img2img; empty: txt2img)", type="pil", elem_id=f"{elem_prefix}_init_image")
        strength = gr.Slider(
            label=STRENGTH_LABEL, minimum=0.05, maximum=1.0, step=0.01, value=0.75, elem_id=f"{elem_prefix}_strength"
        )
        with gr.Row():
            hires_scale = gr.Slider(
                label=HIRES_SCALE_LABEL, minimum=1.0, maximum=4.0, step=0.05, value=1.0, elem_id=f"{elem_prefix}_hr_scale"
            )
            hires_denoising = gr.Slider(
                label=HIRES_DENOISING_LABEL, minimum=0.05, maximum=1.0, step=0.01, value=0.5, elem_id=f"{elem_prefix}_hr_denoise"
            )
    return SourceInputs(init_image, strength, hires_scale, hires_denoising)


def source_fields(init_image: Any, strength: Any, hires_scale: Any, hires_denoising: Any) -> dict[str, Any]:
    """RefineRequest's img2img / hires fields from the inputs' values; an empty or bad number names its label."""
    scale = number(hires_scale, HIRES_SCALE_LABEL, minimum=1.0, maximum=4.0)
    return {
        "init_image": init_image if init_image is not None else None,
        "denoising_strength": number(strength, STRENGTH_LABEL, minimum=0.01, maximum=1.0),
        "hires_scale": 0.0 if scale <= 1.0 else scale,
        "hires_denoising": number(hires_denoising, HIRES_DENOISING_LABEL, minimum=0.01, maximum=1.0),
    }
