"""`generate`: one image from a prompt and a seed, with its parameters in the PNG info."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="write one image, with the generation parameters in its PNG info")
    parser.add_argument("--model", default="tiny", help="model source (default: tiny)")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative-prompt", default="")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="output PNG file")
    parser.add_argument("--lora", type=Path, default=None, help="a kohya-format LoRA .safetensors to apply")
    parser.add_argument("--lora-weight", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg-scale", type=float, default=7.0)
    parser.add_argument("--size", type=int, default=None, help="width and height in pixels (default: the model's)")
    parser.add_argument("--sampler", default="DDIM")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tokenizer", type=Path, default=None, help="a local CLIP tokenizer folder, for single-file checkpoints")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..generation import DiffusersBackend, GenerationSettings, noise_from_seed
    from ..infotext import format_infotext, png_info
    from ..models import load_pipeline
    from ..paths import atomic_save_image

    pipe = load_pipeline(args.model, device=args.device, tokenizer=args.tokenizer)
    extra = {}
    if args.lora is not None:
        from ..lora_apply import apply_kohya_lora

        apply_kohya_lora(pipe, args.lora, weight=args.lora_weight)
        extra["Lora"] = f"{args.lora.stem}:{args.lora_weight:g}"
    model_name = args.model if args.model in ("tiny", "tiny-random") else Path(args.model).stem
    backend = DiffusersBackend(pipe, model_name=model_name)
    size = args.size or backend.default_size()
    settings = GenerationSettings(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        steps=args.steps,
        cfg_scale=args.cfg_scale,
        width=size,
        height=size,
        sampler=args.sampler,
        noise_seed=args.seed,
    )
    latents = noise_from_seed(args.seed, (1, *backend.latent_shape(size, size)))
    image = backend.generate(settings, latents).images[0]
    infotext = format_infotext(settings, args.seed, model_name, extra)
    atomic_save_image(image, args.out, pnginfo=png_info(infotext))
    print(f"wrote {args.out}")
    return 0
