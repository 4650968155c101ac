"""SD1.5-shaped models with seeded random weights, for benchmarks that need SD1.5's cost but no download."""

from __future__ import annotations

from typing import Any

import torch


def sd15_random_pipeline(full_vae: bool = True, text_layers: int = 12) -> Any:
    """SD1.5's UNet (860 M parameters) with seeded random weights and the tiny tokenizer.

    full_vae: SD1.5's VAE shape (else the tiny model's small VAE, when only the UNet's cost matters).
    text_layers: depth of the 768-wide CLIP text encoder (SD1.5 has 12).
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from lib_alignment.models.tiny import assemble_pipeline, build_components

    parts = build_components(0)
    torch.manual_seed(0)
    parts["unet"] = UNet2DConditionModel(
        sample_size=64,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768,
        attention_head_dim=8,
        layers_per_block=2,
    )
    if full_vae:
        parts["vae"] = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=2,
            sample_size=512,
            scaling_factor=0.18215,
        )
    vocab = len(parts["tokenizer"])
    parts["text_encoder"] = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=text_layers,
            num_attention_heads=12,
            max_position_embeddings=77,
            bos_token_id=vocab - 2,
            eos_token_id=vocab - 1,
            pad_token_id=vocab - 1,
        )
    )
    for module in (parts["unet"], parts["vae"], parts["text_encoder"]):
        module.eval()
    return assemble_pipeline(parts)
