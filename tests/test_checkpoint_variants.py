"""Every checkpoint variant the WebUI loads, we load: same weights and same pixels as the reference.

Variants are written from the tiny random pipeline's exported LDM checkpoint (SD1) and from tiny random SD2
(OpenCLIP text encoder, v-prediction) and SDXL (two text encoders) pipelines written in the LDM layout: float,
fp16, rounded and missing CLIP `position_ids` (what crashed under transformers 4.30.2), all-fp16 and bf16
files, EMA copies, `.ckpt` with and without the `state_dict` wrapper, and files without VAE weights (loaded with
a separate VAE file). Run in both stacks: `.venv` (transformers 5) and `.venvs/a1111` (transformers 4.30.2).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lib_alignment.models import load_pipeline
from lib_alignment.models import tokenizers as tokenizer_module
from lib_alignment.models.ldm_export import export_ldm_checkpoint
from lib_alignment.models.ldm_keys import UNET_PREFIX, VAE_PREFIX, _rename_part, _split_module, unet_module_map, vae_to_ldm
from lib_alignment.models.ldm_keys import UNET_RESNET_PARTS
from lib_alignment.models.repair import repair_pipeline, reset_position_ids, text_encoders

SD1_POSITION_IDS = "cond_stage_model.transformer.text_model.embeddings.position_ids"
SDXL_POSITION_IDS = "conditioner.embedders.0.transformer.text_model.embeddings.position_ids"
PROMPT = "a red circle on a blue background"


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path, monkeypatch):
    """Tokenizers come from the exported folder or the config folder, never from a real HF cache."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(tokenizer_module, "HF_CACHE_DIR", str(cache))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    from training_helpers import single_thread

    with single_thread():
        yield


# --- helpers ------------------------------------------------------------------------------------------------------

def _round(pipe, dtype: torch.dtype | None):
    """The pipeline's weights as a file in `dtype` holds them (float32 again), in place."""
    if dtype is not None:
        for module in (pipe.unet, pipe.vae, *text_encoders(pipe)):
            with torch.no_grad():
                for tensor in module.state_dict().values():
                    if tensor.is_floating_point():
                        tensor.copy_(tensor.to(dtype).float())
    return pipe


def _weights(pipe) -> dict[str, torch.Tensor]:
    """Every tensor of the denoising components (position ids checked separately)."""
    out: dict[str, torch.Tensor] = {}
    names = ["unet", "vae", *[n for n in pipe.components if n.startswith("text_encoder") and pipe.components[n] is not None]]
    for name in names:
        for key, value in pipe.components[name].state_dict().items():
            if not key.endswith("position_ids"):
                out[f"{name}.{key}"] = value
    return out


