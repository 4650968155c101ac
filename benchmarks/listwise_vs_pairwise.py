"""Listwise (Plackett–Luce) against pairwise DPO on the same rankings, trained tiny model.

Toy rankings of m images (one scene in m colours, ranked by a fixed colour taste)
are trained either whole (`--method listwise`) or as the m(m−1)/2 pairs each
implies (`--method dpo`), with the same images per step (listwise: B rankings;
DPO: B·m/2 pairs), the same learning rate and steps. Both are scored on the
same held-out rankings (other scenes, drawn with another seed; the toy captions
name only shape and background, so they recur): the share of implied pairs
whose better image has the higher implicit reward, after every `--every` steps.

    python benchmarks/listwise_vs_pairwise.py --seeds 0 1 2 --steps 40
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def run(method: str, seed: int, args: argparse.Namespace, root: Path) -> list[tuple[int, float]]:
    from lib_alignment.training import TrainConfig, Trainer
    from lib_alignment.training.data import load_preference_data
    from lib_alignment.training.data.rankings import rankings_to_pairs
    from lib_alignment.training.data.synthetic import make_toy_rankings
    from lib_alignment.training.validation import Validator

    train_table = make_toy_rankings(root / f"train-{seed}", args.rankings, m=args.m, resolution=args.resolution, seed=seed)
    held_table = make_toy_rankings(root / f"held-{seed}", args.held_out, m=args.m, resolution=args.resolution, seed=10_000 + seed)
    rankings = load_preference_data(train_table, method="listwise", resolution=args.resolution)
    held_out = load_preference_data(held_table, method="listwise", resolution=args.resolution)
    dataset = rankings if method == "listwise" else rankings_to_pairs(rankings)
    batch = args.batch if method == "listwise" else args.batch * args.m // 2
    config = TrainConfig(
        method=method, model="tiny", data="(in memory)", output_dir=str(root / "out"), name=f"{method}-{seed}",
        resolution=args.resolution, batch_size=batch, max_train_steps=args.steps, learning_rate=args.lr, rank=8,
        seed=seed, cache_latents=True, validation_split=0.0, checkpoint_every=0, preview=False, progress_bar=False,
        tensorboard=False, save_precision="fp32",
    )
    trainer = Trainer(config, dataset=dataset)
    trainer.setup()
    held_out.cache_latents(lambda pixels: trainer.encode_images(pixels.to(trainer.accelerator.device), sample=False).cpu())
    validator = Validator(held_out, every=args.every, draws=args.draws, seed=99, scale=1.0)
    curve: list[tuple[int, float]] = []
    trainer.listeners.append(lambda e: curve.append((e["step"], validator.score(trainer, e["step"])[0].accuracy)) if e["event"] == "step" and e["step"] % args.every == 0 else None)
    trainer.train()
    return [(0, 0.5), *curve]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--rankings", type=int, default=48)
    parser.add_argument("--held-out", type=int, default=24)
    parser.add_argument("--m", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2, help="rankings per step (DPO: the same images as pairs)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--methods", nargs="+", default=["listwise", "dpo"], choices=["listwise", "dpo"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, list[list[tuple[int, float]]]] = {m: [] for m in args.methods}
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            for method in results:
                start = time.time()
                curve = run(method, seed, args, Path(folder))
                results[method].append(curve)
                print(f"seed {seed} {method:8s} " + " ".join(f"{s}:{a:.3f}" for s, a in curve) + f"  ({time.time() - start:.0f} s)", flush=True)
    print(f"\nheld-out pairwise accuracy, mean over seeds {args.seeds} (m={args.m}, {args.rankings} rankings, lr {args.lr:g}):")
    steps = [s for s, _ in next(iter(results.values()))[0]]
    print("step  " + "  ".join(f"{s:>6d}" for s in steps))
    for method, curves in results.items():
        means = [statistics.mean(c[i][1] for c in curves) for i in range(len(steps))]
        print(f"{method:8s}" + "  ".join(f"{m:6.3f}" for m in means))
    if len(results) == 2:
        for index, step in enumerate(steps[1:], start=1):
            wins = sum(lw[index][1] > dp[index][1] for lw, dp in zip(results["listwise"], results["dpo"]))
            print(f"listwise ahead at step {step} on {wins} of {len(args.seeds)} seeds")


if __name__ == "__main__":
    main()
