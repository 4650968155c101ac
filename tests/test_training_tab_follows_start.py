"""The training tab shows the job its Start began, even when a poll answer that left before Start's answer
carries the previous job's label (the race the real A1111 page hit under load), until the user picks a job."""

from __future__ import annotations

from pathlib import Path

T = "alignment_training"


def _shown_job(tick, out: list) -> str:
    from lib_alignment.ui.training_view import job_id_of

    ids = [getattr(c, "elem_id", None) for c in tick.outputs]
    job = dict(zip(ids, out))[f"{T}_job"]
    return job_id_of(job.get("value") if isinstance(job, dict) else getattr(job, "value", job))


def test_a_stale_poll_does_not_take_the_page_off_the_job_start_began(tmp_path: Path):
    from lib_alignment.jobs import runner_for
    from lib_alignment.training.data.synthetic import make_toy_pairs
    from lib_alignment.ui.app import build_blocks, standalone_context
    from lib_alignment.ui.training_view import job_label
    from ui_handlers import call, handler

    ctx = standalone_context("tiny-random", tmp_path / "app", device="cpu")
    demo = build_blocks(ctx)
    runner = runner_for(ctx)
    data = make_toy_pairs(tmp_path / "pairs", 4, preferred="red", resolution=32, seed=0)
    start = {f"{T}_method": "DPO", f"{T}_dataset": str(data), f"{T}_steps": 1, f"{T}_other": "resolution = 32\npreview = false\nsample_steps = 1"}

    message, *_ = call(demo, "training_tab", "on_start", **start, **{f"{T}_name": "first"})
    assert message.startswith("Started"), message
    first = runner.list()[0]
    runner.wait(first.id, timeout=300)
    old_label = job_label(runner.status(first.id))
    message, *_ = call(demo, "training_tab", "on_start", **start, **{f"{T}_name": "second"})
    assert message.startswith("Started"), message
    second = next(s for s in runner.list() if s.name == "second")

    tick = handler(demo, "training_tab", "on_refresh")
    # a poll that read the dropdown before Start answered: the old job's label and the page's old state
    assert _shown_job(tick, tick.fn(old_label, {"labels": [old_label]})) == second.id
    # the user picks the first job again: that choice holds over the following polls
    select = handler(demo, "training_tab", "on_select")
    out = select.fn(old_label, {"labels": [old_label]})
    assert _shown_job(select, out) == first.id
    state = out[-1]
    assert _shown_job(tick, tick.fn(old_label, state)) == first.id
    runner.wait(second.id, timeout=300)
