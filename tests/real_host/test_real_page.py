"""The extension's tabs in the real pages, in headless Chromium: A1111 v1.10.1 (gradio 3.41.2) and Forge
(gradio 4.40), each with the WebUI its host tests started (the module-scoped driver opens each page once)."""

from __future__ import annotations

import json
import time

import pytest

from browser.chromium import chromium, set_component_value, skip_without_chromium, wait_for
from browser.test_training_tab import _click, _images, _progress, _text
from test_rank_refine_ui import _press, _state, _tiles, _wait_round

from lib_alignment.training.health import STATES

pytestmark = [pytest.mark.real_host, pytest.mark.browser, pytest.mark.slow]
RR = "alignment_rank_refine"
TR = "alignment_training"


def _show_tab(driver, title: str, probe_id: str) -> None:
    """Click the top-level tab button titled `title` until the element `probe_id` is visible."""
    script = """
        var probe = document.getElementById(arguments[1]);
        if (probe && probe.offsetParent) return true;
        var b = Array.from(document.querySelectorAll('#tabs > .tab-nav > button, #tabs button'))
            .filter(b => b.innerText.trim() === arguments[0]).pop();
        if (b) b.click();
        return false;"""
    wait_for(lambda: driver.execute_script(script, title, probe_id), 120, f"the {title} tab")


def _value(driver, selector: str) -> str:
    return driver.execute_script("var e = document.querySelector(arguments[0]); return e ? e.value : null;", selector)


@pytest.fixture(scope="module", params=["a1111", "forge"])
def real_page(request):
    host = request.getfixturevalue(f"{request.param}_host")
    skip_without_chromium()
    with chromium() as driver:
        driver.get(host.url + "/")
        yield driver, host


def test_rank_and_refine_in_the_real_page(real_page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, host = real_page
    _show_tab(driver, "Rank & Refine", f"{RR}_start")
    prompt = f"a red circle <lora:{host.kit.lora}:0.8>"
    for name, value in (("width", "64"), ("height", "64"), ("steps", "3"), ("seed", "11"), ("prompt", prompt)):
        set_component_value(driver, f"{RR}_{name}", value)
    driver.find_element(By.ID, f"{RR}_start").click()
    _wait_round(driver, 1, 300)
    first = _state(driver)
    assert len(first["srcs"]) >= 4 and len(set(first["srcs"])) == len(first["srcs"])

    tiles = _tiles(driver)  # by clicks
    tiles[2].click()
    tiles[0].click()
    assert json.loads(_state(driver)["order"]) == {"round": 1, "order": [2, 0]}
    driver.find_element(By.ID, f"{RR}_next").click()
    _wait_round(driver, 2, 300)
    second = _state(driver)
    assert second["current"] == first["current"] and first["srcs"][2] in second["srcs"]

    driver.find_element(By.CSS_SELECTOR, ".alignment-board-head").click()  # by keys, in A1111's page
    j = next(i for i, role in enumerate(second["roles"]) if role.startswith("step"))
    _press(driver, str(j + 1))
    assert _state(driver)["ranking"] == [j]
    _press(driver, Keys.ENTER)
    _wait_round(driver, 3, 300)
    third = _state(driver)
    assert third["current"] == second["srcs"][j]

    driver.find_element(By.ID, f"{RR}_undo").click()
    _wait_round(driver, 2, 60)
    assert _state(driver)["current"] == second["current"]

    driver.find_element(By.ID, f"{RR}_save").click()
    infotext = wait_for(
        lambda: driver.find_element(By.CSS_SELECTOR, f"#{RR}_infotext textarea").get_attribute("value"), 60, "the infotext"
    )
    assert infotext.startswith(prompt) and "Seed: 11" in infotext and "Size: 64x64" in infotext

    driver.find_element(By.ID, f"{RR}_send_txt2img").click()  # A1111's own paste machinery fills txt2img
    wait_for(lambda: _value(driver, "#txt2img_prompt textarea") == prompt, 30, "the txt2img prompt",
             describe=lambda: _value(driver, "#txt2img_prompt textarea"))
    wait_for(lambda: _value(driver, "#txt2img_seed input") == "11", 10, "the txt2img seed")
    assert _value(driver, "#txt2img_steps input") == "3"


def test_training_from_the_real_page_on_the_loaded_checkpoint(real_page, tmp_path):
    from lib_alignment.training.data.synthetic import make_toy_kto

    driver, host = real_page
    data = make_toy_kto(tmp_path / "kto", 4, resolution=64)
    _show_tab(driver, "Alignment Training", f"{TR}_start")
    driver.execute_script(  # KTO: the method radio
        "Array.from(document.querySelectorAll('#" + TR + "_method label')).filter(l => l.innerText.includes('KTO'))[0].click();"
    )
    set_component_value(driver, f"{TR}_dataset", str(data))
    name = f"rh-page-kto-{host.kit.kind}"
    set_component_value(driver, f"{TR}_name", name)
    set_component_value(driver, f"{TR}_steps", "3")
    set_component_value(driver, f"{TR}_learning_rate", "0.005")
    driver.execute_script(
        "var a = document.getElementById(arguments[0]); (a.querySelector('button, .label-wrap') || a).click();", f"{TR}_advanced"
    )
    wait_for(lambda: driver.execute_script("var e = document.getElementById(arguments[0]); return e && e.offsetParent;", f"{TR}_other"),
             30, "the advanced settings")
    set_component_value(driver, f"{TR}_other", "sample_steps = 2\nresolution = 64")
    earlier_job = _progress(driver).get("job")  # the host tests' last job may be on show, already finished
    _click(driver, f"{TR}_start")
    wait_for(lambda: "Started" in _text(driver, f"{TR}_start_message"), 120, "the start message",
             describe=lambda: _text(driver, f"{TR}_start_message"))
    finished = wait_for(
        lambda: (p := _progress(driver)).get("job") != earlier_job and p.get("state") in ("finished", "error") and p,
        900, "this job to end", describe=lambda: _progress(driver),
    )
    assert finished["state"] == "finished", _text(driver, f"{TR}_progress")
    verdict = "var v = document.querySelector('#" + TR + "_progress .alignment-job-verdict'); return v ? v.dataset.verdict : null;"
    assert wait_for(lambda: driver.execute_script(verdict), 30, "the health verdict") in STATES
    wait_for(lambda: _images(driver, f"{TR}_plot") >= 1, 30, "the health plot")
    wait_for(lambda: name in _text(driver, f"{TR}_loras") and _images(driver, f"{TR}_loras") >= 1, 60,
             "the LoRA card with its preview")
    assert (host.lora_dir / f"{name}.safetensors").is_file()
    time.sleep(0.5)
    driver.save_screenshot(str(tmp_path / "real-training-tab.png"))
