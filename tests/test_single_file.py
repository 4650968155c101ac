"""Offline single-file loading: sources, tokenizer resolution, no downloads, clear errors, detection."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lib_alignment.models import load_pipeline
from lib_alignment.models import tokenizers as tokenizer_module
from lib_alignment.models.architecture import CONFIGS_DIR, detect_architecture, predicts_v
from lib_alignment.models.checkpoint_io import CheckpointSummary
from lib_alignment.models.ldm_export import export_ldm_checkpoint
from lib_alignment.models.tiny_tokenizer import write_tokenizer_files


@pytest.fixture(scope="module")
def exported(tiny_random_pipe, tmp_path_factory):
    return export_ldm_checkpoint(tiny_random_pipe, tmp_path_factory.mktemp("single") / "tiny.safetensors")


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path, monkeypatch):
    """No test may find tokenizers in the developer's real HF cache by accident."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(tokenizer_module, "HF_CACHE_DIR", str(cache))
    return cache


def _same_weights(a, b) -> bool:
    for name in ("unet", "vae", "text_encoder"):
        x, y = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        if set(x) != set(y) or not all(torch.equal(x[k], y[k]) for k in x):
            return False
    return True


def _copy_checkpoint(exported, folder: Path, suffix: str = ".safetensors") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"copy{suffix}"
    shutil.copyfile(exported.checkpoint, target)
    shutil.copyfile(exported.yaml, target.with_suffix(".yaml"))
    return target


def _edit_yaml(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def test_diffusers_folder_loads_offline(tiny_random_pipe, tmp_path):
    tiny_random_pipe.save_pretrained(tmp_path / "pipe")
    loaded = load_pipeline(tmp_path / "pipe", device="cpu", dtype="fp32")
    assert _same_weights(tiny_random_pipe, loaded)


def test_ckpt_round_trip_reads_with_weights_only(exported, tiny_random_pipe, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": load_file(str(exported.checkpoint)), "global_step": 1}, ckpt)
    shutil.copyfile(exported.yaml, ckpt.with_suffix(".yaml"))
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = load_pipeline(ckpt, device="cpu", dtype="fp32")
    assert _same_weights(tiny_random_pipe, loaded)
    assert calls and all(flag is True for flag in calls), f"torch.load called with weights_only={calls}"


def test_ckpt_with_pickled_objects_is_refused(tmp_path):
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "callback": Path("x")}, ckpt)  # any non-tensor class needs full unpickling
    with pytest.raises(ValueError, match=r"evil\.ckpt.*weights_only=True"):
        load_pipeline(ckpt, device="cpu")


def test_nothing_is_downloaded(exported, monkeypatch):
    """Every imported alias of the hub's download functions raises; the load must not call any."""
    import huggingface_hub

    calls = []

    def refuse(*args, **kwargs):
        calls.append((args, kwargs))
        raise AssertionError(f"download attempted: {args} {kwargs}")

    names = ("hf_hub_download", "snapshot_download")
    originals = {getattr(huggingface_hub, name) for name in names}
    patched = []
    for module in list(sys.modules.values()):
        for name in names:
            if getattr(module, name, None) in originals:
                monkeypatch.setattr(module, name, refuse)
                patched.append(f"{module.__name__}.{name}")
    assert any(p.startswith("diffusers.") for p in patched), patched
    pipe = load_pipeline(exported.checkpoint, device="cpu")
    assert pipe.unet is not None and calls == []


def test_config_option_replaces_the_yaml_and_a_mismatch_says_what_to_do(exported, tiny_random_pipe, tmp_path):
    bare = tmp_path / "bare.safetensors"  # no yaml beside it
    shutil.copyfile(exported.checkpoint, bare)
    tiny_random_pipe.save_pretrained(tmp_path / "diffusers-config")
    loaded = load_pipeline(bare, device="cpu", config=tmp_path / "diffusers-config")
    assert _same_weights(tiny_random_pipe, loaded)
    # without yaml or config the shipped SD1.5 config is used, which this small model does not fit
    with pytest.raises(ValueError, match=r"bare\.safetensors.*sd15.*bare\.yaml"):
        load_pipeline(bare, device="cpu", tokenizer=tiny_random_pipe.tokenizer)


