"""The Alignment Training tab in headless Chromium: a DPO job on the tiny model, from start to LoRA."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest

from lib_alignment.training.data.synthetic import make_toy_pairs

from .chromium import app_server, chromium, set_component_value, skip_without_chromium, wait_for

ID = "alignment_training"


def _text(driver, elem_id: str) -> str:
    return driver.execute_script("var e = document.getElementById(arguments[0]); return e ? e.innerText : '';", elem_id)


def _field_value(driver, elem_id: str) -> str:
    return driver.execute_script(
        "var e = document.getElementById(arguments[0]); if (!e) return ''; var i = e.querySelector('textarea, input'); return i ? i.value : '';",
        elem_id,
    )


def _progress(driver) -> dict:
    return (
        driver.execute_script(
            """
        var p = document.querySelector('#alignment_training_progress .alignment-job-progress');
        if (!p) return {};
        var bar = p.querySelector('.alignment-job-bar');
        return {state: p.dataset.state, step: parseInt(p.dataset.step || '0'), total: p.dataset.total, job: p.dataset.job,
                width: bar ? bar.style.width : ''};
        """
        )
        or {}
    )


def _images(driver, elem_id: str) -> int:
    """Loaded <img> elements inside a component (gradio 3.41, 4.40 and 6 all render <img>)."""
    return driver.execute_script(
        "var e = document.getElementById(arguments[0]); if (!e) return 0;"
        "return Array.from(e.querySelectorAll('img')).filter(i => i.complete && i.naturalWidth > 0).length;",
        elem_id,
    )


def _click(driver, elem_id: str) -> None:
    driver.execute_script(
        "var e = document.getElementById(arguments[0]); var b = e.matches('button') ? e : e.querySelector('button'); b.click();",
        elem_id,
    )


def _open_tab(driver, url: str) -> None:
    driver.get(url)
    shown = """
        var start = document.getElementById(arguments[0]);
        if (start && start.offsetParent) return true;
        // gradio 6 names the tab's button <elem_id>-button (another, hidden-overflow copy has no id)
        var b = document.getElementById('tab_alignment_training-button')
            || Array.from(document.querySelectorAll('button')).filter(b => b.innerText.trim() === 'Alignment Training' && b.offsetParent).pop();
        if (b) b.click();
        return false;"""
    wait_for(lambda: driver.execute_script(shown, f"{ID}_start"), 120, "the training tab")


def _jobs(url: str) -> list:
    with urllib.request.urlopen(url + "alignment/v1/jobs", timeout=10) as response:
        return json.loads(response.read())["jobs"]


@pytest.mark.browser
@pytest.mark.slow
def test_dpo_job_from_the_tab_runs_cancels_resumes_and_lists_its_lora(tmp_path, monkeypatch):
    skip_without_chromium()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the app and its trainer process inherit it
    data = make_toy_pairs(tmp_path / "toy", 6, resolution=128)
    broken = tmp_path / "broken.csv"
    broken.write_text("caption,image_0,image_1,label_0,label_1\na red circle,missing.png,gone.png,1,0\n")
    out = tmp_path / "out"
    shots = Path(os.environ.get("ALIGNMENT_SCREENSHOTS", tmp_path))
    with app_server(out) as url, chromium() as driver:
        _open_tab(driver, url)

        # a bad dataset: the report names the row and field, and Start starts nothing
        set_component_value(driver, f"{ID}_dataset", str(broken))
        _click(driver, f"{ID}_check")
        report = wait_for(
            lambda: "row 2" in _field_value(driver, f"{ID}_report") and _field_value(driver, f"{ID}_report"),
            60,
            "the report",
        )
        assert "image_0" in report and "Nothing starts" in report
        set_component_value(driver, f"{ID}_name", "browser-dpo")
        _click(driver, f"{ID}_start")
        wait_for(lambda: "Not started" in _text(driver, f"{ID}_start_message"), 60, "the refusal")
        assert _jobs(url) == []

        # a good dataset: start a 12-step job
        set_component_value(driver, f"{ID}_dataset", str(data))
        set_component_value(driver, f"{ID}_steps", "12")
        driver.execute_script(
            "var a = document.getElementById(arguments[0]); (a.querySelector('button, .label-wrap') || a).click();",
            f"{ID}_advanced",
        )
        wait_for(
            lambda: driver.execute_script(
                "var e = document.getElementById(arguments[0]); return e && e.offsetParent;", f"{ID}_other"
            ),
            30,
            "the advanced settings",
        )
        set_component_value(driver, f"{ID}_other", "sample_steps = 2")
        _click(driver, f"{ID}_start")
        wait_for(lambda: "Started" in _text(driver, f"{ID}_start_message"), 90, "the start message")
        assert "no problems" in _field_value(driver, f"{ID}_report")
        moving = wait_for(
            lambda: (p := _progress(driver)).get("state") == "running" and p["step"] >= 2 and p,
            240,
            "the progress bar to move",
        )
        assert moving["total"] == "12" and moving["width"] not in ("", "0%", "0.0%")
        wait_for(lambda: _images(driver, f"{ID}_plot") >= 1, 30, "the loss plot")
        wait_for(lambda: _images(driver, f"{ID}_samples") >= 1, 30, "a sample image")
        driver.save_screenshot(str(shots / "training-tab-running.png"))

        _click(driver, f"{ID}_cancel")
        cancelled = wait_for(lambda: (p := _progress(driver)).get("state") == "cancelled" and p, 180, "the job to stop")
        assert 2 <= cancelled["step"] < 12
        assert (out / "loras" / "browser-dpo.safetensors").is_file()  # a usable LoRA of the steps so far

        # a page reload keeps the job
        _open_tab(driver, url)
        wait_for(
            lambda: (p := _progress(driver)).get("job") == moving["job"] and p.get("state") == "cancelled",
            60,
            "the job after a reload",
        )
        wait_for(lambda: driver.find_element("id", f"{ID}_resume").is_enabled(), 30, "the resume button")

        _click(driver, f"{ID}_resume")
        finished = wait_for(
            lambda: (p := _progress(driver)).get("state") == "finished" and p, 300, "the resumed job to finish"
        )
        assert finished["step"] == 12
        wait_for(
            lambda: "browser-dpo" in _text(driver, f"{ID}_loras") and _images(driver, f"{ID}_loras") >= 1,
            60,
            "the LoRA card with its preview",
        )
        assert "Finished" in _text(driver, f"{ID}_jobs")
        log_view = (
            "var t = document.querySelector('#alignment_training_log textarea');"
            "return t ? [t.scrollTop, t.clientHeight, t.scrollHeight, t.value] : null;"
        )
        top, visible, height, text = wait_for(lambda: driver.execute_script(log_view), 30, "the log box")
        assert height > visible and top + visible >= height - 4, (top, visible, height)  # it overflows and shows its end
        assert "\x1b[" not in text and "[A" not in text  # no terminal escape codes
        assert jobs_table_fits(driver), "the jobs table needs horizontal scrolling at 1400 px"
        driver.save_screenshot(str(shots / "training-tab-finished.png"))

        # the chosen method survives a reload
        driver.execute_script(
            "Array.from(document.querySelectorAll('#' + arguments[0] + ' label')).filter(l => l.innerText.trim() === 'KTO')[0].click();",
            f"{ID}_method",
        )
        _open_tab(driver, url)
        checked = "var i = document.querySelector('#' + arguments[0] + ' input[type=radio]:checked'); return i ? i.value : null;"
        wait_for(lambda: driver.execute_script(checked, f"{ID}_method") == "KTO", 30, "KTO chosen again after the reload",
                 describe=lambda: driver.execute_script(checked, f"{ID}_method"))
    assert (out / "loras" / "browser-dpo.preview.png").is_file()
    [job] = [j for j in _jobs_from_folder(out)]
    assert job["attempts"][-1]["resumed"] is True


def jobs_table_fits(driver) -> bool:
    """The jobs table is no wider than the box that holds it (no horizontal scrolling)."""
    return driver.execute_script(
        "var t = document.querySelector('#alignment_training_jobs table'); if (!t) return false;"
        "var box = t.parentElement; return t.scrollWidth <= box.clientWidth + 1;"
    )


def _jobs_from_folder(out: Path) -> list:
    return [json.loads(p.read_text()) for p in sorted((out / "jobs").glob("*/job.json"))]


@pytest.fixture(autouse=True)
def _keep_artifacts_on_failure(request, tmp_path):
    """Copy the app's log and screenshots next to the test's tmp folder when asked (ALIGNMENT_KEEP)."""
    yield
    keep = os.environ.get("ALIGNMENT_KEEP")
    if keep:
        shutil.copytree(tmp_path, Path(keep) / request.node.name, dirs_exist_ok=True)


@pytest.mark.browser
@pytest.mark.slow
def test_tab_inside_the_webui_page_follows_a_running_job(tmp_path):
    """In an A1111-style page over the fake WebUI, the tab's poll (gradio 3.41: a load event with
    every=) keeps updating after the WebUI renders the tab into its page. The job is one a previous
    WebUI process started: the tab finds it by its folder and pid."""
    skip_without_chromium()
    import subprocess
    import sys
    import time

    from lib_alignment.jobs.process import process_token

    from .chromium import ROOT, free_port, page_process

    data = tmp_path / "webui"
    job_dir = data / "outputs" / "alignment" / "jobs" / "20250101-000000-abcdef"
    (job_dir / "run").mkdir(parents=True)
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    record = {
        "id": job_dir.name,
        "name": "from-before",
        "method": "dpo",
        "created": time.time(),
        "config": {"max_train_steps": 10},
        "attempts": [{"pid": trainer.pid, "pid_token": process_token(trainer.pid), "started": time.time()}],
    }
    (job_dir / "job.json").write_text(json.dumps(record))
    events = job_dir / "run" / "events.jsonl"

    def emit(**event) -> None:
        with events.open("a") as handle:
            handle.write(json.dumps({"time": time.time(), "run": "from-before", **event}) + "\n")

    emit(event="start", step=0, total=10, method="dpo")
    port = free_port()
    argv = [sys.executable, str(ROOT / "tests" / "browser" / "webui_page.py"), str(port)]
    env = {"FAKE_WEBUI_DATA": str(data), "GRADIO_ANALYTICS_ENABLED": "False"}
    try:
        with page_process(argv, port, tmp_path / "page.log", env=env) as url, chromium() as driver:
            _open_tab(driver, url)
            wait_for(
                lambda: _progress(driver).get("job") == job_dir.name and _progress(driver).get("state") == "running",
                60,
                "the running job",
            )
            assert driver.execute_script(
                "return !!document.getElementById(arguments[0]);", f"{ID}_unload"
            )  # the WebUI-only option
            for step in (1, 2, 3):
                emit(event="step", step=step, total=10, loss=0.7 - 0.01 * step, reward_accuracy=0.5)
            wait_for(lambda: _progress(driver).get("step") == 3, 30, "the poll to show step 3")
            wait_for(lambda: _images(driver, f"{ID}_plot") >= 1, 30, "the loss plot")
            trainer.kill()
            trainer.wait()
            emit(event="done", step=3, total=10, reason="cancelled", outputs={})
            wait_for(lambda: _progress(driver).get("state") == "cancelled", 30, "the ended job")
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait()
