"""DDPO's sampler: DDIM steps with log-probabilities against diffusers and the Gaussian density itself."""

from __future__ import annotations

import pytest
import torch

from lib_alignment.training.ddpo.sampler_logprob import (
    ddim_step,
    gaussian_log_prob,
    guided,
    sample_trajectories,
    step_kl,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    from training_helpers import single_thread

    with single_thread():
        yield


def _scheduler(steps: int = 10, **changes):
    from diffusers import DDIMScheduler

    from lib_alignment.models.tiny import SCHEDULER_CONFIG

    scheduler = DDIMScheduler(**{**SCHEDULER_CONFIG, **changes})
    scheduler.set_timesteps(steps)
    return scheduler


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("eta", [1.0, 0.3])
def test_mean_and_noise_reproduce_diffusers_ddim_step(prediction_type: str, eta: float):
    """Same model output, latents and variance noise: bit-identical x_{t-1}, for a batch mixing timesteps."""
    scheduler = _scheduler(prediction_type=prediction_type)
    g = torch.Generator().manual_seed(0)
    timesteps = scheduler.timesteps
    n = len(timesteps)
    sample, output, noise = (torch.randn((n, 4, 8, 8), generator=g) for _ in range(3))
    ours = ddim_step(scheduler, output, timesteps, sample, eta, variance_noise=noise)  # sample i at timesteps[i]
    for i, t in enumerate(timesteps.tolist()):
        reference = scheduler.step(output[i : i + 1], t, sample[i : i + 1], eta=eta, variance_noise=noise[i : i + 1]).prev_sample
        assert torch.equal(ours.prev_sample[i : i + 1], reference), f"t={t}"
        mean_only = scheduler.step(output[i : i + 1], t, sample[i : i + 1], eta=eta, variance_noise=torch.zeros_like(noise[i : i + 1])).prev_sample
        torch.testing.assert_close(ours.mean[i : i + 1], mean_only, rtol=0, atol=1e-6)
        prev_t = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        assert float(ours.std[i]) == pytest.approx(eta * float(scheduler._get_variance(t, prev_t)) ** 0.5, rel=1e-6)
    # the last step goes to t < 0, which uses final_alpha_cumprod, not alphas_cumprod[0] clamped
    assert timesteps[-1] - scheduler.config.num_train_timesteps // scheduler.num_inference_steps < 0


def test_recorded_log_prob_is_the_gaussian_density_of_the_step():
    scheduler = _scheduler(steps=4)
    g = torch.Generator().manual_seed(1)
    sample, output, noise = (torch.randn((3, 4, 8, 8), generator=g) for _ in range(3))
    t = int(scheduler.timesteps[1])
    step = ddim_step(scheduler, output, t, sample, 1.0, variance_noise=noise)
    mean = scheduler.step(output, t, sample, eta=1.0, variance_noise=torch.zeros_like(noise)).prev_sample.double()
    std = float(scheduler._get_variance(t, t - 250)) ** 0.5
    direct = torch.distributions.Normal(mean, std).log_prob(step.prev_sample.double()).mean(dim=(1, 2, 3))
    torch.testing.assert_close(step.log_prob.double(), direct, rtol=0, atol=1e-5)
    # scoring the recorded step again gives the same number, and another next latent a lower one
    again = ddim_step(scheduler, output, t, sample, 1.0, prev_sample=step.prev_sample)
    assert torch.equal(again.log_prob, step.log_prob)
    moved = ddim_step(scheduler, output, t, sample, 1.0, prev_sample=step.prev_sample + 3 * std)
    assert bool((moved.log_prob < step.log_prob).all())
    assert torch.equal(gaussian_log_prob(step.prev_sample, step.mean, step.std), step.log_prob)


def test_kl_between_equal_variance_gaussians():
    mean_a, mean_b = torch.zeros(2, 4), torch.tensor([[0.0] * 4, [0.5] * 4])
    std = torch.full((2, 1), 0.5)
    torch.testing.assert_close(step_kl(mean_a, mean_b, std), torch.tensor([0.0, 0.5]))


def test_sampler_gives_the_pipeline_images_and_consistent_records(tiny_random_pipe):
    """With the pipeline's guidance and the same generator, sample_trajectories reproduces pipe(eta=...)."""
    from diffusers import DDIMScheduler

    pipe = tiny_random_pipe
    prompts = ["a red circle", "a blue square"]
    scale, eta, steps = 5.0, 1.0, 4
    initial = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(3))
    original = pipe.scheduler
    pipe.scheduler = DDIMScheduler.from_config(original.config)
    try:
        with torch.no_grad():
            expected = pipe(prompt=prompts, num_inference_steps=steps, guidance_scale=scale, eta=eta, height=64, width=64,
                            latents=initial.clone(), generator=torch.Generator().manual_seed(7), output_type="latent").images
            cond, uncond = pipe.encode_prompt(prompts, "cpu", 1, True)

            def model(x, t):  # (the reference pass scores the first trajectories only)
                n = x.shape[0]
                return guided(pipe.unet(torch.cat([x, x]), torch.cat([t, t]), torch.cat([uncond[:n], cond[:n]])).sample, scale)

            trajectories = sample_trajectories(model, DDIMScheduler.from_config(original.config), initial, steps, eta,
                                               torch.Generator().manual_seed(7), reference=model, reference_count=1)
    finally:
        pipe.scheduler = original
    assert trajectories.latents.shape == (2, steps + 1, 4, 8, 8) and trajectories.log_probs.shape == (2, steps)
    torch.testing.assert_close(trajectories.latents[:, -1], expected, rtol=0, atol=1e-5)
    assert torch.equal(trajectories.latents[:, 0], initial)
    # the reference equal to the policy: no drift beyond rounding (it runs on a smaller batch)
    assert trajectories.kl.shape == (1,) and 0.0 <= float(trajectories.kl[0]) < 1e-8
    # every recorded log-probability is the density of its own transition
    scheduler = DDIMScheduler.from_config(original.config)
    scheduler.set_timesteps(steps)
    with torch.no_grad():
        for j, t in enumerate(trajectories.timesteps.tolist()):
            x = trajectories.latents[:, j]
            rescored = ddim_step(scheduler, model(x, torch.full((2,), t)), t, x, eta, prev_sample=trajectories.latents[:, j + 1])
            torch.testing.assert_close(rescored.log_prob, trajectories.log_probs[:, j], rtol=0, atol=1e-6)


