"""A real tiny LoRA for the blind A/B tests (API and browser)."""

from __future__ import annotations

from pathlib import Path


def train_tiny_lora(folder: Path, name: str = "ab") -> Path:
    """A real 2-step DPO LoRA of tiny-random (with its card NAME.json) in `folder`."""
    import torch

    from lib_alignment.training import TrainConfig, Trainer
    from lib_alignment.training.data.synthetic import make_toy_pairs

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = make_toy_pairs(folder.parent / f"{name}-data", 4, resolution=32, seed=0)
        Trainer(TrainConfig(method="dpo", model="tiny-random", data=str(data), output_dir=str(folder), name=name,
                            resolution=32, batch_size=1, max_train_steps=2, learning_rate=5e-2, checkpoint_every=0,
                            preview=False, progress_bar=False, tensorboard=False, save_precision="fp32")).train()
    finally:
        torch.set_num_threads(before)
    return folder / f"{name}.safetensors"
