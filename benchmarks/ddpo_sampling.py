"""Cost of recording DDPO trajectories: sampling with log-probabilities ÷ plain sampling of the same images.

Plain: the diffusers pipeline with a DDIM scheduler, `eta`, guidance and the
same generator, then the VAE decode. DDPO: `DDPOTrainer.sample` (text encoding,
the guided UNet through the training Denoiser, `ddim_step` with its log-density,
every latent kept, the decode), with `--kl-samples` trajectories also scored
under the base model when asked. Both run on the same LoRA-adapted model, from
the same initial noise; the script checks they give the same images, times
them alternately and compares medians.

    python benchmarks/ddpo_sampling.py --model tiny --resolution 128 --batch 8 --steps 20
    python benchmarks/ddpo_sampling.py --model sd15-random --resolution 256 --batch 2 --steps 10 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ddpo_throughput import load_pipe

from lib_alignment.training import TrainConfig
from lib_alignment.training.ddpo import DDPOTrainer


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny, tiny-random, sd15-random, or a model source")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kl-samples", type=int, default=0, help="trajectories also scored under the base model")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from diffusers import DDIMScheduler

    with tempfile.TemporaryDirectory() as folder:
        config = TrainConfig(
            method="ddpo", model=args.model, output_dir=folder, name="bench", reward="jpeg_compressibility",
            prompts=["a red circle"], resolution=args.resolution, sample_steps=args.steps, sample_cfg_scale=5.0,
            samples_per_epoch=args.batch, rollout_batch_size=args.batch, batch_size=args.batch,
            preview=False, progress_bar=False, tensorboard=False,
        )
        trainer = DDPOTrainer(config, pipe=load_pipe(args.model))
        trainer.setup()
        pipe = trainer.pipe
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        pipe.unet.eval()
        device = trainer.accelerator.device
        prompts = [f"a {c} circle on a white background" for c in ("red", "blue", "green", "yellow")] * args.batch
        prompts = prompts[: args.batch]
        initial = torch.randn((args.batch, *trainer.latent_shape()), generator=torch.Generator().manual_seed(0))

        def plain() -> Any:
            latents = pipe(prompt=prompts, num_inference_steps=args.steps, guidance_scale=5.0, eta=config.eta,
                           height=args.resolution, width=args.resolution, latents=initial.to(device),
                           generator=torch.Generator().manual_seed(1), output_type="latent").images
            return latents, trainer.decoder.decode(latents)

        def ddpo() -> Any:
            trajectories, images, _, _ = trainer.sample(prompts, initial, torch.Generator().manual_seed(1), reference_count=args.kl_samples)
            return trajectories.latents[:, -1], images

        reference, _ = plain()
        ours, _ = ddpo()
        difference = float((reference.float().cpu() - ours.float().cpu()).abs().max())
        times: dict[str, list[float]] = {"plain": [], "ddpo": []}
        for _ in range(args.repeats):
            for name, fn in (("plain", plain), ("ddpo", ddpo)):
                _sync()
                start = time.perf_counter()
                fn()
                _sync()
                times[name].append(time.perf_counter() - start)
        plain_s, ddpo_s = statistics.median(times["plain"]), statistics.median(times["ddpo"])
        print(json.dumps({
            "model": args.model, "device": str(device), "resolution": args.resolution, "batch": args.batch, "steps": args.steps,
            "kl_samples": args.kl_samples, "plain_s": round(plain_s, 4), "ddpo_s": round(ddpo_s, 4),
            "ratio": round(ddpo_s / plain_s, 3), "max_latent_difference": difference,
        }))


if __name__ == "__main__":
    main()
