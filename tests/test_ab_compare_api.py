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
    saved = json.loads(lora.with_name("ab.alignment-compare.json").read_text())["results"]
    assert [r["id"] for r in saved] == [compare_id]
    assert saved[0]["summary"]["win_rate"] == 1.0 and len(saved[0]["pairs"]) == 16
    assert "LoRA preferred in 16 of 16" in json.loads(lora.with_name("ab.json").read_text())["notes"]
    assert client.get(f"{API}/{compare_id}").json()["result"]["win_rate"] == 1.0

    late = client.post(f"{API}/{compare_id}/pick", json={"choice": "A"})
    assert late.status_code == 422
    exported = client.post(f"{API}/{compare_id}/export").json()
    assert exported["added"] == 16 and exported["source"] == "ab-compare" and not exported["already"]
    from lib_alignment.preferences import PreferenceFilter, default_store

    store = default_store(ctx)
    entries = store.list(PreferenceFilter(sources=("ab-compare",)))
    assert len(entries) == 16 and all(e.kind == "judgement" and e.human for e in entries)
    for entry in entries:  # the picked (LoRA) image is the winner, its pixels the LoRA's
        winner, loser = store.image(entry.images[0]), store.image(entry.images[1])
        assert winner.settings == {"lora": "ab", "weight": 1.0} and loser.settings["weight"] == 0
        index = next(p.index for p in comparison.test.pairs if (p.prompt, p.seed) == (winner.prompt, winner.seed))
        with Image.open(store.image_file(winner.id)) as image:
            assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(comparison.lora[index].convert("RGB")))
    assert client.post(f"{API}/{compare_id}/export").json()["already"] is True  # twice adds nothing
    assert len(store.list(PreferenceFilter(sources=("ab-compare",)))) == 16


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


@pytest.mark.slow
def test_finished_comparisons_survive_a_restart_and_their_picks_can_be_added_after_it(app, tiny_random_pipe):
    from fastapi.testclient import TestClient

    from lib_alignment.generation import DiffusersBackend
    from lib_alignment.jobs.ab_compare import for_context
    from lib_alignment.ui.app import build_fastapi_app
    from lib_alignment.ui.context import AppContext

    client, ctx, lora = app
    body = client.post(API, json={"lora": "ab", "weight": 0.5, "prompts": ["a green triangle"], "seeds": [5, 6], "steps": 2, "size": 64}).json()
    comparison = for_context(ctx).get(body["id"])
    while not body["done"]:
        lora_left = comparison.test.pairs[body["pair"]["index"]].lora_left
        body = client.post(f"{API}/{body['id']}/pick", json={"choice": "B" if lora_left else "A"}).json()  # the base each time
    # a restart: a new context and app over the same folders, nothing in memory
    fresh = AppContext(host="standalone", model_source=lambda: "tiny-random", output_dir=ctx.output_dir, lora_dir=ctx.lora_dir,
                       backend_factory=lambda: DiffusersBackend(tiny_random_pipe, model_name="tiny-random"))
    again = TestClient(build_fastapi_app(fresh))
    listed = again.get(API).json()["results"]
    assert listed[0]["id"] == body["id"] and listed[0]["result"]["win_rate"] == 0.0 and listed[0]["weight"] == 0.5
    assert listed[0]["images_kept"] and all(r["done"] for r in listed)
    state = again.get(f"{API}/{body['id']}").json()
    assert state["done"] and state["result"]["per_prompt"]["a green triangle"]["base"] == 2
    exported = again.post(f"{API}/{body['id']}/export").json()
    assert exported["added"] == 2 and not exported["already"]
    from lib_alignment.preferences import PreferenceFilter, default_store

    store = default_store(fresh)
    entries = [e for e in store.list(PreferenceFilter(sources=("ab-compare",))) if e.group == f"ab-compare:{body['id']}"]
    assert len(entries) == 2 and all(store.image(e.images[0]).settings["weight"] == 0 for e in entries)  # the base won
    assert again.get(f"{API}/nope").status_code == 404 and again.post(f"{API}/nope/export").status_code == 404
