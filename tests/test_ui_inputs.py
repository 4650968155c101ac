"""Form input in both tabs: an empty or invalid number is refused with the field's label, never defaulted."""

from __future__ import annotations

import pytest

from lib_alignment.ui.fields import FieldError, number
from lib_alignment.ui.training_options import option_label, start_numbers

from ui_handlers import build_app, call, handler

T = "alignment_training"
R = "alignment_rank_refine"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    out = tmp_path_factory.mktemp("ui-inputs")
    return build_app(out), out


@pytest.mark.parametrize(
    ("value", "problem"),
    [(None, "enter a whole number"), ("", "enter a whole number"), ("abc", "is not a whole number"), (2.5, "enter a whole number"), (0, "at least 1"), (float("nan"), "enter")],
)
def test_number_refuses_with_the_label(value, problem):
    with pytest.raises(FieldError, match=f"^Training steps: .*{problem}"):
        number(value, "Training steps", integer=True, minimum=1)


def test_number_keeps_valid_values_and_their_type():
    assert number("12", "Steps", integer=True) == 12 and isinstance(number(12.0, "Steps", integer=True), int)
    assert number(" 1e-4 ", "Learning rate", above=0) == pytest.approx(1e-4)


def test_start_numbers_never_fall_back_to_defaults():
    assert start_numbers(30, 2e-4) == {"max_train_steps": 30, "learning_rate": 2e-4}
    with pytest.raises(FieldError, match="^Training steps"):
        start_numbers(None, 1e-4)
    with pytest.raises(FieldError, match="^Learning rate"):
        start_numbers(10, None)


def test_empty_training_steps_starts_no_job_and_names_the_field(app):
    demo, out = app
    message, *_ = call(demo, "training_tab", "on_start", **{f"{T}_steps": None, f"{T}_name": "x", f"{T}_dataset": "pairs.csv"})
    assert message.startswith("**Not started:** Training steps:"), message
    assert not (out / "jobs").exists() or not any((out / "jobs").iterdir())


def test_an_empty_advanced_number_is_refused_with_its_label(app):
    demo, _ = app
    message, *_ = call(
        demo, "training_tab", "on_start", **{f"{T}_opt_rank": None, f"{T}_steps": 10, f"{T}_name": "x", f"{T}_dataset": "pairs.csv"}
    )
    assert message == "**Not started:** LoRA rank: enter a whole number", message


def test_advanced_settings_have_readable_labels(app):
    demo, _ = app
    start = handler(demo, "training_tab", "on_start")
    labels = [c.label for c in start.inputs if (c.elem_id or "").startswith(f"{T}_opt_")]
    assert labels and "LoRA rank" in labels and "KTO weight of liked images (λ_D)" in labels
    assert not [label for label in labels if "_" in label.replace("λ_", "")], labels
    assert all(label[0].isupper() or not label[0].isascii() for label in labels), labels
    assert option_label("kto_lambda_desirable") != "kto lambda desirable"


@pytest.mark.parametrize(
    ("field", "label"), [("seed", "Seed (-1: random)"), ("mu", "Exploration μ"), ("lr", "Step size (line search)")]
)
def test_rank_and_refine_refuses_an_empty_number_with_its_label(app, field, label):
    demo, _ = app
    board, session_id, *_ = call(demo, "rank_refine_tab", "on_start", **{f"{R}_{field}": None, f"{R}_session": "", f"{R}_task": ""})
    assert label in board and "enter a" in board, board
    assert session_id == ""


def test_check_dataset_without_a_dataset_answers_in_the_box(app):
    demo, _ = app
    (report,) = call(demo, "training_tab", "on_check", **{f"{T}_dataset": "", f"{T}_source": "A file or folder"})
    assert report.startswith("Not checked: dataset:"), report


def _update(value):
    """A gr.update as a dict (gradio 3.41 and 4+ both give one)."""
    return value if isinstance(value, dict) else {"value": value}


