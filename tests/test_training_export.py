"""The exported LoRA: kohya keys, alpha, metadata and sidecars, and diffusers' own kohya loader reproducing it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from training_helpers import tiny_sdxl_pipeline

from lib_alignment.models.ldm_keys import unet_module_to_ldm
from lib_alignment.training.config import DEFAULT_TEXT_ENCODER_TARGETS, DEFAULT_UNET_TARGETS, TrainConfig
from lib_alignment.training.export import kohya_state_dict, save_lora, training_metadata, write_sidecars
from lib_alignment.training.lora import add_lora, load_trainable_state, trainable_state


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    from training_helpers import single_thread

    with single_thread():
        yield



def _randomise_up_weights(*models: torch.nn.Module, seed: int = 0) -> None:
    """Trained-looking LoRA: up weights are zero at initialisation, which would hide key mix-ups."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for model in models:
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))


def _peft_backend_on() -> bool:
    from diffusers.utils import USE_PEFT_BACKEND

    return bool(USE_PEFT_BACKEND)


needs_peft_backend = pytest.mark.skipif(
    not _peft_backend_on(),
    reason="diffusers' peft backend is off here (transformers too old, as in the A1111 stack), so pipe.load_lora_weights cannot run",
)


def test_kohya_keys_alpha_and_values_follow_the_peft_weights(tiny_random_pipe):
    import copy

    unet = copy.deepcopy(tiny_random_pipe.unet)
    encoder = copy.deepcopy(tiny_random_pipe.text_encoder)
    add_lora(unet, rank=4, alpha=16, dropout=0.0, targets=DEFAULT_UNET_TARGETS)
    add_lora(encoder, rank=4, alpha=16, dropout=0.0, targets=DEFAULT_TEXT_ENCODER_TARGETS)
    _randomise_up_weights(unet, encoder)
    tensors = kohya_state_dict(unet, [encoder], alpha=16, version="sd1")

    assert all(k.startswith(("lora_unet_", "lora_te_")) for k in tensors)
    assert not any(k.startswith("lora_te1_") for k in tensors)  # SD1 uses kohya's lora_te_
    modules = {k.split(".", 1)[0] for k in tensors}
    for module in modules:
        assert {f"{module}.lora_down.weight", f"{module}.lora_up.weight", f"{module}.alpha"} <= set(tensors)
        assert float(tensors[f"{module}.alpha"]) == 16.0  # not the converter's alpha = rank
        assert tensors[f"{module}.lora_down.weight"].shape[0] == 4
    # every target kind is present, for UNet and text encoder
    for fragment in ("attn1_to_q", "attn2_to_out_0", "ff_net_0_proj", "ff_net_2", "proj_in", "proj_out"):
        assert any(fragment in m for m in modules if m.startswith("lora_unet_")), fragment
    for fragment in ("self_attn_q_proj", "self_attn_out_proj", "mlp_fc1", "mlp_fc2"):
        assert any(fragment in m for m in modules if m.startswith("lora_te_")), fragment
    # the values are peft's A (down) and B (up) of the same module
    params = dict(unet.named_parameters())
    for name in (n for n in params if n.endswith(("attn2.to_k.lora_B.default.weight", "proj_in.lora_A.default.weight"))):
        module, part = name.split(".lora_")
        ldm = unet_module_to_ldm(module, unet.config)  # tiny-random has one layer per block: LDM-layout names
        kohya = "lora_unet_" + ldm.replace(".", "_") + (".lora_up.weight" if part.startswith("B") else ".lora_down.weight")
        assert torch.equal(tensors[kohya], params[name].detach()), name
        if "proj_in" in name:  # SD1's proj_in is a 1×1 convolution; kohya keeps the kernel dims
            assert tensors[kohya].ndim == 4


def test_metadata_sidecars_and_atomic_writes(tmp_path: Path, tiny_random_pipe):
    import copy

    from PIL import Image
    from safetensors import safe_open

    unet = copy.deepcopy(tiny_random_pipe.unet)
    add_lora(unet, rank=4, alpha=2, dropout=0.0, targets=["to_q", "to_v"])
    config = TrainConfig(method="kto", model="/models/base-v1-5.safetensors", data="d.csv", output_dir=str(tmp_path), name="my lora", rank=4, lora_alpha=2, resolution=64)
    meta = training_metadata(config, "sd1", "base-v1-5", started_at=1700000000.5, steps=12, hyperparameters={"method": "kto", "beta": 1000.0}, num_images=40)
    path = save_lora(config.output_path(), kohya_state_dict(unet, alpha=2), meta, "fp16")
    preview = Image.new("RGB", (64, 64), (200, 10, 10))
    sidecars = write_sidecars(path, "sd1", 0.8, "a test", activation_text="", preview=preview)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["my lora.json", "my lora.preview.png", "my lora.safetensors"]
    with safe_open(str(path), framework="pt") as handle:
        stored = handle.metadata()
        assert {handle.get_tensor(k).dtype for k in handle.keys() if not k.endswith(".alpha")} == {torch.float16}  # noqa: SIM118 (safe_open is not iterable)
    assert stored["ss_output_name"] == "my lora"
    assert stored["ss_network_module"] == "networks.lora"
    assert (stored["ss_network_dim"], stored["ss_network_alpha"]) == ("4", "2")
    assert stored["ss_base_model_version"] == "sd_v1" and stored["ss_v2"] == "False"
    assert stored["ss_sd_model_name"] == "base-v1-5"
    assert stored["ss_training_started_at"] == "1700000000"
    assert stored["lib_alignment_method"] == "kto"
    assert json.loads(stored["lib_alignment_hyperparameters"])["beta"] == 1000.0
    user = json.loads(sidecars["metadata"].read_text())
    assert user["sd version"] == "SD1" and user["preferred weight"] == 0.8 and user["description"] == "a test"
    assert Image.open(sidecars["preview"]).size == (64, 64)


