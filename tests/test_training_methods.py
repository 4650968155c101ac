"""The objectives on fixed tensors: values at initialisation, and losses and gradients against the papers' formulas.

Each "transcription" below writes a paper's loss directly from its equation,
per sample with explicit squared norms (as element means, the convention of both
reference codes), independent of lib_alignment's helpers.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lib_alignment.training.methods import DPO, KTO, Errors, MaPO, denoising_errors


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    from training_helpers import single_thread

    with single_thread():
        yield



def _tensors(n: int, seed: int, shape=(4, 8, 8)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn((n, *shape), generator=g)
    ref = eps + 0.7 * torch.randn((n, *shape), generator=g)
    model = (ref + 0.05 * torch.randn((n, *shape), generator=g)).requires_grad_(True)
    return {"eps": eps, "ref": ref, "model": model}


def _sqnorm(x: torch.Tensor) -> torch.Tensor:
    """‖x‖² per sample, as the element mean the reference codes (and the default β) use."""
    return (x**2).flatten(1).mean(1)


# --------------------------------------------------------------------- at initialisation
def test_dpo_loss_is_ln2_when_model_equals_reference():
    t = _tensors(6, seed=1)
    errors = denoising_errors(t["ref"], t["eps"])
    out = DPO(beta=5000).loss(Errors(errors, errors.clone()), {"weight": torch.ones(3)})
    assert out.loss.item() == pytest.approx(math.log(2), abs=1e-7)
    assert out.metrics["reward_accuracy"].item() == pytest.approx(0.5)


def test_kto_loss_is_half_when_model_equals_reference():
    t = _tensors(6, seed=2)
    errors = denoising_errors(t["ref"], t["eps"])
    labels = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    out = KTO(beta=1000).loss(Errors(errors, errors.clone()), {"label": labels})
    assert out.loss.item() == pytest.approx(0.5, abs=1e-7)
    assert out.metrics["kl"].item() == 0.0


def test_lora_at_initialisation_gives_ln2_and_half_through_the_model(tiny_random_pipe):
    """With LoRA up-weights zero, a real UNet with adapters on and off predicts the same: ln 2 and 0.5."""
    import copy

    from lib_alignment.training.lora import adapters_disabled, add_lora, lora_layers

    unet = copy.deepcopy(tiny_random_pipe.unet)
    params = add_lora(unet, rank=4, alpha=4, dropout=0.0, targets=["to_q", "to_k", "to_v", "to_out.0"])
    ups = [p.detach() for n, p in unet.named_parameters() if "lora_B" in n]
    downs = [p.detach() for n, p in unet.named_parameters() if "lora_A" in n]
    assert len(ups) == len(downs) == len(params) // 2 > 0
    assert all(float(p.abs().max()) == 0.0 for p in ups)
    assert all(float(p.abs().max()) > 0 for p in downs)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn((4, 4, 8, 8), generator=g)
    noise = torch.randn((4, 4, 8, 8), generator=g)
    hidden = torch.randn((4, 77, 64), generator=g)
    t = torch.tensor([10, 500, 10, 500])
    policy = denoising_errors(unet(latents, t, hidden).sample, noise)
    with torch.no_grad(), adapters_disabled(lora_layers([unet])):
        reference = denoising_errors(unet(latents, t, hidden).sample, noise)
    assert all(p.requires_grad for p in params)  # switched back on and trainable
    dpo = DPO(5000).loss(Errors(policy, reference), {"weight": torch.ones(2)})
    kto = KTO(1000).loss(Errors(policy, reference), {"label": torch.tensor([1.0, 0.0, 1.0, 0.0])})
    assert dpo.loss.item() == pytest.approx(math.log(2), abs=1e-6)
    assert kto.loss.item() == pytest.approx(0.5, abs=1e-6)

    # once trained (non-zero up weights), switching adapters off gives exactly the base model
    with torch.no_grad():
        for p in params:
            if p.ndim and p.shape[0] != 4:  # up weights: [out, rank]
                p.add_(0.1)
        base = tiny_random_pipe.unet(latents, t, hidden).sample
        adapted = unet(latents, t, hidden).sample
        with adapters_disabled(lora_layers([unet])):
            reference = unet(latents, t, hidden).sample
    assert (adapted - base).abs().max() > 1e-3
    torch.testing.assert_close(reference, base, rtol=0, atol=1e-6)


# --------------------------------------------------------------------- DPO
def _dpo_transcription(eps, model, ref, beta, weights):
    """Wallace et al. eq. (14), per pair: −log σ(−β_T/2 · (‖ε−ε_θ(x_w)‖² − ‖ε−ε_ref(x_w)‖² − (‖ε−ε_θ(x_l)‖² − ‖ε−ε_ref(x_l)‖²)))."""
    b = eps.shape[0] // 2
    losses = []
    for i in range(b):
        w, l = i, i + b
        inner = (_sqnorm((eps[w] - model[w])[None]) - _sqnorm((eps[w] - ref[w])[None])) - (
            _sqnorm((eps[l] - model[l])[None]) - _sqnorm((eps[l] - ref[l])[None])
        )
        losses.append(-torch.log(torch.sigmoid(-beta / 2 * inner)))
    losses = torch.cat(losses)
    return (losses * weights).sum() / weights.sum()


@pytest.mark.parametrize("beta", [5000.0, 50.0])
def test_dpo_loss_and_gradient_match_the_paper(beta):
    t = _tensors(8, seed=3)
    weights = torch.tensor([1.0, 0.5, 0.5, 1.0])
    ours = DPO(beta).loss(Errors(denoising_errors(t["model"], t["eps"]), denoising_errors(t["ref"], t["eps"])), {"weight": weights}).loss
    (grad_ours,) = torch.autograd.grad(ours, t["model"])
    expected = _dpo_transcription(t["eps"], t["model"], t["ref"], beta, weights)
    (grad_expected,) = torch.autograd.grad(expected, t["model"])
    assert ours.item() == pytest.approx(expected.item(), rel=1e-5)
    assert ours.item() != pytest.approx(math.log(2), abs=1e-3)  # the fixture is away from initialisation
    torch.testing.assert_close(grad_ours, grad_expected, rtol=1e-4, atol=1e-9)


def test_dpo_beta_convention_is_twice_diffusers_beta_dpo():
    """diffusers' example: −log σ(β_d · (ref_diff − model_diff)); ours with β = 2 β_d is the same loss."""
    t = _tensors(8, seed=4)
    model_e, ref_e = denoising_errors(t["model"], t["eps"]), denoising_errors(t["ref"], t["eps"])
    beta_d = 2500.0
    mw, ml = model_e.chunk(2)
    rw, rl = ref_e.chunk(2)
    diffusers_loss = -F.logsigmoid(beta_d * ((rw - rl) - (mw - ml))).mean()
    ours = DPO(2 * beta_d).loss(Errors(model_e, ref_e), {"weight": torch.ones(4)}).loss
    assert ours.item() == pytest.approx(diffusers_loss.item(), rel=1e-6)