def test_missing_tokenizer_gives_a_clear_error(exported, tmp_path):
    checkpoint = _copy_checkpoint(exported, tmp_path / "models")
    text_dir = tmp_path / "models" / "te"
    text_dir.mkdir()
    shutil.copyfile(exported.text_encoder_dir / "config.json", text_dir / "config.json")  # config but no tokenizer
    _edit_yaml(checkpoint.with_suffix(".yaml"), lambda d: d["model"]["params"]["cond_stage_config"]["params"].update(version=str(text_dir)))
    with pytest.raises(FileNotFoundError) as info:
        load_pipeline(checkpoint, device="cpu")
    message = str(info.value)
    assert str(checkpoint) in message and "vocab.json" in message and "tokenizer=" in message
    assert "openai/clip-vit-large-patch14" in message


def test_tokenizer_from_the_forge_install_the_extension_sits_in(exported, tiny_random_pipe, tmp_path, monkeypatch):
    """Forge ships CLIP tokenizers in backend/huggingface/<repo>/; a checkpoint with none nearby uses them."""
    checkpoint = _copy_checkpoint(exported, tmp_path / "models")
    text_dir = tmp_path / "models" / "te"
    text_dir.mkdir()
    shutil.copyfile(exported.text_encoder_dir / "config.json", text_dir / "config.json")
    _edit_yaml(checkpoint.with_suffix(".yaml"), lambda d: d["model"]["params"]["cond_stage_config"]["params"].update(version=str(text_dir)))
    webui = tmp_path / "forge"
    write_tokenizer_files(webui / "backend" / "huggingface" / "runwayml" / "stable-diffusion-v1-5" / "tokenizer")
    extension = webui / "extensions" / "sd-webui-alignment"
    assert tokenizer_module.host_tokenizer_folders(extension.parent.parent)[0].parts[-3:] == ("openai", "clip-vit-large-patch14", "tokenizer")
    assert tokenizer_module.host_tokenizer_folders(tmp_path / "not-a-webui") == []
    real = tokenizer_module.host_tokenizer_folders
    monkeypatch.setattr(tokenizer_module, "host_tokenizer_folders", lambda webui_root=None: real(webui))
    loaded = load_pipeline(checkpoint, device="cpu")
    prompt = "a small green triangle"
    assert loaded.tokenizer(prompt).input_ids == tiny_random_pipe.tokenizer(prompt).input_ids


def test_tokenizer_folder_and_object_options(exported, tiny_random_pipe, tmp_path):
    """The yaml's text-encoder folder has no tokenizer here, so only the option can supply it."""
    checkpoint = _copy_checkpoint(exported, tmp_path / "models")
    text_dir = tmp_path / "models" / "te"
    text_dir.mkdir()
    shutil.copyfile(exported.text_encoder_dir / "config.json", text_dir / "config.json")
    _edit_yaml(checkpoint.with_suffix(".yaml"), lambda d: d["model"]["params"]["cond_stage_config"]["params"].update(version=str(text_dir)))
    folder = write_tokenizer_files(tmp_path / "tok")
    by_folder = load_pipeline(checkpoint, device="cpu", tokenizer=str(folder))
    prompt = "a small green triangle"
    assert by_folder.tokenizer(prompt).input_ids == tiny_random_pipe.tokenizer(prompt).input_ids
    assert _same_weights(tiny_random_pipe, by_folder)
    by_object = load_pipeline(checkpoint, device="cpu", tokenizer=tiny_random_pipe.tokenizer)
    assert by_object.tokenizer is tiny_random_pipe.tokenizer


def test_moved_checkpoint_finds_its_text_encoder_folder_beside_the_yaml(exported, tiny_random_pipe, tmp_path):
    """The yaml names the folder by absolute path; after moving all three, the sibling is used."""
    checkpoint = _copy_checkpoint(exported, tmp_path / "moved")
    shutil.copytree(exported.text_encoder_dir, tmp_path / "moved" / exported.text_encoder_dir.name)
    _edit_yaml(
        checkpoint.with_suffix(".yaml"),
        lambda d: d["model"]["params"]["cond_stage_config"]["params"].update(
            version=str(tmp_path / "gone" / exported.text_encoder_dir.name)
        ),
    )
    assert _same_weights(tiny_random_pipe, load_pipeline(checkpoint, device="cpu"))


