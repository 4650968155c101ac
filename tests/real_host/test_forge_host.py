"""The extension inside a real, unmodified Forge (main of 2025-06, CPU, offline, a full-size SD1.5
checkpoint with random weights), driven over HTTP.

One Forge serves the module (`forge_host`: started once with --api-auth). Forge loads the checkpoint only
at the first generation; the tests run in file order: the first checks what the extension sees before
that, the second generates once. Sizes are 64x64 with 2-4 steps and jobs of 2 steps: a full SD1.5 UNet
on CPU takes ~2 s a step.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from .harness import decode_image, host_pins, installed_versions, tracebacks_naming_the_extension, unmet_pins

pytestmark = [pytest.mark.real_host, pytest.mark.slow]
TRAIN_OPTIONS = {"max_train_steps": 2, "learning_rate": 5e-3, "resolution": 64, "sample_steps": 2, "batch_size": 2}
LORA_LOADED = re.compile(r"\[LORA\] Loaded (\S+) for (KModel-UNet|KModel-CLIP) with (\d+) keys at weight [0-9.]+ \(skipped (\d+) keys\)")
LORA_MISMATCH = ("[LORA] Mismatch", "LoRA version mismatch", "with unmatched keys")


def _lora_lines(log: str, name: str) -> list[tuple[str, int, int]]:
    """(part, keys, skipped) of every `[LORA] Loaded` line for the file `name`.safetensors."""
    return [(part, int(keys), int(skipped)) for file, part, keys, skipped in LORA_LOADED.findall(log) if Path(file).stem == name]


def test_before_the_first_generation_the_selected_checkpoint_is_the_model(forge_host):
    config = forge_host.get("/config").json()
    tabs = {c["props"].get("label"): c["props"].get("elem_id") for c in config["components"] if c.get("type") == "tabitem"}
    assert "Rank & Refine" in tabs and "Alignment Training" in tabs, sorted(tabs)
    log = forge_host.log_text()
    assert "Model selected:" in log and "Loading Model:" not in log  # Forge has not loaded it yet
    assert not tracebacks_naming_the_extension(log), log[-3000:]
    assert "Installing requirements" not in log
    wrong = unmet_pins(host_pins(forge_host.webui), installed_versions(forge_host.python))
    assert not wrong, f"pins not met after start-up: {wrong}"

    assert forge_host.get("/alignment/v1/health", auth=None).status_code == 401
    health = forge_host.get("/alignment/v1/health")
    assert health.status_code == 200, health.text
    assert health.json()["host"] == "forge" and health.json()["model"] == str(forge_host.checkpoint)


def _train(host, tmp: Path, method: str, unload: bool = False) -> tuple[dict, Path]:
    """A 2-step job on the checkpoint Forge has (loaded or selected); the finished job and its folder."""
    from lib_alignment.training.data.synthetic import make_toy_kto, make_toy_pairs

    data = make_toy_pairs(tmp, 4, resolution=64) if method == "dpo" else make_toy_kto(tmp, 4, resolution=64)
    body = {"method": method, "name": f"rh-forge-{method}", "preset": "cpu", "dataset": str(data), "options": dict(TRAIN_OPTIONS)}
    started = time.time()
    job = host.start_job({**body, "unload_webui_model": unload})
    assert job["model"] == str(host.checkpoint)
    done = host.poll_job(job["id"])
    assert done["state"] == "finished", json.dumps(done)[:4000]
    lora = Path(done["outputs"]["lora"])
    assert lora == host.lora_dir / f"rh-forge-{method}.safetensors" and lora.is_file()
    print(f"[forge] {method} job: {time.time() - started:.0f} s from start to LoRA")
    return done, host.alignment_dir / "jobs" / job["id"]


def _tokenizer_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name in ("vocab.json", "merges.txt")}


def test_a_job_before_forge_loads_the_model_gets_forges_own_tokenizer(forge_host, tmp_path):
    """The issue's failure: Forge has only selected the checkpoint, which carries no tokenizer."""
    assert "Loading Model:" not in forge_host.log_text()
    _, folder = _train(forge_host, tmp_path, "dpo")
    handed = Path(json.loads((folder / "config.json").read_text())["tokenizer"])
    forges = forge_host.webui / "backend" / "huggingface" / "runwayml" / "stable-diffusion-v1-5" / "tokenizer"
    assert _tokenizer_files(handed) == _tokenizer_files(forges) and len(_tokenizer_files(handed)) == 2
    assert "Loading Model:" not in forge_host.log_text()  # the job did not make Forge load its model