def test_dpo_tie_weight_scales_a_pairs_share():
    t = _tensors(4, seed=5)
    errors = Errors(denoising_errors(t["model"], t["eps"]).detach(), denoising_errors(t["ref"], t["eps"]))
    full = DPO(5000).loss(errors, {"weight": torch.tensor([1.0, 1.0])}).loss
    tie = DPO(5000).loss(errors, {"weight": torch.tensor([1.0, 0.0])}).loss
    only_first = DPO(5000).loss(Errors(errors.policy[[0, 2]], errors.reference[[0, 2]]), {"weight": torch.ones(1)}).loss
    assert tie.item() == pytest.approx(only_first.item(), rel=1e-6)
    assert full.item() != pytest.approx(tie.item(), rel=1e-3)


# --------------------------------------------------------------------- KTO
def _kto_transcription(eps, model, ref, labels, beta, lam_d=1.0, lam_u=1.0, utility="sigmoid"):
    """Li et al. (Diffusion-KTO) with the reference code's reference point: z_ref = max(0, mean_batch g), detached."""
    g = torch.stack([-_sqnorm((eps[i] - model[i])[None])[0] + _sqnorm((eps[i] - ref[i])[None])[0] for i in range(eps.shape[0])])
    z_ref = torch.clamp(g.detach().mean(), min=0)
    losses = []
    for i in range(eps.shape[0]):
        if labels[i] == 1:
            arg, lam = beta * (g[i] - z_ref), lam_d
        else:
            arg, lam = -beta * (g[i] - z_ref), lam_u
        value = torch.sigmoid(arg) if utility == "sigmoid" else torch.log(torch.sigmoid(arg))
        losses.append(lam * (1 - value))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("utility", ["sigmoid", "loss_averse"])