def test_step_refuses_eta_zero_and_ambiguous_calls():
    scheduler = _scheduler()
    x = torch.zeros(1, 4, 8, 8)
    with pytest.raises(ValueError, match="eta must be > 0"):
        ddim_step(scheduler, x, 1, x, 0.0, variance_noise=x)
    with pytest.raises(ValueError, match="exactly one"):
        ddim_step(scheduler, x, 1, x, 1.0)


#: A scheduler config as some diffusers folders ship it: no set_alpha_to_one, no steps_offset (diffusers then
#: defaults to True and 0, which leaves the last DDIM step without noise).
BARE_CONFIG = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "prediction_type": "epsilon"}


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
def test_a_config_without_set_alpha_to_one_or_steps_offset_gives_finite_log_probs(spacing: str):
    from diffusers import DDIMScheduler

    from lib_alignment.training.ddpo.sampler_logprob import check_step_noise, ddpo_scheduler

    config = {**BARE_CONFIG, "timestep_spacing": spacing}
    initial = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(0))

    def model(x, t):
        return 0.5 * x

    if spacing != "trailing":  # the failure being guarded against: σ = 0 on the last step, a NaN log-probability
        raw = DDIMScheduler.from_config(config)
        with pytest.raises(ValueError, match="no noise at timestep"):
            check_step_noise(raw, 5)
        broken = sample_trajectories(model, raw, initial, 5, 1.0, torch.Generator().manual_seed(1))
        assert not torch.isfinite(broken.log_probs[:, -1]).all()
    scheduler = ddpo_scheduler(DDIMScheduler.from_config(config).config)
    check_step_noise(scheduler, 5)
    assert scheduler.config.set_alpha_to_one is False and int(scheduler.timesteps.min()) >= 1
    trajectories = sample_trajectories(model, scheduler, initial, 5, 1.0, torch.Generator().manual_seed(1))
    assert torch.isfinite(trajectories.log_probs).all() and torch.isfinite(trajectories.latents).all()


def test_ddpo_trains_on_a_model_whose_scheduler_config_lacks_them(tmp_path):
    from diffusers import DDIMScheduler

    from lib_alignment.models.tiny import tiny_random_pipeline
    from lib_alignment.training import TrainConfig
    from lib_alignment.training.ddpo import DDPOTrainer

    pipe = tiny_random_pipeline(seed=0)
    pipe.scheduler = DDIMScheduler.from_config(BARE_CONFIG)
    config = TrainConfig(
        method="ddpo", model="tiny-random", output_dir=str(tmp_path / "out"), name="bare", reward="jpeg_compressibility",
        prompts=["a red circle"], resolution=32, sample_steps=3, samples_per_epoch=2, rollout_batch_size=2, batch_size=2,
        num_epochs=1, rank=4, checkpoint_every=0, preview=False, progress_bar=False, tensorboard=False, validation_split=0.0,
    )
    trainer = DDPOTrainer(config, pipe=pipe)
    assert trainer.train().status == "finished"
    assert torch.isfinite(trainer.rollout.log_probs).all()
