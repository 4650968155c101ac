"""Checks of command-line input that run before anything heavy loads; each failure is one ValueError naming the flag.

cli.main prints a ValueError as one `error: ...` line; these checks make sure a
wrong path or number is said in a second, not after a 30-60 s model load, and
never as a traceback.
"""

from __future__ import annotations

import argparse
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def _blocking_file(path: Path) -> Path | None:
    """The first existing non-folder among path's ancestors (which would make creating path fail)."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def output_folder(path: Path, flag: str) -> Path:
    """A folder the command may create or write into; refuses a file at the path or above it."""
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path}: this is a file; give a folder (it is created if missing)")
    blocker = _blocking_file(path)
    if blocker is not None:
        raise ValueError(f"{flag} {path}: {blocker} is a file, so the folder cannot be created there")
    return path


def output_file(path: Path, flag: str, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> Path:
    """A file the command may write; refuses a folder at the path, a file above it, or an unknown suffix."""
    path = path.expanduser()
    if path.is_dir():
        raise ValueError(f"{flag} {path}: this is a folder; give a file name such as {path / 'image.png'}")
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"{flag} {path}: the file must end in {', '.join(suffixes)}")
    blocker = _blocking_file(path)
    if blocker is not None:
        raise ValueError(f"{flag} {path}: {blocker} is a file, so nothing can be written below it")
    return path


def no_lora_tags(prompt: str, flag: str = "--prompt") -> None:
    """The command line has --lora for LoRAs; a <lora:...> tag would otherwise be fed to the text encoder."""
    from ..lora_prompt import LORA_TAG

    match = LORA_TAG.search(prompt or "")
    if match:
        raise ValueError(f"{flag}: {match.group(0)} is WebUI prompt syntax; on the command line use --lora FILE --lora-weight W")


def generation_options(args: argparse.Namespace) -> None:
    """--steps, --cfg, --size, --sampler and --negative-prompt of the generating commands, all problems in one line."""
    from ..samplers import SAMPLERS

    problems = []
    if args.steps < 1:
        problems.append(f"--steps must be at least 1 (got {args.steps})")
    if args.cfg_scale < 0:
        problems.append(f"--cfg must be at least 0 (got {args.cfg_scale:g})")
    if args.size is not None and (args.size <= 0 or args.size % 8):
        problems.append(f"--size must be a positive multiple of 8 (got {args.size})")
    if args.sampler not in SAMPLERS:
        problems.append(f"--sampler {args.sampler!r} is not one of: {', '.join(SAMPLERS)}")
    if problems:
        raise ValueError("; ".join(problems))
    model_source(args.model)
    no_lora_tags(args.prompt)
    no_lora_tags(args.negative_prompt, "--negative-prompt")


def model_source(source: str, flag: str = "--model") -> str:
    """tiny, tiny-random, or an existing file or folder (what it holds is checked when it loads)."""
    if source in ("tiny", "tiny-random"):
        return source
    if not Path(source).expanduser().exists():
        raise ValueError(f"{flag} {source}: no such file or folder (give tiny, tiny-random, a diffusers folder or a checkpoint file)")
    return source


def lora_file(path: Path, flag: str = "--lora") -> Path:
    """An existing kohya LoRA .safetensors file (its header is read, nothing else)."""
    from ..lora_prompt import check_lora_file

    path = path.expanduser()
    if not path.is_file():
        raise ValueError(f"{flag} {path}: no such file")
    try:
        check_lora_file(path)
    except ValueError as error:
        raise ValueError(f"{flag} {error}") from None
    return path
