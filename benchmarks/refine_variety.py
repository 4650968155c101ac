"""How different the candidates of a Rank & Refine round look at each μ, and what the defaults cost in quality.

Two questions decide the tab's variety choice and step schedule (issue 14):

1. Variety: the mean absolute pixel difference (0–255 scale, averaged over
   every pair of the m = 6 candidates of a first round) at each μ, on the shipped
   tiny model at 128 px (latent 4×16×16, DDIM 20 steps) and at 512 px, where the
   latent has SD1.5's size (4×64×64) and is sampled by the tiny UNet and decoded
   by its VAE (DDIM 10 steps). Candidates count as visibly different from
   THRESHOLD = 8/255 mean abs difference on.
2. Quality per judgement: whole oracle-ranked sessions with the old defaults
   (μ = 0.3, constant step) and the new ones (the "medium" μ, step shrinking by
   DEFAULT_SHRINK after a line round that does not move): the median gain of the
   current image's score over the start per ranking, on the SD1.5-sized latent
   taste (12 sessions) and on the tiny model with pixel oracles.

    python benchmarks/refine_variety.py                 # ~15 min on 2 busy cores
    python benchmarks/refine_variety.py --skip-quality  # variety only
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from zo_refine_quality import LatentTaste, run_tiny  # noqa: E402 - the shared harness

from lib_alignment.generation import DiffusersBackend, GenerationSettings, noise_from_seed  # noqa: E402
from lib_alignment.oracles import order_from_scores  # noqa: E402
from lib_alignment.refine import RefineParams  # noqa: E402
from lib_alignment.zo import DEFAULT_SHRINK, VARIETY, RankSGD  # noqa: E402

THRESHOLD = 8.0  # mean abs difference, 0–255 scale
M = 6
PROMPT = "a red circle on a white background"


def pair_difference(images: list) -> float:
    """Mean abs pixel difference (0–255) over every pair of images."""
    arrays = [np.asarray(im.convert("RGB"), dtype=np.float32) for im in images]
    return float(np.mean([np.abs(a - b).mean() for a, b in itertools.combinations(arrays, 2)]))


def variety(backend: DiffusersBackend, size: int, steps: int, mus: list[float], seeds: int) -> dict[float, list[float]]:
    settings = GenerationSettings(prompt=PROMPT, steps=steps, cfg_scale=6.0, width=size, height=size, sampler="DDIM")
    shape = backend.latent_shape(size, size)
    out: dict[float, list[float]] = {}
    for mu in mus:
        for seed in range(seeds):
            opt = RankSGD(noise_from_seed(seed, shape), m=M, mu=mu, seed=seed)
            images = backend.generate(settings, opt.ask()).images
            out.setdefault(mu, []).append(pair_difference(images))
        print(f"  {size} px, mu {mu:g}: {statistics.mean(out[mu]):.1f}/255", flush=True)
    return out


def latent_gain_per_judgement(seed: int, rounds: int, mu: float, lr: float, shrink: float) -> float:
    taste = LatentTaste(seed + 500)
    x0 = noise_from_seed(seed, (4, 64, 64))
    opt = RankSGD(x0, m=M, mu=mu, lr=lr, seed=seed, shrink=shrink)
    start = taste.score(x0[None])[0]
    for _ in range(rounds):
        opt.tell(order_from_scores(taste.score(opt.ask())))
    return (taste.score(opt.x[None])[0] - start) / rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mus", type=float, nargs="*", default=[0.1, 0.15, 0.3, 0.45, 0.6, 1.0])
    parser.add_argument("--seeds", type=int, default=2, help="first rounds per μ and size")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--tiny-seeds", type=int, default=2, help="tiny sessions per oracle and configuration")
    parser.add_argument("--oracles", nargs="*", default=["color:#ff0000", "jpeg_size:smaller", "colourfulness"])
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="*", default=[128, 512], help="128: 20 DDIM steps; larger: 10")
    parser.add_argument("--skip-tiny-quality", action="store_true", help="quality on the latent taste only")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    from lib_alignment.models import load_pipeline

    backend = DiffusersBackend(load_pipeline("tiny", device="cpu"), "tiny")
    backend.pipe.set_progress_bar_config(disable=True)
    print(f"Variety: mean abs pixel difference between the {M} candidates of a first round (threshold {THRESHOLD:g}/255)")
    table = {size: variety(backend, size, 20 if size <= 128 else 10, args.mus, args.seeds) for size in args.sizes}
    print(f"\n  {'mu':>5s} " + " ".join(f"{f'{size} px':>10s}" for size in table) + "  word")
    for mu in args.mus:
        word = next((w for w, v in VARIETY.items() if abs(v - mu) < 1e-9), "")
        cells = " ".join(f"{statistics.mean(table[size][mu]):10.1f}" for size in table)
        print(f"  {mu:5g} {cells}  {word}")
    print(f"({time.time() - started:.0f} s)", flush=True)
    if args.skip_quality:
        return 0
    configs = {
        "old (mu 0.3, constant step)": RefineParams(mu=0.3, lr=3.0, shrink=1.0),
        f"new (mu {VARIETY['medium']:g}, shrink {DEFAULT_SHRINK:g})": RefineParams(),
    }
    print(f"\nQuality per judgement ({args.rounds} rankings per session): median gain of the current image's score per ranking")
    for name, params in configs.items():
        gains = [latent_gain_per_judgement(s, args.rounds, params.mu, params.lr, params.shrink) for s in range(12)]
        print(f"  latent 4×64×64 taste, 12 sessions, {name}: {statistics.median(gains):+.5f} per ranking", flush=True)
    if args.skip_tiny_quality:
        return 0
    settings = GenerationSettings(prompt=PROMPT, steps=20, cfg_scale=6.0, width=128, height=128, sampler="DDIM")
    for spec in args.oracles:
        for name, params in configs.items():
            outcomes = [
                run_tiny(backend, settings, spec, seed, args.rounds, "tiny", replace(params)) for seed in range(args.tiny_seeds)
            ]
            gains = [(o.final - o.current_scores[0]) / args.rounds for o in outcomes]
            beats = sum(o.beats_best_of_n for o in outcomes)
            print(
                f"  tiny 128 px, {spec}, {len(outcomes)} sessions, {name}: {statistics.median(gains):+.5f} per ranking, "
                f"beats best-of-N {beats}/{len(outcomes)} ({time.time() - started:.0f} s)",
                flush=True,
            )
    print(f"\ntotal {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
