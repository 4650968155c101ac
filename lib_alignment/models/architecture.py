"""Which Stable Diffusion family a single-file checkpoint belongs to, from its tensor names.

The signatures are the text encoders', as in the WebUI's own guess
(modules/sd_models_config.py): SD1 carries a Hugging Face CLIP text model under
`cond_stage_model.transformer.`, SD2 an OpenCLIP ViT-H under
`cond_stage_model.model.`, SDXL two encoders under `conditioner.embedders.`.

SD2 comes as ε- and v-prediction models with identical tensors. The prediction
type is taken, in order, from the `<name>.yaml` (`parameterization: "v"`), from
SAI model-spec metadata (`modelspec.prediction_type`), and otherwise from the
WebUI's probe (`predicts_v`): one UNet evaluation at t=999 on constant inputs,
where v-models answer far below the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint_io import CheckpointSummary

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"

UNET_PREFIX = "model.diffusion_model."
UNET_INPUT_KEY = UNET_PREFIX + "input_blocks.0.0.weight"
SD1_TEXT_KEYS = (
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
    "cond_stage_model.transformer.embeddings.token_embedding.weight",
)
SD2_TEXT_KEY = "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"
SDXL_TEXT_KEY = "conditioner.embedders.1.model.ln_final.weight"
SDXL_REFINER_KEY = "conditioner.embedders.0.model.ln_final.weight"


@dataclass(frozen=True)
class Architecture:
    """A model family and the shipped diffusers config folder that fits it."""

    family: str  # "sd1", "sd2" or "sdxl"
    config_name: str  # folder under models/configs
    #: "epsilon", "v_prediction", or None when it must still be probed (SD2 only).
    prediction_type: str | None

    @property
    def config_dir(self) -> Path:
        return CONFIGS_DIR / self.config_name

    @property
    def pipeline_class_name(self) -> str:
        return "StableDiffusionXLPipeline" if self.family == "sdxl" else "StableDiffusionPipeline"

    @property
    def tokenizer_slots(self) -> tuple[str, ...]:
        return ("tokenizer", "tokenizer_2") if self.family == "sdxl" else ("tokenizer",)


def detect_architecture(summary: CheckpointSummary, parameterization: str | None = None) -> Architecture:
    """The family of the checkpoint; `parameterization` is the yaml's ("eps"/"v"), if any."""
    path = summary.path
    unet_input = summary.shape(UNET_INPUT_KEY)
    if unet_input is None:
        hint = " (it looks like a LoRA)" if any(k.startswith(("lora_", "lora_unet")) for k in summary.shapes) else ""
        raise ValueError(f"{path}: not a Stable Diffusion checkpoint: no {UNET_PREFIX}* tensors{hint}")
    if len(unet_input) == 4 and unet_input[1] != 4:
        raise ValueError(
            f"{path}: its UNet takes {unet_input[1]} input channels (inpainting or instruct-pix2pix); "
            "only text-to-image models with 4 latent channels are supported"
        )
    prediction = _prediction_from(parameterization, summary.metadata.get("modelspec.prediction_type"), path)
    if summary.has(SDXL_TEXT_KEY):
        return Architecture("sdxl", "sdxl-base", prediction or "epsilon")
    if summary.has(SDXL_REFINER_KEY):
        raise ValueError(f"{path}: an SDXL refiner checkpoint; only SDXL base models are supported")
    if summary.has(SD2_TEXT_KEY):
        if prediction == "v_prediction":
            return Architecture("sd2", "sd2-v", prediction)
        return Architecture("sd2", "sd2", prediction)
    if any(summary.has(key) for key in SD1_TEXT_KEYS):
        return Architecture("sd1", "sd15", prediction or "epsilon")
    raise ValueError(
        f"{path}: has a UNet but no text encoder this loader knows "
        "(expected cond_stage_model.transformer.* for SD1, cond_stage_model.model.* for SD2, conditioner.embedders.* for SDXL)"
    )


def _prediction_from(parameterization: str | None, modelspec: str | None, path: Path) -> str | None:
    if parameterization is not None:
        value = str(parameterization).lower()
        if value in ("v", "v_prediction"):
            return "v_prediction"
        if value in ("eps", "epsilon"):
            return "epsilon"
        raise ValueError(f"{path}: parameterization {parameterization!r} is not supported (expected 'eps' or 'v')")
    if modelspec:
        value = modelspec.lower()
        if value in ("v", "v_prediction", "v-prediction"):
            return "v_prediction"
        if value in ("epsilon", "eps"):
            return "epsilon"
    return None


def predicts_v(unet: Any) -> bool:
    """The WebUI's SD2 probe: at t=999 with constant inputs, mean(out − x) < −1 means v-prediction."""
    import torch

    param = next(unet.parameters())
    x = torch.full((1, unet.config.in_channels, 8, 8), 0.5, device=param.device, dtype=param.dtype)
    context = torch.full((1, 2, unet.config.cross_attention_dim), 0.5, device=param.device, dtype=param.dtype)
    timestep = torch.tensor([999], device=param.device)
    with torch.no_grad():
        out = unet(x, timestep, encoder_hidden_states=context).sample
    return bool((out.float() - x.float()).mean().item() < -1)


def switch_to_v_prediction(pipe: Any) -> None:
    """Turn a pipeline loaded with the ε SD2 config into the v (768) one, in place."""
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type="v_prediction")
    pipe.unet.register_to_config(sample_size=96, upcast_attention=True)
    for module in pipe.unet.modules():
        if hasattr(module, "upcast_attention"):
            module.upcast_attention = True
