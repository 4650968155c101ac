"""The /alignment/v1/jobs routes: standalone app and the fake A1111 (with its API auth and Lora extension).

A real A1111 cannot run here (no network, no GPU): the fake WebUI has A1111 v1.10.1's names and
signatures, and its Lora extension fake serves /sdapi/v1/loras from the Lora folder the way
extensions-builtin/Lora does.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest

from lib_alignment.training.data.synthetic import make_toy_pairs

ROOT = Path(__file__).resolve().parent.parent
FAKE_LORA_EXTENSION = ROOT / "tests" / "fake_webui" / "extensions-builtin" / "Lora"
QUIET_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def poll(client, job_id: str, until, timeout: float = 300, **kwargs) -> dict:
    deadline = time.time() + timeout
    while True:
        body = client.get(f"/alignment/v1/jobs/{job_id}", **kwargs).json()
        if until(body):
            return body
        if time.time() > deadline:
            raise AssertionError(f"job {job_id} stayed {body.get('state')}: {body}")
        time.sleep(0.5)


@pytest.fixture
def quiet_trainer(monkeypatch):
    for key, value in QUIET_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.mark.slow
def test_jobs_api_in_the_standalone_app(tmp_path, quiet_trainer):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from lib_alignment.api import register_routes
    from lib_alignment.ui.app import standalone_context

    ctx = standalone_context(model="tiny-random", output_dir=tmp_path / "out", device="cpu")
    app = FastAPI()
    register_routes(app, ctx)
    client = TestClient(app)
    data = make_toy_pairs(tmp_path / "toy", 4, resolution=128)

    missing = client.post("/alignment/v1/jobs", json={"method": "dpo", "dataset": str(data)})
    assert missing.status_code == 400 and missing.json()["detail"]["field"] == "name"
    unknown = client.post(
        "/alignment/v1/jobs",
        json={"method": "dpo", "name": "x", "dataset": str(data), "options": {"learning_rat": 1e-4}},
    )
    assert unknown.status_code == 400 and unknown.json()["detail"]["field"] == "learning_rat"
    bad_value = client.post(
        "/alignment/v1/jobs",
        json={"method": "dpo", "name": "x", "dataset": str(data), "options": {"max_train_steps": "many"}},
    )
    assert bad_value.status_code == 400 and "max_train_steps" in bad_value.json()["detail"]["message"]

    broken = tmp_path / "broken.csv"
    broken.write_text("caption,image_0,image_1,label_0\na circle,nope.png,nope2.png,2\n")
    refused = client.post("/alignment/v1/jobs", json={"method": "dpo", "name": "broken", "dataset": str(broken)})
    assert refused.status_code == 422
    report = refused.json()["detail"]["report"]
    assert {(p["row"], p["field"]) for p in report["problems"]} >= {(2, "image_0"), (2, "label_0")}
    assert client.get("/alignment/v1/jobs").json() == {"jobs": []}
    checked = client.post("/alignment/v1/jobs/check", json={"method": "dpo", "dataset": str(data)}).json()
    assert checked["ok"] and checked["report"]["counts"]["pairs"] == 4

    created = client.post(
        "/alignment/v1/jobs",
        json={
            "method": "dpo",
            "name": "api-job",
            "dataset": str(data),
            "preset": "cpu",
            "options": {"max_train_steps": 200, "sample_every": 0, "sample_steps": 2},
        },
    )
    assert created.status_code == 200, created.text
    job = created.json()
    assert job["state"] == "running" and job["total"] == 200 and job["model"] == "tiny-random"
    busy = client.post("/alignment/v1/jobs", json={"method": "dpo", "name": "other", "dataset": str(data)})
    assert busy.status_code == 409 and busy.json()["detail"]["active_job"] == job["id"]

    running = poll(client, job["id"], lambda b: b["step"] >= 1)
    assert running["figures"]["loss"] > 0 and running["progress"] > 0
    cancelling = client.post(f"/alignment/v1/jobs/{job['id']}/cancel")
    assert cancelling.status_code == 200 and cancelling.json()["state"] in ("cancelling", "cancelled")
    stopped = poll(client, job["id"], lambda b: b["state"] not in ("running", "cancelling"))
    assert stopped["state"] == "cancelled" and stopped["resumable"] and stopped["step"] < 200
    assert Path(stopped["outputs"]["lora"]) == ctx.lora_dir / "api-job.safetensors"
    assert Path(stopped["outputs"]["lora"]).is_file()
    assert client.post(f"/alignment/v1/jobs/{job['id']}/cancel").status_code == 409
    listed = client.get("/alignment/v1/jobs").json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    with_log = client.get(f"/alignment/v1/jobs/{job['id']}", params={"log": 5}).json()
    assert "stopped at step" in with_log["log"]
    assert client.get("/alignment/v1/jobs/20990101-000000-abcdef").status_code == 404
    assert client.get("/alignment/v1/jobs/..%2F..%2Fetc").status_code == 404


def _load_script(path: Path, name: str) -> None:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


@pytest.fixture
def webui_with_lora_extension(fake_webui, monkeypatch):
    """The fake A1111 with our extension and the built-in Lora extension's routes registered."""
    from lib_alignment.ui import webui_tabs

    monkeypatch.setattr(webui_tabs, "_context", None)
    monkeypatch.syspath_prepend(str(FAKE_LORA_EXTENSION))
    monkeypatch.delitem(sys.modules, "networks", raising=False)
    from modules import script_callbacks

    script_callbacks.clear_callbacks()
    _load_script(FAKE_LORA_EXTENSION / "scripts" / "lora_script.py", "lora_script")
    _load_script(ROOT / "scripts" / "alignment.py", "alignment_script")
    yield fake_webui
    sys.modules.pop("networks", None)


