"""Command-line options shared by the commands that generate images (generate, refine)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --negative-prompt, --seed, --steps, --cfg-scale, --size, --sampler, --device, --tokenizer."""
    parser.add_argument("--model", default="tiny", help="model source: tiny, tiny-random, a diffusers folder or a .safetensors checkpoint (default: tiny)")
    parser.add_argument("--negative-prompt", default="")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", "--cfg-scale", dest="cfg_scale", type=float, default=7.0)
    parser.add_argument("--size", type=int, default=None, help="width and height in pixels (default: the model's)")
    parser.add_argument("--sampler", default="DPM++ 2M", help="DDIM, Euler, DPM++ 2M, UniPC, Heun or Euler a (default: DPM++ 2M, as in Rank & Refine)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tokenizer", type=Path, default=None, help="a local CLIP tokenizer folder, for single-file checkpoints")
    parser.add_argument("--vae", type=Path, default=None, help="a VAE file (.safetensors/.pt/.ckpt, as in the WebUI's models/VAE) replacing the model's; needed for checkpoints without VAE weights")


def model_name(source: str) -> str:
    """Short model name for infotexts: the built-in name, or the file/folder stem."""
    return source if source in ("tiny", "tiny-random") else Path(source).stem


def load_backend(args: argparse.Namespace, pipe: Any = None) -> Any:
    """A DiffusersBackend on --model (or on an already loaded pipeline)."""
    from ..generation import DiffusersBackend
    from ..models import load_pipeline

    if pipe is None:
        pipe = load_pipeline(args.model, device=args.device, tokenizer=args.tokenizer, vae=getattr(args, "vae", None))
    return DiffusersBackend(pipe, model_name=model_name(args.model))


def settings_from_args(args: argparse.Namespace, backend: Any) -> Any:
    """GenerationSettings from the shared options; square images at --size or the model's size."""
    from ..generation import GenerationSettings

    size = args.size or backend.default_size()
    return GenerationSettings(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        steps=args.steps,
        cfg_scale=args.cfg_scale,
        width=size,
        height=size,
        sampler=args.sampler,
        noise_seed=args.seed,
    )
