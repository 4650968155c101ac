"""Oracles backed by local CLIP weights: CLIP score and the LAION aesthetic predictor.

Nothing is downloaded: the user points to a local CLIP folder (a transformers
`CLIPModel` saved with safetensors weights, its tokenizer and
`preprocessor_config.json`) and, for the aesthetic score, to the predictor's
weight file (.safetensors, or .pth/.pt read with `weights_only=True`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

_REQUIRED_CLIP_FILES = ("config.json", "preprocessor_config.json")


def _check_clip_folder(folder: str | Path) -> Path:
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"CLIP model folder {str(path)!r} does not exist; point the oracle to a local transformers CLIP folder "
            "(config.json, model.safetensors, tokenizer files, preprocessor_config.json)"
        )
    missing = [name for name in _REQUIRED_CLIP_FILES if not (path / name).is_file()]
    if not (path / "model.safetensors").is_file() and not any(path.glob("model-*.safetensors")):
        missing.append("model.safetensors")
    if missing:
        raise FileNotFoundError(f"CLIP model folder {str(path)!r} lacks {', '.join(missing)}")
    return path


class ClipEncoder:
    """Unit-length CLIP image and text embeddings from a local folder (works across transformers 4.30–5.x)."""

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu") -> None:
        from transformers import CLIPModel, CLIPProcessor

        path = _check_clip_folder(folder)
        self.device = torch.device(device)
        self.model = CLIPModel.from_pretrained(path, local_files_only=True, use_safetensors=True).to(self.device).eval()
        self.processor = CLIPProcessor.from_pretrained(path, local_files_only=True)
        self.dim = int(self.model.config.projection_dim)

    @torch.no_grad()
    def images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        pixels = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
        pooled = self.model.vision_model(pixel_values=pixels.to(self.device, self.model.dtype)).pooler_output
        return torch.nn.functional.normalize(self.model.visual_projection(pooled).float(), dim=-1)

    @torch.no_grad()
    def texts(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.processor(text=list(texts), return_tensors="pt", padding=True, truncation=True)
        pooled = self.model.text_model(
            input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
        ).pooler_output
        return torch.nn.functional.normalize(self.model.text_projection(pooled).float(), dim=-1)


class ClipScore:
    """100 × cosine similarity between each image and the prompt (not clamped at 0, so it still ranks)."""

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu") -> None:
        self.encoder = ClipEncoder(folder, device)
        self.name = f"clip:{folder}"

    def score(self, images: Sequence[Image.Image], prompt: str) -> list[float]:
        if not images:
            return []
        similarity = self.encoder.images(images) @ self.encoder.texts([prompt])[0]
        return (100.0 * similarity).tolist()


def load_linear_stack(path: str | Path) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """The Linear layers of an MLP state dict, in key order, checked to chain.

    LAION's improved aesthetic predictor is Linear/Dropout layers with no
    activations (keys layers.0, layers.2, layers.4, layers.6, layers.7), so
    applying the linear layers in order reproduces it.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"aesthetic predictor weights {str(file)!r} do not exist")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: dict[str, Any] = load_file(str(file))
    elif file.suffix in (".pth", ".pt", ".bin"):
        state = torch.load(str(file), map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    else:
        raise ValueError(f"aesthetic predictor weights {str(file)!r}: expected .safetensors, .pth or .pt")
    if not isinstance(state, dict):
        raise ValueError(f"{file}: expected a state dict of tensors")

    def key_order(name: str) -> list[Any]:
        return [int(part) if part.isdigit() else part for part in re.split(r"[.]", name)]

    weights = sorted((k for k, v in state.items() if k.endswith("weight") and getattr(v, "ndim", 0) == 2), key=key_order)
    if not weights:
        raise ValueError(f"{file}: no 2-D '*.weight' tensors, so it is not an MLP state dict")
    layers = []
    for name in weights:
        bias = state.get(name[: -len("weight")] + "bias")
        layers.append((state[name].float(), None if bias is None else bias.float()))
    for (w1, _), (w2, _), name in zip(layers, layers[1:], weights[1:]):
        if w1.shape[0] != w2.shape[1]:
            raise ValueError(f"{file}: layer {name} takes {w2.shape[1]} inputs but the layer before gives {w1.shape[0]}")
    if layers[-1][0].shape[0] != 1:
        raise ValueError(f"{file}: the last layer has {layers[-1][0].shape[0]} outputs, expected 1 (a score)")
    return layers


class AestheticScore:
    """LAION-style aesthetic predictor: an MLP over unit-length CLIP image embeddings."""

    def __init__(self, weights: str | Path, clip_folder: str | Path, device: str | torch.device = "cpu") -> None:
        self.layers = load_linear_stack(weights)
        self.encoder = ClipEncoder(clip_folder, device)
        if self.layers[0][0].shape[1] != self.encoder.dim:
            raise ValueError(
                f"aesthetic predictor {weights} expects {self.layers[0][0].shape[1]}-dim embeddings, "
                f"but the CLIP model in {clip_folder} gives {self.encoder.dim}"
            )
        self.name = f"aesthetic:{weights},{clip_folder}"

    def score(self, images: Sequence[Image.Image], prompt: str = "") -> list[float]:
        if not images:
            return []
        h = self.encoder.images(images).cpu()
        for weight, bias in self.layers:
            h = torch.nn.functional.linear(h, weight, bias)
        return h[:, 0].tolist()
