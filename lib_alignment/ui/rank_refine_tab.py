"""The "Rank & Refine" tab: refine an image by ranking candidates (ZO-RankSGD on the initial noise)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ..generation import GenerationSettings, noise_from_seed
from .context import AppContext

TITLE = "Rank & Refine"
ELEM_ID = "alignment_rank_refine"


def build(ctx: AppContext) -> None:
    """Create the tab's components inside the current gradio context."""
    gr.Markdown(
        "Pick a prompt and a seed, then rank candidate images round by round; "
        "each ranking moves the initial noise toward what you prefer."
    )
    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(label="Prompt", value="a red circle on a blue background", elem_id=f"{ELEM_ID}_prompt")
            negative = gr.Textbox(label="Negative prompt", value="", elem_id=f"{ELEM_ID}_negative")
            with gr.Row():
                seed = gr.Number(label="Seed", value=0, precision=0, elem_id=f"{ELEM_ID}_seed")
                steps = gr.Slider(label="Steps", minimum=1, maximum=150, step=1, value=20, elem_id=f"{ELEM_ID}_steps")
                cfg = gr.Slider(label="CFG scale", minimum=0, maximum=30, step=0.5, value=7.0, elem_id=f"{ELEM_ID}_cfg")
            preview_button = gr.Button("Preview", variant="primary", elem_id=f"{ELEM_ID}_preview")
        with gr.Column(scale=1):
            image = gr.Image(label="Current image", type="pil", interactive=False, elem_id=f"{ELEM_ID}_current")
            status = gr.Markdown("", elem_id=f"{ELEM_ID}_status")

    def preview(prompt_text: str, negative_text: str, seed_value: float, steps_value: float, cfg_value: float) -> tuple[Any, str]:
        backend = ctx.backend()
        size = backend.default_size()
        settings = GenerationSettings(
            prompt=prompt_text, negative_prompt=negative_text, steps=int(steps_value), cfg_scale=float(cfg_value), width=size, height=size
        )
        latents = noise_from_seed(int(seed_value), (1, *backend.latent_shape(size, size)))
        result = backend.generate(settings, latents)
        return result.images[0], f"Seed {int(seed_value)} · {size}×{size} · {backend.model_name}"

    preview_button.click(preview, inputs=[prompt, negative, seed, steps, cfg], outputs=[image, status])