def test_the_dataset_report_hides_for_ddpo_and_clears_on_a_new_source(app):
    demo, _ = app
    out = call(demo, "training_tab", "on_method", **{f"{T}_method": "DDPO"})
    entry = handler(demo, "training_tab", "on_method")
    by_id = {c.elem_id: _update(v) for c, v in zip(entry.outputs, out)}
    assert by_id[f"{T}_report"]["visible"] is False and by_id[f"{T}_report"]["value"] == ""
    out = call(demo, "training_tab", "on_source", **{f"{T}_source": "Upload"})
    entry = handler(demo, "training_tab", "on_source")
    by_id = {c.elem_id: _update(v) for c, v in zip(entry.outputs, out)}
    assert by_id[f"{T}_check"]["visible"] is False and by_id[f"{T}_report"]["value"] == ""


def test_the_time_estimate_uses_the_speed_measured_here():
    from lib_alignment.jobs.runner import JobStatus
    from lib_alignment.ui.training_view import time_estimate

    def job(name, method, model, sps, created):
        return JobStatus(id=f"20260101-00000{created}-abcdef", name=name, method=method, state="finished", step=10,
                         total=10, seconds_per_step=sps, model=model, created=float(created))  # fmt: skip

    assert "not measured on this machine yet" in time_estimate([], 500, "kto", "tiny")
    jobs = [job("old", "kto", "tiny", 9.0, 1), job("new", "kto", "tiny", 2.0, 2), job("other", "dpo", "tiny", 1.0, 3)]
    text = time_estimate(jobs, 300, "kto", "tiny")
    assert "about 10 min 00 s for 300 steps" in text and "new" in text  # the latest KTO job on this model
    assert "about 5 min 00 s" in time_estimate(jobs, 300, "dpo", "tiny")
    assert "about 2 min 30 s" in time_estimate(jobs, 150, "mapo", "tiny")  # no MaPO job yet: the newest on the model
    assert time_estimate(jobs, None, "kto", "tiny") == ""


def test_the_jobs_table_fits_without_the_id_column():
    from lib_alignment.jobs.runner import JobStatus
    from lib_alignment.ui.training_view import jobs_table_html

    status = JobStatus(id="20260101-000000-abcdef", name="mine", method="kto", state="finished", step=5, total=5,
                       outputs={"lora": "/x/mine.safetensors"})  # fmt: skip
    table = jobs_table_html([status])
    assert table.count("<th style") == 8 and "Job id" not in table
    assert "title='job 20260101-000000-abcdef'" in table and "alignment-jobs-scroll" in table


def test_the_cpu_preset_starts_with_a_run_that_shows_within_minutes(app):
    from lib_alignment.jobs.presets import preset_start

    assert preset_start("cpu") == {"max_train_steps": 60, "learning_rate": 2e-3}
    assert preset_start("24gb") == {}
    demo, _ = app
    entry = handler(demo, "training_tab", "on_preset")
    by_id = {c.elem_id: _update(v) for c, v in zip(entry.outputs, entry.fn("CPU (tiny model)"))}
    assert by_id[f"{T}_steps"]["value"] == 60 and by_id[f"{T}_learning_rate"]["value"] == 2e-3
    assert by_id[f"{T}_opt_batch_size"]["value"] == 4
    by_id = {c.elem_id: _update(v) for c, v in zip(entry.outputs, entry.fn("24 GB GPU"))}
    assert "value" not in by_id[f"{T}_steps"]


@pytest.mark.parametrize("method", ["DPO", "KTO", "MaPO", "DDPO"])
def test_every_default_value_passes_the_field_checks(app, method):
    demo, _ = app
    message, *_ = call(demo, "training_tab", "on_start", **{f"{T}_method": method, f"{T}_name": "", f"{T}_dataset": "x.csv"})
    assert message == "**Not started:** name: give the LoRA a name", message  # the first check after the fields
