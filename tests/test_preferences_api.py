"""/alignment/v1/preferences: labels, judgements, rankings, lists, counts, export, import; auth in the fake A1111."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

API = "/alignment/v1/preferences"


def b64(colour: str) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def image(colour: str, prompt: str = "a red circle", **extra) -> dict:
    return {"data": b64(colour), "prompt": prompt, "seed": 1, "checkpoint": "v1-5", **extra}


@pytest.fixture
def client(tmp_path):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from lib_alignment.api import register_routes
    from lib_alignment.ui.context import AppContext

    ctx = AppContext(host="standalone", model_source=lambda: "tiny", backend_factory=lambda: None, output_dir=tmp_path / "out", lora_dir=tmp_path / "loras")
    app = FastAPI()
    register_routes(app, ctx)
    return TestClient(app), ctx


def detail_field(response) -> str:
    detail = response.json()["detail"]
    return detail["field"] if isinstance(detail, dict) else ".".join(str(p) for p in detail[0]["loc"])


def test_labels_judgements_rankings_list_counts_and_undo(client):
    api, ctx = client
    added = api.post(f"{API}/images", json=image("red", source="gallery"))
    assert added.status_code == 200, added.text
    red = added.json()["image_id"]
    liked = api.post(f"{API}/labels", json={"image": red, "liked": True, "source": "gallery"})
    assert liked.status_code == 200, liked.text
    assert liked.json()["kind"] == "label" and liked.json()["images"] == [red] and liked.json()["liked"] is True
    judged = api.post(f"{API}/judgements", json={"winner": red, "losers": [image("blue"), image("green")], "group": "batch-7"})
    assert judged.status_code == 200, judged.text
    blue, green = judged.json()["images"][1:]
    ranked = api.post(f"{API}/rankings", json={"images": [image("white", "a square"), image("black", "a square")], "source": "curate", "human": False})
    assert ranked.status_code == 200, ranked.text

    listed = api.get(API, params={"source": "gallery,api"}).json()
    assert listed["total"] == 2 and [e["kind"] for e in listed["entries"]] == ["judgement", "label"]
    assert api.get(API, params={"prompt": "square"}).json()["entries"][0]["source"] == "curate"
    assert api.get(API, params={"human": "false"}).json()["total"] == 1
    assert api.get(API, params={"kind": "ranking,label", "limit": 1}).json()["total"] == 2
    counts = api.get(f"{API}/counts").json()
    assert counts["counts"]["dpo_pairs"] == 3 and counts["counts"]["kto_labels"] == 5
    assert "3 pairs for DPO" in counts["summary"]["dpo"]
    picture = api.get(f"{API}/images/{blue}")
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"

    undone = api.post(f"{API}/{judged.json()['id']}/undo")
    assert undone.status_code == 200 and undone.json()["undone"] is not None
    assert api.get(f"{API}/counts").json()["counts"]["dpo_pairs"] == 1
    assert api.post(f"{API}/999/undo").status_code == 404
    assert api.get(f"{API}/images/{'0' * 64}").status_code == 404
    assert {green, blue} <= set(ctx.service("preference_store", lambda: None).images([green, blue]))


def test_bad_requests_answer_4xx_naming_the_field(client):
    api, _ = client
    red = api.post(f"{API}/images", json=image("red")).json()["image_id"]
    cases = [
        (f"{API}/labels", {"image": red}, "liked"),
        (f"{API}/labels", {"image": red, "liked": "yes"}, "liked"),
        (f"{API}/labels", {"image": "nonsense", "liked": True}, "image"),
        (f"{API}/labels", {"image": "f" * 64, "liked": True}, "image_id"),
        (f"{API}/labels", {"image": red, "liked": True, "colour": 1}, "colour"),
        (f"{API}/labels", {"image": {"data": "!!!", "prompt": "x"}, "liked": True}, "image.data"),
        (f"{API}/labels", {"image": {"data": base64.b64encode(b"text").decode()}, "liked": True}, "image"),
        (f"{API}/judgements", {"winner": red, "losers": []}, "losers"),
        (f"{API}/judgements", {"winner": red, "losers": [red]}, "losers"),
        (f"{API}/judgements", {"winner": "a" * 64, "losers": [red]}, "winner"),
        (f"{API}/rankings", {"images": [red]}, "images"),
        (f"{API}/export", {"layout": "zip"}, "layout"),
        (f"{API}/export", {"name": "../escape"}, "name"),
        (f"{API}/export", {"filters": {"since": "soon"}}, "since"),
        (f"{API}/import", {"path": "nowhere.csv"}, "path"),
    ]
    for url, body, field in cases:
        response = api.post(url, json=body)
        assert response.status_code == 422, (body, response.text)
        assert field in detail_field(response), (body, response.json())
    assert detail_field(api.get(API, params={"since": "soon"})) == "since"


def test_export_then_import_through_the_api(client, tmp_path):
    api, ctx = client
    red, blue = (api.post(f"{API}/images", json=image(c)).json()["image_id"] for c in ("red", "blue"))
    api.post(f"{API}/judgements", json={"winner": red, "losers": [blue], "source": "gallery"})
    exported = api.post(f"{API}/export", json={"layout": "pairs-csv", "name": "mine", "filters": {"source": ["gallery"]}})
    assert exported.status_code == 200, exported.text
    body = exported.json()
    assert Path(body["folder"]) == ctx.output_dir / "preference-exports" / "mine" and body["counts"]["dpo_pairs"] == 1
    assert api.post(f"{API}/export", json={"name": "mine"}).status_code == 422  # never overwrites
    imported = api.post(f"{API}/import", json={"path": body["files"]["pairs"], "source": "import"})
    assert imported.status_code == 200, imported.text
    assert imported.json()["entries"] == 1 and api.get(f"{API}/counts", params={"source": "import"}).json()["counts"]["judgements"] == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("caption,image_0,image_1,label_0\nx,a.png,b.png,1\n")
    refused = api.post(f"{API}/import", json={"path": str(bad)})
    assert refused.status_code == 422 and "row 2" in refused.json()["detail"]["text"]


def test_webui_api_auth_guards_the_preference_routes(webui_app, fake_webui):
    from fastapi.testclient import TestClient

    from lib_alignment.preferences import store_root
    from lib_alignment.ui import webui_tabs
    from modules import paths

    fake_webui.shared.cmd_opts.api_auth = "alice:secret"
    api = TestClient(webui_app())
    body = {"image": image("red"), "liked": True, "source": "gallery"}
    assert api.post(f"{API}/labels", json=body).status_code == 401
    assert api.post(f"{API}/labels", json=body, auth=("alice", "wrong")).status_code == 401
    assert api.get(f"{API}/counts").status_code == 401
    assert api.post(f"{API}/labels", json=body, auth=("alice", "secret")).status_code == 200
    assert api.get(f"{API}/counts", auth=("alice", "secret")).json()["counts"]["liked"] == 1
    root = store_root(webui_tabs.webui_context())
    assert root == Path(paths.data_path) / "alignment" / "preferences" and (root / "preferences.sqlite3").is_file()


def test_rank_and_refine_rankings_reach_the_store_at_once_and_leave_it_on_undo(client, tiny_random_pipe):
    """A ranking through /refine is in the store when the call returns (source rank-refine); Undo takes it out."""
    from lib_alignment.generation import DiffusersBackend
    from lib_alignment.preferences import PreferenceFilter, default_store

    api, ctx = client
    ctx.backend_factory = lambda: DiffusersBackend(tiny_random_pipe, model_name="tiny-random")
    small = {"steps": 2, "width": 64, "height": 64, "m": 3, "sampler_name": "Euler"}
    first = api.post("/alignment/v1/refine", json={"prompt": "a red circle", "seed": 5, **small})
    assert first.status_code == 200, first.text
    session_id = first.json()["id"]
    assert api.post(f"/alignment/v1/refine/{session_id}/rank", json={"order": [2, 0, 1], "round": 1}).status_code == 200
    store = default_store(ctx)
    (entry,) = store.list(PreferenceFilter(sources="rank-refine"))  # read straight from the store, no sync
    assert entry.kind == "ranking" and len(entry.images) == 3 and entry.human is True
    assert store.image(entry.images[0]).prompt == "a red circle" and store.image(entry.images[0]).seed == 5
    assert api.post(f"/alignment/v1/refine/{session_id}/undo").status_code == 200
    assert store.list(PreferenceFilter(sources="rank-refine")) == []