def test_tokenizer_from_the_hf_cache_takes_the_slot_config(empty_hf_cache, tmp_path):
    snapshot = empty_hf_cache / "models--openai--clip-vit-large-patch14" / "snapshots" / "0123abcd"
    write_tokenizer_files(snapshot)
    (empty_hf_cache / "models--openai--clip-vit-large-patch14" / "refs").mkdir()
    (empty_hf_cache / "models--openai--clip-vit-large-patch14" / "refs" / "main").write_text("0123abcd")
    from transformers import CLIPTokenizer

    reference = CLIPTokenizer.from_pretrained(str(snapshot), local_files_only=True)
    sd1 = tokenizer_module.resolve_tokenizers(CONFIGS_DIR / "sd15", ("tokenizer",), None, tmp_path / "m.safetensors")
    sd2 = tokenizer_module.resolve_tokenizers(CONFIGS_DIR / "sd2", ("tokenizer",), None, tmp_path / "m.safetensors")
    prompt = "a red circle"
    assert sd1["tokenizer"](prompt).input_ids == reference(prompt).input_ids
    assert sd1["tokenizer"].pad_token == "<|endoftext|>" and sd2["tokenizer"].pad_token == "!"  # SD2 pads with "!"


def test_bad_inputs_name_the_file(exported, tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(ValueError, match=r"garbage\.safetensors"):
        load_pipeline(garbage, device="cpu")
    other = tmp_path / "model.bin"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"model\.bin.*unsupported"):
        load_pipeline(other, device="cpu")
    from safetensors.torch import save_file

    lora = tmp_path / "lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(lora))
    with pytest.raises(ValueError, match=r"lora\.safetensors.*not a Stable Diffusion checkpoint"):
        load_pipeline(lora, device="cpu")
    checkpoint = _copy_checkpoint(exported, tmp_path / "badyaml")
    _edit_yaml(checkpoint.with_suffix(".yaml"), lambda d: d["model"]["params"]["unet_config"]["params"].pop("model_channels"))
    with pytest.raises(ValueError, match=r"copy\.yaml.*unet_config\.params\.model_channels is missing"):
        load_pipeline(checkpoint, device="cpu")
    checkpoint.with_suffix(".yaml").write_text("model: [unclosed")
    with pytest.raises(ValueError, match=r"copy\.yaml.*not a readable yaml"):
        load_pipeline(checkpoint, device="cpu")


# --- detection and config choice, from tensor-name signatures only -----------------------------------------------

