"""Gallery likes (POST /alignment/v1/preferences/gallery): Like / Dislike / Prefer on the WebUI's result gallery
go into the preference store with the infotext's prompt, seed, settings and checkpoint; paths are confined to the
WebUI's image folders; the page's token or the API password passes --api-auth."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image, PngImagePlugin

ROUTE = "/alignment/v1/preferences/gallery"


def infotext(seed: int, prompt: str = "a red fox") -> str:
    return (f"{prompt}\nNegative prompt: blurry\nSteps: 4, Sampler: Euler a, CFG scale: 7, Seed: {seed}, Size: 8x8, "
            "Model hash: 0123abcd, Model: tiny, Version: v1.10.1")


def save_png(path, seed, size=(8, 8), text=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("parameters", infotext(seed))
    Image.new("RGB", size, (seed * 40 % 255, 20, 90)).save(path, pnginfo=info)
    return path


@pytest.fixture
def webui(fake_webui, tmp_path):
    """A FastAPI app with our routes mounted as in the WebUI, and its txt2img output folder."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from lib_alignment.api import register_routes
    from lib_alignment.preferences import default_store
    from lib_alignment.ui.context import AppContext

    data = tmp_path / "webui"
    ctx = AppContext(host="a1111", model_source=lambda: "tiny", backend_factory=lambda: None,
                     output_dir=data / "outputs" / "alignment", lora_dir=data / "models" / "Lora")
    app = FastAPI()
    register_routes(app, ctx)
    return TestClient(app), default_store(ctx), data / "outputs" / "txt2img-images" / "2026-12-07"


def url(path) -> str:
    return f"http://127.0.0.1:7860/file={path}?1733550000.0"


def test_like_and_dislike_store_the_file_with_its_infotext(webui):
    client, store, folder = webui
    files = [save_png(folder / f"0000{i}-{i}.png", i) for i in (1, 2)]
    answer = client.post(ROUTE, json={"action": "like", "index": 1, "images": [{"src": url(p)} for p in files]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["message"] == "Liked ✓"
    record = store.image(body["image_id"])
    assert (record.prompt, record.negative_prompt, record.seed) == ("a red fox", "blurry", 2)
    assert (record.checkpoint, record.checkpoint_hash, record.source) == ("tiny", "0123abcd", "gallery")
    assert record.path == str(files[1].resolve()) and record.settings["Steps"] == "4" and record.settings["tab"] == "txt2img"
    assert store.entry(body["entry"]).liked is True
    disliked = client.post(ROUTE, json={"action": "dislike", "index": 0, "images": [url(p) for p in files]}).json()
    assert store.entry(disliked["entry"]).liked is False and disliked["message"] == "Disliked ✓"
    counts = store.counts()
    assert (counts["liked"], counts["disliked"], counts["images"]) == (1, 1, 2)
    assert client.post(f"{ROUTE}/undo", json={"entry": disliked["entry"]}).json() == {"undone": True}
    assert store.counts()["disliked"] == 0


def test_prefer_wins_over_the_rest_of_the_batch_but_not_the_grid(webui):
    client, store, folder = webui
    grid = save_png(folder.parent.parent / "txt2img-grids" / "grid-0001.png", 1, size=(16, 16))
    files = [save_png(folder / f"0000{i}-{i}.png", i) for i in (1, 2, 3)]
    info = {"index_of_first_image": 1, "infotexts": [infotext(1)] + [infotext(s) for s in (1, 2, 3)],
            "sd_model_name": "tiny", "job_timestamp": "20261207060000"}
    images = [{"src": url(p)} for p in [grid, *files]]
    body = client.post(ROUTE, json={"action": "prefer", "index": 2, "images": images, "generation_info": json.dumps(info)}).json()
    entry = store.entry(body["entry"])
    assert entry.kind == "judgement" and len(entry.images) == 3  # the shown image over the two others
    assert store.image(entry.images[0]).seed == 2
    assert {store.image(i).seed for i in entry.images[1:]} == {1, 3}
    assert store.counts()["dpo_pairs"] == 2
    refused = client.post(ROUTE, json={"action": "prefer", "index": 0, "images": images, "generation_info": info})
    assert refused.status_code == 422 and "grid" in refused.json()["detail"]
    alone = client.post(ROUTE, json={"action": "prefer", "index": 0, "images": [url(files[0])]})
    assert alone.status_code == 422 and "two or more" in alone.json()["detail"]


def test_paths_outside_the_webui_folders_and_bad_fields_are_refused(webui, tmp_path):
    client, store, folder = webui
    outside = save_png(tmp_path / "secret" / "x.png", 1)
    inside = save_png(folder / "00001-1.png", 1)
    for src in (url(outside), url(str(folder / ".." / ".." / ".." / "secret" / "x.png")), "http://h/other.png"):
        answer = client.post(ROUTE, json={"action": "like", "index": 0, "images": [{"src": src}]})
        assert answer.status_code == 422 and answer.json()["detail"].startswith("images[0].src"), answer.text
    assert client.post(ROUTE, json={"action": "love", "index": 0, "images": [url(inside)]}).json()["detail"].startswith("action")
    assert client.post(ROUTE, json={"action": "like", "index": 5, "images": [url(inside)]}).json()["detail"].startswith("index")
    no_text = save_png(folder / "00002-2.png", 2, text=False)
    answer = client.post(ROUTE, json={"action": "like", "index": 0, "images": [url(no_text)]})
    assert answer.status_code == 422 and "no prompt found" in answer.json()["detail"]
    shown = client.post(ROUTE, json={"action": "like", "index": 0, "images": [url(no_text)], "infotext": infotext(9)})
    assert shown.status_code == 200 and store.image(shown.json()["image_id"]).seed == 9  # the shown infotext
    assert store.counts()["labels"] == 1


def test_image_bytes_when_the_webui_holds_no_file(webui):
    client, store, _ = webui
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="PNG")
    data = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    body = client.post(ROUTE, json={"action": "like", "index": 0, "images": [{"src": data, "data": data}],
                                    "infotext": infotext(5, "a green hill")}).json()
    record = store.image(body["image_id"])
    assert (record.prompt, record.seed, record.path) == ("a green hill", 5, None)


def test_api_auth_takes_the_password_or_the_page_token(webui, fake_webui):
    from lib_alignment.api.page_auth import HEADER, page_token, token_html

    client, store, folder = webui
    fake_webui.shared.cmd_opts.api_auth = "alice:secret"
    request = {"action": "like", "index": 0, "images": [url(save_png(folder / "00001-1.png", 1))]}
    assert client.post(ROUTE, json=request).status_code == 401
    assert client.post(ROUTE, json=request, headers={HEADER: "not-the-token"}).status_code == 401
    assert client.post(ROUTE, json=request, auth=("alice", "wrong")).status_code == 401
    assert client.post(ROUTE, json=request, auth=("alice", "secret")).status_code == 200
    assert client.post(ROUTE, json=request, headers={HEADER: page_token()}).status_code == 200
    assert page_token() in token_html() and store.counts()["labels"] == 2