@pytest.mark.parametrize("closer", [False, True])
def test_kto_loss_and_gradient_match_the_paper(utility, closer):
    """closer=True puts the model nearer the noise than the reference: the batch KL estimate is positive
    (the clamp is inactive); otherwise it is negative and clamped to 0."""
    t = _tensors(6, seed=6)
    model = t["model"]
    if closer:
        model = (t["eps"] + 0.6 * (t["ref"] - t["eps"])).detach().requires_grad_(True)
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    beta, lam_d, lam_u = 100.0, 1.0, 1.5
    method = KTO(beta, utility=utility, lambda_desirable=lam_d, lambda_undesirable=lam_u)
    out = method.loss(Errors(denoising_errors(model, t["eps"]), denoising_errors(t["ref"], t["eps"])), {"label": labels})
    (grad_ours,) = torch.autograd.grad(out.loss, model)
    expected = _kto_transcription(t["eps"], model, t["ref"], labels, beta, lam_d, lam_u, utility)
    (grad_expected,) = torch.autograd.grad(expected, model)
    assert (out.metrics["kl"].item() > 0) == closer
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(grad_ours, grad_expected, rtol=1e-4, atol=1e-9)


def test_kto_reference_point_is_reduced_across_processes_and_detached():
    t = _tensors(4, seed=7)
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    policy = denoising_errors(t["model"], t["eps"])
    reference = denoising_errors(t["ref"], t["eps"])
    seen = []

    def fake_reduce(value):  # another process reports a large positive mean
        seen.append(value)
        return (value + 0.3) / 2

    out = KTO(10.0).loss(Errors(policy, reference), {"label": labels}, reduce_mean=fake_reduce)
    g = (reference - policy).detach()
    assert len(seen) == 1 and not seen[0].requires_grad
    assert out.metrics["kl"].item() == pytest.approx(max(0.0, (g.mean().item() + 0.3) / 2), rel=1e-6)
    local = KTO(10.0, reference_point="batch_kl_local").loss(Errors(policy, reference), {"label": labels}, reduce_mean=fake_reduce)
    assert local.metrics["kl"].item() == pytest.approx(max(0.0, g.mean().item()), abs=1e-9)
    zero = KTO(10.0, reference_point="zero").loss(Errors(policy, reference), {"label": labels})
    assert zero.metrics["kl"].item() == 0.0


# --------------------------------------------------------------------- MaPO
def _mapo_transcription(eps, model, beta, snr, T):
    """Hong et al. (MaPO): L_w − β log σ(T · (s(L_w) − s(L_l))), s(L) = aL / (e^{aL} − 1), averaged over pairs."""
    b = eps.shape[0] // 2
    total = []
    for i in range(b):
        lw = _sqnorm((eps[i] - model[i])[None])[0]
        ll = _sqnorm((eps[i + b] - model[i + b])[None])[0]
        sw = snr * lw / (torch.exp(snr * lw) - 1)
        sl = snr * ll / (torch.exp(snr * ll) - 1)
        total.append(lw - beta * torch.log(torch.sigmoid(T * (sw - sl))))
    return torch.stack(total).mean()


def test_mapo_loss_and_gradient_match_the_paper_without_a_reference():
    t = _tensors(6, seed=8)
    method = MaPO(0.1, snr_value=0.5, num_train_timesteps=1000)
    assert method.needs_reference is False
    out = method.loss(Errors(denoising_errors(t["model"], t["eps"]), None), {"weight": torch.ones(3)})
    (grad_ours,) = torch.autograd.grad(out.loss, t["model"])
    expected = _mapo_transcription(t["eps"], t["model"], 0.1, 0.5, 1000)
    (grad_expected,) = torch.autograd.grad(expected, t["model"])
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # s(L_w) − s(L_l) cancels digits in fp32 and T = 1000 magnifies it: compare relative to the largest gradient
    torch.testing.assert_close(grad_ours, grad_expected, rtol=1e-3, atol=1e-3 * float(grad_expected.abs().max()))


def test_methods_that_need_a_reference_refuse_to_run_without_one():
    errors = Errors(torch.ones(4), None)
    with pytest.raises(ValueError, match="reference"):
        DPO(1.0).loss(errors, {"weight": torch.ones(2)})
    with pytest.raises(ValueError, match="reference"):
        KTO(1.0).loss(errors, {"label": torch.ones(4)})
