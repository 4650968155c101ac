"""The built-in tiny SD1-architecture model: "tiny" (trained, shipped) and "tiny-random".

Both use the same architecture: a ~4 M-parameter UNet on 16×16×4 latents, a
~1.5 M-parameter 8×-downsampling AutoencoderKL at 128 px, a 2-layer CLIP text encoder with a
toy-world BPE vocabulary, and SD1's noise schedule. "tiny" loads the weights
`tools/train_tiny_model.py` produced (shipped under `tiny/` as safetensors);
"tiny-random" builds seeded random weights, with no zero-initialised layers, for
the fastest unit tests.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from .tiny_tokenizer import MODEL_MAX_LENGTH, vocabulary_size, write_tokenizer_files

TINY_DIR = Path(__file__).resolve().parent / "tiny"
RESOLUTION = 128
LATENT_CHANNELS = 4

UNET_CONFIG: dict[str, Any] = {
    "sample_size": RESOLUTION // 8,
    "in_channels": LATENT_CHANNELS,
    "out_channels": LATENT_CHANNELS,
    # Attention only at 8×8 and 4×4: on a CPU, 16×16 self-attention with 8-wide heads
    # costs nearly half of a training step, and colour and shape are decided coarsely.
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [32, 64, 128],
    "layers_per_block": 1,
    "cross_attention_dim": 64,
    "attention_head_dim": 4,
    "norm_num_groups": 32,
}

VAE_CONFIG: dict[str, Any] = {
    "sample_size": RESOLUTION,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": LATENT_CHANNELS,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    # 64 channels at full resolution, not 32: with 32 GroupNorm groups (LDM's fixed
    # count) 32 channels make the decoder's last norm a per-channel instance norm,
    # which erases absolute colour from flat images (colours drift, borders ring).
    "block_out_channels": [64, 64, 64, 64],
    "layers_per_block": 1,
    "norm_num_groups": 32,
    "scaling_factor": 1.0,
}

TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": MODEL_MAX_LENGTH,
    "hidden_act": "quick_gelu",
    "projection_dim": 64,
}

#: SD1's schedule, as the LDM yaml states it (linear_start/linear_end, 1000 steps).
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}


def text_config() -> Any:
    from transformers import CLIPTextConfig

    vocab = vocabulary_size()
    return CLIPTextConfig(vocab_size=vocab, bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1, **TEXT_CONFIG)


def build_components(seed: int = 0) -> dict[str, Any]:
    """Fresh, seeded random components of the tiny architecture (no weights loaded).

    Every parameter is re-drawn from a seeded normal distribution so that no
    output layer is zero and two calls with one seed give identical weights.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    generator = torch.Generator().manual_seed(seed)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    vae = AutoencoderKL(**VAE_CONFIG)
    text_encoder = CLIPTextModel(text_config())
    for module in (unet, vae, text_encoder):
        _reseed_parameters(module, generator)
    with tempfile.TemporaryDirectory(prefix="tiny-tokenizer-") as folder:
        tokenizer = CLIPTokenizer.from_pretrained(write_tokenizer_files(Path(folder)), local_files_only=True)
    for module in (unet, vae, text_encoder):
        module.eval()
    scheduler = DDIMScheduler(**SCHEDULER_CONFIG)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "scheduler": scheduler}


def _reseed_parameters(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Redraw weights: N(0, 1/fan_in) for matrices and kernels, ones+noise for norms, small biases."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.ndim >= 2:
                fan_in = param[0].numel()
                param.copy_(torch.randn(param.shape, generator=generator) / fan_in**0.5)
            elif "norm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=generator))
            else:
                param.copy_(0.02 * torch.randn(param.shape, generator=generator))


def assemble_pipeline(components: dict[str, Any]) -> Any:
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        **components,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_random_pipeline(seed: int = 0) -> Any:
    return assemble_pipeline(build_components(seed))


def tiny_is_shipped() -> bool:
    return (TINY_DIR / "model_index.json").is_file()


def tiny_pipeline() -> Any:
    """The trained tiny model, loaded from the diffusers folder shipped in the package."""
    if not tiny_is_shipped():
        raise FileNotFoundError(
            f"the trained tiny model is missing from {TINY_DIR}; run `python tools/train_tiny_model.py` to rebuild it"
        )
    from .loading import load_diffusers_folder

    # The weights are stored in fp16 to keep the package small; compute in fp32.
    return load_diffusers_folder(TINY_DIR).to(torch.float32)
