"""In headless Chromium, on a page with an A1111-style txt2img gallery and the Curate tab (the fake WebUI with
--api-auth): Like / Dislike / Prefer sit after the WebUI's button row without moving it, clicks and the keys
L / D / P store labels and a judgement (with the page's token), Undo takes one back; the Curate tab opens the
outputs, judges a pair into the store, undoes it and lists the image without a prompt."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from .chromium import ROOT, chromium, free_port, page_process, skip_without_chromium, wait_for


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



@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """(url, tmp folder) of a gallery_page.py server over the fake WebUI's outputs."""
    skip_without_chromium()
    tmp_path = tmp_path_factory.mktemp("gallery")
    data = tmp_path / "webui"
    folder = data / "outputs" / "txt2img-images" / "2026-12-07"
    _images(folder)
    (folder.parent / "2026-12-08").mkdir()
    Image.new("RGB", (32, 32)).save(folder.parent / "2026-12-08" / "00009-no-infotext.png")
    env = {"FAKE_WEBUI_DATA": str(data), "GRADIO_TEMP_DIR": str(tmp_path / "gradio"), "GRADIO_ANALYTICS_ENABLED": "False"}
    port = free_port()
    argv = [sys.executable, str(ROOT / "tests" / "browser" / "gallery_page.py"), str(port), str(folder)]
    # the page imports gradio and torch: minutes on a loaded 2-core machine
    with page_process(argv, port, tmp_path / "page.log", env=env, timeout=300) as url:
        yield url


def _text(driver, elem_id: str) -> str:
    return driver.execute_script("var e = document.getElementById(arguments[0]); return e ? e.innerText : '';", elem_id)


def _click(driver, elem_id: str) -> None:
    driver.execute_script(
        "var e = document.getElementById(arguments[0]); (e.matches('button') ? e : e.querySelector('button')).click();", elem_id
    )


@pytest.mark.browser
def test_gallery_buttons_and_keys_store_likes_and_a_preference(page):
    url = page
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


@pytest.mark.browser
def test_curate_tab_judges_a_pair_undoes_it_and_lists_images_without_a_prompt(page):
    url = page
    C = "alignment_curate"
    with chromium() as driver:
        driver.get(url)
        show = """var b = document.getElementById('tab_alignment_curate-button')
            || Array.from(document.querySelectorAll('button')).filter(b => b.innerText.trim() === 'Curate' && b.offsetParent).pop();
            if (b) b.click(); var o = document.getElementById(arguments[0]); return !!(o && o.offsetParent);"""
        wait_for(lambda: driver.execute_script(show, f"{C}_open"), 60, "the Curate tab")
        before = _counts(url)["judgements"]
        _click(driver, f"{C}_open")
        wait_for(lambda: "0 judgements" in _text(driver, f"{C}_progress"), 60, "the progress line",
                 describe=lambda: _text(driver, f"{C}_progress") + " | " + _text(driver, f"{C}_message"))
        assert "Which is better for: a red fox" in _text(driver, f"{C}_prompt")
        wait_for(lambda: driver.execute_script(
            "return ['left', 'right'].every(s => document.querySelector('#alignment_curate_' + s + ' img'))"), 30, "both images")
        from selenium.webdriver.common.action_chains import ActionChains

        driver.find_element("tag name", "body").click()
        ActionChains(driver).send_keys("2").perform()  # the key for "Right is better"
        wait_for(lambda: "1 judgements" in _text(driver, f"{C}_progress"), 60, "the answer",
                 describe=lambda: _text(driver, f"{C}_progress") + " | " + _text(driver, f"{C}_message"))
        _click(driver, f"{C}_pick_left")
        wait_for(lambda: "2 judgements" in _text(driver, f"{C}_progress"), 60, "the second answer")
        assert _counts(url)["judgements"] == before + 2
        ActionChains(driver).send_keys("u").perform()
        wait_for(lambda: "1 judgements" in _text(driver, f"{C}_progress"), 60, "the undo by key")
        _click(driver, f"{C}_undo")
        wait_for(lambda: "0 judgements" in _text(driver, f"{C}_progress"), 60, "the undo")
        assert _counts(url)["judgements"] == before
        driver.execute_script(
            "var a = document.getElementById(arguments[0]); (a.querySelector('button, .label-wrap') || a).click();", f"{C}_unreadable_box"
        )
        listed = wait_for(lambda: "00009-no-infotext.png" in (t := _text(driver, f"{C}_unreadable")) and t, 30, "the list")
        assert "no A1111/Forge infotext" in listed
