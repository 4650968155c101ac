"""The WebUI glue against the fake A1111 (real names and signatures, deterministic sampler)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def load_extension_script() -> None:
    """Import scripts/alignment.py the way A1111 does: by path, with the extension root on sys.path."""
    spec = importlib.util.spec_from_file_location("alignment_script", ROOT / "scripts" / "alignment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


@pytest.fixture
def registered(fake_webui, monkeypatch):
    import lib_alignment.ui.webui_tabs as webui_tabs

    monkeypatch.setattr(webui_tabs, "_context", None)
    from modules import script_callbacks

    script_callbacks.clear_callbacks()
    load_extension_script()
    return script_callbacks


def test_extension_registers_both_tabs_with_exact_titles(registered):
    assert len(registered.ui_tabs_callbacks) == 1
    tabs = registered.ui_tabs_callbacks[0]()
    titles = [title for _, title, _ in tabs]
    assert titles == ["Rank & Refine", "Alignment Training", "Curate"]
    import gradio as gr

    assert all(isinstance(block, gr.Blocks) for block, _, _ in tabs)
    assert len({elem_id for _, _, elem_id in tabs}) == 3


def test_routes_are_registered_and_follow_the_webui_auth(registered, fake_webui):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    registered.app_started_callbacks[0](None, app)
    client = TestClient(app)
    body = client.get("/alignment/v1/health").json()
    assert body["host"] == "a1111"
    assert body["model"].endswith("tiny.safetensors")

    fake_webui.shared.cmd_opts.api_auth = "alice:secret"
    protected = FastAPI()
    registered.app_started_callbacks[0](None, protected)
    client = TestClient(protected)
    assert client.get("/alignment/v1/health").status_code == 401
    assert client.get("/alignment/v1/health", auth=("alice", "wrong")).status_code == 401
    assert client.get("/alignment/v1/health", auth=("alice", "secret")).status_code == 200


def test_context_uses_the_webui_lora_folder_and_checkpoint(registered, fake_webui, tmp_path):
    from lib_alignment.ui.webui_tabs import webui_context

    ctx = webui_context()
    assert ctx.lora_dir == Path(fake_webui.shared.cmd_opts.lora_dir)
    assert ctx.model_source() == fake_webui.shared.sd_model.sd_checkpoint_info.filename
    assert ctx.output_dir.is_relative_to(Path(fake_webui.paths.data_path))


def _pixels(images):
    return np.stack([np.asarray(image) for image in images])


def test_webui_backend_uses_our_initial_noise(fake_webui):
    from lib_alignment.generation import GenerationSettings, noise_from_seed
    from lib_alignment.webui_backend import WebUIBackend

    backend = WebUIBackend()
    assert backend.default_size() == 128  # fake model: latent image_size 16 × 8
    settings = GenerationSettings(prompt="a red circle", steps=4, width=64, height=64, sampler="Euler")
    noise = noise_from_seed(1, (6, *backend.latent_shape(64, 64)))
    first = backend.generate(settings, noise)
    again = backend.generate(settings, noise.clone())
    assert len(first.images) == 6 and first.latents.shape == (6, 4, 8, 8)
    assert np.array_equal(_pixels(first.images), _pixels(again.images))
    moved = noise.clone()
    moved[2] = -moved[2]
    changed = backend.generate(settings, moved)
    differs = [not np.array_equal(a, b) for a, b in zip(_pixels(first.images), _pixels(changed.images))]
    assert differs == [False, False, True, False, False, False]


def test_webui_backend_batches_beyond_the_batch_limit(fake_webui, monkeypatch):
    from lib_alignment import webui_facade
    from lib_alignment.generation import GenerationSettings, noise_from_seed
    from lib_alignment.webui_backend import WebUIBackend, largest_divisor_at_most

    assert largest_divisor_at_most(6, 8) == 6
    assert largest_divisor_at_most(12, 8) == 6
    assert largest_divisor_at_most(7, 4) == 1
    backend = WebUIBackend()
    settings = GenerationSettings(prompt="p", steps=2, width=64, height=64, sampler="Euler")
    noise = noise_from_seed(3, (6, 4, 8, 8))
    whole = backend.generate(settings, noise)
    monkeypatch.setattr(webui_facade, "max_batch_size", lambda: 4)  # 6 → batches of 3
    split = backend.generate(settings, noise)
    assert np.array_equal(_pixels(whole.images), _pixels(split.images))
    assert torch.equal(whole.latents, split.latents)


def test_ancestral_samplers_get_the_same_step_noise_for_every_candidate(fake_webui):
    from lib_alignment.generation import GenerationSettings
    from lib_alignment.webui_backend import WebUIBackend

    backend = WebUIBackend()
    settings = GenerationSettings(prompt="p", steps=2, width=64, height=64, sampler="Euler a", noise_seed=5)
    same = torch.zeros(3, 4, 8, 8)
    result = backend.generate(settings, same)
    pixels = _pixels(result.images)
    assert np.array_equal(pixels[0], pixels[1]) and np.array_equal(pixels[1], pixels[2])
    other_seed = backend.generate(settings.with_(noise_seed=6), same)
    assert not np.array_equal(pixels, _pixels(other_seed.images))


def test_only_the_facade_imports_webui_modules():
    offenders = []
    pattern = re.compile(r"^\s*(from\s+modules(\.|\s)|import\s+modules\b)", re.MULTILINE)
    for path in (ROOT / "lib_alignment").rglob("*.py"):
        if path.name != "webui_facade.py" and pattern.search(path.read_text(encoding="utf-8")):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_library_imports_without_a_webui():
    import subprocess
    import sys

    code = "import lib_alignment.webui_facade as w, lib_alignment.ui.webui_tabs; print(w.host_name())"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "standalone"
