"""Rank & Refine with an automatic oracle against best-of-N random seeds, on an SD1.5-sized latent and the tiny model.

Every setting runs whole Rank & Refine sessions (rank rounds alternating with
line-search rounds, the tab's defaults m, μ and lr unless given, shell projection
on) with an oracle ranking the candidates, and checks two claims:

* the current point's score never decreases from one round to the next (it only
  moves to a candidate the oracle ranked above it), and
* the final current point beats the best of N images from fresh random seeds,
  N = the number of images the session rendered (line rounds re-show the current
  image and the last rank round's best without rendering them again).

Settings:
  latent   an SD1.5-sized latent (4×64×64) scored by a hidden "taste": the cosine
           between the latent's 8×8-pooled layout and a random target layout. It
           runs `RankSGD` directly (no pixels), so it is fast and many seeds fit.
  tiny     the shipped tiny model through `RefineSession` and `DiffusersBackend`
           at its native 128 px (latent 4×16×16), DDIM 20 steps, guidance 6, with
           the built-in pixel oracles.
  tiny512  the same at 512 px, whose latent is SD1.5's 4×64×64 (DDIM 10 steps).

    python benchmarks/zo_refine_quality.py                       # all settings (~15 min on 2 busy cores)
    python benchmarks/zo_refine_quality.py --settings latent tiny --seeds 4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib_alignment.generation import DiffusersBackend, GenerationResult, GenerationSettings, noise_from_seed
from lib_alignment.oracles import make_oracle, order_from_scores
from lib_alignment.refine import RefineParams, RefineSession
from lib_alignment.zo import RankSGD

DEFAULTS = RefineParams()  # the tab's defaults
M = DEFAULTS.m
BEST_OF_N_SEED_BASE = 10_000  # random seeds for best-of-N never overlap the sessions' seeds


@dataclass
class Outcome:
    """One session: the current point's score per round, the images it rendered, and best-of-N."""

    setting: str
    oracle: str
    seed: int
    current_scores: list[float]
    rendered: int
    best_of_n: float

    @property
    def monotone(self) -> bool:
        return all(b >= a for a, b in zip(self.current_scores, self.current_scores[1:]))

    @property
    def final(self) -> float:
        return self.current_scores[-1]

    @property
    def beats_best_of_n(self) -> bool:
        return self.final > self.best_of_n


# ----- setting "latent": a hidden taste over an SD1.5-sized latent ------------------------