def test_trainable_state_round_trips_bit_for_bit(tiny_random_pipe):
    import copy

    a = copy.deepcopy(tiny_random_pipe.unet)
    b = copy.deepcopy(tiny_random_pipe.unet)
    add_lora(a, 4, 4, 0.0, ["to_q", "proj_in"])
    add_lora(b, 4, 4, 0.0, ["to_q", "proj_in"])
    _randomise_up_weights(a, seed=3)
    load_trainable_state(b, trainable_state(a))
    for (name, pa), (_, pb) in zip(sorted(trainable_state(a).items()), sorted(trainable_state(b).items())):
        assert torch.equal(pa, pb), name
    c = copy.deepcopy(tiny_random_pipe.unet)
    add_lora(c, 8, 8, 0.0, ["to_q", "proj_in"])
    with pytest.raises(ValueError, match="shape"):
        load_trainable_state(c, trainable_state(a))
    with pytest.raises(ValueError, match="already carries a LoRA"):
        add_lora(c, 4, 4, 0.0, ["to_q"])


@needs_peft_backend
def test_diffusers_kohya_loader_reproduces_unet_and_text_encoder(tmp_path: Path):
    """diffusers' kohya loader (through `apply_kohya_lora`, which hands it diffusers names) on a fresh pipeline
    gives the same outputs; tiny-random has one layer per block, so the file holds LDM-layout UNet names."""
    from lib_alignment.lora_apply import apply_kohya_lora
    from lib_alignment.models.tiny import tiny_random_pipeline

    trained = tiny_random_pipeline(seed=0)
    add_lora(trained.unet, 4, 8, 0.0, DEFAULT_UNET_TARGETS)
    add_lora(trained.text_encoder, 4, 8, 0.0, DEFAULT_TEXT_ENCODER_TARGETS)
    _randomise_up_weights(trained.unet, trained.text_encoder)
    path = save_lora(tmp_path / "l.safetensors", kohya_state_dict(trained.unet, [trained.text_encoder], alpha=8), {}, "fp32")
    fresh = tiny_random_pipeline(seed=0)
    apply_kohya_lora(fresh, path)

    g = torch.Generator().manual_seed(1)
    ids = trained.tokenizer(["a red circle on a blue background", ""], padding="max_length", max_length=77, return_tensors="pt").input_ids
    x, t = torch.randn((2, 4, 16, 16), generator=g), torch.tensor([5, 800])
    base = tiny_random_pipeline(seed=0)
    with torch.no_grad():
        hidden_trained, hidden_fresh = trained.text_encoder(ids)[0], fresh.text_encoder(ids)[0]
        out_trained = trained.unet(x, t, hidden_trained).sample
        out_fresh = fresh.unet(x, t, hidden_fresh).sample
        out_base = base.unet(x, t, base.text_encoder(ids)[0]).sample
    assert (out_trained - out_base).abs().max() > 0.05  # the LoRA changes the output...
    assert (out_trained - out_fresh).abs().max() < 1e-4  # ...and the loader reproduces it
    assert (hidden_trained - hidden_fresh).abs().max() < 1e-4


