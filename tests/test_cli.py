"""The command line: subcommands, `generate`'s PNG info, and `serve` answering on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from lib_alignment.cli import COMMAND_MODULES, main

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in COMMAND_MODULES:
        assert name.replace("_", "-") in text


def test_generate_writes_parameters_into_the_png(tmp_path):
    out = tmp_path / "img.png"
    code = main(["generate", "--model", "tiny-random", "--prompt", "a red circle, big", "--seed", "5", "--steps", "3", "--out", str(out), "--device", "cpu"])
    assert code == 0
    image = Image.open(out)
    assert image.size == (128, 128)
    lines = image.info["parameters"].split("\n")
    assert lines[0] == "a red circle, big"
    assert "Seed: 5" in lines[-1] and "Steps: 3" in lines[-1] and "Size: 128x128" in lines[-1] and "Model: tiny-random" in lines[-1]


def test_generate_is_reproducible_and_seed_dependent(tmp_path):
    def run(seed: int, name: str):
        main(["generate", "--model", "tiny-random", "--prompt", "p", "--seed", str(seed), "--steps", "2", "--out", str(tmp_path / name), "--device", "cpu"])
        return list(Image.open(tmp_path / name).getdata())

    assert run(1, "a.png") == run(1, "b.png")
    assert run(1, "a.png") != run(2, "c.png")


def test_unknown_model_source_is_a_clear_error(tmp_path, capsys):
    code = main(["generate", "--model", str(tmp_path / "missing.safetensors"), "--prompt", "p", "--out", str(tmp_path / "x.png")])
    assert code == 2
    assert "missing.safetensors" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_serve_answers_with_both_tabs_on_loopback(tmp_path):
    """The README's app command: the page and the API answer on 127.0.0.1 only."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lib_alignment", "serve", "--port", str(port), "--output-dir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        page = None
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode("utf-8", "replace")
                break
            except OSError:
                time.sleep(1)
        assert page is not None, proc.stdout.read() if proc.poll() is not None else "server did not answer in time"
        config = urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=10).read().decode("utf-8")
        assert "Rank & Refine" in json.loads(json.dumps(config)) or "Rank \\u0026 Refine" in config
        assert "Alignment Training" in config
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/alignment/v1/health", timeout=10).read())
        assert health == {"status": "ok", "host": "standalone", "model": "tiny"}
        bound = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout if Path("/usr/bin/ss").exists() else ""
        for line in bound.splitlines():
            if f":{port} " in line:
                assert "127.0.0.1:" in line
    finally:
        proc.terminate()
        proc.wait(timeout=30)
