"""One Rank & Refine round against generating the same m images in one plain batch.

A round is `RefineSession.rank(order)`: the optimiser's tell and ask, rendering the
next round's new candidates through `DiffusersBackend` in one batch, and writing
its round folder (candidate PNGs, latents, optimiser state, record; atomic); it is
counted under the type of the round it produces. The plain
batch is the diffusers pipeline called directly for m images with the same
prompt, sampler, steps, guidance, size and initial latents. Both are timed
alternately on the same model; medians. Rank rounds render m new images; line
rounds render m − 2 (they re-show the current image and the last rank round's
best), and are compared with the same plain batch of m. Target: ≤ 1.10×.

    python benchmarks/refine_round_overhead.py                       # tiny model, 128 px and 512 px
    python benchmarks/refine_round_overhead.py --sizes 128 --rounds 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib_alignment.generation import DiffusersBackend, GenerationSettings, noise_from_seed
from lib_alignment.models import load_pipeline
from lib_alignment.refine import RefineSession


def plain_batch(pipe, settings: GenerationSettings, latents: torch.Tensor) -> float:
    """Seconds for the pipeline's own call on these latents, PIL images out (what a plain batch costs a user)."""
    start = time.perf_counter()
    with torch.inference_mode():
        pipe(
            prompt=[settings.prompt] * latents.shape[0],
            num_inference_steps=settings.steps,
            guidance_scale=settings.cfg_scale,
            width=settings.width,
            height=settings.height,
            latents=latents,
            output_type="pil",
        )
    return time.perf_counter() - start


def measure(backend: DiffusersBackend, size: int, steps: int, m: int, rounds: int) -> dict[str, list[float]]:
    settings = GenerationSettings(
        prompt="a red circle on a white background", steps=steps, cfg_scale=6.0, width=size, height=size, sampler="DDIM"
    )
    pipe = backend.pipe
    pipe.scheduler = backend._scheduler("DDIM")  # the plain call uses the same sampler as the session
    shape = backend.latent_shape(size, size)
    times: dict[str, list[float]] = {"rank": [], "line": [], "plain": []}
    with tempfile.TemporaryDirectory(prefix="round-overhead-") as folder:
        session = RefineSession.create(folder, backend, settings, seed=0, m=m)
        current = session.start()
        plain_batch(pipe, settings, torch.stack([noise_from_seed(i, shape) for i in range(m)]))  # warm-up
        for r in range(rounds):
            order = list(range(len(current.images)))
            start = time.perf_counter()
            current = session.rank(order)  # tells this round, then asks and renders the next one
            times[current.round_type].append(time.perf_counter() - start)
            times["plain"].append(
                plain_batch(pipe, settings, torch.stack([noise_from_seed(100 * r + i, shape) for i in range(m)]))
            )
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--sizes", type=int, nargs="*", default=[128, 512])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--m", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=8, help="rounds per size (half rank, half line search)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backend = DiffusersBackend(load_pipeline(args.model, device="cpu"), args.model)
    backend.pipe.set_progress_bar_config(disable=True)
    print(f"{args.model}, m = {args.m}, DDIM {args.steps} steps, guidance 6, torch threads {torch.get_num_threads()}")
    print(f"  {'size':>6s} {'plain batch':>12s} {'rank round':>11s} {'ratio':>6s} {'line round':>11s} {'ratio':>6s}")
    for size in args.sizes:
        times = measure(backend, size, args.steps, args.m, args.rounds)
        plain = statistics.median(times["plain"])
        rank, line = statistics.median(times["rank"]), statistics.median(times["line"])
        print(
            f"  {size:4d}px {plain:10.3f} s {rank:9.3f} s {rank / plain:5.2f}× {line:9.3f} s {line / plain:5.2f}×",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
