"""`serve`: the standalone gradio app with both tabs, bound to 127.0.0.1."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="start the standalone app (both tabs and the API) on 127.0.0.1")
    parser.add_argument("--model", default="tiny", help="model source: tiny, tiny-random, a diffusers folder or a .safetensors checkpoint (default: tiny)")
    parser.add_argument("--port", type=int, default=7861, help="port on 127.0.0.1 (default: 7861)")
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/alignment"), help="where sessions and jobs are kept")
    parser.add_argument("--device", default="auto", help="cuda, mps, cpu or auto")
    parser.add_argument("--tokenizer", type=Path, default=None, help="a local CLIP tokenizer folder, for single-file checkpoints")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .checks import model_source, output_folder

    model_source(args.model)  # the model itself loads on first use: say now that it is missing
    output_folder(args.output_dir, "--output-dir")
    if not 1 <= args.port <= 65535:
        raise ValueError(f"--port must be in 1..65535 (got {args.port})")
    from ..ui.app import serve, standalone_context

    ctx = standalone_context(model=args.model, output_dir=args.output_dir, device=args.device, tokenizer=args.tokenizer)
    print(f"Alignment app on http://127.0.0.1:{args.port}/ (model: {args.model})", flush=True)
    serve(ctx, port=args.port)
    return 0
