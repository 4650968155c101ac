"""DDPO rewards as thin adapters over the Rank & Refine oracles (one implementation of each score).

`make_reward(spec)` accepts DDPO's names and every oracle spec:

    jpeg_compressibility     −(JPEG size in kB at quality 95): smaller files score higher
    jpeg_incompressibility   +(JPEG size in kB at quality 95)
    aesthetic:WEIGHTS,CLIP   the LAION aesthetic predictor (an MLP over CLIP ViT-L/14 image
                             embeddings) from local files; nothing is downloaded
    preference:CSV[,CLIP]    a Bradley–Terry scorer fitted to Rank & Refine pairs (see preference_reward)
    brightness, colourfulness, color:VALUE, clip:CLIP_DIR, jpeg_size[:larger]   (see lib_alignment.oracles)
    package.module:function  a callable (images, prompt) -> scores, called once per distinct prompt
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from ...oracles import Oracle, checked_scores, make_oracle

#: DDPO's reward names → the oracle that computes them.
ALIASES = {"jpeg_compressibility": "jpeg_size:smaller", "jpeg_incompressibility": "jpeg_size:larger"}
NAMES = ("jpeg_compressibility", "jpeg_incompressibility", "aesthetic:WEIGHTS,CLIP_DIR", "preference:PAIRS_CSV[,CLIP_DIR]")

_AESTHETIC_HELP = (
    "reward 'aesthetic' needs the LAION aesthetic predictor's weights and a local CLIP ViT-L/14 folder, which are "
    "never downloaded: --reward aesthetic:/path/sac+logos+ava1-l14-linearMSE.pth,/path/clip-vit-large-patch14 "
    "(the weights as .pth or .safetensors; the folder a transformers CLIPModel with model.safetensors, tokenizer "
    "files and preprocessor_config.json)"
)


class Reward:
    """Scores images with an oracle, grouping them by prompt because an oracle scores one prompt at a time."""

    def __init__(self, oracle: Oracle, name: str) -> None:
        self.oracle = oracle
        self.name = name

    def __call__(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        rewards = torch.empty(len(images), dtype=torch.float64)
        for prompt in dict.fromkeys(prompts):
            index = [i for i, p in enumerate(prompts) if p == prompt]
            scores = checked_scores(self.oracle.score([images[i] for i in index], prompt), len(index), self.name)
            rewards[index] = torch.tensor(scores, dtype=torch.float64)
        return rewards.float()


def make_reward(spec: str, device: str | torch.device = "cpu") -> Reward:
    """The reward a `--reward` value names; ValueError/FileNotFoundError say what is missing."""
    spec = str(spec).strip()
    if not spec:
        raise ValueError(f"reward: is required for DDPO ({', '.join(NAMES)}, an oracle name, or package.module:function)")
    if spec.lower() == "aesthetic" or spec.lower() == "aesthetic:":
        raise ValueError(_AESTHETIC_HELP)
    name, _, argument = spec.partition(":")
    if name.lower() == "preference":
        from .preference_reward import PreferenceReward

        csv_path, _, clip_folder = argument.partition(",")
        return Reward(PreferenceReward.fit(csv_path, clip_folder or None, device=str(device)), spec)
    try:
        oracle = make_oracle(ALIASES.get(spec.lower(), spec), device=str(device))
    except ValueError as error:
        raise ValueError(f"reward {spec!r}: {error}") from None
    return Reward(oracle, spec)
