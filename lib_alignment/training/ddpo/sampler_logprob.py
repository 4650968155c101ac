"""DDIM sampling with η > 0 that records every transition and its log-probability.

DDPO treats each denoising step as a Gaussian policy: with η > 0, DDIM's update
x_{t-1} = μ_θ(x_t, t) + σ_t·z draws from N(μ_θ, σ_t²), so the probability of the
step actually taken is known and can be recomputed later under updated weights
(the PPO ratio). `ddim_step` reproduces diffusers' `DDIMScheduler.step` (same
mean, same σ_t, same noise) for a batch whose samples may sit at different
timesteps, and returns the log-density of the next latent. As in the DDPO
reference code, the log-density is averaged (not summed) over the latent's
elements, which keeps ratios of a 64×64×4 latent in a usable range.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)

#: model(latents [B, C, h, w], timesteps [B]) -> the (guided) model output for those latents.
ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class StepResult:
    #: x_{t-1}: the given `prev_sample`, or mean + std·noise.
    prev_sample: torch.Tensor
    #: log N(prev_sample; mean, std²) averaged over all but the batch dimension, [B], fp32.
    log_prob: torch.Tensor
    mean: torch.Tensor
    #: σ_t per sample, broadcastable to the latents ([B, 1, 1, 1]).
    std: torch.Tensor


def ddpo_scheduler(config: Any) -> Any:
    """A DDIMScheduler for DDPO from any model's scheduler config, with σ_t > 0 on every step.

    A config without `set_alpha_to_one`/`steps_offset` (diffusers' defaults: True
    and 0) makes the last step land on ᾱ_prev = 1, or start at t = 0 where
    ᾱ_prev = ᾱ_t: either way σ = 0 there, the step is deterministic and its
    log-probability NaN. DDPO needs every step to be a Gaussian policy, so the
    final ᾱ is ᾱ_0 (set_alpha_to_one False, as in SD's own config) and the
    timesteps never reach 0 ("leading" spacing with steps_offset ≥ 1; "linspace",
    which ends at 0, becomes "leading"). The model output is unchanged; only the
    grid shifts by one training timestep at most.
    """
    from diffusers import DDIMScheduler

    spacing = getattr(config, "timestep_spacing", None) or (config.get("timestep_spacing") if isinstance(config, dict) else None) or "leading"
    offset = int((config.get("steps_offset") if isinstance(config, dict) else getattr(config, "steps_offset", 0)) or 0)
    overrides: dict[str, Any] = {"set_alpha_to_one": False}
    if spacing in ("leading", "linspace"):
        overrides.update(timestep_spacing="leading", steps_offset=max(1, offset))
    return DDIMScheduler.from_config(config, **overrides)


def check_step_noise(scheduler: Any, num_steps: int) -> None:
    """Raise a one-line ValueError if some step of `num_steps` would have σ_t = 0 (no log-probability)."""
    scheduler.set_timesteps(num_steps)
    timesteps = scheduler.timesteps.detach().cpu().long()
    alphas = scheduler.alphas_cumprod.float().cpu()
    prev = timesteps - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    alpha_t = alphas[timesteps]
    alpha_prev = torch.where(prev >= 0, alphas[prev.clamp(min=0)], torch.as_tensor(scheduler.final_alpha_cumprod, dtype=torch.float32).cpu())
    variance = ((1 - alpha_prev) / (1 - alpha_t)) * (1 - alpha_t / alpha_prev)
    bad = [int(t) for t, v in zip(timesteps.tolist(), variance.tolist()) if not (v > 0 and math.isfinite(v))]
    if bad:
        raise ValueError(f"DDPO sampler: {num_steps} DDIM steps of this scheduler leave no noise at timestep(s) {bad} (σ = 0, no log-probability); use another sample_steps")


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(values.shape[0], *([1] * (like.ndim - 1))).to(like.device)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, std²) per element, averaged over all but the batch dimension (fp32)."""
    x, mean, std = x.float(), mean.float(), std.float()
    density = -((x - mean) ** 2) / (2 * std**2) - torch.log(std) - _HALF_LOG_TWO_PI
    return density.mean(dim=tuple(range(1, density.ndim)))


def ddim_step(
    scheduler: object,
    model_output: torch.Tensor,
    timesteps: torch.Tensor | int,
    sample: torch.Tensor,
    eta: float,
    prev_sample: torch.Tensor | None = None,
    variance_noise: torch.Tensor | None = None,
) -> StepResult:
    """One DDIM step of a `DDIMScheduler` (after `set_timesteps`), per sample, with the step's log-probability.

    Give `prev_sample` to score a recorded transition, or `variance_noise` (unit
    normal, the latents' shape) to take a new one. Computed in fp32.
    """
    config = scheduler.config  # type: ignore[attr-defined]
    if eta <= 0:
        raise ValueError(f"eta must be > 0 for a step to have a log-probability (got {eta})")
    if getattr(config, "thresholding", False):
        raise ValueError("DDPO's sampler does not support schedulers with dynamic thresholding")
    if (prev_sample is None) == (variance_noise is None):
        raise ValueError("give exactly one of prev_sample and variance_noise")
    sample = sample.float()
    model_output = model_output.float()
    if not isinstance(timesteps, torch.Tensor) or timesteps.ndim == 0:
        timesteps = torch.full((sample.shape[0],), int(timesteps), dtype=torch.long)
    timesteps = timesteps.detach().to("cpu", torch.long)
    prev_timesteps = timesteps - config.num_train_timesteps // scheduler.num_inference_steps  # type: ignore[attr-defined]

    alphas_cumprod = scheduler.alphas_cumprod.float().cpu()  # type: ignore[attr-defined]
    final = torch.as_tensor(scheduler.final_alpha_cumprod, dtype=torch.float32).cpu()  # type: ignore[attr-defined]
    alpha_t = alphas_cumprod[timesteps]
    alpha_prev = torch.where(prev_timesteps >= 0, alphas_cumprod[prev_timesteps.clamp(min=0)], final)
    variance = ((1 - alpha_prev) / (1 - alpha_t)) * (1 - alpha_t / alpha_prev)
    std_t = eta * variance ** (0.5)
    direction_scale = (1 - alpha_prev - std_t**2) ** (0.5)

    alpha_t, alpha_prev = _per_sample(alpha_t, sample), _per_sample(alpha_prev, sample)
    std_t, direction_scale = _per_sample(std_t, sample), _per_sample(direction_scale, sample)
    beta_t = 1 - alpha_t
    kind = config.prediction_type
    if kind == "epsilon":
        x0 = (sample - beta_t ** (0.5) * model_output) / alpha_t ** (0.5)
        epsilon = model_output
    elif kind == "v_prediction":
        x0 = (alpha_t**0.5) * sample - (beta_t**0.5) * model_output
        epsilon = (alpha_t**0.5) * model_output + (beta_t**0.5) * sample
    elif kind == "sample":
        x0 = model_output
        epsilon = (sample - alpha_t ** (0.5) * x0) / beta_t ** (0.5)
    else:
        raise ValueError(f"prediction type {kind!r} is not one of epsilon, v_prediction, sample")
    if getattr(config, "clip_sample", False):
        x0 = x0.clamp(-config.clip_sample_range, config.clip_sample_range)
    mean = alpha_prev ** (0.5) * x0 + direction_scale * epsilon
    if prev_sample is None:
        assert variance_noise is not None
        prev_sample = mean + std_t * variance_noise.to(mean.device, mean.dtype)
    prev_sample = prev_sample.float()
    return StepResult(prev_sample=prev_sample, log_prob=gaussian_log_prob(prev_sample.detach(), mean, std_t), mean=mean, std=std_t)


def step_kl(mean_a: torch.Tensor, mean_b: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(N(mean_a, σ²) ‖ N(mean_b, σ²)) per element, averaged like the log-probabilities, [B]."""
    kl = (mean_a.float() - mean_b.float()) ** 2 / (2 * std.float() ** 2)
    return kl.mean(dim=tuple(range(1, kl.ndim)))


def guided(output: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance of a [uncond; cond] batch, as the diffusers pipelines combine it."""
    uncond, cond = output.chunk(2)
    return uncond + scale * (cond - uncond)


@dataclass
class Trajectories:
    #: x_T … x_0 per sample: [N, T + 1, C, h, w], fp32. Step j goes from latents[:, j] to latents[:, j + 1].
    latents: torch.Tensor
    #: log-probability of each recorded step under the sampling model, [N, T].
    log_probs: torch.Tensor
    #: the scheduler's timesteps, [T] (step j is taken at timesteps[j]).
    timesteps: torch.Tensor
    #: Σ_t KL(policy step ‖ reference step) along each of the first K trajectories, [K] (K = 0 without a reference).
    kl: torch.Tensor


def _draw(shape: Sequence[int], generators: torch.Generator | Sequence[torch.Generator]) -> torch.Tensor:
    """Unit normals on the CPU: one generator for the batch, or one per sample (batch-independent draws)."""
    if isinstance(generators, torch.Generator):
        return torch.randn(tuple(shape), generator=generators)
    if len(generators) != shape[0]:
        raise ValueError(f"{len(generators)} generators for a batch of {shape[0]}")
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g) for g in generators])