@needs_peft_backend
def test_sdxl_export_uses_te1_te2_keys_and_loads_in_diffusers(tmp_path: Path):
    trained = tiny_sdxl_pipeline(seed=0)
    add_lora(trained.unet, 4, 4, 0.0, DEFAULT_UNET_TARGETS)
    for encoder in (trained.text_encoder, trained.text_encoder_2):
        add_lora(encoder, 4, 4, 0.0, DEFAULT_TEXT_ENCODER_TARGETS)
    _randomise_up_weights(trained.unet, trained.text_encoder, trained.text_encoder_2)
    tensors = kohya_state_dict(trained.unet, [trained.text_encoder, trained.text_encoder_2], alpha=4, version="sdxl")
    prefixes = {k.split("_")[0] + "_" + k.split("_")[1] for k in tensors}
    assert prefixes == {"lora_unet", "lora_te1", "lora_te2"}
    path = save_lora(tmp_path / "x.safetensors", tensors, {}, "fp32")
    fresh = tiny_sdxl_pipeline(seed=0)
    fresh.load_lora_weights(str(path.parent), weight_name=path.name)
    ids = trained.tokenizer(["a square"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        for a, b in ((trained.text_encoder, fresh.text_encoder), (trained.text_encoder_2, fresh.text_encoder_2)):
            assert (a(ids)[0] - b(ids)[0]).abs().max() < 1e-4
        g = torch.Generator().manual_seed(0)
        x, hidden = torch.randn((1, 4, 8, 8), generator=g), torch.randn((1, 77, 64), generator=g)
        cond = {"text_embeds": torch.randn((1, 32), generator=g), "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}
        out_a = trained.unet(x, torch.tensor([300]), hidden, added_cond_kwargs=cond).sample
        out_b = fresh.unet(x, torch.tensor([300]), hidden, added_cond_kwargs=cond).sample
    assert (out_a - out_b).abs().max() < 1e-4


def test_model_version_detection_and_its_metadata():
    from types import SimpleNamespace

    from lib_alignment.training.denoiser import detect_version

    def pipe(cross, addition=None, second=None):
        return SimpleNamespace(unet=SimpleNamespace(config=SimpleNamespace(cross_attention_dim=cross, addition_embed_type=addition)), text_encoder_2=second)

    assert detect_version(pipe(768)) == "sd1"
    assert detect_version(pipe(1024)) == "sd2"
    assert detect_version(pipe(2048, "text_time", object())) == "sdxl"
    config = TrainConfig(model="m", data="d", output_dir="o", name="n")
    sd2 = training_metadata(config, "sd2", "m", 0, 1, {}, 2)
    sdxl = training_metadata(config, "sdxl", "m", 0, 1, {}, 2)
    assert (sd2["ss_base_model_version"], sd2["ss_v2"]) == ("sd_v2", "True")
    assert sdxl["ss_base_model_version"].startswith("sdxl_") and sdxl["ss_v2"] == "False"



@pytest.mark.parametrize("layers_per_block", [1, 2])
def test_a1111_matches_every_lora_module_to_a_layer_of_the_right_shape(fake_webui, monkeypatch, layers_per_block):
    """A1111 numbers diffusers-named UNet blocks as if every level had two layers: the export must give it names
    that land on the right LDM layer for the tiny model's one layer per block too (checked with A1111's matching)."""
    from diffusers import UNet2DConditionModel

    from lib_alignment.models.ldm_keys import text_encoder_to_ldm, unet_to_ldm
    from lib_alignment.models.tiny import tiny_random_pipeline
    from lib_alignment.training import export

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "fake_webui" / "extensions-builtin" / "Lora"))
    monkeypatch.delitem(__import__("sys").modules, "networks", raising=False)
    import networks

    pipe = tiny_random_pipeline(seed=0)
    unet = pipe.unet if layers_per_block == 1 else UNet2DConditionModel(**{**pipe.unet.config, "layers_per_block": 2})
    encoder = pipe.text_encoder
    checkpoint = {
        **unet_to_ldm(unet.state_dict(), unet.config),
        **text_encoder_to_ldm(encoder.state_dict(), encoder.config.max_position_embeddings),
    }
    mapping = networks.layer_mapping_from_checkpoint(checkpoint)
    add_lora(unet, 4, 4, 0.0, ("to_q", "to_out.0", "ff.net.2", "proj_in", "conv1", "time_emb_proj"))
    add_lora(encoder, 4, 4, 0.0, DEFAULT_TEXT_ENCODER_TARGETS)
    tensors = kohya_state_dict(unet, [encoder], version="sd1")
    matched, failed = networks.match_lora_keys(tensors, mapping)
    assert failed == []
    for base, weight_key in matched.items():
        down, up = tensors[f"{base}.lora_down.weight"], tensors[f"{base}.lora_up.weight"]
        expected = (up.shape[0], down.shape[1], *down.shape[2:])
        assert tuple(checkpoint[weight_key].shape) == expected, (base, weight_key)
    assert any(base.startswith("lora_unet_") for base in matched) and any(base.startswith("lora_te_") for base in matched)
    if layers_per_block == 1:  # the diffusers names kohya uses for SD's layout would land on the wrong blocks here
        monkeypatch.setattr(export, "needs_ldm_names", lambda config: False)
        diffusers_named = kohya_state_dict(unet, [encoder], version="sd1")
        matched, failed = networks.match_lora_keys(diffusers_named, mapping)
        wrong = [b for b, k in matched.items() if tuple(checkpoint[k].shape) != tuple(diffusers_named[f"{b}.lora_up.weight"].shape[:1]) + tuple(diffusers_named[f"{b}.lora_down.weight"].shape[1:])]
        assert failed or wrong
