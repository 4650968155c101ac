"""Training data at scale: memory and time to the first step against the set's size; data vs UNet throughput.

1. Scale. Synthetic sets in Pick-a-Pic v2's exact layout (data/train-XXXXX-of-NNNNN.parquet,
   18 columns, 32x32 noise JPEGs made unique per row, so nothing compresses) at 2 K, 50 K and
   500 K pairs, written once into a temporary folder. For each, a fresh process runs the real
   Trainer (tiny-random model, DPO, batch 4, 64 px) to its first optimizer step; we report the
   peak resident memory (Linux VmHWM) and the wall time from process start to the end of that
   step (and the process's CPU time, steadier than wall time on a shared machine), all as ratios
   against the 2 K run (targets: memory <= 1.1x, time <= 1.3x), and the
   structural check's own time on the largest set.
2. Throughput. Items (pairs) decoded, cropped, resized and collated per second by the
   DataLoader over a set of 512x512 noise JPEGs (a decode at least as costly as a photo's),
   with the default workers (0) and with 2, against the pairs per second one DPO step of the
   UNet consumes (policy forward+backward and reference forward over both images): on the tiny
   model at 64 px and on an SD1.5-sized UNet (860 M parameters, random weights) at 512 px.
   The data side should be at least 3x the step's need.

    python benchmarks/data_scale.py                   # everything (about 15 min on 2 busy cores)
    python benchmarks/data_scale.py --sizes 2000 50000 --skip-throughput

CPU numbers use one torch thread (steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def first_step(folder: str, resolution: int) -> dict[str, Any]:
    """In this (fresh) process: the Trainer up to its first optimizer step; seconds and peak RSS."""
    import torch

    torch.set_num_threads(1)
    from lib_alignment.training import TrainConfig, Trainer
    from lib_alignment.training.data import load_preference_data

    start = time.perf_counter()
    data = load_preference_data(folder, "dpo", resolution=resolution)
    scan = time.perf_counter() - start
    config = TrainConfig(method="dpo", model="tiny-random", data=folder, output_dir=tempfile.mkdtemp(), name="scale", resolution=resolution,
                         batch_size=4, max_train_steps=1, checkpoint_every=0, preview=False, progress_bar=False, tensorboard=False,
                         validation_split=0, save_precision="fp32")
    trainer = Trainer(config, dataset=data)
    trainer.setup()
    out = trainer.train_step(trainer._guarded_batches())
    return {"scan_s": scan, "items": len(data), "loss": out.loss}


def _child(folder: str, resolution: int) -> dict[str, Any]:
    code = (
        "import json, sys, time; t0 = time.perf_counter(); sys.path.insert(0, %r); sys.path.insert(0, %r)\n"
        "import data_scale\n"
        "r = data_scale.first_step(%r, %d); r['total_s'] = time.perf_counter() - t0; r['rss_mb'] = data_scale._peak_rss_mb()\n"
        "import resource; u = resource.getrusage(resource.RUSAGE_SELF); r['cpu_s'] = u.ru_utime + u.ru_stime\n"
        "print('RESULT' + json.dumps(r))\n"
    ) % (str(ROOT), str(ROOT / "benchmarks"), folder, resolution)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT"))[6:])


def scale(sizes: list[int], workdir: Path, repeats: int) -> None:
    from lib_alignment.training.data.synthetic import make_pickapic_shards

    results: dict[int, dict[str, Any]] = {}
    for n in sizes:
        folder = workdir / f"pickapic-{n}"
        if not (folder / "data").is_dir():
            t = time.perf_counter()
            make_pickapic_shards(folder, n, shards=max(2, n // 25_000), rows_per_group=1000, image_size=32, seed=n, tie_fraction=0.1, pool=512)
            size = sum(f.stat().st_size for f in (folder / "data").iterdir())
            print(f"wrote {n} rows ({size / 2**20:.0f} MiB) in {time.perf_counter() - t:.0f} s", flush=True)
        runs = [_child(str(folder), 64) for _ in range(repeats)]
        best = {k: min(r[k] for r in runs) for k in ("total_s", "rss_mb", "scan_s", "cpu_s")}
        results[n] = {**best, "items": runs[0]["items"]}
        print(f"{n:>8} rows: {best['total_s']:.1f} s ({best['cpu_s']:.1f} s CPU) to the first step (structural check {best['scan_s']:.2f} s, {runs[0]['items']} pairs), "
              f"peak RSS {best['rss_mb']:.0f} MB", flush=True)
    base = results[sizes[0]]
    print("\nsize      time ratio   CPU-time ratio   memory ratio   (vs the first size; targets: time <= 1.3, memory <= 1.1)")
    for n in sizes:
        r = results[n]
        print(f"{n:>8}   {r['total_s'] / base['total_s']:10.2f}   {r['cpu_s'] / base['cpu_s']:14.2f}   {r['rss_mb'] / base['rss_mb']:12.3f}")


def _throughput_set(workdir: Path, n: int = 256) -> Path:
    from lib_alignment.training.data.synthetic import make_pickapic_shards

    folder = workdir / "pickapic-512px"
    if not (folder / "data").is_dir():
        make_pickapic_shards(folder, n, shards=2, rows_per_group=64, image_size=512, seed=1, pool=32)
    return folder


def data_rate(folder: Path, resolution: int, workers: int, batches: int = 24) -> float:
    """Pairs per second through the DataLoader (decode, crop, resize, collate)."""
    import torch

    from lib_alignment.training.data import load_preference_data
    from lib_alignment.training.data_stream import SampleStream, collate

    data = load_preference_data(folder, "dpo", resolution=resolution)
    loader = torch.utils.data.DataLoader(data, batch_size=4, sampler=SampleStream(len(data), 0, blocks=data.block_sizes()), collate_fn=collate, num_workers=workers)
    it = iter(loader)
    next(it)  # workers started
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return 4 * batches / (time.perf_counter() - t)


def step_rate(pipe: Any, resolution: int, batch: int, steps: int) -> float:
    """Pairs per second one DPO step of the UNet consumes (latents given; policy fwd+bwd, reference fwd)."""
    import torch

    from lib_alignment.training import TrainConfig, Trainer
    from lib_alignment.training.data.synthetic import make_toy_pairs

    data = make_toy_pairs(tempfile.mkdtemp(), max(batch, 2), resolution=resolution, seed=0)
    config = TrainConfig(method="dpo", model="given", data=str(data), output_dir=tempfile.mkdtemp(), name="rate", resolution=resolution,
                         batch_size=batch, max_train_steps=steps + 1, checkpoint_every=0, preview=False, progress_bar=False,
                         tensorboard=False, validation_split=0, cache_latents=True, save_precision="fp32")
    trainer = Trainer(config, pipe=pipe)
    trainer.setup()
    batches = iter(trainer.loader)
    trainer.train_step(batches)
    t = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batches)
    del torch
    return batch * steps / (time.perf_counter() - t)


def throughput(workdir: Path) -> None:
    import torch

    torch.set_num_threads(1)
    from lib_alignment.models.tiny import tiny_random_pipeline
    from sd15_random import sd15_random_pipeline

    folder = _throughput_set(workdir)
    rows = []
    for label, pipe_fn, resolution, steps in (("tiny-random", lambda: tiny_random_pipeline(seed=0), 64, 5),
                                               ("SD1.5-sized UNet", lambda: sd15_random_pipeline(full_vae=False, text_layers=1), 512, 1)):
        need = step_rate(pipe_fn(), resolution, 1, steps)
        for workers in (0, 2):
            have = data_rate(folder, resolution, workers)
            rows.append((label, resolution, workers, have, need))
            print(f"{label} at {resolution} px: data {have:.1f} pairs/s with {workers} workers; the step consumes {need:.3f} pairs/s: "
                  f"data side {have / need:.1f}x", flush=True)
    print("\nmodel              px   workers   data pairs/s   step pairs/s   ratio (target >= 3)")
    for label, resolution, workers, have, need in rows:
        print(f"{label:<18} {resolution:>4}   {workers:>7}   {have:12.1f}   {need:12.3f}   {have / need:8.1f}")


def scan_only(rows: int, workdir: Path) -> None:
    """The structural check alone on a table of ``rows`` rows (captions, labels, uids; image bytes never read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lib_alignment.training.data import load_preference_data

    folder = workdir / f"structure-{rows}"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    per = rows // 4
    for s in range(4):
        ids = range(s * per, (s + 1) * per)
        table = pa.table({
            "are_different": [True] * per, "caption": [f"prompt {i % 50_000} of the table" for i in ids],
            "image_0_uid": [f"u{i}a" for i in ids], "image_1_uid": [f"u{i}b" for i in ids],
            "jpg_0": pa.array([b"\xff\xd8 not read"] * per), "jpg_1": pa.array([b"\xff\xd8 not read"] * per),
            "label_0": [float(i % 2) for i in ids], "label_1": [float(1 - i % 2) for i in ids],
        })
        pq.write_table(table, str(folder / "data" / f"train-{s:05d}-of-00004.parquet"), row_group_size=10_000)
    t = time.perf_counter()
    data = load_preference_data(folder, "dpo", resolution=64)
    print(f"structural check of {rows} rows in 4 shards: {time.perf_counter() - t:.1f} s ({len(data)} pairs)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 50_000, 500_000])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workdir", default="", help="keep the generated sets here (default: a temporary folder)")
    parser.add_argument("--scan-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="data-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.scan_rows:
        scan_only(args.scan_rows, workdir)
    if not args.skip_scale:
        scale(args.sizes, workdir, args.repeats)
    if not args.skip_throughput:
        throughput(workdir)


if __name__ == "__main__":
    main()
