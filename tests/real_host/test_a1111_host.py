"""The extension inside a real, unmodified AUTOMATIC1111 v1.10.1 (CPU, offline), driven over HTTP.

One WebUI serves the whole module (started once with --loglevel DEBUG and --api-auth; restarted once,
by the test of a restart while a job runs). The tests run in file order and share what earlier ones
made (`made`): the LoRAs trained here are checked again in txt2img and in the Lora cards.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from lib_alignment.training.health import STATES

from .harness import decode_image, host_pins, installed_versions, tracebacks_naming_the_extension, unmet_pins

pytestmark = [pytest.mark.real_host, pytest.mark.slow]
TAG = "[lib_alignment]"
TRAIN_OPTIONS = {"max_train_steps": 4, "learning_rate": 5e-3, "resolution": 64, "sample_steps": 2, "batch_size": 2}
made: dict[str, object] = {}


def _segments(log: str) -> list[str]:
    """The log of each start, in order (the harness writes a marker line before each)."""
    return [part for part in re.split(r"\n===== real-host start \d+ .*=====\n", log) if part.strip()]


def test_start_up_shows_both_tabs_and_install_adds_only_what_is_missing(a1111_host):
    config = a1111_host.get("/config").json()
    tabs = {c["props"].get("label"): c["props"].get("elem_id") for c in config["components"] if c.get("type") == "tabitem"}
    assert "Rank & Refine" in tabs and "Alignment Training" in tabs, sorted(tabs)
    assert tabs["Rank & Refine"].startswith("tab_") and tabs["Alignment Training"].startswith("tab_")

    first = _segments(a1111_host.log_text())[0]
    assert not tracebacks_naming_the_extension(first), first[-3000:]
    assert "Installing requirements" not in first  # nothing of A1111's own pins moved
    before, after = a1111_host.versions_before, installed_versions(a1111_host.python)
    changed = {name: (before[name], after.get(name)) for name in before if after.get(name) != before[name]}
    assert not changed, f"install.py changed packages the WebUI had: {changed}"
    wrong = unmet_pins(host_pins(a1111_host.webui), after)
    assert not wrong, f"pins not met after start-up: {wrong}"
    added = sorted(set(after) - set(before))
    if "pyarrow" not in before:  # neither WebUI ships it; parquet data needs it, at a release that imports with numpy 1.26
        assert "pyarrow" in added and int(after["pyarrow"].split(".")[0]) < 26, (added, after.get("pyarrow"))
    if added:  # the first start on this kit: install.py said what it added, through A1111's run_pip
        assert {"diffusers", "peft", "pyarrow"} & set(added), added
        assert f"{TAG} installed" in first, first[-2000:]


def test_extension_routes_follow_the_api_auth(a1111_host):
    assert a1111_host.get("/alignment/v1/health", auth=None).status_code == 401
    assert a1111_host.get("/alignment/v1/jobs", auth=("alice", "wrong")).status_code == 401
    assert a1111_host.post("/alignment/v1/refine", json={"prompt": "x"}, auth=None).status_code == 401
    health = a1111_host.get("/alignment/v1/health")
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["host"] == "a1111"
    assert body["model"].endswith("tiny-harness.safetensors")


def test_rank_and_refine_runs_on_the_webui_sampler_with_a_lora_in_the_prompt(a1111_host):
    lora = a1111_host.kit.lora
    plain = a1111_host.refine(f"a red circle <lora:{lora}:0>")
    with_lora = a1111_host.refine(f"a red circle <lora:{lora}:1>")
    assert len(with_lora["images"]) == 4
    difference = np.abs(decode_image(plain["current"]) - decode_image(with_lora["current"])).mean()
    assert difference > 1.0, f"the LoRA in the prompt changed the image by only {difference:.2f}/255"
    again = a1111_host.refine(f"a red circle <lora:{lora}:1>")
    assert np.array_equal(decode_image(again["current"]), decode_image(with_lora["current"]))  # same seed, same image

    session = with_lora["id"]
    ranked = a1111_host.post(f"/alignment/v1/refine/{session}/rank", json={"order": [2, 0], "round": 1})
    assert ranked.status_code == 200, ranked.text[:2000]
    assert ranked.json()["round"] == 2
    undone = a1111_host.post(f"/alignment/v1/refine/{session}/undo").json()
    assert undone["round"] == 1
    exported = a1111_host.post(f"/alignment/v1/refine/{session}/export")
    assert exported.status_code == 200, exported.text[:2000]
    image = exported.json()["image"]
    info = a1111_host.post("/sdapi/v1/png-info", json={"image": "data:image/png;base64," + image.split(",")[-1]})
    assert info.status_code == 200, info.text
    params = info.json()["parameters"]
    assert params["Prompt"] == f"a red circle <lora:{lora}:1>"
    assert str(params["Seed"]) == "21" and str(params["Steps"]) == "4" and params["Sampler"] == "Euler"
    assert str(params["Size-1"]) == "64" and str(params["Size-2"]) == "64"
    assert (a1111_host.alignment_dir / "refined" / exported.json()["image_file"]).is_file()


def _toy_data(tmp: Path) -> dict[str, Path]:
    """DPO trains on a folder in Pick-a-Pic v2's layout (data/train-*.parquet, streamed; needs install.py's pyarrow)."""
    from lib_alignment.training.data.synthetic import make_pickapic_shards, make_toy_kto

    pairs = make_pickapic_shards(tmp / "pickapic", 8, shards=2, rows_per_group=2, image_size=64)
    return {"pairs": pairs, "kto": make_toy_kto(tmp / "kto", 4, resolution=64)}


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("dpo", {}),
        ("kto", {}),
        ("ddpo", {"reward": "jpeg_compressibility", "prompts": "a red circle\na blue square"}),
    ],
)
def test_training_on_the_loaded_checkpoint_makes_a_lora_the_webui_uses(a1111_host, tmp_path_factory, method, extra):
    host = a1111_host
    name = f"rh-{method}"
    body = {"method": method, "name": name, "preset": "cpu", "options": dict(TRAIN_OPTIONS), **extra}
    if method == "ddpo":
        body["options"] = {
            "max_train_steps": 2, "learning_rate": 5e-3, "resolution": 64, "sample_steps": 4,
            "samples_per_epoch": 4, "rollout_batch_size": 4, "kl_samples": 0,
        }
    else:
        body["dataset"] = str(_toy_data(tmp_path_factory.mktemp(method))["pairs" if method == "dpo" else "kto"])
    job = host.start_job(body)
    assert job["model"] == str(host.checkpoint)
    done = host.poll_job(job["id"])
    assert done["state"] == "finished", json.dumps(done)[:4000]
    lora = Path(done["outputs"]["lora"])
    assert lora == host.lora_dir / f"{name}.safetensors" and lora.is_file()
    assert (done.get("health") or {}).get("state") in STATES, done.get("health")  # the trainer's verdict reaches the API

    assert host.post("/sdapi/v1/refresh-loras").status_code == 200
    listed = {entry["name"]: entry for entry in host.get("/sdapi/v1/loras").json()}
    assert name in listed, sorted(listed)
    assert listed[name]["metadata"].get("ss_sd_model_name") == "tiny-harness"

    offset = len(host.log_text())
    base = host.txt2img("a red circle", seed=3)
    tuned = host.txt2img(f"a red circle <lora:{name}:1>", seed=3)
    difference = np.abs(base - tuned).mean()
    assert difference > 0.5, f"<lora:{name}:1> changed the txt2img image by only {difference:.3f}/255"
    log = host.log_text()[offset:]
    assert "didn't match keys" not in log, log[-3000:]
    assert f"Couldn't find network with name {name}" not in log
    made[method] = name


def test_the_debug_log_would_name_an_unmatched_lora_key(a1111_host):
    """Control for the check above: a LoRA with one key A1111 cannot place is named in the DEBUG log."""
    import torch
    from safetensors.torch import save_file

    host = a1111_host
    save_file(
        {
            "lora_unet_no_such_block_proj.lora_down.weight": torch.ones(4, 64),
            "lora_unet_no_such_block_proj.lora_up.weight": torch.ones(64, 4),
            "lora_unet_no_such_block_proj.alpha": torch.tensor(4.0),
        },
        str(host.lora_dir / "rh-unmatched.safetensors"),
    )
    assert host.post("/sdapi/v1/refresh-loras").status_code == 200
    offset = len(host.log_text())
    host.txt2img("a red circle <lora:rh-unmatched:1>", seed=3, steps=2)
    assert "didn't match keys" in host.log_text()[offset:]
    (host.lora_dir / "rh-unmatched.safetensors").unlink()


def test_lora_card_shows_the_preview_and_description(a1111_host):
    assert made, "no LoRA was trained by the tests above"
    for name in made.values():
        card = a1111_host.get(
            "/sd_extra_networks/get-single-card", params={"page": "lora", "tabname": "txt2img", "name": name}
        )
        assert card.status_code == 200, card.text[:500]
        html = card.json()["html"]
        assert f"{name}.preview.png" in html, html[:2000]
        description = json.loads((a1111_host.lora_dir / f"{name}.json").read_text())["description"]
        assert description and description.split("\n")[0][:40] in html.replace("&#x27;", "'").replace("&quot;", '"')


def test_cancel_and_resume_inside_the_webui(a1111_host, tmp_path):
    host = a1111_host
    data = _toy_data(tmp_path)["pairs"]
    options = {**TRAIN_OPTIONS, "max_train_steps": 400, "checkpoint_every": 2}
    job = host.start_job({"method": "dpo", "name": "rh-cancel", "dataset": str(data), "preset": "cpu", "options": options})
    host.poll_job(job["id"], done=lambda b: (b.get("step") or 0) >= 3, timeout=300)
    assert host.post(f"/alignment/v1/jobs/{job['id']}/cancel").status_code == 200
    cancelled = host.poll_job(job["id"])
    assert cancelled["state"] == "cancelled", cancelled
    stopped_at = cancelled["step"]
    assert 3 <= stopped_at < 400 and Path(cancelled["outputs"]["lora"]).is_file()

    resumed = host.post(f"/alignment/v1/jobs/{job['id']}/resume", json={"options": {"max_train_steps": stopped_at + 3}})
    assert resumed.status_code == 200, resumed.text[:2000]
    finished = host.poll_job(job["id"])
    assert finished["state"] == "finished", finished
    assert finished["step"] == stopped_at + 3


def test_a_webui_restart_while_a_job_runs_finds_the_job_again(a1111_host, tmp_path):
    host = a1111_host
    data = _toy_data(tmp_path)["pairs"]
    options = {**TRAIN_OPTIONS, "max_train_steps": 60}
    job = host.start_job({"method": "dpo", "name": "rh-restart", "dataset": str(data), "preset": "cpu", "options": options})
    host.poll_job(job["id"], done=lambda b: (b.get("step") or 0) >= 1, timeout=300)
    host.restart()
    response = host.get(f"/alignment/v1/jobs/{job['id']}")
    assert response.status_code == 200, response.text[:2000]
    again = response.json()
    assert again["state"] in ("running", "finished"), again  # the trainer outlived the WebUI and is found by pid
    assert job["id"] in [j["id"] for j in host.get("/alignment/v1/jobs").json()["jobs"]]
    finished = host.poll_job(job["id"])
    assert finished["state"] == "finished", finished

    second_start = _segments(host.log_text())[-1]
    assert "is missing: installing" not in second_start, second_start[-2000:]  # install.py: nothing to do
    assert "Installing requirements" not in second_start
    assert not tracebacks_naming_the_extension(host.log_text())


def test_generate_cli_loads_the_webui_checkpoint_in_the_webui_python(a1111_host, tmp_path):
    """The checkpoint stores position_ids as float (as many community files do); under A1111's
    transformers 4.30.2 that once failed with 'Expected tensor for argument #1 indices ... Long'."""
    assert a1111_host.generate_cli(tmp_path / "generated.png").std() > 1.0


def _init_png() -> str:
    """A red square on blue, 64×64, as base64 PNG: far from what the tiny model draws from noise."""
    import base64
    import io

    from PIL import Image

    image = Image.new("RGB", (64, 64), (20, 40, 200))
    image.paste((220, 30, 30), (16, 16, 48, 48))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _distinct(body: dict) -> int:
    return len({decode_image(image).tobytes() for image in body["images"]})


def test_img2img_and_hires_refine_rounds_run_through_the_webui_sampler(a1111_host):
    """img2img: the refined noise is what A1111's img2img adds to the init latent; hires fix: the first
    pass's noise is refined and A1111's hires pass follows. Candidates differ, same seed + ranking repeat."""
    init = _init_png()
    body = {"prompt": "a red circle", "seed": 31, "steps": 4, "width": 64, "height": 64, "m": 4, "sampler_name": "Euler"}
    img2img = {**body, "init_image": init, "denoising_strength": 0.3}
    first = a1111_host.post("/alignment/v1/refine", json=img2img)
    assert first.status_code == 200, first.text[:2000]
    first = first.json()
    assert _distinct(first) == 4
    ranked = a1111_host.post(f"/alignment/v1/refine/{first['id']}/rank", json={"order": [2, 0], "round": 1}).json()
    twin = a1111_host.post("/alignment/v1/refine", json=img2img).json()
    twin_ranked = a1111_host.post(f"/alignment/v1/refine/{twin['id']}/rank", json={"order": [2, 0], "round": 1}).json()
    for a, b in zip(ranked["images"], twin_ranked["images"]):  # same seed and direction: the same round
        assert np.array_equal(decode_image(a), decode_image(b))
    target = decode_image(init)
    txt2img = a1111_host.refine("a red circle", seed=31)
    near_init = np.abs(decode_image(first["current"]) - target).mean()
    from_noise = np.abs(decode_image(txt2img["current"]) - target).mean()
    assert near_init < from_noise, f"img2img at strength 0.3 is {near_init:.1f}/255 from the init image, txt2img {from_noise:.1f}"

    hires = a1111_host.post("/alignment/v1/refine", json={**body, "hires_scale": 2, "hires_denoising": 0.5})
    assert hires.status_code == 200, hires.text[:2000]
    hires = hires.json()
    assert decode_image(hires["images"][0]).shape == (128, 128, 3) and _distinct(hires) == 4
    nxt = a1111_host.post(f"/alignment/v1/refine/{hires['id']}/rank", json={"order": [1], "round": 1})
    assert nxt.status_code == 200, nxt.text[:2000]


def test_scorer_assisted_and_auto_rounds_belong_to_their_api_user(a1111_host):
    """Issue 14: a round pre-ranked by a scorer, the person's corrected order, one auto round by the scorer,
    all through A1111's sampler; the second --api-auth user gets 404 for the session and does not list it."""
    from .harness import OTHER_PASSWORD, OTHER_USER

    body = {"prompt": "a red circle", "seed": 41, "steps": 4, "width": 64, "height": 64, "m": 4,
            "sampler_name": "Euler", "scorer": "brightness", "auto_rounds": 1, "variety": "bold"}
    first = a1111_host.post("/alignment/v1/refine", json=body)
    assert first.status_code == 200, first.text[:2000]
    first = first.json()
    assert sorted(first["scorer_order"]) == [0, 1, 2, 3]
    luma = [float((decode_image(b64)[..., :3] * [0.299, 0.587, 0.114]).sum(-1).mean()) for b64 in first["images"]]
    assert luma[first["scorer_order"][0]] >= max(luma) - 0.5  # the scorer's best is the brightest
    corrected = list(reversed(first["scorer_order"]))
    nxt = a1111_host.post(f"/alignment/v1/refine/{first['id']}/rank", json={"order": corrected, "round": first["round"]})
    assert nxt.status_code == 200, nxt.text[:2000]
    assert nxt.json()["round"] == first["round"] + 2  # the person's round, then the scorer's
    log = a1111_host.get(f"/alignment/v1/refine/{first['id']}/rounds").json()["rounds"]
    assert [entry["source"] for entry in log] == ["human", "scorer", None]
    assert log[0]["order"] == corrected and log[1]["order"] == log[1]["scorer_order"]
    other = (OTHER_USER, OTHER_PASSWORD)
    assert a1111_host.get(f"/alignment/v1/refine/{first['id']}", auth=other).status_code == 404
    assert a1111_host.post(f"/alignment/v1/refine/{first['id']}/rank", json={"order": [0]}, auth=other).status_code == 404
    listed = a1111_host.get("/alignment/v1/refine", auth=other).json()["sessions"]
    assert first["id"] not in [s["id"] for s in listed]
    assert first["id"] in [s["id"] for s in a1111_host.get("/alignment/v1/refine").json()["sessions"]]