def test_rank_and_refine_runs_on_forges_sampler_with_a_lora_in_the_prompt(forge_host):
    host = forge_host
    lora = host.kit.lora
    offset = len(host.log_text())
    plain = host.refine(f"a red circle <lora:{lora}:0>", steps=3, m=3)  # the first generation: Forge loads the model here
    assert "Model loaded in" in host.log_text()[offset:]
    offset = len(host.log_text())
    with_lora = host.refine(f"a red circle <lora:{lora}:1>", steps=3, m=3)
    assert len(with_lora["images"]) == 3
    difference = np.abs(decode_image(plain["current"]) - decode_image(with_lora["current"])).mean()
    print(f"[forge] Rank & Refine <lora:{lora}:1> vs :0: mean |diff| {difference:.2f}/255")
    assert difference > 1.0, f"the LoRA in the prompt changed the image by only {difference:.2f}/255"
    log = host.log_text()[offset:]
    assert {part for part, _, skipped in _lora_lines(log, lora) if skipped == 0} == {"KModel-UNet", "KModel-CLIP"}, log[-3000:]
    again = host.refine(f"a red circle <lora:{lora}:1>", steps=3, m=3)
    assert np.array_equal(decode_image(again["current"]), decode_image(with_lora["current"]))

    session = with_lora["id"]
    ranked = host.post(f"/alignment/v1/refine/{session}/rank", json={"order": [2, 0], "round": 1})
    assert ranked.status_code == 200, ranked.text[:2000]
    assert ranked.json()["round"] == 2


def test_a_job_on_the_loaded_model_unloads_it_through_forges_memory_management(forge_host, tmp_path):
    offset = len(forge_host.log_text())
    _, folder = _train(forge_host, tmp_path, "kto", unload=True)
    assert "[Unload] Trying to free all memory" in forge_host.log_text()[offset:]
    handed = Path(json.loads((folder / "config.json").read_text())["tokenizer"])
    assert len(_tokenizer_files(handed)) == 2  # saved from Forge's loaded CLIP tokenizer
    assert json.loads((folder / "job.json").read_text())["unloaded_webui_model"] is False  # loaded back


@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_the_trained_loras_are_listed_and_forge_applies_them(forge_host, method):
    host = forge_host
    name = f"rh-forge-{method}"
    assert host.post("/sdapi/v1/refresh-loras").status_code == 200
    listed = {entry["name"]: entry for entry in host.get("/sdapi/v1/loras").json()}
    assert name in listed, sorted(listed)

    offset = len(host.log_text())
    base = host.txt2img("a red circle", seed=3, steps=2)
    tuned = host.txt2img(f"a red circle <lora:{name}:1>", seed=3, steps=2)
    difference = np.abs(base - tuned).mean()
    print(f"[forge] txt2img <lora:{name}:1> vs none: mean |diff| {difference:.3f}/255")
    assert difference > 0.5, f"<lora:{name}:1> changed the txt2img image by only {difference:.3f}/255"
    log = host.log_text()[offset:]
    lines = _lora_lines(log, name)
    assert lines and all(skipped == 0 and keys > 0 for _, keys, skipped in lines), log[-3000:]
    assert not [marker for marker in LORA_MISMATCH if marker in log], log[-3000:]


def test_no_extension_traceback_in_forges_log(forge_host):
    assert not tracebacks_naming_the_extension(forge_host.log_text())


def test_generate_cli_on_forges_checkpoint_finds_forges_tokenizer(forge_host, tmp_path):
    """No --tokenizer: the checkpoint carries none and the HF cache is empty; Forge's own
    backend/huggingface copy is found from the installed extension's folder."""
    assert forge_host.generate_cli(tmp_path / "generated.png").std() > 1.0
