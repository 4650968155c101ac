"""`<lora:NAME:w>` in the standalone app's prompts: applied from its LoRA folder, or refused with a message."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lib_alignment.generation import DiffusersBackend, GenerationSettings, noise_from_seed
from lib_alignment.lora_prompt import LoraTagBackend, check_prompt_loras, parse_lora_tags


def test_tags_are_read_and_taken_out_of_the_text():
    assert parse_lora_tags("a red circle <lora:mine:0.5>, on blue") == ("a red circle, on blue", [("mine", 0.5)])
    assert parse_lora_tags("<LORA:a> x <lora:b:-1:te=0>") == ("x", [("a", 1.0), ("b", -1.0)])
    with pytest.raises(ValueError, match="weight of <lora:mine:lots> is not a number"):
        parse_lora_tags("x <lora:mine:lots>")


def test_a_missing_or_broken_lora_is_refused_naming_the_folder(tmp_path):
    (tmp_path / "other.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match=r"<lora:mine> — no mine.safetensors in .* \(trained LoRAs: other\)"):
        check_prompt_loras("x <lora:mine:1>", tmp_path)
    with pytest.raises(ValueError, match="other.safetensors: not a LoRA .safetensors file"):
        check_prompt_loras("x <lora:other:1>", tmp_path)
    with pytest.raises(ValueError, match="is not a LoRA name"):
        check_prompt_loras("x <lora:../escape:1>", tmp_path)


def _tiny_lora(pipe, path: Path) -> None:
    """A rank-2 kohya LoRA on every attention projection of the UNet, large enough to change the image."""
    from lib_alignment.lora_apply import _kohya_module_index

    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for base, module in _kohya_module_index(pipe).items():
        if base.startswith("lora_unet_") and isinstance(module, torch.nn.Linear) and "attn" in base and "down_blocks" in base:
            tensors[f"{base}.lora_down.weight"] = torch.randn(2, module.in_features, generator=gen)
            tensors[f"{base}.lora_up.weight"] = torch.randn(module.out_features, 2, generator=gen)
            tensors[f"{base}.alpha"] = torch.tensor(2.0)
    save_file(tensors, str(path))


def test_the_tag_applies_the_lora_for_the_batch_and_restores_the_model(tiny_random_pipe, tmp_path):
    _tiny_lora(tiny_random_pipe, tmp_path / "mine.safetensors")
    backend = LoraTagBackend(DiffusersBackend(tiny_random_pipe, "tiny-random"), tmp_path)
    before = {k: v.clone() for k, v in tiny_random_pipe.unet.state_dict().items()}
    settings = GenerationSettings(prompt="a red circle", steps=2, width=64, height=64, sampler="DDIM")
    noise = noise_from_seed(1, (1, *backend.latent_shape(64, 64)))
    plain = backend.generate(settings, noise).latents
    weight_zero = backend.generate(settings.with_(prompt="a red circle <lora:mine:0>"), noise).latents
    applied = backend.generate(settings.with_(prompt="a red circle <lora:mine:1>"), noise).latents
    assert torch.equal(plain, weight_zero), "the tag must not reach the text encoder"
    assert (applied - plain).abs().max() > 1e-3, "the LoRA changed nothing"
    after = tiny_random_pipe.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_rank_and_refine_refuses_an_unknown_lora_before_loading_the_model(tmp_path):
    from lib_alignment.ui.app import standalone_context
    from lib_alignment.ui.refine_sessions import RefineRequest, RefineSessions

    ctx = standalone_context("tiny-random", tmp_path, device="cpu")
    ctx.backend_factory = lambda: pytest.fail("the model was loaded")  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="no nope.safetensors"):
        RefineSessions(ctx).start(RefineRequest(prompt="x <lora:nope:1>"))
