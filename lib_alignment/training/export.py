"""Write the trained LoRA as a kohya-format file that A1111, Forge and ComfyUI load.

Keys come from peft's state dict through diffusers' `convert_state_dict_to_kohya`
(prefixes `unet.` / `text_encoder.` / `text_encoder_2.` added first, as the
converter expects). Two fixes follow: the converter writes `.alpha` = rank, so
alpha is overwritten when lora_alpha ≠ rank; and it names an SD1/SD2 text
encoder `lora_te1_`, which becomes kohya's `lora_te_`; text-encoder names keep the
`text_model.` level that transformers ≥ 5 no longer has. Metadata follows kohya's
`ss_*` keys the WebUIs' Lora cards read; files are written atomically.

UNet layouts: A1111 turns diffusers-layout names (`lora_unet_down_blocks_1_attentions_0_…`)
into its own by a formula that assumes SD's two layers per block (input block 1 + 3·i + j).
For any other layout (the tiny model, custom-architecture checkpoints) that formula points
at the wrong block, so those UNets get LDM-layout names (`lora_unet_input_blocks_3_1_…`),
which A1111 resolves by its module names, Forge and ComfyUI by the model's own key map,
and diffusers by `layers_per_block` (its SGM-block conversion).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..paths import atomic_save_image, atomic_write_bytes, atomic_write_json
from .denoiser import SD2, SDXL
from .lora import peft_state_dict

SAVE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
BASE_MODEL_VERSION = {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}
SD_VERSION_LABEL = {"sd1": "SD1", "sd2": "SD2", "sdxl": "SDXL"}
TEXT_ENCODER_PREFIXES = ("text_encoder", "text_encoder_2")


def kohya_state_dict(
    unet: torch.nn.Module,
    text_encoders: Sequence[torch.nn.Module] = (),
    alpha: float | None = None,
    version: str = "sd1",
) -> dict[str, torch.Tensor]:
    """LoRA tensors of the UNet (and trained text encoders) under kohya keys, alpha set to `alpha`."""
    from diffusers.utils import convert_state_dict_to_kohya

    prefixed = {f"unet.{k}": v for k, v in peft_state_dict(unet).items()}
    for prefix, encoder in zip(TEXT_ENCODER_PREFIXES, text_encoders):
        # transformers ≥ 5 drops CLIPTextModel's `text_model.` level; the hosts match kohya's names, which keep it
        prefixed.update({f"{prefix}.{with_text_model_level(k)}": v for k, v in peft_state_dict(encoder).items()})
    converted = convert_state_dict_to_kohya({k: v.detach() for k, v in prefixed.items()})
    result: dict[str, torch.Tensor] = {}
    for key, value in converted.items():
        if version != SDXL and key.startswith("lora_te1_"):
            key = "lora_te_" + key[len("lora_te1_") :]
        if key.endswith(".alpha"):
            rank = int(value)
            value = torch.tensor(float(alpha if alpha is not None else rank))
        result[key] = value
    if needs_ldm_names(unet.config):
        result = _with_ldm_unet_names(result, unet)
    unknown = [k for k in result if not k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_"))]
    if unknown:
        raise ValueError(f"kohya conversion produced keys the WebUIs would ignore, e.g. {unknown[0]!r}")
    return result


def with_text_model_level(name: str) -> str:
    """A CLIP text-encoder parameter name as transformers 4.x (and so kohya, A1111, Forge, ComfyUI) spell it."""
    return name if name.startswith(("text_model.", "text_projection")) else "text_model." + name


def needs_ldm_names(unet_config: Any) -> bool:
    """True where A1111's diffusers-name formula (two layers per block) would misplace LoRA modules."""
    return unet_config.layers_per_block != 2


