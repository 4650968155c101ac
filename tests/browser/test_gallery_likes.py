"""Like / Dislike / Prefer under an A1111-style txt2img gallery in headless Chromium: the row sits after the
WebUI's button row without moving it, clicks and the keys L / D / P store labels and a judgement (through
--api-auth, with the page's token), Undo takes one back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from .chromium import ROOT, chromium, free_port, skip_without_chromium, wait_for


def _images(folder: Path) -> None:
    folder.mkdir(parents=True)
    for seed in (1, 2, 3):
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", f"a red fox\nNegative prompt: blurry\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: {seed}, Size: 32x32, Model hash: abcd, Model: tiny")
        Image.new("RGB", (32, 32), (80 * seed, 30, 120)).save(folder / f"0000{seed}-{seed}.png", pnginfo=info)


def _counts(url: str) -> dict:
    request = urllib.request.Request(url + "alignment/v1/preferences/counts")
    request.add_header("Authorization", "Basic " + __import__("base64").b64encode(b"alice:secret").decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["counts"]


def _status(driver) -> str:
    return driver.execute_script(
        "var s = document.querySelector('#alignment_likes_txt2img .alignment-likes-status'); return s ? s.textContent : '';"
    )


def _thumb(driver, index: int) -> None:
    driver.execute_script(
        "var t = document.querySelectorAll('#txt2img_gallery .thumbnail-item'); var small = document.querySelectorAll('#txt2img_gallery .thumbnail-small');"
        "(small.length ? small : t)[arguments[0]].click();",
        index,
    )


@pytest.mark.browser
def test_gallery_buttons_and_keys_store_likes_and_a_preference(tmp_path):
    skip_without_chromium()
    data = tmp_path / "webui"
    folder = data / "outputs" / "txt2img-images" / "2026-12-07"
    _images(folder)
    port = free_port()
    env = {**os.environ, "FAKE_WEBUI_DATA": str(data), "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    log = open(tmp_path / "page.log", "w+", encoding="utf-8")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "browser" / "gallery_page.py"), str(port), str(folder)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(f"the page exited: {log.read()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                assert time.time() < deadline, "the page did not answer"
                time.sleep(0.5)
        with chromium() as driver:
            driver.get(url)
            wait_for(lambda: driver.execute_script("return !!document.getElementById('alignment_likes_txt2img')"), 60, "the likes row")
            order = driver.execute_script(
                "var row = document.getElementById('image_buttons_txt2img');"
                "return [row.nextElementSibling && row.nextElementSibling.id, Array.from(row.querySelectorAll('button')).map(b => b.id || b.parentElement.id)];"
            )
            assert order[0] == "alignment_likes_txt2img"  # right after the WebUI's row
            assert any("other_extension_button" in str(i) for i in order[1])  # which keeps its buttons
            driver.execute_script("document.querySelector('#txt2img_generate button, button#txt2img_generate').click()")
            wait_for(lambda: driver.execute_script("return document.querySelectorAll('#txt2img_gallery img').length") >= 3, 60, "the gallery")
            _thumb(driver, 1)
            driver.find_element("id", "alignment_like_txt2img").click()
            wait_for(lambda: _status(driver) == "Liked ✓", 30, "Liked ✓", describe=lambda: _status(driver))
            _thumb(driver, 2)
            from selenium.webdriver.common.action_chains import ActionChains

            ActionChains(driver).send_keys("p").perform()
            wait_for(lambda: _status(driver) == "Preferred over 2 ✓", 30, "the preference", describe=lambda: _status(driver))
            _thumb(driver, 0)
            ActionChains(driver).send_keys("d").perform()
            wait_for(lambda: _status(driver) == "Disliked ✓", 30, "the dislike", describe=lambda: _status(driver))
            counts = _counts(url)
            assert (counts["liked"], counts["disliked"], counts["judgements"]) == (1, 1, 1)
            driver.find_element("css selector", "#alignment_likes_txt2img .alignment-likes-undo").click()
            wait_for(lambda: _status(driver) == "Undone", 30, "the undo", describe=lambda: _status(driver))
            assert _counts(url)["disliked"] == 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
