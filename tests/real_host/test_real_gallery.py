"""Gallery likes and the Curate tab in the real A1111 v1.10.1 page (gradio 3.41.2, --api-auth), in headless
Chromium: generate a batch in txt2img, Like one image and Prefer another with the key P under the WebUI's own
gallery, check the store's counts over the API, then judge a pair of the WebUI's saved outputs in Curate."""

from __future__ import annotations

import pytest
from browser.chromium import chromium, set_component_value, skip_without_chromium, wait_for

pytestmark = [pytest.mark.real_host, pytest.mark.browser, pytest.mark.slow]
PROMPT = "a curated red fox"


def _counts(host) -> dict:
    answer = host.get("/alignment/v1/preferences/counts")
    assert answer.status_code == 200, answer.text[:500]
    return answer.json()["counts"]


def _status(driver) -> str:
    return driver.execute_script(
        "var s = document.querySelector('#alignment_likes_txt2img .alignment-likes-status'); return s ? s.textContent : '';"
    )


def _thumb(driver, index: int) -> None:
    driver.execute_script("document.querySelectorAll('#txt2img_gallery .thumbnail-item.thumbnail-small')[arguments[0]].click();", index)


def test_like_and_prefer_in_the_real_txt2img_gallery_then_curate(a1111_host):
    from selenium.webdriver.common.action_chains import ActionChains

    skip_without_chromium()
    host = a1111_host
    before = _counts(host)
    with chromium() as driver:
        driver.get(host.url + "/")
        wait_for(lambda: driver.execute_script("return !!document.getElementById('alignment_likes_txt2img')"), 120,
                 "our row under the txt2img gallery")
        row = driver.execute_script("return document.getElementById('image_buttons_txt2img').nextElementSibling.id")
        assert row == "alignment_likes_txt2img"
        assert driver.execute_script("return !!document.querySelector('#image_buttons_txt2img #txt2img_send_to_img2img')")
        for name, value in (("width", "64"), ("height", "64"), ("steps", "2"), ("batch_size", "3"), ("prompt", PROMPT)):
            set_component_value(driver, f"txt2img_{name}", value)
        driver.execute_script("document.getElementById('txt2img_generate').click()")
        # A1111 shows the grid first, then the three images
        wait_for(lambda: driver.execute_script("return document.querySelectorAll('#txt2img_gallery .thumbnail-item.thumbnail-small').length") == 4,
                 300, "the batch in the gallery")
        _thumb(driver, 0)  # the grid: refused
        driver.find_element("id", "alignment_like_txt2img").click()
        wait_for(lambda: "grid" in _status(driver), 30, "the grid refused", describe=lambda: _status(driver))
        _thumb(driver, 1)
        driver.find_element("id", "alignment_like_txt2img").click()
        wait_for(lambda: _status(driver) == "Liked ✓", 60, "Liked ✓", describe=lambda: _status(driver))
        _thumb(driver, 3)
        ActionChains(driver).send_keys("p").perform()
        wait_for(lambda: _status(driver) == "Preferred over 2 ✓", 60, "the preference", describe=lambda: _status(driver))
        after = _counts(host)
        assert after["liked"] == before["liked"] + 1 and after["judgements"] == before["judgements"] + 1
        entries = host.get("/alignment/v1/preferences", params={"source": "gallery", "limit": 1}).json()["entries"]
        winner = host.get(f"/alignment/v1/preferences/images/{entries[0]['images'][0]}")
        assert winner.status_code == 200

        # Curate: the WebUI's saved outputs, this prompt's three images among them
        script = """var b = Array.from(document.querySelectorAll('#tabs > .tab-nav > button, #tabs button'))
            .filter(b => b.innerText.trim() === 'Curate').pop(); if (b) b.click();
            var o = document.getElementById('alignment_curate_open'); return !!(o && o.offsetParent);"""
        wait_for(lambda: driver.execute_script(script), 60, "the Curate tab")
        driver.execute_script("document.getElementById('alignment_curate_open').click()")
        progress = lambda: driver.execute_script("var e = document.getElementById('alignment_curate_progress'); return e ? e.innerText : '';")
        wait_for(lambda: "judgements" in progress(), 120, "the Curate progress")
        driver.execute_script("document.getElementById('alignment_curate_pick_left').click()")
        wait_for(lambda: _counts(host)["judgements"] == after["judgements"] + 1, 60, "the Curate judgement in the store")
