"""The facade's Forge paths against the fake Forge (tests/fake_forge: Forge's real attribute layout)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

FAKE_FORGE = os.path.join(os.path.dirname(__file__), "fake_forge")
SD1_KEYS = {
    "model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3),
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (16, 8),
}


def _forget_webui_modules() -> None:
    for name in [m for m in sys.modules if m.split(".")[0] in ("modules", "modules_forge", "backend", "launch")]:
        del sys.modules[name]


@pytest.fixture
def fake_forge(tmp_path, monkeypatch):
    """The fake Forge importable as `modules`, `modules_forge` and `backend`, fresh for each test."""
    monkeypatch.setenv("FAKE_WEBUI_DATA", str(tmp_path / "webui"))
    monkeypatch.syspath_prepend(FAKE_FORGE)
    _forget_webui_modules()
    import modules.shared

    yield modules
    _forget_webui_modules()


def _select(path: Path) -> object:
    """What Forge does at start: the checkpoint is selected (loading parameters), not loaded."""
    from modules import sd_models, shared

    info = sd_models.CheckpointInfo(str(path))
    sd_models.model_data.forge_loading_parameters = {"checkpoint_info": info, "additional_modules": [], "unet_storage_dtype": None}
    shared.opts.sd_model_checkpoint = info.title
    return info


def _write_checkpoint(path: Path, keys: dict[str, tuple[int, ...]] = SD1_KEYS) -> Path:
    """A tiny file with the tensor names that tell an SD family (all the architecture check reads)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: torch.zeros(shape) for name, shape in keys.items()}, str(path))
    return path


def _tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    from lib_alignment.models.tiny_tokenizer import write_tokenizer_files

    return CLIPTokenizer.from_pretrained(str(write_tokenizer_files(folder)))


def _pixels(images) -> np.ndarray:
    return np.stack([np.asarray(image) for image in images])


def test_facade_sees_forge(fake_forge):
    from lib_alignment import webui_facade as webui

    assert webui.is_forge() and webui.host_name() == "forge"


def test_checkpoint_is_the_selected_one_before_the_first_generation(fake_forge, tmp_path):
    from modules import sd_models, shared

    from lib_alignment import webui_facade as webui

    assert type(shared.sd_model).__name__ == "FakeInitialModel"
    assert webui.loaded_checkpoint() is None
    path = _write_checkpoint(tmp_path / "models" / "Stable-diffusion" / "picked.safetensors")
    _select(path)
    assert webui.loaded_checkpoint().path == path
    sd_models.model_data.forge_loading_parameters = {}  # only the option is set: resolved through checkpoints_list
    assert webui.loaded_checkpoint().path == path
    assert webui.checkpoint_family() == "sd1" and webui.native_size() == 512


def test_context_model_source_follows_forge(fake_forge, tmp_path, monkeypatch):
    import lib_alignment.ui.webui_tabs as webui_tabs

    monkeypatch.setattr(webui_tabs, "_context", None)
    path = _write_checkpoint(tmp_path / "models" / "Stable-diffusion" / "ctx.safetensors")
    _select(path)
    ctx = webui_tabs.webui_context()
    assert ctx.host == "forge" and ctx.model_source() == str(path)


def test_backend_loads_lazily_uses_our_noise_and_applies_prompt_loras(fake_forge, tmp_path):
    from modules import sd_models, shared

    from lib_alignment.generation import GenerationSettings, noise_from_seed
    from lib_alignment.webui_backend import WebUIBackend

    _select(_write_checkpoint(tmp_path / "models" / "Stable-diffusion" / "lazy.safetensors"))
    backend = WebUIBackend()
    settings = GenerationSettings(prompt="a red circle", steps=4, width=64, height=64, sampler="Euler")
    noise = noise_from_seed(1, (3, *backend.latent_shape(64, 64)))
    first = backend.generate(settings, noise)
    assert len(sd_models.loads) == 1 and shared.sd_model.sd_checkpoint_info.filename.endswith("lazy.safetensors")
    assert backend.model_name == "lazy"
    again = backend.generate(settings, noise.clone())
    assert np.array_equal(_pixels(first.images), _pixels(again.images)) and len(sd_models.loads) == 1
    moved = noise.clone()
    moved[1] = -moved[1]
    changed = _pixels(backend.generate(settings, moved).images)
    assert [not np.array_equal(a, b) for a, b in zip(_pixels(first.images), changed)] == [False, True, False]
    with_lora = backend.generate(settings.with_(prompt="a red circle <lora:mine:1>"), noise)
    assert all(not np.array_equal(a, b) for a, b in zip(_pixels(first.images), _pixels(with_lora.images)))
    # the LoRA came through forge_objects_after_applying_lora, and the next plain run is plain again
    assert shared.sd_model.forge_objects.unet.lora_weight == 1.0
    assert np.array_equal(_pixels(backend.generate(settings, noise).images), _pixels(first.images))