@pytest.mark.slow
def test_webui_job_uses_the_loaded_checkpoint_and_its_lora_reaches_sdapi(
    webui_with_lora_extension, tmp_path, quiet_trainer
):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from lib_alignment.models import load_pipeline
    from lib_alignment.models.ldm_export import export_ldm_checkpoint

    webui = webui_with_lora_extension
    checkpoint = Path(webui.shared.sd_model.sd_checkpoint_info.filename)
    export_ldm_checkpoint(
        load_pipeline("tiny-random", device="cpu", dtype="fp32"), checkpoint
    )  # the "loaded" model, with its yaml
    webui.shared.cmd_opts.api_auth = "alice:secret"
    from modules import script_callbacks

    app = FastAPI()
    for callback in script_callbacks.app_started_callbacks:
        callback(None, app)
    client = TestClient(app)
    data = make_toy_pairs(tmp_path / "toy", 4, resolution=128)
    body = {
        "method": "dpo",
        "name": "webui-lora",
        "dataset": str(data),
        "preset": "cpu",
        "options": {"max_train_steps": 2, "sample_steps": 2},
    }

    assert client.post("/alignment/v1/jobs", json=body).status_code == 401
    created = client.post("/alignment/v1/jobs", json=body, auth=("alice", "secret"))
    assert created.status_code == 200, created.text
    job = created.json()
    assert job["model"] == str(checkpoint)
    assert client.get(f"/alignment/v1/jobs/{job['id']}").status_code == 401
    done = poll(
        client, job["id"], lambda b: b["state"] not in ("running", "cancelling", "queued"), auth=("alice", "secret")
    )
    assert done["state"] == "finished", done
    lora_dir = Path(webui.shared.cmd_opts.lora_dir)
    assert Path(done["outputs"]["lora"]) == lora_dir / "webui-lora.safetensors"
    assert (lora_dir / "webui-lora.preview.png").is_file()
    # the job refreshed the Lora list itself: /sdapi/v1/loras lists the new file without a manual refresh
    loras = client.get("/sdapi/v1/loras").json()
    assert [entry["name"] for entry in loras] == ["webui-lora"]
    assert loras[0]["alias"] == "webui-lora" and loras[0]["metadata"]["ss_sd_model_name"] == checkpoint.stem
    # the job's folder lives under the WebUI's output folder
    assert (Path(webui.paths.data_path) / "outputs" / "alignment" / "jobs" / job["id"] / "job.json").is_file()


