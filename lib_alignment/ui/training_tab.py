"""The "Alignment Training" tab: DPO / KTO / DDPO LoRA jobs on the loaded checkpoint."""

from __future__ import annotations

import gradio as gr

from .context import AppContext

TITLE = "Alignment Training"
ELEM_ID = "alignment_training"


def list_loras(ctx: AppContext) -> list[str]:
    if not ctx.lora_dir.is_dir():
        return []
    return sorted(p.name for p in ctx.lora_dir.glob("*.safetensors"))


def build(ctx: AppContext) -> None:
    """Create the tab's components inside the current gradio context."""
    gr.Markdown(
        "Train a LoRA of the loaded checkpoint on your preferences: Diffusion-DPO (pairs), "
        "Diffusion-KTO (likes/dislikes) or DDPO (a reward function)."
    )
    with gr.Row():
        model = gr.Textbox(label="Model", value=ctx.model_source, interactive=False, elem_id=f"{ELEM_ID}_model")
        lora_folder = gr.Textbox(label="LoRA folder", value=str(ctx.lora_dir), interactive=False, elem_id=f"{ELEM_ID}_lora_dir")
    loras = gr.Dropdown(label="LoRAs in the folder", choices=list_loras(ctx), elem_id=f"{ELEM_ID}_loras")
    refresh = gr.Button("Refresh", elem_id=f"{ELEM_ID}_refresh")
    refresh.click(lambda: gr.update(choices=list_loras(ctx)), inputs=[], outputs=[loras])
    _ = (model, lora_folder)
