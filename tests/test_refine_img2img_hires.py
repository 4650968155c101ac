"""img2img, hires fix and SDXL under Rank & Refine: the refined noise goes through the WebUI's own
img2img / hires processing (fake A1111 with its real call order) and through diffusers' img2img pipeline."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

API = "/alignment/v1/refine"


def _pixels(images):
    return np.stack([np.asarray(image.convert("RGB")).astype(int) for image in images])


def _init_image(path: Path, size: int = 64) -> Path:
    """A red square on blue: far from anything the fake txt2img sampler makes."""
    image = Image.new("RGB", (size, size), (20, 40, 200))
    image.paste((220, 30, 30), (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    image.save(path)
    return path


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def test_webui_img2img_uses_our_noise_and_keeps_the_init_image_at_low_strength(fake_webui, tmp_path):
    from lib_alignment.generation import GenerationSettings, noise_from_seed
    from lib_alignment.webui_backend import WebUIBackend

    backend = WebUIBackend()
    init = _init_image(tmp_path / "init.png")
    base = GenerationSettings(prompt="p", steps=4, width=64, height=64, sampler="Euler")
    low = base.with_(init_image=str(init), denoising_strength=0.3)
    noise = noise_from_seed(1, (3, *backend.latent_shape(64, 64)))
    first = backend.generate(low, noise)
    assert np.array_equal(_pixels(first.images), _pixels(backend.generate(low, noise.clone()).images))
    moved = noise.clone()
    moved[2] = noise_from_seed(9, moved[2].shape)
    again = _pixels(backend.generate(low, moved).images)
    assert np.array_equal(again[:2], _pixels(first.images)[:2]) and not np.array_equal(again[2], _pixels(first.images)[2])
    target = _pixels([Image.open(init)])[0]
    distance = {
        name: np.abs(_pixels(backend.generate(settings, noise).images) - target).mean()
        for name, settings in {"txt2img": base, "low": low, "high": low.with_(denoising_strength=0.9)}.items()
    }
    assert distance["low"] < distance["high"] < distance["txt2img"], distance
    with pytest.raises(ValueError, match="init_image: cannot read"):
        backend.generate(base.with_(init_image=str(tmp_path / "missing.png")), noise)


def test_webui_hires_fix_refines_the_first_pass_noise_and_the_hires_pass_follows(fake_webui):
    from lib_alignment.generation import GenerationSettings, noise_from_seed
    from lib_alignment.webui_backend import WebUIBackend

    backend = WebUIBackend()
    settings = GenerationSettings(prompt="p", steps=3, width=64, height=64, sampler="Euler", noise_seed=5, hires_scale=2.0)
    noise = noise_from_seed(2, (3, *backend.latent_shape(64, 64)))
    noise[1] = noise[0]
    result = backend.generate(settings, noise)
    assert [image.size for image in result.images] == [(128, 128)] * 3
    assert result.latents.shape == (3, 4, 8, 8)  # the first pass's latents: what the refined noise decides
    pixels = _pixels(result.images)
    assert np.array_equal(pixels[0], pixels[1])  # the hires pass's own noise is the same for every candidate
    assert not np.array_equal(pixels[0], pixels[2])
    plain = _pixels(backend.generate(settings.with_(hires_scale=0.0), noise).images)
    assert plain.shape[1:3] == (64, 64)
    with pytest.raises(ValueError, match="hires fix is for txt2img"):
        backend.generate(settings.with_(init_image="x.png"), noise)


def test_webui_sdxl_checkpoint_size_and_latents(fake_webui, monkeypatch):
    """An SDXL model (is_sdxl): native 1024 px, 4-channel latents at /8, generated through the same path."""
    from lib_alignment.generation import GenerationSettings, noise_from_seed
    from lib_alignment.webui_backend import WebUIBackend

    monkeypatch.setattr(fake_webui.shared.sd_model, "is_sdxl", True, raising=False)
    backend = WebUIBackend()
    size = backend.default_size()
    assert size == 1024 and backend.latent_shape(size, 768) == (4, 96, 128)
    settings = GenerationSettings(prompt="p", steps=2, width=1024, height=768, sampler="Euler")
    result = backend.generate(settings, noise_from_seed(3, (2, *backend.latent_shape(1024, 768))))
    assert [image.size for image in result.images] == [(1024, 768)] * 2 and result.latents.shape == (2, 4, 96, 128)


@pytest.fixture
def webui_client(webui_app):
    from fastapi.testclient import TestClient

    return TestClient(webui_app())


def test_api_img2img_session_persists_its_init_image_and_refines(webui_client, tmp_path):
    init = _init_image(tmp_path / "init.png", size=72)
    body = {"prompt": "p", "seed": 3, "sampler_name": "Euler", "steps": 2, "m": 4, "denoising_strength": 0.4}
    first = webui_client.post(API, json={**body, "init_image": _b64(init)})
    assert first.status_code == 200, first.text
    state = webui_client.get(f"{API}/{first.json()['id']}", params={"images": "false"}).json()
    settings = state["settings"]
    assert (settings["width"], settings["height"]) == (72, 72)  # the init image's size by default
    assert settings["denoising_strength"] == 0.4 and Path(settings["init_image"]).name == "init.png"
    assert Path(settings["init_image"]).parent.name == first.json()["id"]  # kept in the session's own folder
    images = [Image.open(io.BytesIO(base64.b64decode(b))) for b in first.json()["images"]]
    assert len({image.tobytes() for image in images}) == 4
    nxt = webui_client.post(f"{API}/{first.json()['id']}/rank", json={"order": [1, 0]})
    assert nxt.status_code == 200, nxt.text
    bad = webui_client.post(API, json={**body, "init_image": "not an image"})
    assert bad.status_code == 422 and "init_image" in bad.text
    both = webui_client.post(API, json={**body, "init_image": _b64(init), "hires_scale": 2})
    assert both.status_code == 422 and "hires_scale" in both.text
    hires = webui_client.post(API, json={**body, "width": 64, "height": 64, "hires_scale": 1.5})
    assert hires.status_code == 200, hires.text
    assert Image.open(io.BytesIO(base64.b64decode(hires.json()["images"][0]))).size == (96, 96)


def test_diffusers_img2img_and_hires_follow_the_given_noise(tiny_random_pipe, tmp_path):
    from lib_alignment.generation import DiffusersBackend, GenerationSettings, noise_from_seed

    backend = DiffusersBackend(tiny_random_pipe, model_name="tiny-random")
    init = _init_image(tmp_path / "init.png")
    settings = GenerationSettings(prompt="p", steps=4, cfg_scale=5.0, width=64, height=64, sampler="DDIM")
    img2img = settings.with_(init_image=str(init), denoising_strength=0.5)
    noise = noise_from_seed(4, (2, *backend.latent_shape(64, 64)))
    a = _pixels(backend.generate(img2img, noise).images)
    assert np.array_equal(a, _pixels(backend.generate(img2img, noise.clone()).images))
    assert np.abs(a[0] - a[1]).mean() > 1  # each candidate follows its own noise
    with pytest.raises(ValueError, match="leaves no step"):
        backend.generate(img2img.with_(denoising_strength=0.1), noise)
    twins = noise_from_seed(5, (3, *backend.latent_shape(64, 64)))
    twins[1] = twins[0]
    hires = backend.generate(settings.with_(hires_scale=2.0), twins)
    assert [image.size for image in hires.images] == [(128, 128)] * 3 and hires.latents.shape == (3, 4, 8, 8)
    same = _pixels(hires.images)
    assert np.abs(same[0] - same[1]).max() <= 2  # the hires pass's noise does not differ between candidates
    assert np.abs(same[0] - same[2]).mean() > 1


def test_tab_start_takes_an_init_image_and_strength_in_the_webui(fake_webui, monkeypatch, tmp_path):
    """The tab's img2img inputs reach the session (fake A1111): Start with an init image refines img2img noise."""
    import json

    from ui_handlers import call

    from lib_alignment.ui import webui_tabs

    monkeypatch.setattr(webui_tabs, "_context", None)
    tabs = webui_tabs.ui_tabs()
    block = next(block for block, title, _ in tabs if title == "Rank & Refine")
    prefix = "alignment_rank_refine"
    init = Image.open(_init_image(tmp_path / "init.png"))
    common = {f"{prefix}_seed": 3, f"{prefix}_steps": 2, f"{prefix}_m": 4, f"{prefix}_sampler": "Euler"}
    html, session_id, *_ = call(
        block, "rank_refine_tab", "on_start", **common,
        **{f"{prefix}_init_image": init, f"{prefix}_strength": 0.35},
    )
    assert session_id, html
    folder = webui_tabs._context.output_dir / "refine" / session_id
    settings = json.loads((folder / "session.json").read_text())["settings"]
    assert settings["denoising_strength"] == 0.35 and (folder / "init.png").is_file()
    assert (settings["width"], settings["height"]) == (64, 64)
    html, session_id, *_ = call(block, "rank_refine_tab", "on_start", **common, **{f"{prefix}_strength": None})
    assert not session_id and "Denoising strength" in html  # an empty field is refused with its label