def _with_ldm_unet_names(tensors: dict[str, torch.Tensor], unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Rename `lora_unet_<diffusers path>` keys to `lora_unet_<LDM path>` (see the module doc)."""
    from ..models.ldm_keys import unet_ldm_names

    names = {"lora_unet_" + path.replace(".", "_"): "lora_unet_" + ldm.replace(".", "_") for path, ldm in unet_ldm_names(unet).items()}
    renamed: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        base, _, part = key.partition(".")
        if base.startswith("lora_unet_"):
            if base not in names:
                raise ValueError(f"LoRA module {base!r} has no LDM name in this UNet layout")
            base = names[base]
        renamed[f"{base}.{part}"] = value
    return renamed


def training_metadata(
    config: Any,
    version: str,
    model_name: str,
    started_at: float,
    steps: int,
    hyperparameters: dict[str, Any],
    num_images: int,
    status: str = "finished",
) -> dict[str, str]:
    """kohya-style `ss_*` metadata plus this project's method and hyperparameters (all strings)."""
    meta = {
        "ss_output_name": config.name,
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(config.rank),
        "ss_network_alpha": _number(config.effective_alpha),
        "ss_base_model_version": BASE_MODEL_VERSION[version],
        "ss_v2": str(version == SD2),
        "ss_sd_model_name": model_name,
        "ss_training_started_at": str(int(started_at)),
        "ss_training_finished_at": str(int(time.time())),
        "ss_steps": str(steps),
        "ss_max_train_steps": str(config.max_train_steps),
        "ss_learning_rate": str(config.learning_rate),
        "ss_unet_lr": str(config.learning_rate),
        "ss_text_encoder_lr": str(config.text_encoder_lr or config.learning_rate) if config.train_text_encoder else "0",
        "ss_network_train_unet_only": str(not config.train_text_encoder),
        "ss_lr_scheduler": config.lr_scheduler,
        "ss_lr_warmup_steps": str(config.lr_warmup_steps),
        "ss_batch_size_per_device": str(config.batch_size),
        "ss_gradient_accumulation_steps": str(config.gradient_accumulation_steps),
        "ss_mixed_precision": config.mixed_precision,
        "ss_resolution": f"({config.resolution}, {config.resolution})",
        "ss_seed": str(config.seed),
        "ss_num_train_images": str(num_images),
        "ss_network_dropout": str(config.lora_dropout),
        "ss_training_comment": f"{METHOD_TITLES.get(config.method, config.method)} {'reward' if config.method == 'ddpo' else 'preference'} training (lib_alignment)",
        "lib_alignment_method": config.method,
        "lib_alignment_hyperparameters": json.dumps(hyperparameters, sort_keys=True),
        "lib_alignment_lora_targets": ",".join(config.lora_targets),
        "lib_alignment_status": status,
    }
    return meta


METHOD_TITLES = {"dpo": "Diffusion-DPO", "ipo": "Diffusion-IPO", "dpo_hinge": "Diffusion-DPO (hinge)", "kto": "Diffusion-KTO", "mapo": "MaPO", "orpo": "Diffusion-ORPO", "listwise": "Listwise Diffusion-DPO (Plackett–Luce)", "ddpo": "DDPO"}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def save_lora(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str], save_precision: str = "fp16") -> Path:
    """Serialise to safetensors (contiguous CPU tensors in the save dtype) and replace `path` atomically."""
    from safetensors.torch import save

    dtype = SAVE_DTYPES[save_precision]
    ready = {k: v.detach().to("cpu", dtype).contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, save(ready, metadata=metadata))
    return path


def write_sidecars(
    lora_path: Path,
    version: str,
    preferred_weight: float,
    description: str,
    activation_text: str = "",
    notes: str = "",
    preview: Any = None,
) -> dict[str, Path | None]:
    """NAME.json (the WebUI's user metadata) and NAME.preview.png next to the LoRA."""
    stem = lora_path.with_suffix("")
    json_path = stem.with_name(stem.name + ".json")
    atomic_write_json(
        json_path,
        {
            "description": description,
            "sd version": SD_VERSION_LABEL[version],
            "activation text": activation_text,
            "preferred weight": preferred_weight,
            "notes": notes,
        },
    )
    preview_path = None
    if preview is not None:
        preview_path = stem.with_name(stem.name + ".preview.png")
        atomic_save_image(preview, preview_path)
    return {"metadata": json_path, "preview": preview_path}
