"""Preference store: what durability costs per click, and how counting and exporting scale.

1. Latency of one acknowledged label (add_label returning) with synchronous=FULL (what the store
   uses: the WAL is fsynced at every commit) against NORMAL (survives kill -9 too, not a power cut),
   median and 95th percentile over `--labels` labels, side by side in the same folder's file system.
   A person clicks a few times a second at most: the target is a median under 50 ms.
2. Scale: a store of N judgements (3 images each, one prompt per 10 judgements); the time of
   counts() (what the training tab shows before Start, recomputed at each filter change) and of the
   DPO snapshot a job takes, for N = 1 000 and 10 000. Target: counts under 1 s at 10 000.

    python benchmarks/preference_store.py                 # about a minute on 2 busy cores
    python benchmarks/preference_store.py --sizes 1000    # quicker
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from lib_alignment.preferences import PreferenceStore  # noqa: E402
from lib_alignment.preferences.exchange import export_store  # noqa: E402


def label_latency(root: Path, synchronous: str, count: int) -> list[float]:
    store = PreferenceStore(root)
    conn = store._connection()  # this thread's connection: the pragma applies to the writes timed below
    conn.execute(f"PRAGMA synchronous={synchronous}")
    image = store.add_image(Image.new("RGB", (8, 8), "red"), prompt="a red circle", source="bench")
    times = []
    for i in range(count):
        start = time.perf_counter()
        store.add_label(image, bool(i % 2), source="bench")
        times.append(time.perf_counter() - start)
    store.close()
    return times


def fill(root: Path, judgements: int) -> PreferenceStore:
    store = PreferenceStore(root)
    store._connection().execute("PRAGMA synchronous=OFF")  # filling is not what is measured
    with store.batch():
        for j in range(judgements):
            ids = [
                store.add_image(Image.new("RGB", (8, 8), ((j * 3 + k) % 256, (j * 3 + k) // 256 % 256, (j * 3 + k) // 65536)),
                                prompt=f"prompt {j // 10}", source="bench")
                for k in range(3)
            ]
            store.add_judgement(ids[0], ids[1:], source="bench")
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=int, default=200)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = {}
        for mode in ("FULL", "NORMAL"):
            times = sorted(label_latency(Path(tmp) / mode, mode, args.labels))
            rows[mode] = (statistics.median(times) * 1000, times[int(0.95 * len(times)) - 1] * 1000)
        print(f"one acknowledged label, {args.labels} labels:")
        for mode, (median, p95) in rows.items():
            print(f"  synchronous={mode:<6}  median {median:6.2f} ms   p95 {p95:6.2f} ms")
        print(f"  FULL / NORMAL median: {rows['FULL'][0] / rows['NORMAL'][0]:.1f}x")
        for n in args.sizes:
            start = time.perf_counter()
            store = fill(Path(tmp) / f"n{n}", n)
            filled = time.perf_counter() - start
            store.close()
            store = PreferenceStore(Path(tmp) / f"n{n}")  # a fresh connection, synchronous=FULL again
            start = time.perf_counter()
            counts = store.counts()
            counted = time.perf_counter() - start
            start = time.perf_counter()
            export_store(store, Path(tmp) / f"export{n}", "pairs-csv")
            exported = time.perf_counter() - start
            print(f"{n} judgements ({counts['images']} images, {counts['dpo_pairs']} pairs): fill {filled:.1f} s, "
                  f"counts() {counted:.2f} s, DPO snapshot {exported:.1f} s")
            store.close()


if __name__ == "__main__":
    main()
