"""Cancelling before the first training step writes no LoRA, and the tab and the CLI say so."""

from __future__ import annotations

from pathlib import Path

import pytest

from lib_alignment.training import TrainConfig, Trainer
from lib_alignment.training.events import read_events

RES = 32


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    from training_helpers import single_thread

    with single_thread():
        yield


def test_a_job_cancelled_at_step_zero_exports_nothing(tmp_path: Path):
    from lib_alignment.models.tiny import tiny_random_pipeline
    from lib_alignment.training.data.synthetic import make_toy_pairs

    data = make_toy_pairs(tmp_path / "pairs", 4, preferred="red", resolution=RES, seed=0)
    config = TrainConfig(
        method="dpo", model="tiny-random", data=str(data), output_dir=str(tmp_path / "loras"), name="early",
        resolution=RES, batch_size=1, max_train_steps=3, checkpoint_every=0, preview=True, sample_steps=2,
        progress_bar=False, tensorboard=False, run_dir=str(tmp_path / "run"),
    )  # fmt: skip
    stop = config.resolved_stop_file()
    trainer = Trainer(config, pipe=tiny_random_pipeline(seed=0), listeners=[lambda e: stop.touch() if e["event"] == "start" else None])
    result = trainer.train()
    assert (result.status, result.step) == ("cancelled", 0)
    assert result.outputs.get("lora") is None
    assert not list((tmp_path / "loras").glob("*")), "nothing may appear among the LoRAs"
    events = read_events(tmp_path / "run" / "events.jsonl")
    done = [e for e in events if e["event"] == "done"][-1]
    assert done["outputs"].get("lora") is None
    assert any("no LoRA written" in e.get("message", "") for e in events if e["event"] == "status")


def test_the_tab_says_no_lora_was_written():
    from lib_alignment.jobs.runner import JobStatus
    from lib_alignment.ui.training_view import lora_cards, progress_html

    fields = {f for f in JobStatus.__dataclass_fields__}
    values = {"id": "20260101-000000-abcd", "name": "early", "method": "dpo", "state": "cancelled", "step": 0, "total": 500}
    status = JobStatus(**{k: v for k, v in values.items() if k in fields})
    assert "No LoRA written" in progress_html(status)
    assert lora_cards([status]) == []


def test_the_cancel_message_and_another_jobs_grid_do_not_linger(tmp_path: Path):
    from ui_handlers import build_app, handler

    demo = build_app(tmp_path / "app")
    tick = handler(demo, "training_tab", "on_refresh")  # the poll's renderer (gradio 3.41 wraps the poll's own fn)
    ids = [getattr(c, "elem_id", None) for c in tick.outputs]
    # the page last showed job A's grid and a "Cancelling…" note; job A is gone, nothing is cancelling any more
    out = tick.fn(None, {"compare_job": "A", "grid_job": "A", "job_key": ("A", 1, 0, "cancelling")})
    shown = dict(zip(ids, out))
    assert shown["alignment_training_action_message"] == ""
    assert shown["alignment_training_grid"] is None and shown["alignment_training_compare_message"] == ""
