"""DDPO training throughput and peak memory on the real DDPOTrainer.

Runs `--epochs` epochs (after one warm-up epoch that is not counted) and
reports trajectories per second over whole epochs (sampling with log-probs,
decoding, reward, advantages and the PPO updates), seconds per epoch, the
share spent sampling, and peak memory: on CUDA `torch.cuda.max_memory_allocated`,
on the CPU the process's peak resident set (Linux VmHWM, reset after set-up so
it measures training over the loaded model) next to the resident model.

    python benchmarks/ddpo_throughput.py --model tiny --resolution 128
    python benchmarks/ddpo_throughput.py --model sd15-random --resolution 256 --samples 4 --batch 2 --steps 10

sd15-random is SD1.5's UNet (860 M parameters), VAE and 12-layer text-encoder
shapes with random weights (the tiny tokenizer), for cost, not images. CPU runs
use one thread (steadier on a shared machine); pass --threads to change.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sd15_random import sd15_random_pipeline  # benchmarks/ is on sys.path when run as a script

from lib_alignment.training import TrainConfig
from lib_alignment.training.ddpo import DDPOTrainer


def load_pipe(model: str) -> Any:
    if model == "sd15-random":
        return sd15_random_pipeline()
    from lib_alignment.models import load_pipeline

    return load_pipeline(model, device="cpu", dtype="fp32")


def ddpo_config(args: argparse.Namespace, work: Path, epochs: int) -> TrainConfig:
    return TrainConfig(
        method="ddpo",
        model=args.model,
        output_dir=str(work),
        name="bench",
        reward=args.reward,
        prompts=["a [color] [shape] on a [color] background"],
        resolution=args.resolution,
        sample_steps=args.steps,
        sample_cfg_scale=5.0,
        samples_per_epoch=args.samples,
        rollout_batch_size=args.rollout_batch or args.samples,
        batch_size=args.batch,
        num_epochs=epochs,
        kl_samples=args.kl_samples,
        rank=4,
        learning_rate=3e-4,
        mixed_precision=args.mixed_precision,
        checkpoint_every=0,
        preview=False,
        progress_bar=False,
        tensorboard=False,
        device="auto",
    )


class TimedDDPO(DDPOTrainer):
    """Records how long each epoch's sampling (and reward) took."""

    def collect_rollout(self) -> str | None:
        start = time.perf_counter()
        reason = super().collect_rollout()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.sampling_times.append(time.perf_counter() - start)
        return reason


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        trainer = TimedDDPO(ddpo_config(args, Path(folder), args.epochs + 1), pipe=load_pipe(args.model))
        trainer.sampling_times = []
        epoch_ends: list[float] = []
        trainer.setup()
        per_epoch = trainer.steps_per_epoch

        def on_event(event: dict[str, Any]) -> None:
            if event["event"] == "step" and event["step"] % per_epoch == 0:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                epoch_ends.append(time.perf_counter())

        trainer.listeners.append(on_event)
        cuda = trainer.accelerator.device.type == "cuda"
        resident_kb = _status_kb("VmRSS")
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            resident_gpu = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        start = time.perf_counter()
        result = trainer.train()
        assert result.status == "finished", result
        durations = [b - a for a, b in zip([start, *epoch_ends], epoch_ends)][1:]  # drop the warm-up epoch
        sampling = trainer.sampling_times[1:]
        samples = args.samples * trainer.world
        report: dict[str, Any] = {
            "model": args.model,
            "device": str(trainer.accelerator.device),
            "resolution": args.resolution,
            "steps": args.steps,
            "samples_per_epoch": samples,
            "batch": args.batch,
            "epochs_timed": len(durations),
            "seconds_per_epoch": round(statistics.median(durations), 3),
            "samples_per_second": round(samples / statistics.median(durations), 3),
            "sampling_share": round(statistics.median(s / d for s, d in zip(sampling, durations)), 3),
        }
        if cuda:
            report["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            report["resident_gpu_gib"] = round(resident_gpu / 2**30, 2)
        else:
            report["peak_rss_gib"] = round(_status_kb("VmHWM") / 2**20, 2)
            report["resident_rss_gib"] = round(resident_kb / 2**20, 2)
        return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny, tiny-random, sd15-random, or a model source")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps per trajectory")
    parser.add_argument("--samples", type=int, default=16, help="trajectories per epoch")
    parser.add_argument("--rollout-batch", type=int, default=0, help="trajectories sampled together (default: all of the epoch)")
    parser.add_argument("--batch", type=int, default=4, help="trajectories per training micro-batch")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (one more runs first as warm-up)")
    parser.add_argument("--kl-samples", type=int, default=2)
    parser.add_argument("--reward", default="jpeg_compressibility")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
