"""The trained model as one module: text encoder(s) + UNet, for SD1.x, SD2.x and SDXL.

Wrapping them together lets `accelerator.prepare` hand one module to DDP, so the
gradients of UNet and text-encoder LoRA are synchronised alike, and gives the
trainer one forward call: captions' token ids + noisy latents → the prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch

SD1, SD2, SDXL = "sd1", "sd2", "sdxl"


def detect_version(pipe: Any) -> str:
    """'sdxl' (two text encoders, size conditioning), 'sd2' (OpenCLIP, 1024-wide) or 'sd1'."""
    unet_config = pipe.unet.config
    if getattr(pipe, "text_encoder_2", None) is not None or getattr(unet_config, "addition_embed_type", None) == "text_time":
        return SDXL
    if getattr(unet_config, "cross_attention_dim", 768) == 1024:
        return SD2
    return SD1


def text_encoders_of(pipe: Any) -> list[Any]:
    encoders = [pipe.text_encoder]
    if getattr(pipe, "text_encoder_2", None) is not None:
        encoders.append(pipe.text_encoder_2)
    return [e for e in encoders if e is not None]


def tokenizers_of(pipe: Any) -> list[Any]:
    tokenizers = [pipe.tokenizer]
    if getattr(pipe, "tokenizer_2", None) is not None:
        tokenizers.append(pipe.tokenizer_2)
    return [t for t in tokenizers if t is not None]


class Denoiser(torch.nn.Module):
    """UNet conditioned on captions through the pipeline's text encoder(s)."""

    def __init__(self, unet: Any, text_encoders: Sequence[Any], tokenizers: Sequence[Any], version: str, train_text_encoder: bool) -> None:
        super().__init__()
        self.unet = unet
        self.text_encoders = torch.nn.ModuleList(text_encoders)
        self.tokenizers = list(tokenizers)
        self.version = version
        self.train_text_encoder = train_text_encoder
        if version == SDXL and len(text_encoders) != 2:
            raise ValueError("an SDXL model needs two text encoders")

    def tokenize(self, captions: Sequence[str], device: torch.device) -> list[torch.Tensor]:
        """Token ids per tokenizer, padded to the tokenizer's length as the pipelines do."""
        return [
            tok(list(captions), padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids.to(device)
            for tok in self.tokenizers
        ]

    def encode(self, input_ids: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(encoder hidden states, pooled embedding or None) as the diffusers pipelines compute them."""
        context = nullcontext() if self.train_text_encoder and torch.is_grad_enabled() else torch.no_grad()
        with context:
            if self.version != SDXL:
                return self.text_encoders[0](input_ids[0])[0], None
            first = self.text_encoders[0](input_ids[0], output_hidden_states=True)
            second = self.text_encoders[1](input_ids[1], output_hidden_states=True)
            hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
            return hidden, second[0]

    def forward(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        input_ids: Sequence[torch.Tensor],
        repeat: int = 1,
        time_ids: torch.Tensor | None = None,
        encoded: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """Prediction for noisy latents; captions are encoded once and repeated `repeat` times (pairs).

        `encoded` passes text embeddings computed earlier (frozen text encoders: the
        reference and trained passes share them).
        """
        hidden, pooled = self.encode(input_ids) if encoded is None else encoded
        if repeat > 1:
            hidden = hidden.repeat(repeat, 1, 1)
            pooled = pooled.repeat(repeat, 1) if pooled is not None else None
        dtype = self.unet.conv_in.weight.dtype  # (ModelMixin.dtype walks every module: slow per call)
        added = None
        if self.version == SDXL:
            if time_ids is None:
                raise ValueError("SDXL needs time_ids (original size, crop, target size)")
            added = {"text_embeds": pooled.to(dtype), "time_ids": time_ids.to(hidden.device, dtype)}
        return self.unet(noisy_latents.to(dtype), timesteps, hidden.to(dtype), added_cond_kwargs=added).sample


def sdxl_time_ids(batch: int, resolution: int, device: torch.device) -> torch.Tensor:
    """[orig_h, orig_w, crop_top, crop_left, target_h, target_w] per sample.

    The data arrives resized and centre-cropped to the training resolution, so the
    original size is taken as the resolution and the crop as (0, 0).
    """
    row = torch.tensor([resolution, resolution, 0, 0, resolution, resolution], dtype=torch.float32, device=device)
    return row.repeat(batch, 1)
