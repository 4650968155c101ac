"""Held-out implicit-reward accuracy: does the trained model rank preferred images first?

For a pair (x_w, x_l), the implicit reward margin of a diffusion model against
its reference is E_{t,ε}[(e_ref(x_w) − e_θ(x_w)) − (e_ref(x_l) − e_θ(x_l))],
the quantity DPO pushes above zero and KTO's rewards rank. It is estimated
with `draws` shared (t, ε) draws per pair from a fixed seed, t stratified over
the schedule; accuracy is the
share of pairs with a positive margin (0.5 for a model equal to its reference).
"""

from __future__ import annotations

from typing import Any

import torch

from .methods import denoising_errors


@torch.no_grad()
def pair_margins(trainer: Any, pairs: Any, draws: int = 8, seed: int = 1234, batch_size: int = 8) -> torch.Tensor:
    """Per-pair implicit reward margins (positive: the preferred image is preferred) of a set-up Trainer."""
    trainer.setup()
    generator = torch.Generator().manual_seed(seed)
    device = trainer.accelerator.device
    steps = trainer.noise_scheduler.config.num_train_timesteps
    unet_modes = trainer.pipe.unet.training
    trainer.pipe.unet.eval()
    margins = []
    try:
        for start in range(0, len(pairs), batch_size):
            items = [pairs[i] for i in range(start, min(start + batch_size, len(pairs)))]
            pixels = torch.cat([torch.stack([it["pixel_values"][0] for it in items]), torch.stack([it["pixel_values"][1] for it in items])])
            latents = trainer.encode_images(pixels.to(device), sample=False)
            captions = [str(it["caption"]) for it in items]
            b = len(items)
            total = torch.zeros(b)
            for k in range(draws):  # stratified timesteps: draw k falls in the k-th of `draws` equal slices
                offsets = torch.rand((b,), generator=generator)
                timesteps = ((k + offsets) * steps / draws).long().clamp(max=steps - 1).repeat(2).to(device)
                noise = torch.randn((b, *latents.shape[1:]), generator=generator).repeat(2, 1, 1, 1).to(device)
                noisy, target = trainer.noisy_and_target(latents, noise, timesteps)
                policy = denoising_errors(trainer.predict(noisy, timesteps, captions, 2, reference=False), target)
                reference = denoising_errors(trainer.predict(noisy, timesteps, captions, 2, reference=True), target)
                gain = (reference - policy).cpu()
                total += gain[:b] - gain[b:]
            margins.append(total / draws)
    finally:
        trainer.pipe.unet.train(unet_modes)
    return torch.cat(margins)


def implicit_reward_accuracy(trainer: Any, pairs: Any, draws: int = 8, seed: int = 1234) -> float:
    """Share of held-out pairs whose preferred image has the higher implicit reward (ties count ½)."""
    margins = pair_margins(trainer, pairs, draws=draws, seed=seed)
    return float(((margins > 0).float() + 0.5 * (margins == 0).float()).mean())
