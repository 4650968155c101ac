"""Headless Chromium (selenium 4, the system's chromium + chromedriver) against a `serve` subprocess."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
CHROMIUM = os.environ.get("ALIGNMENT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ALIGNMENT_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
)


def skip_without_chromium() -> None:
    """Skip (with the reason) where the browser, its driver or selenium is missing."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() or shutil.which(path)):
            pytest.skip(f"{path} is not installed (apt packages chromium and chromium-driver)")
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -r requirements-test.txt)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def page_process(
    argv: list[str], port: int, log_path: Path, *, env: dict[str, str] | None = None, probe: str = "", timeout: float = 120
) -> Iterator[str]:
    """Run a page server listening on `port` (see `free_port`) from the checkout, wait until `url + probe`
    answers, yield the url, and stop the process after; its output goes to `log_path`."""
    log = open(log_path, "w+", encoding="utf-8")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{argv[1]} exited with {proc.returncode}:\n{log.read()[-3000:]}")
            try:
                urllib.request.urlopen(url + probe, timeout=5).read()
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(f"{argv[1]} did not answer in time") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextlib.contextmanager
def app_server(output_dir: Path, model: str = "tiny-random", timeout: float = 120) -> Iterator[str]:
    """`python -m lib_alignment serve` on a free loopback port, with this interpreter (so its gradio)."""
    port = free_port()
    argv = [sys.executable, "-m", "lib_alignment", "serve", "--model", model, "--port", str(port),
            "--output-dir", str(output_dir), "--device", "cpu"]  # fmt: skip
    env = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    log_path = output_dir.parent / f"serve-{port}.log"
    with page_process(argv, port, log_path, env=env, probe="alignment/v1/health", timeout=timeout) as url:
        yield url


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="alignment-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(
    condition: Callable[[], Any],
    timeout: float = 60,
    what: str = "condition",
    describe: Callable[[], str] | None = None,
) -> Any:
    """Poll until condition() is truthy (exceptions count as not yet).

    describe: what to add to the failure message (e.g. the text that was on show instead)."""
    deadline = time.time() + timeout
    last: Exception | None = None
    while time.time() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - elements come and go while gradio renders
            last = error
        time.sleep(0.2)
    message = f"timed out waiting for {what}" + (f" (last error: {last})" if last else "")
    if describe is not None:
        try:
            message += f"; on show: {describe()!r}"
        except Exception as error:  # noqa: BLE001
            message += f"; could not read what is on show: {error}"
    raise AssertionError(message)


def set_component_value(driver: Any, elem_id: str, value: str, timeout: float = 20) -> None:
    """Type into a gradio Textbox/Number/Slider by its elem_id, the way the page's own script does.

    A component that has just been mounted (an accordion opened a moment ago) may still write its initial
    value into the field on a later tick, on a loaded machine well after the field appeared; so the value is
    set again until it has stayed put for half a second."""
    script = """
        var el = document.getElementById(arguments[0]);
        var input = el.matches('textarea, input') ? el
            : (el.querySelector('textarea') || el.querySelector('input[type=number]') || el.querySelector('input'));
        if (!arguments[2] && input.value === arguments[1]) return false;
        input.value = arguments[1];
        input.dispatchEvent(new Event('input', {bubbles: true}));
        input.dispatchEvent(new Event('change', {bubbles: true}));
        return true;
        """  # arguments[2]: write even if the field already shows the value; returns whether it wrote
    driver.execute_script(script, elem_id, value, True)
    deadline = time.time() + timeout
    steady_since = time.time()
    while time.time() < deadline:
        time.sleep(0.1)
        if driver.execute_script(script, elem_id, value, False):  # the field had lost the value: set again
            steady_since = time.time()
        elif time.time() - steady_since >= 0.5:
            return
    raise AssertionError(f"#{elem_id} did not keep the value {value!r}")
