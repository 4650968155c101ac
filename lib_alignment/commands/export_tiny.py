"""`export-tiny`: write the tiny model as a WebUI checkpoint (LDM .safetensors + .yaml + text-encoder folder).

Point DIR at the WebUI's models/Stable-diffusion folder, refresh the checkpoint
list, and pick `<name>.safetensors`; set width and height to 128.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-tiny",
        help="write the tiny model as an LDM single-file checkpoint with its yaml, for the WebUI",
        description=__doc__,
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="output folder, e.g. <webui>/models/Stable-diffusion")
    parser.add_argument("--name", default="tiny-shapes", help="file name without suffix (default: tiny-shapes)")
    parser.add_argument(
        "--source",
        default="tiny",
        help="model to export: tiny (trained, default), tiny-random, or a diffusers folder of an SD1-architecture model",
    )
    parser.set_defaults(handler=run)


def validate_name(name: str) -> str:
    """A bare file stem, so the files land inside DIR."""
    if not name or name != Path(name).name or name.startswith(".") or "/" in name or "\\" in name:
        raise ValueError(f"--name {name!r} must be a plain file name without folders or a leading dot")
    return name


def run(args: argparse.Namespace) -> int:
    from .checks import output_folder

    name = validate_name(args.name)
    args.dir = output_folder(args.dir, "DIR")  # before anything loads
    from ..quiet import quiet_libraries

    quiet_libraries()
    from ..models import load_pipeline
    from ..models.ldm_export import export_ldm_checkpoint
    from ..models.tiny import TINY_DIR, tiny_is_shipped
    if args.source == "tiny" and not tiny_is_shipped():
        raise FileNotFoundError(
            f"the trained tiny model is not shipped yet (nothing at {TINY_DIR}); "
            "export the random-weight one with --source tiny-random, or train it with tools/train_tiny_model.py"
        )
    print(f"loading {args.source} ...")
    pipe = load_pipeline(args.source, device="cpu", dtype="fp32")
    out = export_ldm_checkpoint(pipe, args.dir.expanduser() / f"{name}.safetensors")
    print(f"wrote {out.checkpoint}")
    print(f"wrote {out.yaml}")
    print(f"wrote {out.text_encoder_dir}/ (tokenizer and text-encoder config the yaml points to)")
    return 0