def test_webui_model_is_unloaded_for_the_job_and_loaded_back(fake_webui, tmp_path):
    """unload_webui_model: the facade calls A1111's unload/reload pair around the job (no trainer needed)."""
    import json

    from modules import sd_models

    from lib_alignment import webui_facade as webui
    from lib_alignment.jobs import JobRequest, JobRunner
    from lib_alignment.jobs.host import JobHost

    host = JobHost(
        name="a1111",
        output_dir=tmp_path / "out",
        lora_dir=tmp_path / "loras",
        model_source=lambda: "tiny-random",
        python=sys.executable,
        env={"OMP_NUM_THREADS": "1"},
        unload_model=webui.unload_model,
        reload_model=webui.reload_model,
        model_on_gpu=webui.model_on_gpu,
    )
    runner = JobRunner(host)
    data = make_toy_pairs(tmp_path / "toy", 2, resolution=128)
    status = runner.start(
        JobRequest(
            method="dpo",
            name="unloaded",
            dataset=str(data),
            preset="cpu",
            unload_webui_model=True,
            options={"max_train_steps": 1000},
        )
    )
    assert sd_models.calls == ["unload"]
    assert json.loads((runner.folder(status.id) / "job.json").read_text())["unloaded_webui_model"] is True
    runner.cancel(status.id, force=True)
    ended = runner.wait(status.id, timeout=60)
    assert ended.state in ("interrupted", "error", "cancelled")
    assert sd_models.calls == ["unload", "reload"]
    assert runner.record(status.id)["unloaded_webui_model"] is False


@pytest.mark.slow
def test_webui_job_trains_a_checkpoint_without_a_tokenizer_beside_it(fake_webui, tmp_path, quiet_trainer):
    """A single-file checkpoint whose tokenizer is nowhere on disk: the job gets the loaded model's tokenizer."""
    import json
    from types import SimpleNamespace

    from lib_alignment import webui_facade as webui
    from lib_alignment.jobs import JobRequest, JobRunner
    from lib_alignment.jobs.host import JobHost
    from lib_alignment.models import load_pipeline
    from lib_alignment.models.ldm_export import export_ldm_checkpoint

    pipe = load_pipeline("tiny-random", device="cpu", dtype="fp32")
    exported = export_ldm_checkpoint(pipe, tmp_path / "models" / "bare.safetensors")
    for path in exported.text_encoder_dir.iterdir():
        if path.name != "config.json":  # keep the text encoder's shape, drop every tokenizer file
            path.unlink()
    # what A1111's sd_model carries: cond_stage_model.wrapped.tokenizer (FrozenCLIPEmbedder)
    fake_webui.shared.sd_model.cond_stage_model = SimpleNamespace(wrapped=SimpleNamespace(tokenizer=pipe.tokenizer))
    host = JobHost(
        name="a1111",
        output_dir=tmp_path / "out",
        lora_dir=tmp_path / "loras",
        model_source=lambda: str(exported.checkpoint),
        python=sys.executable,
        env=dict(QUIET_ENV),
        save_tokenizer=webui.save_tokenizer,
    )
    runner = JobRunner(host)
    data = make_toy_pairs(tmp_path / "toy", 2, resolution=128)
    options = {"max_train_steps": 1, "sample_steps": 2, "resolution": 64}
    status = runner.start(JobRequest(method="dpo", name="bare", dataset=str(data), preset="cpu", options=options))
    folder = runner.folder(status.id)
    config = json.loads((folder / "config.json").read_text())
    assert config["tokenizer"] == str(folder / "tokenizer") and any((folder / "tokenizer").iterdir())
    ended = runner.wait(status.id, timeout=300)
    assert ended.state == "finished", runner.log(status.id)
    assert (tmp_path / "loras" / "bare.safetensors").is_file()
