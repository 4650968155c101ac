"""The training tab's "Compare (blind A/B)" section in headless Chromium: a 2-prompt × 2-seed comparison by
clicking (and the keys 2 and space)."""

from __future__ import annotations

import re

import pytest
from ab_helpers import train_tiny_lora

from .chromium import app_server, chromium, set_component_value, skip_without_chromium, wait_for
from .test_training_tab import _click, _images, _open_tab, _text

AB = "alignment_training_ab"


@pytest.mark.browser
@pytest.mark.slow
def test_blind_comparison_by_clicking_ends_with_the_win_rate(tmp_path):
    skip_without_chromium()
    from selenium.webdriver.common.action_chains import ActionChains

    out = tmp_path / "out"
    lora = train_tiny_lora(out / "loras", "browser-ab")
    with app_server(out) as url, chromium() as driver:
        _open_tab(driver, url)
        driver.execute_script(
            "var a = document.getElementById(arguments[0]); (a.querySelector('button, .label-wrap') || a).click();",
            f"{AB}_box",
        )
        wait_for(
            lambda: driver.execute_script(
                "var e = document.getElementById(arguments[0]); return e && e.offsetParent;", f"{AB}_start"
            ),
            30,
            "the Compare section",
        )
        assert "browser-ab" in driver.execute_script(
            "var e = document.getElementById(arguments[0]); var i = e.querySelector('input');"
            "return i ? i.value : e.innerText;",
            f"{AB}_lora",
        )
        set_component_value(driver, f"{AB}_prompts", "a red circle\na blue square")
        set_component_value(driver, f"{AB}_seeds", "1, 2")
        set_component_value(driver, f"{AB}_steps", "2")
        set_component_value(driver, f"{AB}_size", "64")
        _click(driver, f"{AB}_start")
        for number in range(1, 5):
            wait_for(lambda n=number: f"Pair {n} of 4" in _text(driver, f"{AB}_progress"), 120, f"pair {number} of 4",
                     describe=lambda: _text(driver, f"{AB}_progress") + " | " + _text(driver, f"{AB}_message"))
            both = lambda: _images(driver, f"{AB}_image_a") >= 1 and _images(driver, f"{AB}_image_b") >= 1  # noqa: E731
            wait_for(both, 30, "both images")
            judge = _text(driver, f"{AB}_judge")
            assert "A is better" in judge and "B is better" in judge and "Skip" in judge
            assert "lora" not in judge.lower()  # only "A" and "B": nothing tells which image is the LoRA
            if number in (2, 4):  # keys 2 ("B is better") and space ("Skip")
                ActionChains(driver).send_keys("2" if number == 2 else " ").perform()
            else:
                _click(driver, f"{AB}_pick_a")
        result = wait_for(lambda: "win rate" in (t := _text(driver, f"{AB}_result")) and t, 60, "the result",
                          describe=lambda: _text(driver, f"{AB}_progress"))
        assert re.search(r"LoRA preferred in \d of 3 pairs: win rate \d+%", result), result
        assert "95% interval" in result and "a blue square" in result and "1 skipped" in result
        assert lora.with_name("browser-ab.alignment-compare.json").is_file()
        _click(driver, f"{AB}_export")
        wait_for(lambda: "Added 3 picks" in _text(driver, f"{AB}_export_message"), 30, "the preference data",
                 describe=lambda: _text(driver, f"{AB}_export_message"))
        from lib_alignment.preferences import PreferenceFilter, PreferenceStore

        assert len(PreferenceStore(out / "preferences").list(PreferenceFilter(sources=("ab-compare",)))) == 3
