"""LDM export of an SD1-architecture pipeline: layout, yaml, round trip through diffusers' own loader."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from lib_alignment.cli import main
from lib_alignment.models.ldm_export import export_ldm_checkpoint
from lib_alignment.models.ldm_yaml import check_exportable


@pytest.fixture(scope="module")
def exported(tiny_random_pipe, tmp_path_factory):
    return export_ldm_checkpoint(tiny_random_pipe, tmp_path_factory.mktemp("export") / "tiny-shapes.safetensors")


@contextlib.contextmanager
def _eval_mode(pipe):
    modules = [pipe.unet, pipe.vae, pipe.text_encoder]
    flags = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, flag in zip(modules, flags):
            m.train(flag)


def _assert_same_weights(source, loaded) -> None:
    for name in ("unet", "vae", "text_encoder"):
        expected = getattr(source, name).state_dict()
        got = getattr(loaded, name).state_dict()
        assert set(got) == set(expected), f"{name}: tensor names differ: {set(got) ^ set(expected)}"
        unequal = [key for key in expected if not torch.equal(expected[key], got[key])]
        assert not unequal, f"{name}: {len(unequal)} tensors differ, e.g. {unequal[:3]}"


def test_checkpoint_has_only_ldm_names_and_every_tensor(exported, tiny_random_pipe):
    from safetensors import safe_open

    with safe_open(str(exported.checkpoint), framework="pt") as handle:
        keys = set(handle.keys())
        metadata = handle.metadata()
    prefixes = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer.text_model.")
    assert keys and all(key.startswith(prefixes) for key in keys)
    for prefix, component in zip(prefixes, ("unet", "vae", "text_encoder")):
        count = sum(key.startswith(prefix) for key in keys)
        expected = len(getattr(tiny_random_pipe, component).state_dict())
        # the text encoder also carries SD1's position_ids buffer (transformers ≥ 4.31 no longer saves it)
        assert count in (expected, expected + 1), (component, count, expected)
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys
    assert "first_stage_model.decoder.up.0.block.0.conv1.weight" in keys
    assert metadata["modelspec.prediction_type"] == "epsilon"


def test_yaml_describes_the_architecture(exported, tiny_random_pipe):
    config = yaml.safe_load(exported.yaml.read_text())
    params = config["model"]["params"]
    unet = tiny_random_pipe.unet.config
    assert config["model"]["target"] == "ldm.models.diffusion.ddpm.LatentDiffusion"
    assert params["scale_factor"] == tiny_random_pipe.vae.config.scaling_factor
    assert params["linear_start"] == tiny_random_pipe.scheduler.config.beta_start
    unet_params = params["unet_config"]["params"]
    assert [unet_params["model_channels"] * m for m in unet_params["channel_mult"]] == list(unet.block_out_channels)
    cross = [2**i for i, kind in enumerate(unet.down_block_types) if kind.startswith("CrossAttn")]
    assert unet_params["attention_resolutions"] == cross and unet_params["num_res_blocks"] == unet.layers_per_block
    assert unet_params["context_dim"] == tiny_random_pipe.text_encoder.config.hidden_size
    assert params["conditioning_key"] == "crossattn"
    version = Path(params["cond_stage_config"]["params"]["version"])
    assert version.is_absolute() and version == exported.text_encoder_dir.resolve()
    assert {"config.json", "vocab.json", "merges.txt", "tokenizer_config.json"} <= {p.name for p in version.iterdir()}
    assert not list(version.glob("*.safetensors")), "the WebUI would list a weights file there as a checkpoint"


def test_text_encoder_folder_works_as_the_webui_uses_it(exported, tiny_random_pipe):
    """FrozenCLIPEmbedder: CLIPTokenizer.from_pretrained(version) and the CLIPTextModel config from it."""
    from transformers import CLIPTextConfig, CLIPTokenizer

    folder = str(exported.text_encoder_dir)
    tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    prompt = "a red circle and a blue square, on white"
    assert tokenizer(prompt).input_ids == tiny_random_pipe.tokenizer(prompt).input_ids
    assert tokenizer.pad_token_id == tiny_random_pipe.tokenizer.pad_token_id
    config = CLIPTextConfig.from_pretrained(folder, local_files_only=True)
    source = tiny_random_pipe.text_encoder.config
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (
        source.vocab_size,
        source.hidden_size,
        source.num_hidden_layers,
    )


def test_diffusers_single_file_loader_gives_identical_weights(exported, tiny_random_pipe, tmp_path):
    """Written by our mapping, read by diffusers' own converter with the config derived from our yaml."""
    from diffusers import StableDiffusionPipeline

    from lib_alignment.models.architecture import detect_architecture
    from lib_alignment.models.checkpoint_io import read_summary
    from lib_alignment.models.ldm_config import LdmYaml, derive_config_folder

    ldm = LdmYaml(exported.yaml)
    arch = detect_architecture(read_summary(exported.checkpoint), ldm.parameterization())
    config_dir = derive_config_folder(ldm, arch, tmp_path)
    loaded = StableDiffusionPipeline.from_single_file(
        str(exported.checkpoint),
        config=str(config_dir),
        local_files_only=True,
        tokenizer=tiny_random_pipe.tokenizer,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    _assert_same_weights(tiny_random_pipe, loaded)


def test_load_pipeline_round_trip_is_exact_and_generates_the_same_pixels(exported, tiny_random_pipe):
    from lib_alignment.generation import DiffusersBackend, GenerationSettings, noise_from_seed
    from lib_alignment.models import load_pipeline

    loaded = load_pipeline(exported.checkpoint, device="cpu", dtype="fp32")
    _assert_same_weights(tiny_random_pipe, loaded)
    assert loaded.vae.config.scaling_factor == tiny_random_pipe.vae.config.scaling_factor
    assert loaded.scheduler.config.prediction_type == tiny_random_pipe.scheduler.config.prediction_type
    settings = GenerationSettings(prompt="a red circle", negative_prompt="blue", steps=2, cfg_scale=5.0, width=128, height=128)
    source_backend, loaded_backend = DiffusersBackend(tiny_random_pipe), DiffusersBackend(loaded)
    latents = noise_from_seed(7, (2, *source_backend.latent_shape(128, 128)))
    with _eval_mode(tiny_random_pipe):  # loaded models come back in eval mode; train mode differs by ~1e-5
        expected = source_backend.generate(settings, latents)
    got = loaded_backend.generate(settings, latents)
    for a, b in zip(expected.images, got.images):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.asarray(expected.images[0]).std() > 0  # the comparison is not between blank images


def _pipe_with(pipe, unet_changes=None, vae_changes=None):
    from diffusers.configuration_utils import FrozenDict

    def component(model, changes):
        return SimpleNamespace(config=FrozenDict({**model.config, **(changes or {})}))

    return SimpleNamespace(
        unet=component(pipe.unet, unet_changes),
        vae=component(pipe.vae, vae_changes),
        text_encoder=pipe.text_encoder,
        scheduler=pipe.scheduler,
        components={},
    )


def test_architectures_ldm_cannot_express_are_refused(tiny_random_pipe):
    check_exportable(tiny_random_pipe)  # the tiny model itself must stay exportable to the WebUI
    with pytest.raises(ValueError, match="norm_num_groups"):
        check_exportable(_pipe_with(tiny_random_pipe, vae_changes={"norm_num_groups": 8}))
    with pytest.raises(ValueError, match="multiples of 32"):
        check_exportable(_pipe_with(tiny_random_pipe, unet_changes={"block_out_channels": [48, 96, 192]}))
    with pytest.raises(ValueError, match="addition_embed_type"):
        check_exportable(_pipe_with(tiny_random_pipe, unet_changes={"addition_embed_type": "text_time"}))


def test_cli_export_tiny(tmp_path, capsys):
    assert main(["export-tiny", str(tmp_path), "--source", "tiny-random", "--name", "toy"]) == 0
    assert (tmp_path / "toy.safetensors").is_file() and (tmp_path / "toy.yaml").is_file()
    assert json.loads((tmp_path / "toy_text_encoder" / "config.json").read_text())["model_type"] == "clip_text_model"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"
    assert main(["export-tiny", str(tmp_path), "--source", "tiny-random", "--name", "../escape"]) == 2
    assert "plain file name" in capsys.readouterr().err


def test_cli_export_tiny_says_what_to_do_when_the_trained_model_is_missing(tmp_path, capsys, monkeypatch):
    import lib_alignment.models.tiny as tiny

    monkeypatch.setattr(tiny, "tiny_is_shipped", lambda: False)
    assert main(["export-tiny", str(tmp_path)]) == 2
    assert "--source tiny-random" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
