"""`serve` as a process: it stops promptly and quietly on SIGTERM and on one Ctrl-C while a page is open."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser.chromium import free_port

ROOT = Path(__file__).resolve().parents[1]


def _start(tmp_path: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lib_alignment", "serve", "--model", "tiny-random", "--port", str(port), "--output-dir", str(tmp_path / "out"), "--device", "cpu"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.time() + 180
    while True:
        assert proc.poll() is None, proc.stdout.read().decode(errors="replace")[-3000:]
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/alignment/v1/health", timeout=5).read()
            return proc, port
        except OSError:
            assert time.time() < deadline, "serve did not answer in time"
            time.sleep(0.5)


def _open_page_stream(port: int) -> threading.Event:
    """Hold a browser tab's never-ending heartbeat stream open; the event is set once data arrived."""
    got_data = threading.Event()

    def hold() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            connection.request("GET", "/gradio_api/heartbeat/test-session")
            response = connection.getresponse()
            while response.read1(100):
                got_data.set()
        except OSError:
            pass

    threading.Thread(target=hold, daemon=True).start()
    return got_data


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_serve_stops_promptly_and_quietly_with_a_page_open(tmp_path, signum):
    proc, port = _start(tmp_path)
    try:
        assert _open_page_stream(port).wait(30), "the heartbeat stream sent nothing"
        began = time.monotonic()
        proc.send_signal(signum)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("serve still runs 15 s after the signal")
        took = time.monotonic() - began
        output = proc.stdout.read().decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert took < 10, f"took {took:.1f} s to stop"
    assert "Traceback" not in output and "CancelledError" not in output, output[-2000:]
    assert proc.returncode in (0, -signal.SIGTERM, 130), proc.returncode