def _summary(*entries: tuple[str, tuple[int, ...]], metadata=None) -> CheckpointSummary:
    shapes = {"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3), **dict(entries)}
    return CheckpointSummary(Path("/models/x.safetensors"), shapes, metadata or {})


SD1 = ("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", (49408, 768))
SD2 = ("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight", (3072, 1024))
SDXL = ("conditioner.embedders.1.model.ln_final.weight", (1280,))


def test_detection_picks_family_and_config():
    sd1 = detect_architecture(_summary(SD1))
    assert (sd1.family, sd1.config_name, sd1.prediction_type) == ("sd1", "sd15", "epsilon")
    sd2 = detect_architecture(_summary(SD2))
    assert (sd2.family, sd2.config_name, sd2.prediction_type) == ("sd2", "sd2", None)  # to be probed
    assert detect_architecture(_summary(SD2), "v").config_name == "sd2-v"
    assert detect_architecture(_summary(SD2), "eps").prediction_type == "epsilon"
    assert detect_architecture(_summary(SD2, metadata={"modelspec.prediction_type": "v"})).config_name == "sd2-v"
    xl = detect_architecture(_summary(SDXL, ("conditioner.embedders.0.transformer.x", (1,))))
    assert (xl.family, xl.config_name, xl.tokenizer_slots, xl.pipeline_class_name) == (
        "sdxl",
        "sdxl-base",
        ("tokenizer", "tokenizer_2"),
        "StableDiffusionXLPipeline",
    )
    for arch, text_width in ((sd1, 768), (sd2, 1024), (xl, 2048)):
        unet = json.loads((arch.config_dir / "unet" / "config.json").read_text())
        assert unet["cross_attention_dim"] == text_width


def test_detection_refuses_what_it_cannot_load():
    with pytest.raises(ValueError, match="refiner"):
        detect_architecture(_summary(("conditioner.embedders.0.model.ln_final.weight", (1280,))))
    inpaint = _summary(SD1)
    inpaint.shapes["model.diffusion_model.input_blocks.0.0.weight"] = (320, 9, 3, 3)
    with pytest.raises(ValueError, match="9 input channels"):
        detect_architecture(inpaint)
    with pytest.raises(ValueError, match="parameterization 'x0'"):
        detect_architecture(_summary(SD2), "x0")


def test_standard_yamls_derive_the_shipped_configs(tmp_path):
    """Our yaml→diffusers mapping, fed the public v1/v2-v/SDXL yaml fields, reproduces the shipped configs."""
    from lib_alignment.models.ldm_config import LdmYaml, derive_config_folder

    unet_v1 = {"model_channels": 320, "attention_resolutions": [4, 2, 1], "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4],
               "num_heads": 8, "use_spatial_transformer": True, "transformer_depth": 1, "context_dim": 768, "in_channels": 4, "out_channels": 4}
    unet_v2 = {**unet_v1, "num_head_channels": 64, "use_linear_in_transformer": True, "context_dim": 1024}
    del unet_v2["num_heads"]
    unet_xl = {"adm_in_channels": 2816, "num_classes": "sequential", "in_channels": 4, "out_channels": 4, "model_channels": 320,
               "attention_resolutions": [4, 2], "num_res_blocks": 2, "channel_mult": [1, 2, 4], "num_head_channels": 64,
               "use_linear_in_transformer": True, "transformer_depth": [1, 2, 10], "context_dim": 2048}
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128, "ch_mult": [1, 2, 4, 4],
                "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    cases = [
        (SD1, {"image_size": 64, "scale_factor": 0.18215, "unet_config": {"params": unet_v1}}),
        (SD2, {"image_size": 64, "parameterization": "v", "scale_factor": 0.18215, "unet_config": {"params": unet_v2}}),
        (SDXL, {"scale_factor": 0.13025, "network_config": {"params": unet_xl}}),
    ]
    # diffusers' defaults for keys a config may leave out
    defaults = {"transformer_layers_per_block": 1, "use_linear_projection": False}
    checked = {
        "unet": ("block_out_channels", "down_block_types", "up_block_types", "attention_head_dim", "cross_attention_dim",
                 "layers_per_block", "use_linear_projection", "transformer_layers_per_block", "addition_embed_type",
                 "projection_class_embeddings_input_dim", "sample_size", "in_channels"),
        "vae": ("block_out_channels", "layers_per_block", "latent_channels", "scaling_factor", "sample_size"),
        "scheduler": ("beta_start", "beta_end", "num_train_timesteps", "prediction_type"),
    }
    for i, (signature, params) in enumerate(cases):
        target = "sgm.models.diffusion.DiffusionEngine" if "network_config" in params else "ldm.models.diffusion.ddpm.LatentDiffusion"
        params = {**params, "first_stage_config": {"params": {"embed_dim": 4, "ddconfig": ddconfig}}, "linear_start": 0.00085, "linear_end": 0.012}
        path = tmp_path / f"case{i}.yaml"
        path.write_text(yaml.safe_dump({"model": {"target": target, "params": params}}))
        ldm = LdmYaml(path)
        arch = detect_architecture(_summary(signature), ldm.parameterization())
        folder = derive_config_folder(ldm, arch, tmp_path / f"out{i}")
        for part, keys in checked.items():
            name = "scheduler_config.json" if part == "scheduler" else "config.json"
            shipped = json.loads((arch.config_dir / part / name).read_text())
            derived = json.loads((folder / part / name).read_text())
            for key in keys:
                assert derived.get(key, defaults.get(key)) == shipped.get(key, defaults.get(key)), (arch.config_name, part, key)


def test_sd2_probe_reads_the_unet_like_the_webui():
    class FakeUNet(torch.nn.Module):
        def __init__(self, offset: float) -> None:
            super().__init__()
            self.offset = torch.nn.Parameter(torch.tensor(offset))
            self.config = type("C", (), {"in_channels": 4, "cross_attention_dim": 16})()

        def forward(self, x, t, encoder_hidden_states):
            assert int(t[0]) == 999 and encoder_hidden_states.shape[-1] == 16
            return type("O", (), {"sample": x + self.offset})()

    assert predicts_v(FakeUNet(-1.5)) and not predicts_v(FakeUNet(0.2))
