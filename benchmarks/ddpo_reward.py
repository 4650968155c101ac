"""Does DDPO raise the reward? Fixed-seed JPEG compressibility before and after, against a zero-advantage control.

Both runs sample, score and train identically (same seed, same prompts); the
control zeroes every advantage, so its gradients are exactly zero and it must
not move. The evaluation samples each seed with its own generator (initial and
step noise), the same DDIM η and guidance as training, before and after.

    python benchmarks/ddpo_reward.py --model tiny --epochs 4 --seeds 100-115
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib_alignment.training import TrainConfig
from lib_alignment.training.ddpo import DDPOTrainer


class ZeroAdvantages(DDPOTrainer):
    def collect_rollout(self) -> str | None:
        reason = super().collect_rollout()
        if self.rollout is not None:
            self.rollout.advantages.zero_()
        return reason


def save_grid(path: Path, before: list, after: list) -> None:
    """Before (top row) and after (bottom row), one column per seed."""
    from PIL import Image

    size = before[0].size[0]
    grid = Image.new("RGB", (size * len(before), size * 2))
    for i, (a, b) in enumerate(zip(before, after)):
        grid.paste(a, (i * size, 0))
        grid.paste(b, (i * size, size))
    grid.save(path)


def run(args: argparse.Namespace, trainer_class: type[DDPOTrainer], seeds: list[int]) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        config = TrainConfig(
            method="ddpo", model=args.model, output_dir=folder, name="bench", reward=args.reward, prompts=[args.prompt],
            resolution=args.resolution, sample_steps=args.steps, sample_cfg_scale=5.0, samples_per_epoch=args.samples,
            rollout_batch_size=8, batch_size=8, inner_epochs=args.inner_epochs, clip_range=args.clip_range,
            timestep_fraction=args.timestep_fraction,
            num_epochs=args.epochs, learning_rate=args.learning_rate, rank=4, seed=0, checkpoint_every=0,
            preview=False, progress_bar=False, tensorboard=False,
        )
        trainer = trainer_class(config)
        prompts = [args.prompt] * len(seeds)
        images_before, before = trainer.sample_seeded(prompts, seeds)
        start = time.perf_counter()
        assert trainer.train().status == "finished"
        seconds = time.perf_counter() - start
        images_after, after = trainer.sample_seeded(prompts, seeds)
        if args.grid and trainer_class is DDPOTrainer:
            save_grid(Path(args.grid), images_before, images_after)
        rows = [line.split(",") for line in (trainer.run_dir / "metrics.csv").read_text().splitlines()]
        header, rows = rows[0], rows[1:]
        epoch_rows = [dict(zip(header, row)) for row in rows if int(row[0]) % trainer.steps_per_epoch == 0]
        gain = after - before
        return {
            "before_mean": round(float(before.mean()), 4),
            "after_mean": round(float(after.mean()), 4),
            "gain_mean": round(float(gain.mean()), 4),
            "gain_se": round(float(gain.std() / len(seeds) ** 0.5), 4),
            "improved": f"{int((gain > 0).sum())}/{len(seeds)}",
            "identical": bool(torch.equal(before, after)),
            "rollout_reward_by_epoch": [round(float(r["reward_mean"]), 3) for r in epoch_rows],
            "kl_to_base_by_epoch": [round(float(r["kl_to_base"]), 4) if r["kl_to_base"] else None for r in epoch_rows],
            "train_seconds": round(seconds, 1),
            "before": [round(v, 3) for v in before.tolist()],
            "after": [round(v, 3) for v in after.tolist()],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--reward", default="jpeg_compressibility")
    parser.add_argument("--prompt", default="a red circle on a blue background")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--samples", type=int, default=16, help="trajectories per epoch")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--inner-epochs", type=int, default=1)
    parser.add_argument("--clip-range", type=float, default=1e-3)
    parser.add_argument("--timestep-fraction", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=2e-2)
    parser.add_argument("--seeds", default="100-115", help="evaluation seeds, FIRST-LAST")
    parser.add_argument("--grid", default="", help="save the DDPO run's before/after images here (PNG)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    first, _, last = args.seeds.partition("-")
    seeds = list(range(int(first), int(last or first) + 1))
    print(json.dumps({"ddpo": run(args, DDPOTrainer, seeds), "control_zero_advantages": run(args, ZeroAdvantages, seeds)}, indent=1))


if __name__ == "__main__":
    main()
