"""The command line: one subcommand per module in `lib_alignment.commands`.

Each command module exposes `register(subparsers)`, which adds its parser and
sets `handler=` to a function taking the parsed namespace and returning an exit
code. Heavy imports happen inside handlers so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Command modules, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "serve",
    "generate",
    "refine",
    "export_tiny",
    "train",
    "evaluate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lib_alignment",
        description="Align Stable Diffusion with human taste: Rank & Refine, DPO/KTO/DDPO LoRA training.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module_name = f"lib_alignment.commands.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue  # a command whose module is not part of this build
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (ValueError, OSError) as error:  # bad input, a path that cannot be read or written: one line, no traceback
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _one_line(error: BaseException) -> str:
    """An exception as one line: its message, or for OSErrors without one the path and the reason."""
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split("\n")) if len(text) < 2000 else text[:2000] + " …"