@torch.no_grad()
def sample_trajectories(
    model: ModelFn,
    scheduler: object,
    initial: torch.Tensor,
    num_steps: int,
    eta: float,
    generators: torch.Generator | Sequence[torch.Generator],
    reference: ModelFn | None = None,
    reference_count: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Trajectories:
    """Run DDIM from `initial` (already scaled by the scheduler's init_noise_sigma, which is 1 for DDIM).

    The variance noise of every step is drawn on the CPU from `generators`, in the
    order diffusers' pipeline draws it, so the same generator gives the same images
    as `pipe(..., eta=eta, generator=generator)`. With `reference`, the first
    `reference_count` trajectories are also scored under it (the base model) to
    estimate how far the policy has drifted.
    """
    scheduler.set_timesteps(num_steps)  # type: ignore[attr-defined]
    timesteps = scheduler.timesteps.detach().cpu().long()  # type: ignore[attr-defined]
    latents = initial.float()
    device = initial.device
    n = latents.shape[0]
    k = min(reference_count, n) if reference is not None else 0
    path = [latents]
    log_probs = []
    kl = torch.zeros(k, device=device)
    for j, t in enumerate(timesteps.tolist()):
        t_batch = torch.full((n,), t, dtype=torch.long)
        output = model(latents, t_batch.to(device))
        noise = _draw(latents.shape, generators)
        result = ddim_step(scheduler, output, t_batch, latents, eta, variance_noise=noise)
        if k:
            base = ddim_step(scheduler, reference(latents[:k], t_batch[:k].to(device)), t_batch[:k], latents[:k], eta, prev_sample=result.prev_sample[:k])
            kl += step_kl(result.mean[:k], base.mean, result.std[:k])
        latents = result.prev_sample
        path.append(latents)
        log_probs.append(result.log_prob)
        if progress is not None:
            progress(j + 1, len(timesteps))
    return Trajectories(latents=torch.stack(path, dim=1), log_probs=torch.stack(log_probs, dim=1), timesteps=timesteps, kl=kl)