class LatentTaste:
    """Cosine between a latent's 8×8-pooled layout and a hidden target: smooth, bounded, blind to fine noise."""

    def __init__(self, seed: int, shape: Sequence[int] = (4, 64, 64), pool: int = 8) -> None:
        self.pool = pool
        pooled = (shape[0], shape[1] // pool, shape[2] // pool)
        self.target = torch.randn(pooled, generator=torch.Generator().manual_seed(seed)).flatten()

    def score(self, latents: torch.Tensor) -> list[float]:
        pooled = torch.nn.functional.avg_pool2d(latents.float(), self.pool).flatten(1)
        return torch.nn.functional.cosine_similarity(pooled, self.target[None], dim=1).tolist()


def run_latent(seed: int, rounds: int, mu: float, lr: float) -> Outcome:
    taste = LatentTaste(seed + 500)
    x0 = noise_from_seed(seed, (4, 64, 64))
    opt = RankSGD(x0, m=M, mu=mu, lr=lr, line_search=True, project_to_shell=True, seed=seed)
    scores = [taste.score(x0[None])[0]]
    rendered = 1  # the starting image
    known = [x0]
    for _ in range(rounds):
        candidates = opt.ask()
        rendered += sum(not any(torch.equal(c, k) for k in known) for c in candidates)
        known = [*candidates.unbind(0), opt.x]
        opt.tell(order_from_scores(taste.score(candidates)))
        scores.append(taste.score(opt.x[None])[0])
    random_points = torch.stack(
        [noise_from_seed(BEST_OF_N_SEED_BASE + seed * 1000 + i, (4, 64, 64)) for i in range(rendered)]
    )
    return Outcome("latent 4×64×64", "hidden taste", seed, scores, rendered, max(taste.score(random_points)))


# ----- settings "tiny" / "tiny512": real sessions through the diffusers backend ----------


class CountingBackend:
    """A DiffusersBackend that counts the images it renders."""

    def __init__(self, inner: DiffusersBackend) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.rendered = 0

    def latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
        return self.inner.latent_shape(width, height)

    def default_size(self) -> int:
        return self.inner.default_size()

    def generate(
        self, settings: GenerationSettings, initial_latents: torch.Tensor, prompts: Any = None, progress: Any = None
    ) -> GenerationResult:
        self.rendered += int(initial_latents.shape[0])
        return self.inner.generate(settings, initial_latents, prompts=prompts, progress=progress)


def run_tiny(
    backend: DiffusersBackend,
    settings: GenerationSettings,
    oracle_spec: str,
    seed: int,
    rounds: int,
    label: str,
    params: RefineParams,
) -> Outcome:
    oracle = make_oracle(oracle_spec)
    counting = CountingBackend(backend)
    with tempfile.TemporaryDirectory(prefix="refine-bench-") as folder:
        session = RefineSession.create(folder, counting, settings, seed, replace(params, optimizer_seed=seed))
        current = session.start()
        scores = [oracle.score([current.current_image], settings.prompt)[0]]
        for _ in range(rounds):
            current = session.rank(order_from_scores(oracle.score(current.images, settings.prompt)))
            scores.append(oracle.score([current.current_image], settings.prompt)[0])
    n = counting.rendered
    shape = backend.latent_shape(settings.width, settings.height)
    best = -float("inf")
    for start in range(0, n, M):  # best-of-N in batches of m, as a person would generate them
        noise = torch.stack(
            [noise_from_seed(BEST_OF_N_SEED_BASE + seed * 1000 + i, shape) for i in range(start, min(n, start + M))]
        )
        best = max(best, max(oracle.score(backend.generate(settings, noise).images, settings.prompt)))
    return Outcome(label, oracle.name, seed, scores, n, best)


def report(outcomes: list[Outcome]) -> None:
    print(
        f"\n  {'setting':16s} {'oracle':18s} {'seed':>4s} {'start':>9s} {'final':>9s} {'best-of-N':>10s} {'N':>4s}  monotone  beats"
    )
    for o in outcomes:
        print(
            f"  {o.setting:16s} {o.oracle:18s} {o.seed:4d} {o.current_scores[0]:9.4f} {o.final:9.4f} {o.best_of_n:10.4f}"
            f" {o.rendered:4d}  {'yes' if o.monotone else 'NO':8s}  {'yes' if o.beats_best_of_n else 'no'}"
        )
    groups: dict[tuple[str, str], list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault((o.setting, o.oracle), []).append(o)
    print(
        f"\n  {'setting':16s} {'oracle':18s} {'median gain over start':>24s} {'median margin over best-of-N':>30s}  monotone  beats"
    )
    for (setting, oracle), runs in groups.items():
        gain = statistics.median(o.final - o.current_scores[0] for o in runs)
        margin = statistics.median(o.final - o.best_of_n for o in runs)
        print(
            f"  {setting:16s} {oracle:18s} {gain:24.4f} {margin:30.4f}  {sum(o.monotone for o in runs)}/{len(runs):<6d}"
            f"  {sum(o.beats_best_of_n for o in runs)}/{len(runs)}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--settings", nargs="*", default=["latent", "tiny", "tiny512"], choices=["latent", "tiny", "tiny512"]
    )
    parser.add_argument(
        "--seeds", type=int, default=3, help="sessions per setting and oracle (seeds 0 … N−1; latent uses 4×)"
    )
    parser.add_argument(
        "--rounds", type=int, default=16, help="rankings per session (16: 8 rank + 8 line-search rounds)"
    )
    parser.add_argument("--oracles", nargs="*", default=["color:#ff0000", "jpeg_size:smaller", "colourfulness"])
    parser.add_argument(
        "--model", default="tiny", help="model source for the tiny settings (default: the shipped tiny model)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--mu", type=float, default=DEFAULTS.mu, help=f"perturbation scale (default: the tab's {DEFAULTS.mu})"
    )
    parser.add_argument(
        "--lr", type=float, default=DEFAULTS.lr, help=f"line-search step (default: the tab's {DEFAULTS.lr})"
    )
    args = parser.parse_args()
    print(f"m = {M}, mu = {args.mu}, lr = {args.lr}, {args.rounds} rounds")
    torch.set_num_threads(args.threads)
    started = time.time()
    outcomes: list[Outcome] = []
    if "latent" in args.settings:
        outcomes += [run_latent(seed, args.rounds, args.mu, args.lr) for seed in range(4 * args.seeds)]
        print(f"latent done ({time.time() - started:.0f} s)", flush=True)
    tiny_settings = [s for s in args.settings if s.startswith("tiny")]
    if tiny_settings:
        from lib_alignment.models import load_pipeline

        backend = DiffusersBackend(load_pipeline(args.model, device="cpu"), args.model)
        backend.pipe.set_progress_bar_config(disable=True)
        for name in tiny_settings:
            size, steps = (128, 20) if name == "tiny" else (512, 10)
            settings = GenerationSettings(
                prompt="a red circle on a white background",
                steps=steps,
                cfg_scale=6.0,
                width=size,
                height=size,
                sampler="DDIM",
            )
            label = f"{name} {size}px"
            oracles = args.oracles if name == "tiny" else args.oracles[:1]
            seeds = args.seeds if name == "tiny" else max(1, args.seeds - 1)
            for spec in oracles:
                for seed in range(seeds):
                    outcomes.append(
                        run_tiny(
                            backend, settings, spec, seed, args.rounds, label, replace(DEFAULTS, mu=args.mu, lr=args.lr)
                        )
                    )
                    o = outcomes[-1]
                    print(
                        f"{label} {o.oracle} seed {seed}: {o.current_scores[0]:.4f} → {o.final:.4f}, best-of-{o.rendered} {o.best_of_n:.4f} ({time.time() - started:.0f} s)",
                        flush=True,
                    )
    report(outcomes)
    print(f"\ntotal {time.time() - started:.0f} s")
    return 0 if all(o.monotone for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
