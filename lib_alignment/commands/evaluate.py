"""`evaluate`: a blind A/B test of a LoRA against its base model, judged by an oracle or reward.

    python -m lib_alignment evaluate --lora models/Lora/my-taste.safetensors --model tiny \\
        --prompts "a circle on a green background" --seeds 1 2 3 4 --judge color:red

Base and LoRA images come from the same seeds; each pair is shown to the judge in
random left/right order. Prints the LoRA's win rate with a 95% interval and a
per-prompt table, adds the result to NAME.alignment-compare.json beside the LoRA
and notes it on its card (NAME.json). `--pairs-out FOLDER` also writes the picks as pairs.csv.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="blind A/B test of a LoRA against the base model, judged by an oracle or reward")
    parser.add_argument("--lora", type=Path, required=True, help="the LoRA .safetensors to test")
    parser.add_argument("--weight", type=float, default=1.0, help="LoRA weight (default 1)")
    parser.add_argument("--prompts", nargs="+", default=None, help="prompts to render (or --prompts-file)")
    parser.add_argument("--prompts-file", type=Path, default=None, help="a text file, one prompt per line")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--judge", required=True, help="an oracle or reward: brightness, colourfulness, color:VALUE, jpeg_size, clip:DIR, aesthetic:W,DIR, package.module:function")
    parser.add_argument("--model", default="tiny", help="the base model the LoRA was trained on (default: tiny)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", dest="cfg_scale", type=float, default=7.0)
    parser.add_argument("--shuffle-seed", type=int, default=0, help="seed of the left/right order")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tokenizer", type=Path, default=None)
    parser.add_argument("--pairs-out", type=Path, default=None, help="also write the judged pairs as FOLDER/pairs.csv (+ images) for training")
    parser.set_defaults(handler=run)


def _prompts(args: argparse.Namespace) -> list[str]:
    prompts = list(args.prompts or [])
    if args.prompts_file is not None:
        prompts += [line.strip() for line in args.prompts_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise SystemExit("evaluate: give --prompts or --prompts-file")
    return prompts


def run(args: argparse.Namespace) -> int:
    from . import checks

    checks.lora_file(args.lora)  # a real LoRA file, checked before anything loads
    checks.model_source(args.model)
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1 (got {args.steps})")
    if args.cfg_scale < 0:
        raise ValueError(f"--cfg must be at least 0 (got {args.cfg_scale:g})")
    if args.pairs_out is not None:
        checks.output_folder(args.pairs_out, "--pairs-out")
    prompts = _prompts(args)
    from ..quiet import quiet_libraries

    quiet_libraries()
    from ..generation import DiffusersBackend
    from ..jobs.compare import before_after_images
    from ..models import load_pipeline
    from ..training.ab_test import ABTest, save_images
    from ..training.ddpo.rewards import make_reward

    judge = make_reward(args.judge)  # before the model loads: a bad spec fails fast
    pipe = load_pipeline(args.model, device=args.device, tokenizer=args.tokenizer)
    backend = DiffusersBackend(pipe, model_name=args.model)
    base, lora = before_after_images(backend, args.lora, args.lora.stem, prompts, args.seeds, in_webui=False,
                                     weight=args.weight, steps=args.steps, cfg_scale=args.cfg_scale)
    test = ABTest.create(str(args.lora), args.weight, prompts, args.seeds, shuffle_seed=args.shuffle_seed)
    test.judge_with(judge.oracle, base, lora)
    test.judge = args.judge
    path = test.save()
    summary = test.summary()
    print(test.text())
    for prompt, row in summary["per_prompt"].items():
        print(f"  {prompt}: LoRA {row['lora']}, base {row['base']}, skipped {row['skipped']}")
    print(f"wrote {path}")
    if args.pairs_out is not None:
        import csv

        args.pairs_out.mkdir(parents=True, exist_ok=True)
        base_names, lora_names = save_images(args.pairs_out, base, lora)
        with (args.pairs_out / "pairs.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["caption", "image_0", "image_1", "label_0", "label_1"])
            writer.writerows(test.preference_rows(base_names, lora_names))
        print(f"wrote {args.pairs_out / 'pairs.csv'}")
    print(json.dumps({k: v for k, v in summary.items() if k != "per_prompt"}))
    return 0
