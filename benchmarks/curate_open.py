"""Opening a folder of WebUI outputs in Curate: lazy (list, then read metadata one chunk at a time as pairs run
out) against reading every image's metadata up front, side by side on the same folder.

    python benchmarks/curate_open.py [--files 10000] [--prompts 50]

The folder holds tiny PNGs with A1111 infotext (hard links of one file per prompt, adjacent like batches).
Prints seconds to the first pair for both, and files opened.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_folder(root: Path, files: int, prompts: int) -> Path:
    from PIL import Image, PngImagePlugin

    folder = root / "outputs" / "txt2img-images"
    folder.mkdir(parents=True)
    sources = root / "sources"
    sources.mkdir()
    for p in range(prompts):
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", f"prompt number {p}\nNegative prompt: bad\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: {p}, Size: 512x512, Model: m")
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), (p % 255, 9, 9)).save(buffer, format="PNG", pnginfo=info)
        (sources / f"{p}.png").write_bytes(buffer.getvalue())
    per = max(1, files // prompts)
    for i in range(files):
        os.link(sources / f"{min(i // per, prompts - 1)}.png", folder / f"{i:05d}-{i}.png")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--prompts", type=int, default=50)
    args = parser.parse_args()
    from lib_alignment.curate.metadata import read_metadata
    from lib_alignment.curate.session import CurateSession

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp), args.files, args.prompts)
        start = time.perf_counter()
        session = CurateSession(folder, Path(tmp) / "state-lazy")
        opened = time.perf_counter() - start
        pair = session.next_pair()
        lazy = time.perf_counter() - start
        assert pair is not None
        start = time.perf_counter()
        for item in session.files:  # what an eager tool does before showing anything
            read_metadata(folder / item.rel)
        eager = time.perf_counter() - start + opened
        print(f"{args.files} files, {args.prompts} prompts")
        print(f"lazy:  listed in {opened:.2f} s, first pair after {lazy:.2f} s, {session.reads} files opened")
        print(f"eager: every file's metadata read in {eager:.2f} s ({args.files} files opened)")
        print(f"ratio eager / lazy to the first pair: {eager / lazy:.1f}x")


if __name__ == "__main__":
    main()
