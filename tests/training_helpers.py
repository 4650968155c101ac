"""Helpers shared by the training tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import torch


def tiny_sdxl_pipeline(seed: int = 0):
    """A random SDXL-architecture pipeline small enough for a unit test (two CLIP encoders, size conditioning)."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from lib_alignment.models.tiny import build_components

    base = build_components(seed)
    vocab = base["tokenizer"].vocab_size + len(base["tokenizer"].get_added_vocab())
    common = {"vocab_size": max(vocab, 1000), "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 77, "hidden_act": "gelu"}
    torch.manual_seed(seed)
    te1 = CLIPTextModel(CLIPTextConfig(hidden_size=32, **common))
    te2 = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=32, projection_dim=32, **common))
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=64,
        attention_head_dim=(2, 4),
        transformer_layers_per_block=(1, 2),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=32 + 6 * 8,
        norm_num_groups=32,
    )
    return StableDiffusionXLPipeline(
        vae=base["vae"],
        text_encoder=te1,
        text_encoder_2=te2,
        tokenizer=base["tokenizer"],
        tokenizer_2=base["tokenizer"],
        unet=unet,
        scheduler=base["scheduler"],
    )


def single_thread():
    """Context for training tests: tiny tensors gain nothing from intra-op threads, and on a shared
    2-core machine OpenMP spin-waiting makes them 10-20x slower; restored afterwards."""
    from contextlib import contextmanager

    @contextmanager
    def _ctx():
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    return _ctx()


def train_from_cli(data: Path, out: Path, method: str, name: str, resolution: int, batch_size: int, steps: int = 2) -> int:
    """`python -m lib_alignment train` on tiny-random, quick settings, events on stdout; its exit code."""
    from lib_alignment.cli import main

    with single_thread():
        return main([
            "train", "--method", method, "--model", "tiny-random", "--data", str(data), "--output-dir", str(out),
            "--name", name, "--resolution", str(resolution), "--batch-size", str(batch_size), "--max-train-steps", str(steps),
            "--events-stdout", "--preview", "false", "--tensorboard", "false", "--checkpoint-every", "0",
        ])