def _assert_same_weights(loaded, reference) -> None:
    a, b = _weights(loaded), _weights(reference)
    assert set(a) == set(b)
    different = [k for k in a if a[k].dtype != torch.float32 or not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def _assert_integer_position_ids(pipe) -> None:
    found = 0
    for encoder in text_encoders(pipe):
        for module in encoder.modules():
            ids = module._buffers.get("position_ids")
            if ids is not None:
                found += 1
                assert ids.dtype == torch.int64
                assert torch.equal(ids.flatten(), torch.arange(ids.shape[-1]))
    assert found >= 1  # every transformers version keeps the buffer (persistent or not)


def _pixels(pipe, seed: int = 0):
    """2 DDIM steps on 8×8 latents from fixed noise."""
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn((1, 4, 8, 8), generator=generator)
    size = 8 * pipe.vae_scale_factor
    with torch.no_grad():
        return pipe(PROMPT, height=size, width=size, num_inference_steps=2, guidance_scale=5.0, latents=latents, output_type="np").images[0]


def _cast(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}


def _ema_copies(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LDM's LitEma buffers: every UNet tensor under `model_ema.<name without dots>`, here with other values."""
    ema = {"model_ema." + k[len("model."):].replace(".", ""): v + 1.0 for k, v in state.items() if k.startswith(UNET_PREFIX)}
    return {**state, **ema, "model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(1000, dtype=torch.int32)}


def _save(state: dict[str, torch.Tensor], path: Path, wrapped: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"state_dict": state, "global_step": 1000, "epoch": 3} if wrapped else state, path)
    return path


# --- SD1: the exported tiny checkpoint and its variants ------------------------------------------------------------

@pytest.fixture(scope="module")
def sd1(tiny_random_pipe, tmp_path_factory):
    exported = export_ldm_checkpoint(tiny_random_pipe, tmp_path_factory.mktemp("sd1") / "reference.safetensors")
    state = load_file(str(exported.checkpoint))
    assert state[SD1_POSITION_IDS].dtype == torch.int64
    reference = load_pipeline(exported.checkpoint, device="cpu", dtype="fp32")
    _assert_same_weights(reference, tiny_random_pipe)
    return exported, state, reference


def _sd1_variant(sd1, folder: Path, name: str, state: dict[str, torch.Tensor], suffix: str = ".safetensors", wrapped: bool = True) -> Path:
    exported = sd1[0]
    path = _save(state, folder / f"{name}{suffix}", wrapped)
    shutil.copyfile(exported.yaml, path.with_suffix(".yaml"))
    return path


def _arange_like(state, key, dtype, offset=0.0):
    return (torch.arange(state[key].shape[-1], dtype=torch.float64)[None] + offset).to(dtype)


SD1_VARIANTS = {
    # name: (state transform, file suffix, wrapped in {"state_dict": ...}, dtype the weights are rounded to)
    "float32_position_ids": (lambda s: {**s, SD1_POSITION_IDS: _arange_like(s, SD1_POSITION_IDS, torch.float32)}, ".safetensors", True, None),
    "fp16_position_ids": (lambda s: {**s, SD1_POSITION_IDS: _arange_like(s, SD1_POSITION_IDS, torch.float16)}, ".safetensors", True, None),
    "rounding_error_position_ids": (lambda s: {**s, SD1_POSITION_IDS: _arange_like(s, SD1_POSITION_IDS, torch.float32, -1e-4)}, ".safetensors", True, None),
    "missing_position_ids": (lambda s: {k: v for k, v in s.items() if k != SD1_POSITION_IDS}, ".safetensors", True, None),
    "all_fp16": (lambda s: _cast(s, torch.float16), ".safetensors", True, torch.float16),
    "all_bf16": (lambda s: _cast(s, torch.bfloat16), ".safetensors", True, torch.bfloat16),
    "fp16_with_fp16_position_ids": (lambda s: {**_cast(s, torch.float16), SD1_POSITION_IDS: _arange_like(s, SD1_POSITION_IDS, torch.float16)}, ".safetensors", True, torch.float16),
    "ema_copies": (_ema_copies, ".safetensors", True, None),
    "ckpt_state_dict_wrapper": (lambda s: {**s, SD1_POSITION_IDS: _arange_like(s, SD1_POSITION_IDS, torch.float32)}, ".ckpt", True, None),
    "ckpt_bare": (lambda s: s, ".ckpt", False, None),
}


@pytest.fixture(scope="module")
def sd1_reference_pixels(sd1):
    """Pixels of the reference weights, and of the same weights rounded as fp16 and bf16 files hold them."""
    exported, _, reference = sd1
    pixels = {None: _pixels(reference)}
    for dtype in (torch.float16, torch.bfloat16):
        rounded = _round(load_pipeline(exported.checkpoint, device="cpu", dtype="fp32"), dtype)
        pixels[dtype] = (_pixels(rounded), rounded)
    return pixels


@pytest.mark.parametrize("name", sorted(SD1_VARIANTS))
def test_sd1_variant_loads_with_the_same_weights_and_pixels(name, sd1, sd1_reference_pixels, tmp_path):
    transform, suffix, wrapped, dtype = SD1_VARIANTS[name]
    _, state, reference = sd1
    path = _sd1_variant(sd1, tmp_path, name, transform(dict(state)), suffix, wrapped)
    loaded = load_pipeline(path, device="cpu", dtype="fp32")
    _assert_integer_position_ids(loaded)
    if dtype is None:
        _assert_same_weights(loaded, reference)
        expected = sd1_reference_pixels[None]
    else:
        expected, rounded = sd1_reference_pixels[dtype]
        _assert_same_weights(loaded, rounded)
        assert not torch.equal(_weights(rounded)["unet.conv_in.weight"], _weights(reference)["unet.conv_in.weight"])  # rounding did change them
    pixels = _pixels(loaded)
    assert pixels.shape == expected.shape and (pixels == expected).all()


def test_float_position_ids_would_break_the_text_encoder_without_the_repair():
    """The real failure mode, built directly: float ids in the buffer make the embedding lookup fail; the repair
    (run after every single-file load) gives integer ids and the same output as a model that never had them."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    model = CLIPTextModel(CLIPTextConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, max_position_embeddings=16)).eval()
    ids = torch.tensor([[1, 5, 7, 2]])
    with torch.no_grad():
        expected = model(ids)[0]
    embeddings = next(m for m in model.modules() if "position_ids" in m._buffers)
    embeddings._buffers["position_ids"] = torch.arange(16, dtype=torch.float32)[None] - 1e-4  # as the file held them
    with pytest.raises((RuntimeError, IndexError, TypeError)):
        model(ids)

    class Holder:
        components = {"text_encoder": model}

    assert reset_position_ids(Holder()) == 1
    with torch.no_grad():
        assert torch.equal(model(ids)[0], expected)


def test_half_precision_components_are_cast_to_float32():
    """A component left in the file's fp16 is float32 after the repair; integer buffers stay integers."""
    from transformers import CLIPTextConfig, CLIPTextModel

    model = CLIPTextModel(CLIPTextConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, max_position_embeddings=8)).half()

    class Holder:
        components = {"text_encoder": model, "tokenizer": object()}

    repair_pipeline(Holder())
    dtypes = {t.dtype for t in model.state_dict().values()} | {b.dtype for b in model.buffers()}
    assert dtypes <= {torch.float32, torch.int64} and torch.float32 in dtypes


# --- files without VAE weights, and separate VAE files -----------------------------------------------------------

def _vae_only(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A WebUI VAE file: the VAE tensors without prefix, plus the `loss.*` entries some carry."""
    vae = {k[len(VAE_PREFIX):]: v for k, v in state.items() if k.startswith(VAE_PREFIX)}
    return {**vae, "loss.logvar": torch.zeros(())}


def test_checkpoint_without_vae_needs_vae_and_loads_with_it(sd1, sd1_reference_pixels, tmp_path):
    _, state, reference = sd1
    no_vae = _sd1_variant(sd1, tmp_path, "no_vae", {k: v for k, v in state.items() if not k.startswith(VAE_PREFIX)})
    with pytest.raises(ValueError) as info:
        load_pipeline(no_vae, device="cpu")
    message = str(info.value)
    assert "\n" not in message and str(no_vae) in message and "no VAE weights" in message and "--vae" in message
    for suffix, wrapped in ((".safetensors", True), (".pt", False), (".ckpt", True)):
        vae_file = _save(_vae_only(state), tmp_path / "VAE" / f"tiny-vae{suffix}", wrapped)
        loaded = load_pipeline(no_vae, device="cpu", dtype="fp32", vae=vae_file)
        _assert_same_weights(loaded, reference)
    assert (_pixels(loaded) == sd1_reference_pixels[None]).all()


def test_vae_option_replaces_the_checkpoints_vae_as_the_webui_does(sd1, tiny_random_pipe, tmp_path):
    exported, state, reference = sd1
    other = {k: v * 0.5 for k, v in _vae_only(state).items()}
    vae_file = _save(other, tmp_path / "VAE" / "other.safetensors")
    loaded = load_pipeline(exported.checkpoint, device="cpu", dtype="fp32", vae=vae_file)
    ours, theirs = loaded.vae.state_dict(), reference.vae.state_dict()
    assert all(torch.equal(ours[k], theirs[k] * 0.5) for k in ours)
    assert torch.equal(loaded.unet.conv_in.weight, reference.unet.conv_in.weight)
    # the same option on a built-in model and on a diffusers folder
    folder = tmp_path / "pipe"
    tiny_random_pipe.save_pretrained(folder)
    for source in ("tiny-random", folder):
        replaced = load_pipeline(source, device="cpu", dtype="fp32", vae=vae_file)
        assert torch.equal(replaced.vae.decoder.conv_out.weight, reference.vae.decoder.conv_out.weight * 0.5)


def test_bad_vae_files_fail_in_one_line_naming_the_file(sd1, tmp_path):
    exported, state, _ = sd1
    with pytest.raises(FileNotFoundError, match=r"VAE file .*absent\.safetensors does not exist"):
        load_pipeline(exported.checkpoint, device="cpu", vae=tmp_path / "absent.safetensors")
    with pytest.raises(ValueError, match=r"vae\.bin.*unsupported"):
        load_pipeline(exported.checkpoint, device="cpu", vae=tmp_path / "vae.bin")
    partial = _vae_only(state)
    partial.pop("decoder.conv_out.weight")
    vae_file = _save(partial, tmp_path / "partial.safetensors")
    with pytest.raises(ValueError) as info:
        load_pipeline(exported.checkpoint, device="cpu", vae=vae_file)
    assert "\n" not in str(info.value) and "partial.safetensors" in str(info.value) and "decoder.conv_out.weight" in str(info.value)
    evil = tmp_path / "evil.pt"
    torch.save({"encoder.conv_in.weight": torch.zeros(1), "hook": Path("x")}, evil)
    with pytest.raises(ValueError, match=r"evil\.pt.*weights_only=True"):
        load_pipeline(exported.checkpoint, device="cpu", vae=evil)


def test_generate_cli_loads_float_position_ids_and_a_separate_vae(sd1, tmp_path, capsys):
    """`python -m lib_alignment generate` on what crashed in A1111's environment, and with --vae."""
    from PIL import Image

    from lib_alignment.cli import main

    _, state, _ = sd1
    float_ids = _sd1_variant(sd1, tmp_path, "float_ids", SD1_VARIANTS["float32_position_ids"][0](dict(state)))
    no_vae = _sd1_variant(sd1, tmp_path, "no_vae", {k: v for k, v in state.items() if not k.startswith(VAE_PREFIX)})
    vae_file = _save(_vae_only(state), tmp_path / "vae.safetensors")
    common = ["--prompt", PROMPT, "--seed", "3", "--steps", "2", "--size", "64", "--device", "cpu"]
    assert main(["generate", "--model", str(float_ids), "--out", str(tmp_path / "a.png"), *common]) == 0
    assert main(["generate", "--model", str(no_vae), "--vae", str(vae_file), "--out", str(tmp_path / "b.png"), *common]) == 0
    a, b = (Image.open(tmp_path / f"{n}.png").convert("RGB") for n in "ab")
    assert list(a.getdata()) == list(b.getdata())
    capsys.readouterr()
    assert main(["generate", "--model", str(no_vae), "--out", str(tmp_path / "c.png"), *common]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no_vae.safetensors" in err and "--vae" in err


# --- SD2 (OpenCLIP, v-prediction) and SDXL (two encoders) ------------------------------------------------------------

def _clip_layers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CLIPTextModel(WithProjection) state dict with transformers 4's `text_model.` level, whichever version made it."""
    return {k if k.startswith(("text_model.", "text_projection")) else "text_model." + k: v for k, v in state.items()}


def _open_clip(encoder, prefix: str, with_projection: bool) -> dict[str, torch.Tensor]:
    """A CLIP text encoder in OpenCLIP's layout (what SD2's and SDXL's LDM checkpoints hold)."""
    state = _clip_layers(encoder.state_dict())
    hidden = encoder.config.hidden_size
    out = {
        "token_embedding.weight": state["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": state["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": state["text_model.final_layer_norm.weight"],
        "ln_final.bias": state["text_model.final_layer_norm.bias"],
        # SD2 keeps a projection its text conditioning does not use; SDXL's second encoder uses its own
        "text_projection": state["text_projection.weight"].T if with_projection else torch.eye(hidden),
        "logit_scale": torch.tensor(4.6),
    }
    names = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj", "self_attn.out_proj": "attn.out_proj"}
    for i in range(encoder.config.num_hidden_layers):
        layer = f"text_model.encoder.layers.{i}."
        block = f"transformer.resblocks.{i}."
        for ours, theirs in names.items():
            for part in ("weight", "bias"):
                out[f"{block}{theirs}.{part}"] = state[f"{layer}{ours}.{part}"]
        for part in ("weight", "bias"):
            out[f"{block}attn.in_proj_{part}"] = torch.cat([state[f"{layer}self_attn.{p}_proj.{part}"] for p in "qkv"])
    return {prefix + k: v for k, v in out.items()}


def _unet_ldm(unet) -> dict[str, torch.Tensor]:
    """The UNet under LDM names, SDXL's added embedding (`label_emb`) included."""
    modules = unet_module_map(unet.config)
    modules.update({"add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"})
    out = {}
    for key, value in unet.state_dict().items():
        module, rest = _split_module(key, modules)
        if ".resnets." in module:
            rest = _rename_part(rest, UNET_RESNET_PARTS)
        out[f"{UNET_PREFIX}{modules[module]}.{rest}"] = value
    assert len(out) == len(unet.state_dict())
    return out


def _tiny_sd2_pipeline():
    """tiny-random with an SD2-style text encoder (gelu, projection as wide as the model) and v-prediction."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    from lib_alignment.models.tiny import build_components

    base = build_components(1)
    tokenizer = base["tokenizer"]
    vocab = tokenizer.vocab_size + len(tokenizer.get_added_vocab())
    torch.manual_seed(1)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=1, projection_dim=64, max_position_embeddings=77, hidden_act="gelu"))
    with torch.no_grad():  # non-trivial LayerNorms (FACTS: random CLIP weights can give near-zero embeddings)
        for module in text.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    scheduler = DDIMScheduler.from_config(base["scheduler"].config, prediction_type="v_prediction")
    return StableDiffusionPipeline(vae=base["vae"], text_encoder=text, tokenizer=tokenizer, unet=base["unet"], scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _tiny_sdxl_pipeline():
    """A random SDXL-architecture pipeline whose two encoders differ in width, as SDXL's (768/1280) do: diffusers
    tells the encoders of a single file apart by that width."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from lib_alignment.models.tiny import build_components

    base = build_components(2)
    tokenizer = base["tokenizer"]
    common = {"vocab_size": tokenizer.vocab_size + len(tokenizer.get_added_vocab()), "intermediate_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 77, "hidden_act": "gelu"}
    torch.manual_seed(2)
    first = CLIPTextModel(CLIPTextConfig(hidden_size=32, **common))
    second = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=48, projection_dim=32, **common))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), block_out_channels=(32, 64), layers_per_block=1,
        cross_attention_dim=32 + 48, attention_head_dim=(2, 4), transformer_layers_per_block=(1, 2), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=32 + 6 * 8, norm_num_groups=32,
    )
    return StableDiffusionXLPipeline(vae=base["vae"], text_encoder=first, text_encoder_2=second, tokenizer=tokenizer,
                                     tokenizer_2=tokenizer, unet=unet, scheduler=base["scheduler"])


def _ldm_file(pipe, family: str, path: Path, dtype: torch.dtype | None = None, float_ids: bool = False) -> Path:
    state = {**_unet_ldm(pipe.unet), **vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config)}
    if family == "sd2":
        state.update(_open_clip(pipe.text_encoder, "cond_stage_model.model.", with_projection=False))
    else:
        first = _clip_layers(pipe.text_encoder.state_dict())
        state.update({"conditioner.embedders.0.transformer." + k: v for k, v in first.items() if not k.endswith("position_ids")})
        state[SDXL_POSITION_IDS] = torch.arange(pipe.text_encoder.config.max_position_embeddings)[None]
        if float_ids:
            state[SDXL_POSITION_IDS] = state[SDXL_POSITION_IDS].float() - 1e-4
        state.update(_open_clip(pipe.text_encoder_2, "conditioner.embedders.1.model.", with_projection=True))
    if dtype is not None:
        state = _cast(state, dtype)
    return _save({k: v.detach().clone() for k, v in state.items()}, path)


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """{family: (pipeline, its diffusers config folder)} for the tiny SD2 and SDXL models."""
    root = tmp_path_factory.mktemp("families")
    out = {}
    for family, pipe in (("sd2", _tiny_sd2_pipeline()), ("sdxl", _tiny_sdxl_pipeline())):
        pipe.set_progress_bar_config(disable=True)
        config = root / f"{family}-config"
        pipe.save_pretrained(config)
        for weights in config.rglob("*.safetensors"):
            weights.unlink()  # the config folder holds configs and tokenizers only, like the shipped ones
        out[family] = (pipe, config)
    return out


@pytest.mark.parametrize(
    "family, dtype, float_ids",
    [("sd2", None, False), ("sd2", torch.float16, False), ("sdxl", None, False), ("sdxl", None, True), ("sdxl", torch.bfloat16, True)],
)
def test_sd2_and_sdxl_files_load_with_the_same_weights_and_pixels(family, dtype, float_ids, families, tmp_path):
    import copy

    pipe, config = families[family]
    path = _ldm_file(pipe, family, tmp_path / f"{family}.safetensors", dtype, float_ids)
    loaded = load_pipeline(path, device="cpu", dtype="fp32", config=config)
    assert type(loaded).__name__ == type(pipe).__name__
    _assert_integer_position_ids(loaded)
    reference = _round(copy.deepcopy(pipe), dtype)
    _assert_same_weights(loaded, reference)
    if family == "sd2":
        assert loaded.scheduler.config.prediction_type == "v_prediction"
    assert (_pixels(loaded) == _pixels(reference)).all()


def test_sd2_file_is_detected_as_sd2_and_sdxl_as_sdxl(families, tmp_path):
    from lib_alignment.models.architecture import detect_architecture
    from lib_alignment.models.checkpoint_io import read_summary

    for family in ("sd2", "sdxl"):
        path = _ldm_file(families[family][0], family, tmp_path / f"{family}.safetensors")
        assert detect_architecture(read_summary(path)).family == family
    assert json.loads((families["sd2"][1] / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "v_prediction"
