"""Time ZO-RankSGD's own work per round on an image latent: drawing candidates, the estimate and the update.

A 4×128×128 latent (SDXL at 1024 px; SD1.5 at 512 px is 4×64×64) with m = 6 and
shell projection on. One rank round = ask (perturbations, projection, shuffle)
+ tell (rank estimate, direction update); one line round = ask (steps along the
direction) + tell (move). Target: < 10 ms per round on the CPU.

    python benchmarks/zo_overhead.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib_alignment.zo import RankSGD, rank_gradient  # noqa: E402


def main() -> int:
    torch.set_num_threads(1)  # the figure for one core; more threads barely help at this size
    shape, m, repeats = (4, 128, 128), 6, 100
    opt = RankSGD(torch.randn(shape, generator=torch.Generator().manual_seed(0)), m=m, seed=0)
    timings: dict[str, list[float]] = {}
    for i in range(repeats + 10):
        kind = opt.round_type
        start = time.perf_counter()
        opt.ask()
        asked = time.perf_counter()
        opt.tell([3, 1, 0, 5, 2, 4] if kind == "rank" else [0])
        told = time.perf_counter()
        if i >= 10:  # warm-up
            timings.setdefault(f"{kind} round: ask", []).append(asked - start)
            timings.setdefault(f"{kind} round: tell", []).append(told - asked)
            timings.setdefault(f"{kind} round: total", []).append(told - start)
    perturbations = torch.randn(m, *shape)
    for _ in range(repeats):
        start = time.perf_counter()
        rank_gradient(perturbations, [3, 1, 0])
        timings.setdefault("estimate alone", []).append(time.perf_counter() - start)
    print(f"ZO-RankSGD overhead, latent {shape}, m={m}, torch threads={torch.get_num_threads()}, undo_depth=10")
    print("  tell = rank estimate + direction update (rank) or move (line); ask = new candidates")
    for name, values in sorted(timings.items()):
        values = sorted(values)
        print(f"  {name:22s} median {1000 * statistics.median(values):6.2f} ms   p90 {1000 * values[int(0.9 * len(values))]:6.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
