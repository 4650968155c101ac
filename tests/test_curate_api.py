"""The Curate API (/alignment/v1/curate): open a folder of outputs, judge pairs into the preference store, skip,
undo, caption, thumbnails, upload, confinement of the folder, and resuming after a restart."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image, PngImagePlugin

API = "/alignment/v1/curate"


def save(path, prompt, seed, text=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("parameters", f"{prompt}\nNegative prompt: bad\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: {seed}, Size: 8x8, Model: tiny")
    Image.new("RGB", (8, 8), (seed * 30 % 255, 40, 200)).save(path, pnginfo=info)


def make_app(root):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from lib_alignment.api import register_routes
    from lib_alignment.preferences import default_store
    from lib_alignment.ui.context import AppContext

    ctx = AppContext(host="standalone", model_source=lambda: "tiny", backend_factory=lambda: None,
                     output_dir=root / "outputs" / "alignment", lora_dir=root / "loras")
    app = FastAPI()
    register_routes(app, ctx)
    return TestClient(app), default_store(ctx)


@pytest.fixture
def outputs(tmp_path):
    day = tmp_path / "outputs" / "txt2img-images" / "2026-12-07"
    for seed in (1, 2, 3):
        save(day / f"0000{seed}-{seed}.png", "a red fox", seed)
    save(day / "00004-4.png", "a blue bird", 4)
    save(day / "00005-5.png", "a blue bird", 5)
    save(day / "00006-6.png", "", 6, text=False)
    return tmp_path


def test_open_judge_skip_undo_and_thumbnail(outputs):
    client, store = make_app(outputs)
    opened = client.post(API, json={})  # the default folder: the outputs
    assert opened.status_code == 200, opened.text
    body = opened.json()
    assert body["files"] == 6 and body["progress"]["prompts"] == 2 and body["unreadable"] == 1
    pair = body["pair"]
    assert pair["prompt"] in ("a red fox", "a blue bird") and pair["negative_prompt"] == "bad"
    judged = client.post(f"{API}/{body['id']}/judge", json={"winner": pair["left"], "loser": pair["right"]}).json()
    assert judged["progress"]["judgements"] == 1 and judged["progress"]["prompts_covered"] == 1
    entry = store.entry(judged["entry"])
    assert entry.kind == "judgement" and entry.source == "curate" and store.counts()["dpo_pairs"] == 1
    assert store.image(entry.images[0]).path.endswith(pair["left"])
    nxt = judged["pair"]
    skipped = client.post(f"{API}/{body['id']}/skip", json={"left": nxt["left"], "right": nxt["right"]}).json()
    assert {skipped["pair"]["left"], skipped["pair"]["right"]} != {nxt["left"], nxt["right"]}
    assert client.post(f"{API}/{body['id']}/undo").json()["undone"] == "skip"
    undone = client.post(f"{API}/{body['id']}/undo").json()
    assert undone["undone"] == "judge" and undone["progress"]["judgements"] == 0 and store.counts()["dpo_pairs"] == 0
    thumb = client.get(f"{API}/{body['id']}/thumbnail", params={"image": pair["left"]})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (8, 8)
    assert client.get(f"{API}/{body['id']}/thumbnail", params={"image": "../../x.png"}).status_code == 404
    listed = client.get(f"{API}/{body['id']}/unreadable").json()["images"]
    assert listed == [{"image": "txt2img-images/2026-12-07/00006-6.png", "reason": "no A1111/Forge infotext or ComfyUI metadata in the PNG"}]
    captioned = client.post(f"{API}/{body['id']}/caption", json={"image": listed[0]["image"], "prompt": "a blue bird"}).json()
    assert captioned["unreadable"] == 0 and captioned["progress"]["pairs_possible"] == 3 + 3


def test_bad_fields_unknown_sessions_and_folders_outside_are_refused(outputs, tmp_path):
    client, _ = make_app(outputs)
    (tmp_path / "elsewhere").mkdir()
    outside = client.post(API, json={"folder": str(tmp_path / "elsewhere")})
    assert outside.status_code == 422 and outside.json()["detail"].startswith("folder:")
    assert client.post(API, json={"folder": "../.."}).status_code == 422
    assert client.get(f"{API}/0123456789abcdef").status_code == 404
    sid = client.post(API, json={}).json()["id"]
    answer = client.post(f"{API}/{sid}/judge", json={"winner": "txt2img-images/2026-12-07/00001-1.png"})
    assert answer.status_code == 422 and answer.json()["detail"].startswith("loser")
    mixed = client.post(f"{API}/{sid}/judge", json={"winner": "txt2img-images/2026-12-07/00001-1.png",
                                                    "loser": "txt2img-images/2026-12-07/00004-4.png"})
    assert mixed.status_code == 422 and "share a prompt" in mixed.json()["detail"]


def test_resume_after_a_restart_and_upload(outputs):
    client, _ = make_app(outputs)
    body = client.post(API, json={"folder": "txt2img-images"}).json()
    client.post(f"{API}/{body['id']}/judge", json={"winner": body["pair"]["right"], "loser": body["pair"]["left"]})
    client2, _ = make_app(outputs)  # a restarted app: nothing in memory
    resumed = client2.post(API, json={"folder": "txt2img-images"}).json()
    assert resumed["id"] == body["id"] and resumed["progress"]["judgements"] == 1
    buffer = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nSteps: 2, Sampler: Euler, Seed: 1, Size: 8x8")
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    data = base64.b64encode(buffer.getvalue()).decode()
    up = client2.post(f"{API}/upload", json={"files": [{"name": "a.png", "data": data}, {"name": "b.png", "data": data}]})
    assert up.status_code == 200 and up.json()["files"] == 2
    bad = client2.post(f"{API}/upload", json={"files": [{"name": "../x.txt", "data": data}]})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("files[0]")
