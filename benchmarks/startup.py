"""Cold-start times of the command line: `--help`, one 128 px `generate` on the tiny model, and `serve` until it answers.

    python benchmarks/startup.py [--repeat 3] [--source DIR]

--source: a checkout to time instead of this one (say, an older commit unpacked with
`git archive`), so before/after figures come from the same machine and load.
Prints one row per command: median, min and max wall seconds of fresh processes,
and the machine's load average when it began.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(source: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(source), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}


def time_command(argv: list[str], source: Path) -> float:
    """Wall seconds of one fresh `python -m lib_alignment ARGV` run (it must succeed)."""
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lib_alignment", *argv], cwd=source, env=_env(source), check=True, capture_output=True)
    return time.perf_counter() - began


def time_serve(source: Path, folder: Path) -> float:
    """Wall seconds from starting `serve` until its health route answers; the process is stopped after."""
    port = _free_port()
    began = time.perf_counter()
    argv = [sys.executable, "-m", "lib_alignment", "serve", "--model", "tiny", "--port", str(port), "--output-dir", str(folder)]
    proc = subprocess.Popen(argv, cwd=source, env=_env(source), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited with {proc.returncode}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/alignment/v1/health", timeout=2).read()
                return time.perf_counter() - began
            except OSError:
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--source", type=Path, default=ROOT)
    args = parser.parse_args()
    source = args.source.resolve()
    print(f"source {source}; load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        cases = {
            "--help": lambda: time_command(["--help"], source),
            "generate (tiny, 128 px, 20 steps)": lambda: time_command(
                ["generate", "--model", "tiny", "--prompt", "a red circle", "--seed", "1", "--out", str(out / "g.png"), "--device", "cpu"], source
            ),
            "serve (until /alignment/v1/health answers)": lambda: time_serve(source, out / "serve"),
        }
        for name, run in cases.items():
            times = [run() for _ in range(args.repeat)]
            print(f"{name:45s} median {statistics.median(times):6.2f} s  min {min(times):6.2f}  max {max(times):6.2f}  (n={len(times)})", flush=True)


if __name__ == "__main__":
    main()
