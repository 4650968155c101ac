"""The Rank & Refine tab: ranking input, board HTML, WebUI wiring, and rounds driven in headless Chromium."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from lib_alignment.ui.rank_refine_tab import parse_order
from lib_alignment.ui.refine_sessions import default_sampler, is_stochastic_sampler, ordered_samplers

ID = "alignment_rank_refine"
SCREENSHOTS = Path("/tmp")


def test_parse_order_accepts_what_the_page_and_people_send():
    assert parse_order('{"round": 3, "order": [2, 0]}') == ([2, 0], 3)
    assert parse_order("[4, 1]") == ([4, 1], None)
    assert parse_order(" 3, 0 5 ") == ([3, 0, 5], None)
    for bad in ("", "  ", '{"round": 1, "order": []}', '["a"]', "[true]", "x, y"):
        with pytest.raises(ValueError, match="order"):
            parse_order(bad)


def test_samplers_deterministic_first():
    webui = ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "Euler a", "Euler", "LMS", "DPM2 a", "DDIM", "Restart", "LCM"]
    assert ordered_samplers(webui) == [
        "DPM++ 2M",
        "Euler",
        "LMS",
        "DDIM",
        "DPM++ SDE",
        "DPM++ 2M SDE",
        "Euler a",
        "DPM2 a",
        "Restart",
        "LCM",
    ]
    assert not any(is_stochastic_sampler(name) for name in ("DDIM", "UniPC", "Heun", "DPM++ 2M"))
    assert default_sampler(["Euler a", "Euler"]) == "Euler"
    assert default_sampler(["Euler a", "LMS"]) == "LMS"


def _board_inputs():
    """What the board reads off a session and its pending round (a line round with the current image in it)."""
    session = SimpleNamespace(
        params=SimpleNamespace(m=4, mu=0.1, lr=2.0),
        settings=SimpleNamespace(width=64, height=64, sampler="Euler <a>", steps=2),
        seed=7,
        rounds_ranked=1,
    )
    rnd = SimpleNamespace(
        id=2,
        round_type="line",
        roles=["step lr·2^-0", "current", "rank best", "step lr·2^-1"],
        images=[Image.new("RGB", (64, 64), (i * 60, 0, 0)) for i in range(4)],
        current_image=Image.new("RGB", (64, 64), (0, 0, 255)),
    )
    return session, rnd


def test_board_tiles_carry_display_indices_and_escape_text():
    from lib_alignment.ui.refine_view import round_board

    session, rnd = _board_inputs()
    html = round_board("ab" * 16, session, rnd, start_image=Image.new("RGB", (64, 64)))
    assert re.findall(r'class="alignment-tile" data-index="(\d+)"', html) == ["0", "1", "2", "3"]
    assert html.count("data:image/png;base64,") == 4 + 2  # tiles, current, start
    assert 'data-role="current"' in html and "current image" in html
    assert "Euler &lt;a&gt;" in html and "Euler <a>" not in html
    renders = {re.search(r'data-render="(\w+)"', round_board("ab" * 16, session, rnd)).group(1) for _ in range(3)}
    assert len(renders) == 3  # every rendering is told apart by the page script


def test_webui_tab_wires_send_to_buttons_and_hidden_fields(fake_webui, monkeypatch):
    import gradio as gr

    from lib_alignment.ui import webui_tabs

    monkeypatch.setattr(webui_tabs, "_context", None)
    from modules import infotext_utils

    infotext_utils.registered_param_bindings.clear()
    tabs = webui_tabs.ui_tabs()
    block = next(block for block, title, _ in tabs if title == "Rank & Refine")
    bindings = infotext_utils.registered_param_bindings
    assert sorted(b.tabname for b in bindings) == ["img2img", "txt2img"]
    assert all(isinstance(b.source_image_component, gr.Image) for b in bindings)
    assert all(b.source_text_component.elem_id == f"{ID}_infotext" for b in bindings)
    ids = {getattr(component, "elem_id", None) for component in block.blocks.values()}
    for name in ("session", "order", "task", "auto_resume", "next", "board", "pull", "interrupt"):
        assert f"{ID}_{name}" in ids
    sampler = next(c for c in block.blocks.values() if getattr(c, "elem_id", None) == f"{ID}_sampler")
    choices = [c[0] if isinstance(c, (list, tuple)) else c for c in sampler.choices]
    assert choices == ["DPM++ 2M", "Euler", "DDIM", "Euler a"]  # the fake WebUI's samplers, deterministic first


# ----- headless Chromium ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The standalone app on tiny-random and one Chromium, shared by the browser tests (in order)."""
    from browser.chromium import app_server, chromium, skip_without_chromium

    skip_without_chromium()
    out = tmp_path_factory.mktemp("browser") / "out"
    with app_server(out) as url, chromium() as driver:
        driver.get(url)
        yield driver, url, out


