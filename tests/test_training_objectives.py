"""IPO, hinge DPO and ORPO against direct transcriptions of diffusers' research examples, and from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lib_alignment.training.methods import DPO, IPO, ORPO, Errors, HingeDPO, build_method, denoising_errors


def _errors(n: int, seed: int, spread: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """(policy errors with grad, reference errors) of n images = n/2 pairs, computed from ε predictions."""
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn((n, 4, 8, 8), generator=g)
    ref = eps + 0.7 * torch.randn((n, 4, 8, 8), generator=g)
    model = (ref + spread * torch.randn((n, 4, 8, 8), generator=g)).requires_grad_(True)
    return denoising_errors(model, eps), denoising_errors(ref, eps).detach()


def _diffusers_logits(model_losses: torch.Tensor, ref_losses: torch.Tensor) -> torch.Tensor:
    """train_diffusion_dpo.py: logits = ref_diff − model_diff, each diff = winner − loser."""
    model_w, model_l = model_losses.chunk(2)
    ref_w, ref_l = ref_losses.chunk(2)
    return (ref_w - ref_l) - (model_w - model_l)


@pytest.mark.parametrize("beta", [5000.0, 200.0])
def test_hinge_matches_diffusers_loss_type_hinge(beta):
    policy, reference = _errors(8, seed=1)
    beta_dpo = beta / 2
    expected = torch.relu(1 - beta_dpo * _diffusers_logits(policy, reference)).mean()
    ours = HingeDPO(beta).loss(Errors(policy, reference), {}).loss
    assert ours.item() == pytest.approx(expected.item(), rel=1e-6)
    assert 0 < ours.item() != pytest.approx(1.0)  # the fixture has pairs on both sides of the hinge
    (g_ours,) = torch.autograd.grad(ours, policy, retain_graph=True)
    (g_expected,) = torch.autograd.grad(expected, policy)
    torch.testing.assert_close(g_ours, g_expected)


@pytest.mark.parametrize("beta", [5000.0, 200.0])
def test_ipo_matches_diffusers_loss_type_ipo_with_tau_beta_dpo(beta):
    policy, reference = _errors(8, seed=2)
    tau = beta / 2  # diffusers' beta_dpo
    expected = ((_diffusers_logits(policy, reference) - 1 / (2 * tau)) ** 2).mean()
    ours = IPO(beta).loss(Errors(policy, reference), {}).loss
    assert ours.item() == pytest.approx(expected.item(), rel=1e-6)
    (g_ours,) = torch.autograd.grad(ours, policy, retain_graph=True)
    (g_expected,) = torch.autograd.grad(expected, policy)
    torch.testing.assert_close(g_ours, g_expected)


def test_ipo_stops_pulling_at_its_target_margin_where_dpo_keeps_pushing():
    beta = 5000.0
    reference = torch.tensor([0.20, 0.20], dtype=torch.float64)
    # preferred error lowered by exactly the target raw margin 1/β
    policy = torch.tensor([0.20 - 1 / beta, 0.20], dtype=torch.float64).requires_grad_(True)
    ipo = IPO(beta).loss(Errors(policy, reference), {}).loss
    (g_ipo,) = torch.autograd.grad(ipo, policy)
    assert ipo.item() == pytest.approx(0.0, abs=1e-20) and g_ipo.abs().max().item() < 1e-12
    dpo = DPO(beta).loss(Errors(policy, reference), {}).loss
    (g_dpo,) = torch.autograd.grad(dpo, policy)
    assert g_dpo[0].item() > 0  # DPO still lowers the preferred error


def test_orpo_is_diffusers_transcription_with_the_odds_ratio_pointing_at_the_preferred_image():
    policy, _ = _errors(8, seed=3, spread=0.3)
    beta = 0.1
    model_w, model_l = policy.chunk(2)
    # train_diffusion_orpo_sdxl_lora.py: loss = mean(e_w) − β·mean(log σ(e_w − e_l)); its log-odds sign makes the
    # ratio term favour a *larger* preferred error. Ours takes log σ(e_l − e_w), the ORPO paper's direction.
    diffusers_as_written = model_w.mean() - beta * F.logsigmoid(model_w - model_l).mean()
    sign_fixed = model_w.mean() - beta * F.logsigmoid(model_l - model_w).mean()
    ours = ORPO(beta).loss(Errors(policy, None), {}).loss
    assert ours.item() == pytest.approx(sign_fixed.item(), rel=1e-6)
    assert ours.item() != pytest.approx(diffusers_as_written.item(), rel=1e-4)
    (g_ours,) = torch.autograd.grad(ours, policy, retain_graph=True)
    (g_expected,) = torch.autograd.grad(sign_fixed, policy)
    torch.testing.assert_close(g_ours, g_expected)
    # the odds-ratio term alone lowers the preferred error and raises the other's
    ratio_only = ORPO(beta).loss(Errors(policy, None), {}).loss - model_w.mean()
    (g_ratio,) = torch.autograd.grad(ratio_only, policy)
    assert (g_ratio[:4] > 0).all() and (g_ratio[4:] < 0).all()


def test_build_method_defaults_follow_the_references():
    from lib_alignment.training import TrainConfig

    for method, cls, beta in (("ipo", IPO, 5000.0), ("dpo_hinge", HingeDPO, 5000.0), ("orpo", ORPO, 0.1)):
        built = build_method(TrainConfig(method=method))
        assert type(built) is cls and built.beta == beta
        assert built.needs_reference is (method != "orpo")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ipo", "dpo_hinge", "orpo"])
def test_each_objective_trains_from_the_command_line(tmp_path: Path, method: str, capsys):
    from safetensors import safe_open
    from training_helpers import train_from_cli

    from lib_alignment.training.data.synthetic import make_toy_pairs

    data = make_toy_pairs(tmp_path / "data", 4, resolution=32, seed=0)
    code = train_from_cli(data, tmp_path / "out", method, "obj", 32, batch_size=1)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    steps = [json.loads(line) for line in captured.out.splitlines() if line.startswith('{"event": "step"')]
    assert len(steps) == 2 and all(s["loss"] is not None and s["grad_norm"] is not None for s in steps)
    with safe_open(str(tmp_path / "out" / "obj.safetensors"), framework="pt") as handle:
        assert handle.metadata()["lib_alignment_method"] == method
