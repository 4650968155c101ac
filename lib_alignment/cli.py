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
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