def _board(driver):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, ".alignment-board")


def _wait_round(driver, round_id: int, timeout: float = 60):
    from browser.chromium import wait_for

    return wait_for(
        lambda: _board(driver).get_attribute("data-round") == str(round_id) and _board(driver),
        timeout,
        f"round {round_id}",
    )


def _tiles(driver):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, ".alignment-board .alignment-tile")


def _state(driver) -> dict:
    """Round, the tiles' image sources and roles, the current image, the badges and the ranking."""
    return driver.execute_script(
        """
        var b = document.querySelector('.alignment-board');
        var tiles = Array.from(b.querySelectorAll('.alignment-tile'));
        var order = document.querySelector('#alignment_rank_refine_order textarea, #alignment_rank_refine_order input');
        return {
            round: Number(b.getAttribute('data-round')),
            session: b.getAttribute('data-session'),
            srcs: tiles.map(t => t.querySelector('img').src),
            roles: tiles.map(t => t.getAttribute('data-role')),
            badges: tiles.map(t => { var s = t.querySelector('.alignment-rank-badge'); return s.hidden ? '' : s.textContent; }),
            current: b.querySelector('.alignment-current img').src,
            ranking: window.alignmentExtension.ranking(),
            order: order.value,
        };
        """
    )


def _press(driver, *keys):
    from selenium.webdriver.common.action_chains import ActionChains

    chain = ActionChains(driver)
    for key in keys:
        chain = chain.send_keys(key)
    chain.perform()


def _screenshot(driver, url: str, theme: str) -> Path:
    from browser.chromium import wait_for

    driver.get(url + ("?__theme=dark" if theme == "dark" else ""))
    wait_for(lambda: _board(driver).get_attribute("data-session"), 60, "the resumed board")
    wait_for(lambda: _tiles(driver)[0].get_attribute("class"), 10)
    _tiles(driver)[1].click()
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)
    path = SCREENSHOTS / f"rank_refine_{theme}.png"
    driver.save_screenshot(str(path))
    return path