def test_tokenizer_comes_from_the_loaded_clip_patcher(fake_forge, tmp_path):
    from modules import sd_models, shared

    from lib_alignment import webui_facade as webui

    clip_l, clip_g = _tokenizer(tmp_path / "tok_l"), _tokenizer(tmp_path / "tok_g")
    sd_models.load_options.update(family="sdxl", tokenizers={"clip_l": clip_l, "clip_g": clip_g})
    _select(_write_checkpoint(tmp_path / "models" / "Stable-diffusion" / "xl.safetensors"))
    sd_models.forge_model_reload()
    assert shared.sd_model.cond_stage_model is None and shared.sd_model.first_stage_model is None
    assert webui.webui_tokenizers() == [clip_l, clip_g] and webui.webui_tokenizer() is clip_l
    saved = webui.save_tokenizer(tmp_path / "handed" / "tokenizer")
    vocab = {"vocab.json", "tokenizer.json"}  # transformers 5 writes only tokenizer.json
    assert {p.name for p in saved.iterdir()} & vocab and {p.name for p in (saved / "tokenizer_2").iterdir()} & vocab
    assert webui.native_size() == 1024


def test_tokenizer_comes_from_forges_own_files_before_the_model_is_loaded(fake_forge, tmp_path):
    from modules import paths

    from lib_alignment import webui_facade as webui
    from lib_alignment.models.tokenizers import resolve_tokenizers
    from lib_alignment.models.architecture import CONFIGS_DIR

    repo = Path(paths.script_path) / "backend" / "huggingface" / "runwayml" / "stable-diffusion-v1-5"
    _tokenizer(repo / "tokenizer")
    checkpoint = _write_checkpoint(tmp_path / "models" / "Stable-diffusion" / "sd1.safetensors")
    _select(checkpoint)
    assert webui.webui_tokenizers() == []
    assert webui.forge_tokenizer_folders() == [repo / "tokenizer"]
    saved = webui.save_tokenizer(tmp_path / "handed")
    assert sorted(p.name for p in saved.iterdir()) == sorted(p.name for p in (repo / "tokenizer").iterdir())
    loaded = resolve_tokenizers(CONFIGS_DIR / "sd15", ("tokenizer",), saved, checkpoint)["tokenizer"]
    assert loaded("a red circle").input_ids == _tokenizer(tmp_path / "same")("a red circle").input_ids


def test_no_tokenizer_anywhere_gives_none(fake_forge, tmp_path):
    from lib_alignment import webui_facade as webui

    _select(_write_checkpoint(tmp_path / "models" / "Stable-diffusion" / "bare.safetensors"))
    assert webui.save_tokenizer(tmp_path / "handed") is None


def test_native_size_of_an_sd2_v_model(fake_forge, tmp_path):
    from modules import sd_models

    from lib_alignment import webui_facade as webui

    sd_models.load_options.update(family="sd2", prediction_type="v_prediction")
    _select(_write_checkpoint(tmp_path / "models" / "Stable-diffusion" / "v.safetensors"))
    sd_models.forge_model_reload()
    assert webui.checkpoint_family() == "sd2" and webui.native_size() == 768


def test_unload_and_reload_go_through_forges_memory_management(fake_forge, tmp_path):
    from backend import memory_management
    from modules import sd_models

    from lib_alignment import webui_facade as webui
    from lib_alignment.generation import GenerationSettings
    from lib_alignment.jobs.host import JobHost
    from lib_alignment.webui_backend import WebUIBackend

    cuda = torch.device("cuda")  # a device object only; nothing is allocated on it
    memory_management.torch_device = cuda
    sd_models.load_options.update(load_device=cuda)
    _select(_write_checkpoint(tmp_path / "models" / "Stable-diffusion" / "gpu.safetensors"))
    assert not webui.model_on_gpu()
    webui.reload_model()  # nothing loaded yet: left for Forge's next generation
    assert memory_management.calls == []
    WebUIBackend().generate(GenerationSettings(prompt="p", steps=2, width=64, height=64, sampler="Euler"), torch.zeros(1, 4, 8, 8))
    assert webui.model_on_gpu() and len(memory_management.current_loaded_models) == 1  # sampling loaded the UNet
    webui.unload_model()
    assert not webui.model_on_gpu()
    webui.reload_model()
    assert webui.model_on_gpu() and len(memory_management.current_loaded_models) == 3
    webui.unload_model()
    assert memory_management.calls == [
        "load_models_gpu", "unload_all_models", "soft_empty_cache", "load_models_gpu", "unload_all_models", "soft_empty_cache"
    ]
    host = JobHost(name="forge", output_dir=tmp_path, lora_dir=tmp_path, model_source=str, unload_model=webui.unload_model)
    host.unload_model()  # twice in a row is harmless
    assert not webui.model_on_gpu()


