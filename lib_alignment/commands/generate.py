"""`generate`: one image from a prompt and a seed, with its parameters in the PNG info."""

from __future__ import annotations

import argparse
from pathlib import Path

from .generation_args import add_generation_arguments, load_backend, model_name, settings_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="write one image, with the generation parameters in its PNG info")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--out", type=Path, required=True, help="output PNG file")
    parser.add_argument("--lora", type=Path, default=None, help="a kohya-format LoRA .safetensors to apply")
    parser.add_argument("--lora-weight", type=float, default=1.0)
    add_generation_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from . import checks

    checks.generation_options(args)  # all before the model loads
    out = checks.output_file(args.out, "--out")
    if args.lora is not None:
        checks.lora_file(args.lora)
    from ..quiet import quiet_libraries

    quiet_libraries()
    from ..generation import noise_from_seed
    from ..infotext import format_infotext, png_info
    from ..models import load_pipeline
    from ..paths import atomic_save_image

    pipe = load_pipeline(args.model, device=args.device, tokenizer=args.tokenizer, vae=args.vae)
    extra = {}
    if args.lora is not None:
        from ..lora_apply import apply_kohya_lora

        apply_kohya_lora(pipe, args.lora, weight=args.lora_weight)
        extra["Lora"] = f"{args.lora.stem}:{args.lora_weight:g}"
    backend = load_backend(args, pipe)
    settings = settings_from_args(args, backend)
    latents = noise_from_seed(args.seed, (1, *backend.latent_shape(settings.width, settings.height)))
    image = backend.generate(settings, latents).images[0]
    infotext = format_infotext(settings, args.seed, model_name(args.model), extra)
    atomic_save_image(image, out, pnginfo=png_info(infotext))
    print(f"wrote {out}")
    return 0
