"""Write an SD1-architecture diffusers pipeline as a WebUI checkpoint: `.safetensors` + `.yaml` + text-encoder folder.

The WebUI builds the model from `<name>.yaml` (LDM's LatentDiffusion config) and
loads `<name>.safetensors` into it. Its text encoder, LDM's FrozenCLIPEmbedder,
calls `CLIPTokenizer.from_pretrained(version)` and takes the CLIPTextModel
config from `version`, so the yaml names, by absolute path, a folder written
beside the checkpoint with the tokenizer files and the text encoder's
config.json: the WebUI then needs nothing from the network. That folder holds no
weights, so the WebUI's checkpoint list does not pick it up.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ldm_keys import text_encoder_to_ldm, unet_to_ldm, vae_to_ldm
from .tokenizers import save_bpe_files

TEXT_CONFIG_FIELDS = (
    "architectures",
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "projection_dim",
    "num_hidden_layers",
    "num_attention_heads",
    "max_position_embeddings",
    "hidden_act",
    "layer_norm_eps",
    "attention_dropout",
    "dropout",
    "initializer_range",
    "initializer_factor",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
)


@dataclass(frozen=True)
class ExportedCheckpoint:
    checkpoint: Path
    yaml: Path
    text_encoder_dir: Path


def export_ldm_checkpoint(pipe: Any, checkpoint: Path) -> ExportedCheckpoint:
    """Write `checkpoint` (.safetensors), its `.yaml` and `<stem>_text_encoder/` beside it, each atomically."""
    from .ldm_yaml import check_exportable, ldm_yaml_text

    checkpoint = Path(checkpoint)
    if checkpoint.suffix != ".safetensors":
        raise ValueError(f"{checkpoint}: the exported checkpoint must be a .safetensors file")
    check_exportable(pipe)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    text_dir = checkpoint.with_name(f"{checkpoint.stem}_text_encoder")
    _write_text_encoder_folder(pipe, text_dir)
    yaml_path = checkpoint.with_suffix(".yaml")
    _atomic_write_text(yaml_path, ldm_yaml_text(pipe, text_dir.resolve()))
    _write_safetensors(ldm_state_dict(pipe), checkpoint, _metadata(pipe))
    return ExportedCheckpoint(checkpoint, yaml_path, text_dir)


def ldm_state_dict(pipe: Any) -> dict[str, Any]:
    """All UNet, VAE and text-encoder tensors under their LDM names, on the CPU and contiguous."""
    text = pipe.text_encoder
    state: dict[str, Any] = {}
    state.update(unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config))
    state.update(vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config))
    state.update(text_encoder_to_ldm(text.state_dict(), int(text.config.max_position_embeddings)))
    return {key: value.detach().to("cpu").contiguous() for key, value in state.items()}


def _metadata(pipe: Any) -> dict[str, str]:
    prediction = pipe.scheduler.config.get("prediction_type", "epsilon")
    return {
        "format": "pt",
        "modelspec.prediction_type": "v" if prediction == "v_prediction" else "epsilon",
        "lib_alignment.exported_by": "lib_alignment.models.ldm_export",
    }


def _write_safetensors(state: dict[str, Any], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(state, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_text_encoder_folder(pipe: Any, target: Path) -> None:
    """config.json of the text encoder and the tokenizer files, in formats transformers 4.30 → 5 all read."""
    from ..paths import make_temp_dir

    staging = make_temp_dir(target)  # follows the umask (tempfile.mkdtemp is 0700)
    try:
        config = pipe.text_encoder.config.to_dict()
        clean = {key: config[key] for key in TEXT_CONFIG_FIELDS if key in config}
        clean["torch_dtype"] = "float32"
        (staging / "config.json").write_text(json.dumps(clean, indent=2), encoding="utf-8")
        _write_tokenizer(pipe.tokenizer, staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _write_tokenizer(tokenizer: Any, folder: Path) -> None:
    save_bpe_files(tokenizer, folder)
    special = {name: str(getattr(tokenizer, name)) for name in ("bos_token", "eos_token", "unk_token", "pad_token")}
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": int(tokenizer.model_max_length),
        **special,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