@pytest.mark.browser
def test_rounds_by_clicks(page):
    from browser.chromium import set_component_value, wait_for
    from selenium.webdriver.common.by import By

    driver, _, out = page
    wait_for(lambda: driver.find_element(By.ID, f"{ID}_start"), 60, "the tab")
    for name, value in (("width", "64"), ("height", "64"), ("steps", "2"), ("seed", "11"), ("prompt", "a red circle")):
        set_component_value(driver, f"{ID}_{name}", value)
    driver.find_element(By.ID, f"{ID}_start").click()
    _wait_round(driver, 1, 90)
    in_view = "var b = document.querySelector('.alignment-board').getBoundingClientRect(); return [b.top, window.innerHeight];"
    wait_for(  # Start sits below the fold at 1400x1000: the board it fills is brought into view
        lambda: (lambda top, h: -2 <= top < h * 0.5)(*driver.execute_script(in_view)), 10, "the board in view",
        describe=lambda: driver.execute_script(in_view),
    )
    first = _state(driver)
    assert len(first["srcs"]) == 6 and len(set(first["srcs"])) == 6
    assert (out / "refine" / first["session"] / "session.json").is_file()

    tiles = _tiles(driver)
    tiles[2].click()
    tiles[0].click()
    tiles[4].click()
    tiles[4].click()  # a second click takes the pick back
    picked = _state(driver)
    assert picked["badges"] == ["2", "", "1", "", "", ""]
    assert json.loads(picked["order"]) == {"round": 1, "order": [2, 0]}
    driver.find_element(By.ID, f"{ID}_next").click()
    _wait_round(driver, 2)
    second = _state(driver)
    assert second["current"] == first["current"]  # an exploring round does not move the point
    assert second["badges"] == [""] * 6 and second["ranking"] == []
    assert first["srcs"][2] in second["srcs"]  # the picked best comes back in the line search

    j = next(i for i, role in enumerate(second["roles"]) if role.startswith("step"))
    _tiles(driver)[j].click()
    driver.find_element(By.ID, f"{ID}_next").click()
    _wait_round(driver, 3)
    third = _state(driver)
    assert third["current"] == second["srcs"][j]  # the line search moved to the chosen candidate
    assert third["current"] != first["current"]


