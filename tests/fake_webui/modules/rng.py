"""Fake of modules.rng.ImageRNG: one CPU generator per seed; next() draws a [batch, C, H, W] tensor."""

import torch


class ImageRNG:
    def __init__(self, shape, seeds, subseeds=None, subseed_strength=0.0, seed_resize_from_h=0, seed_resize_from_w=0):
        self.shape = tuple(shape)
        self.seeds = seeds
        self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        self.draws = 0

    def next(self):
        self.draws += 1
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.generators])
