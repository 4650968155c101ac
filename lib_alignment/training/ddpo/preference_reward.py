"""A reward learned from Rank & Refine preference pairs: a linear Bradley–Terry scorer over image features.

The pairs a user ranked (pairs.csv, read by the same loader the DPO trainer
uses) fit r(x) = w·φ(x) by maximising Σ log σ(r(x_preferred) − r(x_other)) with
a small L2 penalty, on standardised features. φ is the CLIP image embedding
when a local CLIP folder is given, else coarse colour features (a 4×4 grid of
mean RGB plus per-channel spread), which is enough for preferences about
colour and brightness but not about content. Fitting is deterministic and takes
seconds; the scorer is an Oracle, so DDPO uses it like any other reward.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

FEATURE_RESOLUTION = 64


def colour_features(pixels: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] in 0…1 → [N, 51]: a 4×4 grid of mean RGB and each channel's standard deviation."""
    grid = F.adaptive_avg_pool2d(pixels.double(), 4).flatten(1)
    spread = pixels.double().flatten(2).std(dim=2)
    return torch.cat([grid, spread], dim=1)


def _to_unit_pixels(images: Sequence[Image.Image]) -> torch.Tensor:
    arrays = [np.asarray(im.convert("RGB").resize((FEATURE_RESOLUTION, FEATURE_RESOLUTION), Image.BILINEAR), dtype=np.float64) / 255.0 for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def _to_images(pixels: torch.Tensor) -> list[Image.Image]:
    """[-1, 1] tensors → PIL (for the CLIP encoder)."""
    arrays = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a) for a in arrays]


def fit_bradley_terry(preferred: torch.Tensor, other: torch.Tensor, weights: torch.Tensor | None = None, l2: float = 1e-2) -> torch.Tensor:
    """w minimising mean(w_i · softplus(−(φ_p − φ_o)·w)) + l2/2·|w|² (features already standardised)."""
    difference = (preferred - other).double()
    weights = torch.ones(difference.shape[0], dtype=torch.float64) if weights is None else weights.double()
    w = torch.zeros(difference.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], lr=1.0, max_iter=200, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (weights * F.softplus(-(difference @ w))).sum() / weights.sum() + 0.5 * l2 * (w @ w)
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach()


class PreferenceReward:
    """Oracle: w·(φ(x) − μ)/σ, fitted to preference pairs."""

    def __init__(self, weights: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, encoder: Any, name: str, train_accuracy: float) -> None:
        self.weights, self.mean, self.std = weights, mean, std
        self.encoder = encoder
        self.name = name
        self.train_accuracy = train_accuracy

    def _features(self, images: Sequence[Image.Image]) -> torch.Tensor:
        if self.encoder is not None:
            return self.encoder.images(images).double().cpu()
        return colour_features(_to_unit_pixels(images))

    def score(self, images: Sequence[Image.Image], prompt: str = "") -> list[float]:
        if not images:
            return []
        return (((self._features(images) - self.mean) / self.std) @ self.weights).tolist()

    @classmethod
    def fit(cls, pairs: str | Path, clip_folder: str | None = None, device: str = "cpu", l2: float = 1e-2) -> PreferenceReward:
        """Fit to a pairs file or folder (Rank & Refine's pairs.csv, or any pair layout the trainer reads)."""
        from ..data import load_preference_data

        if not str(pairs).strip():
            raise ValueError("reward preference: give the pairs file, e.g. preference:/refine/export/pairs.csv")
        data = load_preference_data(pairs, method="dpo", resolution=FEATURE_RESOLUTION)
        items = [data[i] for i in range(len(data))]
        pixels = torch.stack([it["pixel_values"] for it in items])  # [P, 2, 3, R, R] in [-1, 1], preferred first
        weights = torch.tensor([float(it.get("weight", 1.0)) for it in items])
        encoder = None
        if clip_folder:
            from ...oracles.clip import ClipEncoder

            encoder = ClipEncoder(clip_folder, device)
            features = torch.cat([encoder.images(_to_images(pixels[:, k])).double().cpu() for k in (0, 1)])
        else:
            features = colour_features((pixels.flatten(0, 1) + 1) / 2)
            features = torch.cat([features[0::2], features[1::2]])
        mean, std = features.mean(dim=0), features.std(dim=0).clamp_min(1e-6)
        standard = (features - mean) / std
        n = len(items)
        w = fit_bradley_terry(standard[:n], standard[n:], weights, l2)
        accuracy = float(((standard[:n] - standard[n:]) @ w > 0).double().mean())
        return cls(w, mean, std, encoder, f"preference:{pairs}", accuracy)
