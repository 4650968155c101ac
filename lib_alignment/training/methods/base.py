"""The `Method` interface: a training objective computed from denoising errors.

The trainer runs the models; a method only turns per-image errors of the
trained model (and of the reference model, when it needs one) into a loss and
a few metrics. Keeping the objectives this small makes them testable on fixed
tensors and lets new ones (DDPO later) plug into the same loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

ReduceMean = Callable[[torch.Tensor], torch.Tensor]


def denoising_errors(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean of squared differences over all but the batch dimension, in fp32.

    This is the "‖ε − ε_θ(x_t, t)‖²" of the papers as both reference codes compute
    it (an element mean, not a sum); the default β values assume it.
    """
    squared = F.mse_loss(prediction.float(), target.float(), reduction="none")
    return squared.mean(dim=tuple(range(1, squared.ndim)))


@dataclass
class Errors:
    """Denoising errors, shape [N]. For pair methods N = 2B: preferred images first, then the others."""

    policy: torch.Tensor
    reference: torch.Tensor | None = None


@dataclass
class MethodOutput:
    loss: torch.Tensor
    #: Scalars for the logs (detached tensors or floats); names must be in `Method.metric_names`.
    metrics: dict[str, Any] = field(default_factory=dict)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of `values`, weighted by the per-pair weights of the data (ties kept at reduced weight)."""
    if weights is None:
        return values.mean()
    weights = weights.to(values)
    return (values * weights).sum() / weights.sum().clamp_min(1e-12)


def local_mean(value: torch.Tensor) -> torch.Tensor:
    return value


def spread(values: torch.Tensor) -> torch.Tensor:
    """Standard deviation of per-item values (0 for a single item): how much pairs disagree."""
    values = values.detach().float()
    return values.std(unbiased=False) if values.numel() > 1 else torch.zeros((), device=values.device)


def relative_drift(policy: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Policy-vs-reference error gap mean|e_θ − e_ref| / mean e_ref: how far the LoRA has moved the base model.

    0 at initialisation; 0.1 means the trained model's denoising errors differ from
    the base model's by a tenth of their size on the training images.
    """
    policy, reference = policy.detach().float(), reference.detach().float()
    return (policy - reference).abs().mean() / reference.mean().clamp_min(1e-12)


class Method(ABC):
    """A preference objective. Subclasses set the class attributes and implement `loss`."""

    #: Short name: the --method value.
    name: str = ""
    #: "pairs" (items with pixel_values [2, 3, R, R], preferred first) or "labeled" (one image and a label).
    data_kind: str = "pairs"
    #: Whether `loss` needs the reference model's errors (the trainer skips that forward pass otherwise).
    needs_reference: bool = True
    #: Pair methods: the same noise and timestep for both images of a pair.
    share_noise_in_pair: bool = True
    #: Metric names in log order; every one appears in the CSV header.
    metric_names: tuple[str, ...] = ()

    def __init__(self, beta: float, **options: Any) -> None:
        self.beta = float(beta)
        self.options = options

    @abstractmethod
    def loss(self, errors: Errors, batch: dict[str, Any], reduce_mean: ReduceMean = local_mean) -> MethodOutput:
        """Loss and metrics of one micro-batch. `reduce_mean` averages a tensor across processes."""

    @property
    def margin_scale(self) -> float:
        """Factor from a difference of implicit rewards g = e_ref − e_θ to this method's logit units (held-out margins)."""
        return self.beta

    def hyperparameters(self) -> dict[str, Any]:
        """What to record in the LoRA's metadata."""
        return {"method": self.name, "beta": self.beta, **self.options}


def fit_plus_odds_output(
    errors_w: torch.Tensor,
    errors_l: torch.Tensor,
    log_odds: torch.Tensor,
    log_ratio: torch.Tensor,
    beta: float,
    weights: torch.Tensor | None,
    margin_scale: float,
    term_name: str,
) -> MethodOutput:
    """Reference-free objectives (MaPO, ORPO): fit the preferred image, minus β · its log-odds term.

    loss = mean(e_w) − β · mean(log_ratio); the metrics read the margin as log_odds · margin_scale."""
    loss = weighted_mean(errors_w, weights) - beta * weighted_mean(log_ratio, weights)
    with torch.no_grad():
        metrics = {
            "reward_accuracy": ((log_odds > 0).float() + 0.5 * (log_odds == 0).float()).mean(),
            "reward_margin": (log_odds * margin_scale).mean(),
            "reward_margin_std": spread(log_odds * margin_scale),
            term_name: -log_ratio.mean(),
            "model_error_preferred": errors_w.mean(),
            "model_error_other": errors_l.mean(),
        }
    return MethodOutput(loss=loss, metrics=metrics)
