"""Overhead of a DPO / KTO / MaPO training step over the model passes it cannot avoid.

Time: one optimizer step of the real Trainer (text encoding, adapter switching,
loss, clipping, AdamW) divided by one forward+backward of the LoRA UNet plus
one no-grad forward (MaPO, which has no reference pass: forward+backward only),
on the same latents, timesteps and text embeddings; the two are timed
alternately and the medians compared.
Memory: each method's step runs in a fresh process; the peak resident memory
(Linux VmHWM, reset just before the steps) is compared with a plain LoRA
fine-tuning step (the ordinary denoising loss on the same images, same Trainer).
Reported both as total peak and as the step's growth over the resident model.

    python benchmarks/training_overhead.py --model tiny-random --resolution 128
    python benchmarks/training_overhead.py --model sd15-random --resolution 128 --repeats 3

CPU numbers use one thread (steadier on a shared machine); pass --threads to change.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sd15_random import sd15_random_pipeline  # benchmarks/ is on sys.path when run as a script

from lib_alignment.training import TrainConfig, Trainer
from lib_alignment.training.methods import Errors, Method, MethodOutput


class PlainLoRA(Method):
    """The ordinary denoising loss over every image: the baseline fine-tuning step."""

    name = "plain"
    data_kind = "pairs"
    needs_reference = False
    metric_names = ()

    def loss(self, errors: Errors, batch: dict[str, Any], reduce_mean: Any = None) -> MethodOutput:
        return MethodOutput(loss=errors.policy.mean(), metrics={})


def make_data(folder: Path, kind: str, n: int, resolution: int) -> Path:
    from lib_alignment.training.data.synthetic import make_toy_kto, make_toy_pairs

    if kind == "labeled":
        return make_toy_kto(folder / "kto", n, resolution=resolution, seed=0)
    return make_toy_pairs(folder / "pairs", n, resolution=resolution, seed=0)


def build_trainer(args: argparse.Namespace, method: str, work: Path) -> Trainer:
    kind = "labeled" if method == "kto" else "pairs"
    batch = args.pairs * 2 if kind == "labeled" else args.pairs
    data = make_data(work, kind, max(8, batch * 2), args.resolution)
    config = TrainConfig(
        method="dpo" if method == "plain" else method,
        model=args.model,
        data=str(data),
        output_dir=str(work / "out"),
        name=method,
        resolution=args.resolution,
        batch_size=batch,
        max_train_steps=1000,
        cache_latents=True,
        checkpoint_every=0,
        preview=False,
        progress_bar=False,
        tensorboard=False,
        positive_ratio=None,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    pipe = sd15_random_pipeline(full_vae=False, text_layers=1) if args.model == "sd15-random" else None
    if pipe is not None:
        config.model = "sd15-random"
    trainer = Trainer(config, pipe=pipe)
    trainer.setup()
    if method == "plain":
        trainer.method = PlainLoRA(1.0)
    return trainer


def pass_timer(trainer: Trainer, with_reference: bool):
    """A function timing one LoRA UNet forward+backward (plus one no-grad forward) on a training batch."""
    batch = next(iter(trainer.loader))
    latents = batch["latents"].to(trainer.accelerator.device)
    timesteps, noise = trainer.draw_noise(latents, pairs=latents.shape[0] == 2 * len(batch["caption"]))
    noisy, target = trainer.noisy_and_target(latents, noise, timesteps)
    captions = list(batch["caption"])
    repeat = latents.shape[0] // len(captions)
    with torch.no_grad():
        hidden, _ = trainer.denoiser.encode(trainer.denoiser.tokenize(captions, latents.device))
    hidden = hidden.repeat(repeat, 1, 1)
    unet = trainer.pipe.unet

    def run() -> float:
        start = time.perf_counter()
        out = unet(noisy, timesteps, hidden).sample
        torch.nn.functional.mse_loss(out.float(), target.float()).backward()
        if with_reference:
            with torch.no_grad():
                unet(noisy, timesteps, hidden)
        elapsed = time.perf_counter() - start
        unet.zero_grad(set_to_none=True)
        return elapsed

    return run


def time_method(trainer: Trainer, repeats: int) -> tuple[float, float]:
    """Median seconds of (a training step, the unavoidable passes), measured alternately so load drifts hit both."""
    batches = iter(trainer.loader)
    passes = pass_timer(trainer, with_reference=trainer.method.needs_reference)
    trainer.train_step(batches)  # warm-up (optimizer state)
    passes()
    steps, bare = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        trainer.train_step(batches)
        steps.append(time.perf_counter() - start)
        bare.append(passes())
    return statistics.median(steps), statistics.median(bare)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_memory(args: argparse.Namespace, method: str) -> dict[str, float]:
    """Run in a fresh process: resident MB before the steps and peak MB during them."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(args, method, Path(tmp))
        batches = iter(trainer.loader)
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = _status_kb("VmRSS")
        for _ in range(2):
            trainer.train_step(batches)
        peak = _status_kb("VmHWM")
    return {"resident_mb": before / 1024, "peak_mb": peak / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-random", help="tiny-random, tiny, sd15-random, or a model source")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=2, help="pairs per batch (KTO gets twice as many single images)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--methods", nargs="+", default=["dpo", "kto", "mapo"])
    parser.add_argument("--memory-only", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_only:
        print(json.dumps(measure_memory(args, args.memory_only)))
        return

    results: dict[str, Any] = {"model": args.model, "resolution": args.resolution, "pairs": args.pairs, "threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            trainer = build_trainer(args, method, Path(tmp) / method)
            step, passes = time_method(trainer, args.repeats)
            results[method] = {"step_s": round(step, 4), "passes_s": round(passes, 4), "time_ratio": round(step / passes, 3)}
            print(method, results[method], flush=True)
            del trainer
    memory = {}
    for method in ["plain", *args.methods]:
        command = [sys.executable, __file__, "--memory-only", method, "--model", args.model, "--resolution", str(args.resolution),
                   "--pairs", str(args.pairs), "--threads", str(args.threads)] + (["--gradient-checkpointing"] if args.gradient_checkpointing else [])
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        memory[method] = json.loads(out.strip().splitlines()[-1])
        print("memory", method, memory[method], flush=True)
    plain = memory["plain"]
    for method in args.methods:
        m = memory[method]
        results[method]["peak_ratio"] = round(m["peak_mb"] / plain["peak_mb"], 3)
        growth, plain_growth = m["peak_mb"] - m["resident_mb"], plain["peak_mb"] - plain["resident_mb"]
        results[method]["step_growth_ratio"] = round(growth / plain_growth, 3) if plain_growth > 1 else None
    results["memory_mb"] = memory
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