@pytest.mark.browser
def test_rounds_by_keyboard_and_drag(page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, _, _ = page
    start = _state(driver)
    assert start["round"] == 3
    driver.find_element(By.CSS_SELECTOR, ".alignment-board-head").click()  # focus the page, not a field
    _press(driver, "3", "1", "5")
    assert _state(driver)["ranking"] == [2, 0, 4]
    _press(driver, Keys.BACKSPACE)
    assert _state(driver)["ranking"] == [2, 0]

    # Drag: the chip ranked 2nd onto the 1st swaps them; an unranked tile dropped on the strip goes last.
    chips = driver.find_elements(By.CSS_SELECTOR, ".alignment-ranking .alignment-chip")
    ActionChains(driver).click_and_hold(chips[1]).move_by_offset(5, 5).move_to_element(chips[0]).release().perform()
    assert _state(driver)["ranking"] == [0, 2]
    strip = driver.find_element(By.CSS_SELECTOR, ".alignment-ranking")
    tile = _tiles(driver)[5]
    ActionChains(driver).click_and_hold(tile).move_by_offset(10, 10).move_to_element_with_offset(
        strip, 100, 0
    ).release().perform()
    after_drag = _state(driver)
    assert after_drag["ranking"] == [0, 2, 5]
    assert after_drag["badges"] == ["1", "", "2", "", "", "3"]

    _press(driver, Keys.ENTER)
    _wait_round(driver, 4)
    fourth = _state(driver)
    assert fourth["current"] == start["current"]
    j = next(i for i, role in enumerate(fourth["roles"]) if role.startswith("step"))
    _press(driver, str(j + 1), Keys.ENTER)
    _wait_round(driver, 5)
    assert _state(driver)["current"] == fourth["srcs"][j]


@pytest.mark.browser
def test_undo_params_best_only_save_and_resume_after_reload(page):
    from browser.chromium import set_component_value, wait_for
    from selenium.webdriver.common.by import By

    driver, url, out = page
    before = _state(driver)
    driver.find_element(By.ID, f"{ID}_undo").click()
    _wait_round(driver, 4)
    assert _state(driver)["session"] == before["session"]

    driver.execute_script(  # open the accordion (its header differs between gradio versions)
        "var a = document.getElementById(arguments[0]); (a.querySelector('.label-wrap') || a.querySelector('button')).click();",
        f"{ID}_params",
    )
    wait_for(lambda: driver.find_element(By.CSS_SELECTOR, f"#{ID}_m input"), 10, "the m slider")
    set_component_value(driver, f"{ID}_m", "4")  # fewer candidates from the next round on
    driver.find_element(By.ID, f"{ID}_apply").click()
    board_head = lambda: driver.find_element(By.CSS_SELECTOR, ".alignment-board-head").text  # noqa: E731
    wait_for(lambda: "m=4" in board_head(), 30, "m=4 applied", describe=board_head)
    assert len(_tiles(driver)) == 6  # the round on show stays as it was

    driver.find_element(By.CSS_SELECTOR, ".alignment-best-only").click()
    _tiles(driver)[1].click()  # best only: one click ranks and submits
    new_round = wait_for(
        lambda: _state(driver)["round"] not in (4, 5) and _state(driver)["round"], 60, "the next round"
    )
    record = json.loads((out / "refine" / before["session"] / "rounds" / "0004" / "round.json").read_text())
    assert record["order"] == [1]  # only the best was sent
    assert len(_tiles(driver)) == 4

    driver.find_element(By.ID, f"{ID}_save").click()
    infotext = wait_for(
        lambda: driver.find_element(By.CSS_SELECTOR, f"#{ID}_infotext textarea").get_attribute("value"),
        60,
        "the infotext",
    )
    assert "Seed: 11" in infotext and "Refine rounds: 4" in infotext
    assert len(list((out / "refined").glob("*.png"))) == 1 and len(list((out / "refined").glob("*.safetensors"))) == 1
    driver.find_element(By.CSS_SELECTOR, ".alignment-best-only").click()  # back to full rankings
    shown = _state(driver)

    driver.get(url)  # a reload resumes the session from localStorage
    _wait_round(driver, new_round)
    resumed = wait_for(lambda: _state(driver)["srcs"] and _state(driver), 30, "the resumed images")
    assert resumed["session"] == shown["session"] and resumed["srcs"] == shown["srcs"]
    assert resumed["current"] == shown["current"]
    fields = "return ['steps', 'width', 'seed'].map(n => document.querySelector('#alignment_rank_refine_' + n + ' input').value)"
    assert wait_for(
        lambda: driver.execute_script(fields) == ["2", "64", "11"], 10, "the session's settings in the form"
    )

    for theme in ("light", "dark"):
        assert _screenshot(driver, url, theme).stat().st_size > 10_000


def test_scorer_pre_ranks_the_round_and_next_sends_the_corrected_order(page):
    """Issue 14: a session with a scorer shows its round pre-ranked (badges and ranking strip filled with the
    scorer's order); the user corrects it and Next records both orders."""
    import urllib.request

    from browser.chromium import wait_for
    from selenium.webdriver.common.by import By

    driver, url, _ = page
    body = {"prompt": "a red circle", "seed": 12, "steps": 2, "width": 64, "height": 64, "m": 4, "scorer": "colourfulness"}
    request = urllib.request.Request(
        url + "alignment/v1/refine", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    first = json.loads(urllib.request.urlopen(request, timeout=300).read())
    driver.execute_script("window.localStorage.setItem('alignmentRefine.session', arguments[0]);", first["id"])
    driver.get(url)  # the page resumes the remembered session
    shown = wait_for(
        lambda: (lambda s: s["session"] == first["id"] and s["ranking"] == first["scorer_order"] and "" not in s["badges"] and s)(
            _state(driver)
        ),
        90,
        "the scorer's order as the ranking",
        describe=lambda: _state(driver),
    )
    assert [shown["badges"][i] for i in first["scorer_order"]] == ["1", "2", "3", "4"]
    assert "pre-ranked by colourfulness" in _board(driver).text
    driver.find_element(By.CSS_SELECTOR, ".alignment-board .alignment-clear").click()
    corrected = [first["scorer_order"][1], first["scorer_order"][0]]
    for index in corrected:
        _tiles(driver)[index].click()
    wait_for(lambda: _state(driver)["ranking"] == corrected, 10, "the corrected ranking")
    driver.find_element(By.ID, f"{ID}_next").click()
    _wait_round(driver, first["round"] + 1, 90)
    with urllib.request.urlopen(f"{url}alignment/v1/refine/{first['id']}/rounds", timeout=60) as response:
        log = json.loads(response.read())["rounds"]
    assert log[0] == {**log[0], "order": corrected, "scorer_order": first["scorer_order"], "source": "human"}
