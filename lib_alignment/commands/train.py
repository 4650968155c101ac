"""`train`: train a LoRA on preferences (Diffusion-DPO, Diffusion-KTO, MaPO) or a reward (DDPO) for the WebUIs.

Every option of lib_alignment.training.TrainConfig is a flag (--max-train-steps,
--lora-alpha, ...) and a key of the optional TOML file given with --config.
Precedence: defaults < the checkpoint's options (with --resume) < TOML < flags.
Writes OUTPUT_DIR/NAME.safetensors (kohya format), NAME.json and
NAME.preview.png; checkpoints, metrics.csv, samples and events.jsonl go to the
run folder (default alignment-runs/NAME beside OUTPUT_DIR, so the LoRA folder holds
only LoRAs). Ctrl-C, SIGTERM or creating
RUN_DIR/STOP saves a checkpoint and the LoRA so far, then exits; `--resume
RUN_DIR` continues exactly. Multi-GPU: `accelerate launch -m lib_alignment train ...`.

DDPO needs no data: `--method ddpo --reward jpeg_compressibility --prompts
"a(n) [animal]" --epochs 50 --samples-per-epoch 32` samples the model, scores
the images and trains on the reward (see the "DDPO" options).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

_GROUP_TITLES = {
    "run": "what to train",
    "data": "data",
    "objective": "objective",
    "lora": "LoRA",
    "optimization": "optimisation",
    "hardware": "hardware",
    "output": "outputs and monitoring",
    "ddpo": "DDPO (reinforcement learning on a reward)",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a LoRA on preferences (DPO, KTO, MaPO) or a reward (DDPO) and write it in the WebUIs' format",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser)
    parser.set_defaults(handler=run)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, generated from the dataclass; unset flags stay absent."""
    from ..training.config import TrainConfig, field_kind

    parser.add_argument("--config", metavar="FILE.toml", default=None, help="TOML file of options (keys = option names)")
    groups: dict[str, Any] = {}
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        group_name = f.metadata.get("group", "general")
        group = groups.get(group_name)
        if group is None:
            group = groups[group_name] = parser.add_argument_group(_GROUP_TITLES.get(group_name, group_name))
        kind = field_kind(f)
        default = getattr(defaults, f.name)
        shown = "none" if default is None else (" ".join(map(str, default)) if isinstance(default, list) else default)
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": f"{f.metadata.get('help', '')} (default: {shown})"}
        if kind.startswith("bool"):
            kwargs.update(nargs="?", const="true", metavar="BOOL")
        elif kind.startswith("list["):
            kwargs.update(nargs="+", metavar="VALUE")
        else:
            kwargs.update(metavar=f.name.upper())
            if "choices" in f.metadata:
                kwargs.update(choices=list(f.metadata["choices"]), metavar="{" + ",".join(f.metadata["choices"]) + "}")
        group.add_argument("--" + f.name.replace("_", "-"), *f.metadata.get("aliases", ()), **kwargs)


def build_config(args: argparse.Namespace) -> Any:
    """Merge defaults, the resumed checkpoint's options, the TOML file and the flags, then validate."""
    from ..training.checkpoint import read_state, resolve_checkpoint
    from ..training.config import TrainConfig, load_toml

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    flags = {name: value for name, value in vars(args).items() if name in names}
    file_values = load_toml(args.config) if getattr(args, "config", None) else {}
    TrainConfig.from_dict(file_values, source=str(args.config))  # names and types of the file's keys, with its name
    resume = flags.get("resume") or file_values.get("resume")
    base: dict[str, Any] = {}
    if resume:
        saved = read_state(resolve_checkpoint(resume)).config
        base = {k: v for k, v in saved.items() if k in names and k != "resume"}
    merged = {**base, **file_values, **flags}
    return TrainConfig.from_dict(merged, source="options").validate()


def run(args: argparse.Namespace) -> int:
    from ..training import make_trainer

    try:
        config = build_config(args)
        from ..preferences.training import cli_snapshot, is_spec

        if is_spec(config.data):  # My preferences: train on a snapshot of the store, kept in the run folder
            config.data = str(cli_snapshot(config.data, config.method, config.resolved_run_dir()))
        from ..quiet import quiet_libraries

        quiet_libraries()  # the run's own progress bar stays; the libraries' loading bars go
        trainer = make_trainer(config, event_stream=sys.stdout if config.events_stdout else None)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        result = trainer.train()
    except Exception as error:
        report = getattr(error, "report", None)
        if report is not None and hasattr(report, "format_text"):
            print(report.format_text(), file=sys.stderr)
            return 2
        if isinstance(error, (ValueError, FileNotFoundError)):
            print(f"error: {error}", file=sys.stderr)
            return 2
        raise
    out = sys.stderr
    if not getattr(trainer, "is_main", True):
        return 1 if result.status == "error" else 0
    if result.status == "error":
        print(f"error: {result.message}", file=out)
        return 1
    if result.status == "finished":
        verb = "finished"
    elif result.status == "target_reached":
        verb = f"reached the reward target {config.reward_target:g} at step {result.step} of {result.total}"
    else:
        verb = f"stopped at step {result.step} of {result.total} (resume with --resume {config.resolved_run_dir()})"
    lora = result.outputs.get("lora")
    written = f"wrote {lora}" if lora else "no LoRA written (no training step was taken)"
    print(f"training {verb}; {written}", file=out)
    return 0