def test_vae_is_the_one_forge_loads_with_the_checkpoint(fake_forge, tmp_path):
    from modules import paths, sd_models, shared

    from lib_alignment import webui_facade as webui

    _select(_write_checkpoint(tmp_path / "models" / "Stable-diffusion" / "sd1.safetensors"))
    assert webui.forge_vae_file() is None
    vae = Path(paths.models_path) / "VAE" / "better.safetensors"
    encoder = Path(paths.models_path) / "text_encoder" / "t5.safetensors"
    for path in (vae, encoder):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    sd_models.model_data.forge_loading_parameters["additional_modules"] = [str(encoder), str(vae)]
    assert webui.forge_vae_file() == vae.resolve()
    sd_models.model_data.forge_loading_parameters = {}  # only the option
    shared.opts.forge_additional_modules = [str(encoder)]
    assert webui.forge_vae_file() is None
    elsewhere = _write_checkpoint(tmp_path / "vaes" / "mine.safetensors")
    shared.cmd_opts.vae_dir = str(tmp_path / "vaes")
    shared.opts.forge_additional_modules = [str(elsewhere)]
    assert webui.forge_vae_file() == elsewhere.resolve()


@pytest.mark.slow
def test_job_on_the_selected_checkpoint_gets_forges_tokenizer(fake_forge, tmp_path):
    """The issue's failure: a single-file checkpoint with no tokenizer on disk, Forge not loaded yet."""
    import json

    from modules import paths

    from lib_alignment import webui_facade as webui
    from lib_alignment.jobs import JobRequest, JobRunner
    from lib_alignment.jobs.host import JobHost
    from lib_alignment.models import load_pipeline
    from lib_alignment.models.ldm_export import export_ldm_checkpoint
    from lib_alignment.models.tiny_tokenizer import write_tokenizer_files
    from lib_alignment.training.data.synthetic import make_toy_pairs

    pipe = load_pipeline("tiny-random", device="cpu", dtype="fp32")
    exported = export_ldm_checkpoint(pipe, Path(paths.models_path) / "Stable-diffusion" / "bare.safetensors")
    for path in exported.text_encoder_dir.iterdir():
        if path.name != "config.json":
            path.unlink()
    # Forge ships vocab.json/merges.txt there (transformers 5's save_pretrained would write only tokenizer.json)
    write_tokenizer_files(Path(paths.script_path) / "backend/huggingface/runwayml/stable-diffusion-v1-5/tokenizer")
    _select(exported.checkpoint)
    host = JobHost(
        name="forge",
        output_dir=tmp_path / "out",
        lora_dir=tmp_path / "loras",
        model_source=lambda: str(webui.loaded_checkpoint().path),
        python=sys.executable,
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        save_tokenizer=webui.save_tokenizer,
    )
    runner = JobRunner(host)
    data = make_toy_pairs(tmp_path / "toy", 2, resolution=128)
    options = {"max_train_steps": 1, "sample_steps": 2, "resolution": 64}
    status = runner.start(JobRequest(method="dpo", name="forge-bare", dataset=str(data), preset="cpu", options=options))
    ended = runner.wait(status.id, timeout=300)
    config = json.loads((runner.folder(status.id) / "config.json").read_text())
    assert config["tokenizer"] == str(runner.folder(status.id) / "tokenizer")
    assert ended.state == "finished", runner.log(status.id)
    assert (tmp_path / "loras" / "forge-bare.safetensors").is_file()


def test_hires_fix_gets_the_list_forges_hires_pass_reads(fake_forge):
    """Forge's hires pass tests `'Use same choices' not in p.hr_additional_modules` (default None: TypeError)."""
    from lib_alignment import webui_facade as webui

    assert webui._host_txt2img_params({"enable_hr": True})["hr_additional_modules"] == ["Use same choices"]
    assert webui._host_txt2img_params({"enable_hr": True, "hr_additional_modules": []})["hr_additional_modules"] == []
    assert "hr_additional_modules" not in webui._host_txt2img_params({"hr_scale": 2.0})
    assert webui._host_txt2img_params(None) == {}


def test_hires_fix_runs_through_forges_hires_pass_with_our_noise(fake_forge, tmp_path):
    from lib_alignment import webui_facade as webui
    from lib_alignment.generation import noise_from_seed

    _select(_write_checkpoint(tmp_path / "models" / "Stable-diffusion" / "hr.safetensors"))
    noise = noise_from_seed(2, (2, 4, 8, 8))
    hires = {"enable_hr": True, "hr_scale": 2, "hr_upscaler": "Latent", "denoising_strength": 0.5}
    common = dict(negative_prompt="", noise_seed=1, steps=2, cfg_scale=7, width=64, height=64, sampler_name="Euler", batch_size=2)
    images, latents = webui.txt2img_with_initial_noise(prompts=["p", "p"], initial_noise=noise, extra_params=hires, **common)
    assert [image.size for image in images] == [(128, 128), (128, 128)] and latents.shape == (2, 4, 8, 8)
    moved = noise.clone()
    moved[1] = -moved[1]
    again, _ = webui.txt2img_with_initial_noise(prompts=["p", "p"], initial_noise=moved, extra_params=hires, **common)
    assert np.array_equal(np.asarray(images[0]), np.asarray(again[0]))
    assert not np.array_equal(np.asarray(images[1]), np.asarray(again[1]))
    with pytest.raises(TypeError):  # what Forge does without the list the facade adds
        webui.txt2img_with_initial_noise(
            prompts=["p", "p"], initial_noise=noise, extra_params={**hires, "hr_additional_modules": None}, **common
        )
