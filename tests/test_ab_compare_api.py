"""The blind A/B Compare API (/alignment/v1/compare) on the standalone app with the tiny-random pipeline."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ab_helpers import train_tiny_lora

API = "/alignment/v1/compare"


def _pixels(b64: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def app(tiny_random_pipe, tmp_path_factory):
    from fastapi.testclient import TestClient

    from lib_alignment.generation import DiffusersBackend
    from lib_alignment.ui.app import build_fastapi_app
    from lib_alignment.ui.context import AppContext

    out = tmp_path_factory.mktemp("app")
    lora = train_tiny_lora(out / "loras")
    ctx = AppContext(
        host="standalone",
        model_source=lambda: "tiny-random",
        backend_factory=lambda: DiffusersBackend(tiny_random_pipe, model_name="tiny-random"),
        output_dir=out,
        lora_dir=out / "loras",
    )
    return TestClient(build_fastapi_app(ctx)), ctx, lora


@pytest.mark.slow
def test_picking_the_lora_side_every_time_gives_a_win_rate_of_one(app):
    from lib_alignment.jobs.ab_compare import for_context

    client, ctx, lora = app
    prompts, seeds = ["a red circle", "a blue square"], list(range(1, 9))
    request = {"lora": "ab", "weight": 1.0, "prompts": prompts, "seeds": seeds, "steps": 2, "size": 64}
    started = client.post(API, json=request)
    assert started.status_code == 200, started.text
    body = started.json()
    compare_id, comparison = body["id"], for_context(ctx).get(body["id"])
    assert body["done"] is False and body["result"] is None and body["total"] == 16
    sides = []
    for number in range(1, 17):
        pair = body["pair"]
        assert set(pair) == {"index", "number", "total", "images"}  # nothing names the LoRA's side
        assert (pair["number"], pair["total"]) == (number, 16)
        a, b = (_pixels(image) for image in pair["images"])
        assert a.shape == (64, 64, 3) and not np.array_equal(a, b)  # 64 px, and the LoRA changed the image
        lora_left = comparison.test.pairs[pair["index"]].lora_left
        lora_image = np.asarray(comparison.lora[pair["index"]].convert("RGB"))
        assert np.array_equal(a if lora_left else b, lora_image)  # A is the left image
        sides.append(lora_left)
        state = client.get(f"{API}/{compare_id}").json()
        assert state["picked"] == number - 1 and state["result"] is None and "images" not in state["pair"]
        body = client.post(f"{API}/{compare_id}/pick", json={"choice": "A" if lora_left else "B"}).json()
    assert any(sides) and not all(sides)  # the left/right order is not constant
    assert body["done"] is True and body["pair"] is None
    result = body["result"]
    assert result["win_rate"] == 1.0 and result["judged"] == 16 and result["lora_wins"] == 16
    assert result["interval"][0] > 0.75 and result["interval"][1] == pytest.approx(1.0)
    assert result["per_prompt"]["a red circle"] == {"lora": 8, "base": 0, "skipped": 0, "open": 0}
    saved = json.loads(lora.with_name("ab.ab.json").read_text())
    assert saved["summary"]["win_rate"] == 1.0 and len(saved["pairs"]) == 16
    assert "LoRA preferred in 16 of 16" in json.loads(lora.with_name("ab.json").read_text())["notes"]
    assert client.get(f"{API}/{compare_id}").json()["result"]["win_rate"] == 1.0

    late = client.post(f"{API}/{compare_id}/pick", json={"choice": "A"})
    assert late.status_code == 422
    exported = client.post(f"{API}/{compare_id}/export").json()["pairs_csv"]
    rows = Path(exported).read_text().splitlines()
    assert rows[0] == "caption,image_0,image_1,label_0,label_1" and len(rows) == 17
    assert all(row.split(",")[1].startswith("lora-") for row in rows[1:])  # the picked (LoRA) image first


@pytest.mark.slow
def test_picks_for_the_base_and_skips_and_bad_requests(app):
    client, _, _ = app
    request = {"lora": "ab", "prompts": "a circle\n\na square", "seeds": "3, 4", "steps": 2, "size": 64}
    body = client.post(API, json=request).json()
    assert body["total"] == 4
    from lib_alignment.jobs.ab_compare import for_context

    comparison = for_context(app[1]).get(body["id"])
    for i in range(4):
        lora_left = comparison.test.pairs[body["pair"]["index"]].lora_left
        choice = "skip" if i == 0 else ("B" if lora_left else "A")
        body = client.post(f"{API}/{body['id']}/pick", json={"choice": choice, "index": body["pair"]["index"]}).json()
    assert body["result"]["win_rate"] == 0.0 and body["result"]["skipped"] == 1 and body["result"]["judged"] == 3

    assert client.post(API, json={"lora": "missing", "prompts": ["x"], "seeds": [1]}).status_code == 404
    assert client.post(API, json={"lora": "ab", "prompts": [], "seeds": [1]}).status_code == 422
    assert client.post(API, json={"lora": "ab", "prompts": ["x"], "seeds": ["one"]}).status_code == 422
    assert client.post(API, json={"lora": "ab", "prompts": ["x"], "seed": [1]}).status_code == 422
    assert client.get(f"{API}/nope").status_code == 404
    started = client.post(API, json={"lora": "ab", "prompts": ["x"], "seeds": [1], "steps": 2, "size": 64}).json()
    assert client.post(f"{API}/{started['id']}/pick", json={"choice": "left"}).status_code == 422
    assert client.post(f"{API}/{started['id']}/pick", json={"choice": "A", "index": 5}).status_code == 422
