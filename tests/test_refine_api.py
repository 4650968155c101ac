"""Rank & Refine over HTTP: the standalone app's routes on tiny-random, and the same routes in the fake WebUI."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

API = "/alignment/v1/refine"
SMALL = {"steps": 2, "width": 64, "height": 64, "m": 4}


def _pixels(b64: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return np.asarray(image.convert("RGB"))


def _same(a: str, b: str) -> bool:
    return np.array_equal(_pixels(a), _pixels(b))


@pytest.fixture(scope="module")
def standalone(tiny_random_pipe, tmp_path_factory):
    """The standalone app (gradio page + API) on the shared tiny-random pipeline."""
    from fastapi.testclient import TestClient

    from lib_alignment.generation import DiffusersBackend
    from lib_alignment.ui.app import build_fastapi_app
    from lib_alignment.ui.context import AppContext

    out = tmp_path_factory.mktemp("app")

    def make_context() -> AppContext:
        return AppContext(
            host="standalone",
            model_source=lambda: "tiny-random",
            backend_factory=lambda: DiffusersBackend(tiny_random_pipe, model_name="tiny-random"),
            output_dir=out,
            lora_dir=out / "loras",
        )

    client = TestClient(build_fastapi_app(make_context()))
    return client, make_context, out


def test_start_rank_undo_and_state(standalone):
    client, _, out = standalone
    first = client.post(API, json={"prompt": "a red circle", "seed": 5, **SMALL})
    assert first.status_code == 200, first.text
    body = first.json()
    session_id = body["id"]
    assert len(session_id) == 32 and int(session_id, 16) >= 0
    assert (out / "refine" / session_id / "session.json").is_file()
    assert body["round"] == 1 and len(body["images"]) == 4
    assert _pixels(body["images"][0]).shape == (64, 64, 3)
    assert len({_pixels(image).tobytes() for image in body["images"]}) == 4  # four different candidates

    # A rank round only collects a direction: the current image stays.
    second = client.post(f"{API}/{session_id}/rank", json={"order": [2, 0], "round": 1}).json()
    assert second["round"] == 2 and second["type"] == "line"
    assert _same(second["current"], body["current"])
    # A line round moves the current point to the candidate ranked first.
    j = next(i for i, role in enumerate(second["roles"]) if role != "current")
    third = client.post(f"{API}/{session_id}/rank", json={"order": [j]}).json()
    assert third["round"] == 3
    assert _same(third["current"], second["images"][j])
    assert not _same(third["current"], body["current"])

    state = client.get(f"{API}/{session_id}").json()
    assert state["round"] == 3 and state["rounds_ranked"] == 2 and state["can_undo"] is True
    assert state["settings"]["steps"] == 2 and state["seed"] == 5 and state["params"]["m"] == 4
    assert _same(state["current"], third["current"])
    assert "images" not in client.get(f"{API}/{session_id}", params={"images": "false"}).json()

    back = client.post(f"{API}/{session_id}/undo").json()
    assert back["round"] == 2
    assert all(_same(a, b) for a, b in zip(back["images"], second["images"]))
    assert client.get(f"{API}/{session_id}", params={"images": "false"}).json()["round"] == 2
    listed = client.get(API).json()["sessions"]
    assert [s["id"] for s in listed if s["id"] == session_id] == [session_id]


def test_bad_requests_name_the_field(standalone):
    client, _, _ = standalone

    def detail(response) -> str:
        return json.dumps(response.json()["detail"])

    for body, field in [
        ({"prompt": "p", "steps": 0}, "steps"),
        ({"prompt": "p", "samplr": "DDIM"}, "samplr"),
        ({"prompt": "p", "width": 65}, "width"),
        ({"prompt": "p", "sampler_name": "No such sampler"}, "sampler_name"),
        ({"prompt": "p", "m": 2}, "m"),
        ({"steps": 2}, "prompt"),
    ]:
        response = client.post(API, json=body)
        assert response.status_code == 422, (body, response.text)
        assert field in detail(response)

    session_id = client.post(API, json={"prompt": "p", "seed": 1, **SMALL}).json()["id"]
    for order in ([9], [1, 1], [], [1.5], "1,2", [True]):
        response = client.post(f"{API}/{session_id}/rank", json={"order": order})
        assert response.status_code == 422, (order, response.text)
        assert "order" in detail(response)
    stale = client.post(f"{API}/{session_id}/rank", json={"order": [0], "round": 7})
    assert stale.status_code == 409 and "round" in detail(stale)
    assert client.post(f"{API}/{session_id}/undo").status_code == 409  # nothing to undo yet
    assert client.post(f"{API}/{session_id}/params", json={"mu": 0}).status_code == 422
    # The bad requests changed nothing.
    assert client.get(f"{API}/{session_id}", params={"images": "false"}).json()["round"] == 1

    for unknown in ("0" * 32, "not-an-id", "..", "%2e%2e"):
        assert client.get(f"{API}/{unknown}").status_code == 404
        assert client.post(f"{API}/{unknown}/rank", json={"order": [0]}).status_code == 404


def test_params_export_and_resume_after_restart(standalone):
    client, make_context, out = standalone
    from fastapi.testclient import TestClient

    from lib_alignment.ui.app import build_fastapi_app

    session_id = client.post(API, json={"prompt": "a blue square", "seed": 2, **SMALL}).json()["id"]
    state = client.post(f"{API}/{session_id}/params", json={"m": 5, "lr": 1.0}).json()
    assert state["params"]["m"] == 5 and state["params"]["lr"] == 1.0 and "images" not in state
    nxt = client.post(f"{API}/{session_id}/rank", json={"order": [1]}).json()
    assert len(nxt["images"]) == 5

    exported = client.post(f"{API}/{session_id}/export").json()
    with Image.open(io.BytesIO(base64.b64decode(exported["image"]))) as image:
        assert "Refine rounds: 1" in image.info["parameters"]
        assert "Seed: 2" in image.info["parameters"]
    assert (out / "refined" / exported["image_file"]).is_file() and (
        out / "refined" / exported["latent_file"]
    ).is_file()

    # A restart: a fresh context over the same folder continues where the session was.
    restarted = TestClient(build_fastapi_app(make_context()))
    again = restarted.get(f"{API}/{session_id}").json()
    assert again["round"] == nxt["round"]
    assert all(_same(a, b) for a, b in zip(again["images"], nxt["images"]))
    assert restarted.post(f"{API}/{session_id}/rank", json={"order": [0, 1]}).status_code == 200


# ----- the same routes inside the (fake) WebUI (the webui_app fixture: tests/conftest.py) -----------


def test_routes_drive_a_session_through_the_webui_sampler(webui_app, fake_webui):
    from fastapi.testclient import TestClient

    client = TestClient(webui_app())
    response = client.post(API, json={"prompt": "a red circle", "seed": 4, "sampler_name": "Euler", "steps": 3, "m": 6})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["images"]) == 6 and _pixels(body["images"][0]).shape == (128, 128, 3)  # the fake model's size
    assert fake_webui.shared.state.jobs_begun == ["Rank & Refine"]  # the WebUI's job state (progress, Interrupt)
    from modules import progress

    assert progress.current_task is None and "Rank & Refine" in fake_webui.shared.state.jobs_begun
    line = client.post(f"{API}/{body['id']}/rank", json={"order": [5, 1, 3]}).json()
    j = line["roles"].index("rank best")
    after = client.post(f"{API}/{body['id']}/rank", json={"order": [j]}).json()
    assert _same(after["current"], line["images"][j])
    # The ranked-best candidate of round 1 came back in round 2 unchanged.
    assert _same(line["images"][j], body["images"][5])
    assert client.post(API, json={"prompt": "p", "sampler_name": "LMS"}).status_code == 422  # not in this WebUI
    assert client.post(API, json={"prompt": "p", "sampler_name": "DPM++ 2M", "steps": 2, "m": 3}).status_code == 200


def test_interrupt_leaves_the_round_unchanged(webui_app, fake_webui, monkeypatch):
    from fastapi.testclient import TestClient

    client = TestClient(webui_app())
    body = client.post(API, json={"prompt": "p", "seed": 1, "sampler_name": "Euler", "steps": 2, "m": 4}).json()
    processing = fake_webui.processing
    real = processing.StableDiffusionProcessingTxt2Img.sample

    def interrupted_sample(self, *args, **kwargs):
        fake_webui.shared.state.interrupt()  # the user presses Interrupt while sampling
        return real(self, *args, **kwargs)

    monkeypatch.setattr(processing.StableDiffusionProcessingTxt2Img, "sample", interrupted_sample)
    response = client.post(f"{API}/{body['id']}/rank", json={"order": [0]})
    assert response.status_code == 409 and "interrupt" in response.json()["detail"]
    monkeypatch.setattr(processing.StableDiffusionProcessingTxt2Img, "sample", real)
    state = client.get(f"{API}/{body['id']}").json()
    assert state["round"] == 1 and all(_same(a, b) for a, b in zip(state["images"], body["images"]))
    assert client.post(f"{API}/{body['id']}/rank", json={"order": [0]}).json()["round"] == 2


def test_webui_api_auth_guards_the_refine_routes(webui_app, fake_webui):
    from fastapi.testclient import TestClient

    fake_webui.shared.cmd_opts.api_auth = "alice:secret"
    client = TestClient(webui_app())
    request = {"prompt": "p", "sampler_name": "Euler", "steps": 2, "m": 3}
    assert client.post(API, json=request).status_code == 401
    assert client.post(API, json=request, auth=("alice", "wrong")).status_code == 401
    assert client.get(API).status_code == 401
    started = client.post(API, json=request, auth=("alice", "secret"))
    assert started.status_code == 200
    assert client.get(f"{API}/{started.json()['id']}", auth=("alice", "secret")).status_code == 200


def test_switching_the_webui_checkpoint_pauses_open_sessions(webui_app, fake_webui):
    from fastapi.testclient import TestClient

    client = TestClient(webui_app())
    session_id = client.post(API, json={"prompt": "p", "sampler_name": "Euler", "steps": 2, "m": 3}).json()["id"]
    shared = fake_webui.shared
    original = shared.sd_model
    shared.sd_model = shared.FakeSDModel(original.sd_checkpoint_info.filename.replace("tiny", "other"))
    for response in (client.get(f"{API}/{session_id}"), client.post(f"{API}/{session_id}/rank", json={"order": [0]})):
        assert response.status_code == 409 and "model" in response.json()["detail"]
    shared.sd_model = original
    assert client.post(f"{API}/{session_id}/rank", json={"order": [0]}).json()["round"] == 2


def test_webui_tasks_of_the_page_always_finish(fake_webui, monkeypatch):
    """The page's progress bar polls its task id: a generating request and a refused one both end it."""
    from lib_alignment.ui import webui_tabs
    from lib_alignment.ui.refine_sessions import RefineRequest, for_context

    monkeypatch.setattr(webui_tabs, "_context", None)
    from modules import progress

    sessions = for_context(webui_tabs.webui_context())
    sessions.start(RefineRequest(prompt="p", sampler_name="Euler", steps=2, m=3), task_id="task(one)")
    assert "task(one)" in progress.finished_tasks and progress.current_task is None and not progress.pending_tasks
    progress.add_task_to_queue("task(two)")  # the page announced it; the request is then refused
    with pytest.raises(ValueError, match="steps"):
        sessions.start(RefineRequest(prompt="p", steps=0), task_id="task(two)")
    sessions.end_task("task(two)")
    assert "task(two)" in progress.finished_tasks and not progress.pending_tasks
