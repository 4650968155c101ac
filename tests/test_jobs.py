"""Training jobs: the real `train` command line in its own process, on the tiny random model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from lib_alignment.jobs import RANK_REFINE, DatasetError, JobBusy, JobConflict, JobRequest, JobRunner, RequestError
from lib_alignment.jobs.host import JobHost
from lib_alignment.training.data.synthetic import make_toy_pairs

#: One thread per trainer: on a busy 2-core machine OpenMP spinning makes tiny steps far slower.
QUIET_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class Calls:
    def __init__(self) -> None:
        self.refreshed = 0

    def refresh(self) -> None:
        self.refreshed += 1


def make_runner(root: Path, calls: Calls | None = None, model: str = "tiny-random") -> JobRunner:
    host = JobHost(
        name="standalone",
        output_dir=root / "out",
        lora_dir=root / "out" / "loras",
        model_source=lambda: model,
        env=dict(QUIET_ENV),
        refresh_loras=(calls.refresh if calls else (lambda: None)),
    )
    return JobRunner(host)


def wait_until(condition, timeout: float = 240, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    return make_toy_pairs(tmp_path_factory.mktemp("toy"), 6, resolution=128)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, toy_data):
    """A 3-step DPO job run to the end; a second start tried while it ran."""
    root = tmp_path_factory.mktemp("jobs")
    calls = Calls()
    runner = make_runner(root, calls)
    status = runner.start(
        JobRequest(
            method="dpo",
            name="toy-dpo",
            dataset=str(toy_data),
            preset="cpu",
            options={"max_train_steps": 3, "sample_steps": 2},
        )
    )
    assert status.state == "running"
    with pytest.raises(JobBusy) as busy:
        runner.start(JobRequest(method="dpo", name="second", dataset=str(toy_data), preset="cpu"))
    final = runner.wait(status.id, timeout=300)
    return {"root": root, "runner": runner, "calls": calls, "status": final, "busy": busy.value, "first": status}


@pytest.mark.slow
def test_job_runs_to_the_end_and_the_lora_lands_in_the_lora_folder(finished):
    status, runner = finished["status"], finished["runner"]
    assert status.state == "finished", status.message
    assert (status.step, status.total) == (3, 3)
    lora = Path(status.outputs["lora"])
    assert lora.parent == runner.host.lora_dir and lora.name == "toy-dpo.safetensors"
    from safetensors import safe_open

    with safe_open(str(lora), framework="pt") as handle:
        assert handle.metadata()["ss_output_name"] == "toy-dpo"
        assert any(key.startswith("lora_unet_") for key in handle.keys())  # noqa: SIM118 - not a dict
    preview = Path(status.outputs["preview"])
    assert preview == runner.host.lora_dir / "toy-dpo.preview.png"
    with Image.open(preview) as image:
        assert image.size == (128, 128)
    assert json.loads(Path(status.outputs["metadata"]).read_text())["preferred weight"] == 1.0
    # the new LoRA was announced to the host exactly once
    assert finished["calls"].refreshed == 1
    # the job folder holds its config, log, events and samples
    folder = runner.folder(status.id)
    assert json.loads((folder / "config.json").read_text())["max_train_steps"] == 3
    assert "training finished" in runner.log(status.id)
    assert status.samples and all(Path(p).is_file() for p in status.samples)
    assert status.figures["loss"] > 0 and "reward_accuracy" in status.figures


@pytest.mark.slow
def test_a_second_start_is_refused_with_the_reason(finished):
    busy = finished["busy"]
    assert busy.active == finished["first"].id
    assert "toy-dpo" in str(busy) and "one training job runs at a time" in str(busy)
    assert len(finished["runner"].job_ids()) == 1


@pytest.mark.slow
def test_the_same_name_is_refused_once_its_lora_exists(finished, toy_data):
    with pytest.raises(JobConflict, match="already exists"):
        finished["runner"].start(JobRequest(method="dpo", name="toy-dpo", dataset=str(toy_data), preset="cpu"))


@pytest.mark.slow
def test_a_new_runner_reads_the_job_folder_after_a_restart(finished):
    again = make_runner(finished["root"])
    [status] = again.list()
    assert status.id == finished["status"].id
    assert status.state == "finished" and status.step == 3
    assert status.outputs == finished["status"].outputs
    summary = again.summary(status.id)
    assert [step for step, _ in summary.series["loss"]] == [1, 2, 3]


@pytest.mark.slow
def test_progress_plot_draws_the_logged_curves(finished):
    from lib_alignment.jobs.plot import render_curves

    summary = finished["runner"].summary(finished["status"].id)
    drawn = render_curves(summary.series, ["loss", summary.reward_key()], total=3)
    empty = render_curves({}, ["loss", "reward_accuracy"], total=3)
    assert drawn.size == empty.size
    blue = sum(1 for pixel in drawn.getdata() if pixel[2] > 150 and pixel[0] < 80)  # the loss line's colour
    assert blue > 50
    assert sum(1 for pixel in empty.getdata() if pixel[2] > 150 and pixel[0] < 80) == 0


@pytest.mark.slow
def test_cancel_keeps_a_usable_lora_and_resume_continues_to_the_end(tmp_path, toy_data):
    runner = make_runner(tmp_path)
    status = runner.start(
        JobRequest(
            method="dpo",
            name="stop-go",
            dataset=str(toy_data),
            preset="cpu",
            options={"max_train_steps": 6, "sample_every": 0, "checkpoint_every": 1, "sample_steps": 2},
        )
    )
    wait_until(
        lambda: runner.status(status.id).step >= 1 or runner.status(status.id).state not in ("queued", "running"),
        what="the first step",
    )
    cancelling = runner.cancel(status.id)
    assert cancelling.state == "cancelling"
    stopped = runner.wait(status.id, timeout=180)
    assert stopped.state == "cancelled", stopped.message
    assert 1 <= stopped.step < 6 and stopped.resumable
    assert Path(stopped.outputs["lora"]).is_file() and Path(stopped.outputs["checkpoint"]).is_dir()
    with pytest.raises(JobConflict):
        runner.cancel(status.id)

    restarted = make_runner(tmp_path)  # as after a WebUI restart
    resumed = restarted.resume(status.id)
    assert resumed.state == "running"
    done = restarted.wait(status.id, timeout=240)
    assert done.state == "finished", done.message
    assert (done.step, done.total) == (6, 6)
    summary = restarted.summary(status.id)
    assert summary.starts[-1]["resumed"] is True and summary.starts[-1]["step"] == stopped.step
    assert [step for step, _ in summary.series["loss"]] == list(range(1, 7))
    record = restarted.record(status.id)
    assert [a["resumed"] for a in record["attempts"]] == [False, True]
    with pytest.raises(JobConflict, match="finished"):
        restarted.resume(status.id)


def _job_folder(runner: JobRunner, job_id: str, attempts: list[dict], events: list[dict]) -> None:
    folder = runner.root / job_id
    (folder / "run").mkdir(parents=True)
    record = {
        "id": job_id,
        "name": "orphan",
        "method": "dpo",
        "created": time.time(),
        "config": {"max_train_steps": 10},
        "attempts": attempts,
    }
    (folder / "job.json").write_text(json.dumps(record))
    (folder / "run" / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def test_process_liveness_decides_running_or_interrupted_across_restarts(tmp_path):
    runner = make_runner(tmp_path)
    now = time.time()
    events = [
        {"event": "start", "time": now, "step": 0, "total": 10},
        {"event": "step", "time": now + 1, "step": 2, "total": 10, "loss": 0.7},
    ]
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    _job_folder(runner, "20240101-000000-aaaaaa", [{"pid": ended.pid, "started": now}], events)
    status = runner.status("20240101-000000-aaaaaa")
    assert (status.state, status.step, status.resumable) == ("interrupted", 2, True)

    from lib_alignment.jobs.process import process_token

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _job_folder(
            runner,
            "20240101-000001-bbbbbb",
            [{"pid": sleeper.pid, "pid_token": process_token(sleeper.pid), "started": now}],
            events,
        )
        status = runner.status("20240101-000001-bbbbbb")
        assert status.state == "running"  # a process from an earlier WebUI session still trains
        assert runner.active().id == "20240101-000001-bbbbbb"
        assert runner.cancel("20240101-000001-bbbbbb").state == "cancelling"
        assert (runner.root / "20240101-000001-bbbbbb" / "run" / "STOP").is_file()
        # the same pid with another start time is a different process: the job is not running
        _job_folder(runner, "20240101-000002-cccccc", [{"pid": sleeper.pid, "pid_token": "1", "started": now}], events)
        assert runner.status("20240101-000002-cccccc").state == "interrupted"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert runner.status("20240101-000001-bbbbbb").state == "interrupted"
    assert runner.active() is None


def test_a_bad_dataset_shows_its_report_and_starts_nothing(tmp_path, toy_data):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "pairs.csv").write_text(
        "caption,image_0,image_1,label_0,label_1\na red circle,missing.png,also-missing.png,1,0\n"
    )
    runner = make_runner(tmp_path)
    report = runner.check_dataset(str(bad / "pairs.csv"), "dpo")
    assert report.blocking and any(p.row == 2 and p.field == "image_0" for p in report.problems)
    with pytest.raises(DatasetError) as error:
        runner.start(JobRequest(method="dpo", name="bad", dataset=str(bad / "pairs.csv"), preset="cpu"))
    assert "row 2" in error.value.report.format_text()
    assert runner.job_ids() == [] and not runner._procs
    assert not [p for p in (runner.root / ".staging").glob("new-*")]
    with pytest.raises(RequestError, match="rank") as bad_option:
        runner.start(JobRequest(method="dpo", name="bad2", dataset=str(toy_data), options={"rank": 0}))
    assert bad_option.value.field == "rank"
    with pytest.raises(RequestError, match="output_dir"):
        runner.start(JobRequest(method="dpo", name="bad3", dataset=str(toy_data), options={"output_dir": "/tmp"}))
    with pytest.raises(RequestError, match="method"):
        runner.start(JobRequest(method="sft", name="bad4", dataset=str(toy_data)))
    assert runner.job_ids() == [] and not runner._procs


def test_options_become_flags_the_train_command_reads_back(tmp_path):
    from lib_alignment.cli import build_parser
    from lib_alignment.commands.train import build_config as cli_config
    from lib_alignment.jobs.request import build_config, command_line_flags, merge_options

    request = JobRequest(
        method="kto",
        name="flags",
        dataset="x.csv",
        preset="8gb",
        options={
            "learning_rate": 3e-5,
            "positive_ratio": None,
            "sample_prompts": ["a red circle, big", "-not a flag"],
            "rank": 12,
        },
    )
    options = merge_options(request)
    assert options["rank"] == 12 and options["gradient_checkpointing"] is True  # request beats preset
    assert options["sample_every"] == 50 and options["checkpoint_every"] == 50  # a tenth of the default 500 steps
    options.update(
        method="kto",
        name="flags",
        model="tiny-random",
        data=str(tmp_path / "x.csv"),
        output_dir=str(tmp_path),
        run_dir=str(tmp_path / "run"),
    )
    config = build_config(options)
    args = build_parser().parse_args(["train", *command_line_flags(config)])
    assert cli_config(args).to_dict() == config.to_dict()
    with pytest.raises(RequestError) as error:
        merge_options(JobRequest(method="dpo", name="x", options={"max_train_step": 5}))
    assert error.value.field == "max_train_step"


def test_presets_are_valid_trainer_options_and_follow_gpu_memory():
    from lib_alignment.jobs.presets import PRESETS, detect_preset, preset_options
    from lib_alignment.training.config import TrainConfig

    for preset in PRESETS:
        TrainConfig.from_dict({**preset_options(preset.key), "method": "dpo"}).validate(require_paths=False)
    assert detect_preset(None) == "cpu"
    assert [detect_preset(gb) for gb in (4, 6, 8, 11.7, 16, 24, 80)] == [
        "6gb",
        "6gb",
        "8gb",
        "12gb",
        "12gb",
        "24gb",
        "24gb",
    ]
    assert (
        preset_options("6gb")["gradient_checkpointing"] is True
        and preset_options("24gb")["batch_size"] > preset_options("6gb")["batch_size"]
    )


def _refine_session(folder: Path, prompt: str, m: int, order: list[int]) -> None:
    round_dir = folder / "rounds" / "0001"
    round_dir.mkdir(parents=True)
    names = []
    for i in range(m):
        name = f"candidate-{i}.png"
        Image.new("RGB", (64, 64), (40 * i, 20, 200 - 30 * i)).save(round_dir / name)
        names.append(name)
    (round_dir / "round.json").write_text(
        json.dumps({"round": 1, "type": "rank", "images": names, "order": order, "prompt": prompt})
    )
    (folder / "session.json").write_text(json.dumps({"rounds": [1]}))


def test_rank_and_refine_rankings_are_a_dataset(tmp_path):
    runner = make_runner(tmp_path)
    empty = runner.check_dataset(RANK_REFINE, "dpo")
    assert empty.blocking and "Rank & Refine" in empty.format_text()
    refine = runner.host.output_dir / "refine"
    _refine_session(refine / ("a" * 32), "a red circle", m=4, order=[2, 0])
    _refine_session(refine / ("b" * 32), "a blue square", m=3, order=[1, 2, 0])
    report = runner.check_dataset(RANK_REFINE, "dpo")
    assert not report.blocking, report.format_text()
    assert report.counts["pairs"] == (1 + 2 * 2) + 3  # top-2 of 4: k(k-1)/2 + k(m-k); full ranking of 3: 3
    kto = runner.check_dataset(RANK_REFINE, "kto")
    assert not kto.blocking and kto.counts["desirable"] == 2 and kto.counts["undesirable"] == 3
    mixed = runner.check_dataset(RANK_REFINE, "listwise")  # a top-2 round has no full ranking: its pairs
    assert not mixed.blocking and mixed.counts.get("rows") == 8, mixed.counts
    import shutil

    shutil.rmtree(refine / ("a" * 32))
    _refine_session(refine / ("c" * 32), "a green triangle", m=3, order=[0, 2, 1])
    listwise = runner.check_dataset(RANK_REFINE, "listwise")  # every round fully ranked: whole rankings
    assert not listwise.blocking and listwise.counts.get("rows") == 2, listwise.counts


def test_uploads_are_unpacked_safely_and_checked(tmp_path, toy_data):
    from lib_alignment.jobs.datasets import stage_upload

    runner = make_runner(tmp_path)
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in toy_data.parent.rglob("*"):
            if path.is_file():
                zf.write(path, Path("my-set") / path.relative_to(toy_data.parent))
    staged = stage_upload(archive, runner.root)
    assert staged.name == "my-set" and (staged / "pairs.csv").is_file()
    assert not runner.check_dataset(str(staged / "pairs.csv"), "dpo").blocking
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../escaped.txt", "x")
    with pytest.raises(DatasetError, match="escapes"):
        stage_upload(evil, runner.root)
    assert not (tmp_path / "escaped.txt").exists()


@pytest.mark.slow
def test_before_after_grid_applies_the_lora_and_restores_the_model(finished, tiny_random_pipe, tmp_path):
    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file

    from lib_alignment.generation import DiffusersBackend
    from lib_alignment.jobs.compare import before_after_images, grid_image

    trained = load_file(finished["status"].outputs["lora"])
    strong = {
        k: (v.float() * 300 if ".lora_up." in k else v.float()) for k, v in trained.items()
    }  # three steps move little
    lora = tmp_path / "strong.safetensors"
    save_file(strong, str(lora))
    backend = DiffusersBackend(tiny_random_pipe, model_name="tiny-random")
    original = {k: v.clone() for k, v in tiny_random_pipe.unet.state_dict().items()}
    before, after = before_after_images(backend, lora, "strong", ["a red circle"], [1, 2], in_webui=False, steps=3)
    for key, value in tiny_random_pipe.unet.state_dict().items():
        assert torch.equal(value, original[key]), key
    again, _ = before_after_images(
        backend, lora, "strong", ["a red circle"], [1, 2], in_webui=False, steps=3, weight=0.0
    )
    pixels = [np.asarray(im, dtype=np.int16) for im in (*before, *after, *again)]
    assert np.array_equal(pixels[0], pixels[4]) and np.array_equal(
        pixels[1], pixels[5]
    )  # same seeds, no LoRA: same image
    assert np.abs(pixels[0] - pixels[2]).mean() > 1.0  # with the LoRA: another image
    grid = grid_image(before, after, ["a red circle"], [1, 2])
    assert grid.size == (170 + 2 * 128, 20 + 2 * 128)


def test_view_helpers_read_back_what_they_write():
    from lib_alignment.jobs.runner import JobStatus
    from lib_alignment.ui import training_view as view

    status = JobStatus(
        id="20250102-030405-abcdef",
        name="my lora",
        method="kto",
        state="running",
        step=3,
        total=10,
        seconds_per_step=2.0,
        eta_seconds=14,
    )
    assert view.job_id_of(view.job_label(status)) == status.id
    html = view.progress_html(status)
    assert "data-step='3'" in html and "width:30.0%" in html and "ETA 14 s" in html and "2.00 s/step" in html
    assert view.parse_option_lines('lr_warmup_steps = 10\n# note\nsample_prompts = ["a", "b"]\noptimizer = adamw') == {
        "lr_warmup_steps": 10,
        "sample_prompts": ["a", "b"],
        "optimizer": "adamw",
    }
    with pytest.raises(ValueError, match="line 1"):
        view.parse_option_lines("rank 4")
    assert view.memory_warning(None, True, True, True) == ""
    assert "share the GPU" in view.memory_warning((3.0, 8.0), True, True, True)
    assert view.memory_warning((3.0, 8.0), False, True, True) == ""


@pytest.mark.slow
def test_ddpo_job_takes_a_reward_and_prompts_instead_of_a_dataset(tmp_path):
    from lib_alignment.training import config

    if "ddpo" not in config.METHODS:
        pytest.skip("this trainer has no DDPO")
    runner = make_runner(tmp_path)
    with pytest.raises(RequestError, match="reward"):
        runner.start(JobRequest(method="ddpo", name="no-reward", prompts="a red circle", preset="cpu"))
    with pytest.raises(RequestError, match="dataset"):
        runner.start(
            JobRequest(method="ddpo", name="with-data", dataset="pairs.csv", reward="jpeg_compressibility", prompts="a")
        )
    status = runner.start(
        JobRequest(
            method="ddpo",
            name="toy-ddpo",
            reward="jpeg_compressibility",
            prompts="a(n) [animal]\na red circle",
            preset="cpu",  # its dataset options (latent cache) are left out for DDPO
            options={
                "max_train_steps": 2,
                "sample_steps": 4,
                "samples_per_epoch": 4,
                "rollout_batch_size": 4,
                "kl_samples": 0,
            },
        )
    )
    assert runner.record(status.id)["config"]["prompts"] == ["a(n) [animal]", "a red circle"]
    done = runner.wait(status.id, timeout=300)
    assert done.state == "finished", done.message
    assert Path(done.outputs["lora"]).is_file() and "reward_mean" in done.figures
    assert runner.summary(status.id).reward_key() == "reward_mean"


def test_in_the_webui_the_after_images_ask_for_the_lora_in_the_prompt():
    import torch

    from lib_alignment.generation import GenerationResult
    from lib_alignment.jobs.compare import before_after_images

    class RecordingBackend:  # WebUIBackend's interface; the WebUI's Lora extension reads the tag
        def __init__(self) -> None:
            self.calls = []

        def default_size(self) -> int:
            return 64

        def sampler_names(self) -> list[str]:
            return ["Euler a", "DPM++ 2M"]

        def latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
            return (4, height // 8, width // 8)

        def generate(self, settings, initial_latents, prompts=None, progress=None):
            self.calls.append((settings.sampler, list(prompts), initial_latents.clone()))
            return GenerationResult(images=[Image.new("RGB", (64, 64))] * len(prompts), latents=initial_latents)

    backend = RecordingBackend()
    lora = Path(__file__)  # any existing file: the WebUI opens the LoRA itself
    before_after_images(backend, lora, "my-lora", ["a cat", "a dog"], [5, 6], in_webui=True, weight=0.8)
    (sampler, plain, noise), (_, tagged, noise_after) = backend.calls
    assert sampler == "DPM++ 2M"
    assert plain == ["a cat", "a cat", "a dog", "a dog"]
    assert tagged == [p + " <lora:my-lora:0.8>" for p in plain]
    assert torch.equal(noise, noise_after)  # the same seeds before and after


def test_an_uploaded_dataset_moves_into_the_job_folder(tmp_path, toy_data):
    from lib_alignment.jobs.datasets import stage_upload

    runner = make_runner(tmp_path)
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in toy_data.parent.rglob("*"):
            if path.is_file():
                zf.write(path, path.relative_to(toy_data.parent))
    staged = stage_upload(archive, runner.root)
    status = runner.start(JobRequest(method="dpo", name="uploaded", dataset=str(staged / "pairs.csv"), preset="cpu"))
    runner.cancel(status.id, force=True)
    runner.wait(status.id, timeout=60)
    record = runner.record(status.id)
    moved = runner.folder(status.id) / "data" / "pairs.csv"
    assert record["dataset"]["source"] == "upload" and record["config"]["data"] == str(moved)
    assert moved.is_file() and not staged.exists()
