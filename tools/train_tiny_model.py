"""Train the built-in "tiny" model on the toy shapes world and write it as a diffusers folder.

Why this exists: newcomers and tests need a model that runs on a 2-core CPU yet
draws what the prompt says, so that every feature (reward models, preference
training, noise optimisation) has a visible, measurable effect. The model uses
the architecture of `lib_alignment.models.tiny` and SD1's noise schedule with
epsilon prediction, so it exercises the same code paths as a real SD1 checkpoint.

Stage 1 trains the AutoencoderKL on rendered scenes (L1 + MSE reconstruction and
a small KL term) and sets `scaling_factor` so scaled latents have unit std.
Stage 2 caches the latents of a fixed set of scenes and trains the UNet and the
text encoder (from scratch) with the epsilon-prediction loss (min-SNR weighting,
boosted at high noise levels, offset noise) and ~10 % empty captions so
classifier-free guidance works. EMA weights are saved in fp16. Every random draw comes from seeded generators, so one device, seed and
step count give the same weights.

    python tools/train_tiny_model.py --device cpu --seed 0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lib_alignment import toyworld  # noqa: E402
from lib_alignment.models.tiny import (  # noqa: E402
    RESOLUTION,
    SCHEDULER_CONFIG,
    TINY_DIR,
    assemble_pipeline,
    build_components,
)
from lib_alignment.models.tiny_tokenizer import write_tokenizer_files  # noqa: E402

CAPTION_DROPOUT = 0.1
SAMPLE_PROMPTS = (
    "a red circle on a white background",
    "a blue circle on a white background",
    "a black circle on a white background",
    "a black square on a white background",
    "a black triangle on a white background",
    "a yellow square on a black background",
    "a green triangle on a purple background",
    "a white circle on a black background",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda, cuda:1, mps)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    parser.add_argument("--steps", type=int, default=1800, help="UNet + text encoder optimisation steps")
    parser.add_argument("--batch-size", type=int, default=16, help="UNet batch size")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the UNet and text encoder")
    parser.add_argument("--vae-steps", type=int, default=700, help="autoencoder optimisation steps")
    parser.add_argument("--vae-batch-size", type=int, default=8, help="autoencoder batch size")
    parser.add_argument("--vae-crop", type=int, default=32, help="train the autoencoder on random crops of this size (0: full images)")
    parser.add_argument("--vae-lr", type=float, default=1.5e-3, help="peak learning rate of the autoencoder")
    parser.add_argument("--kl-weight", type=float, default=1e-4, help="weight of the mean per-element KL term")
    parser.add_argument("--scenes", type=int, default=800, help="distinct scenes whose latents stage 2 trains on")
    parser.add_argument(
        "--offset-noise",
        type=float,
        default=0.2,
        help="std of a per-channel constant added to the training noise, so colour follows the caption, not the seed",
    )
    parser.add_argument(
        "--shape-contrast",
        type=float,
        default=0.0,
        help="weight of a term that makes the shape word matter (see shape_contrast_loss; 0: off)",
    )
    parser.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved UNet/text-encoder weights")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default; 1 is fastest on a busy shared CPU)"
    )
    parser.add_argument("--vae-out", type=Path, default=None, help="also save the stage-1 autoencoder (fp32) in this folder")
    parser.add_argument(
        "--vae-from", type=Path, default=None, help="skip stage 1: load the autoencoder a --vae-out run saved in this folder"
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="continue stage 2 from the UNet and text encoder of this tiny diffusers folder (a second phase)",
    )
    parser.add_argument("--output", type=Path, default=TINY_DIR, help="diffusers folder to write")
    parser.add_argument("--samples", type=Path, default=None, help="also write a contact sheet PNG of sample prompts here")
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "vae_steps", "vae_batch_size", "scenes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.vae_crop and not (8 <= args.vae_crop <= RESOLUTION and args.vae_crop % 8 == 0):
        parser.error(f"--vae-crop must be 0 or a multiple of 8 between 8 and {RESOLUTION}")
    return args


def seed_everything(seed: int) -> None:
    """Seed the global generators too, for library code that draws from them."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def to_tensor(images: list[Any]) -> torch.Tensor:
    """PIL images → [n, 3, H, W] in [−1, 1], the VAE's pixel range."""
    arr = np.stack([np.asarray(img.convert("RGB"), dtype=np.float32) for img in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2) / 127.5 - 1.0


def scene_batches(rng: random.Random, batch_size: int) -> Iterator[list[toyworld.Scene]]:
    while True:
        yield [toyworld.sample_scene(rng) for _ in range(batch_size)]


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_vae(vae: torch.nn.Module, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Reconstruction (L1 + MSE) with a small KL term, on random crops of rendered scenes, then whole scenes."""
    rng = random.Random(args.seed * 1000 + 1)
    generator = torch.Generator().manual_seed(args.seed * 1000 + 2)
    vae.to(device).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, betas=(0.9, 0.99), weight_decay=0.0)
    batches = scene_batches(rng, args.vae_batch_size)
    ema_rec = None
    bar = tqdm(range(args.vae_steps), desc="stage 1: autoencoder", unit="step")
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.vae_steps, args.vae_lr, warmup=50)
        crops = args.vae_crop and args.vae_crop < RESOLUTION and step < int(0.8 * args.vae_steps)
        scenes = next(batches)
        if crops or not args.vae_crop:
            pixels = to_tensor([toyworld.render(s, RESOLUTION) for s in scenes])
        else:  # the last fifth on whole images, same pixel count, so GroupNorm sees whole-image statistics
            count = max(1, round(args.vae_batch_size * args.vae_crop**2 / RESOLUTION**2))
            pixels = to_tensor([toyworld.render(s, RESOLUTION) for s in scenes[:count]])
        if crops:
            pixels = shape_crops(pixels, scenes, args.vae_crop, generator)
        pixels = pixels.to(device)
        posterior = vae.encode(pixels).latent_dist
        eps = torch.randn(posterior.mean.shape, generator=generator).to(device)
        latents = posterior.mean + posterior.std * eps
        recon = vae.decode(latents).sample
        rec = F.l1_loss(recon, pixels) + F.mse_loss(recon, pixels)
        kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
        loss = rec + args.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        ema_rec = rec.item() if ema_rec is None else 0.98 * ema_rec + 0.02 * rec.item()
        bar.set_postfix(rec=f"{ema_rec:.4f}", kl=f"{kl.item():.2f}")
    vae.eval()
    return {"vae_reconstruction_loss": float(ema_rec or 0.0), "vae_kl": float(kl.item())}


STAGE1_RECORD = "stage1.json"


def save_stage1(vae: Any, folder: Path, stats: dict[str, float], seconds: float, args: argparse.Namespace) -> None:
    """The trained autoencoder plus how it was made, so stage 2 can be rerun alone."""
    vae.save_pretrained(folder, safe_serialization=True)
    record = {"stats": stats, "seconds": seconds, "seed": args.seed, "vae_steps": args.vae_steps, "vae_crop": args.vae_crop}
    (folder / STAGE1_RECORD).write_text(json.dumps(record, indent=1), encoding="utf-8")


def load_stage1(folder: Path) -> tuple[Any, dict[str, float], float]:
    from diffusers import AutoencoderKL

    record_path = folder / STAGE1_RECORD
    if not record_path.is_file():
        raise SystemExit(f"--vae-from {folder}: {STAGE1_RECORD} is missing; save stage 1 with --vae-out")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    vae = AutoencoderKL.from_pretrained(folder, local_files_only=True).to(torch.float32).eval()
    return vae, record["stats"], float(record["seconds"])


def shape_crops(
    pixels: torch.Tensor, scenes: list[toyworld.Scene], size: int, generator: torch.Generator
) -> torch.Tensor:
    """Crops centred near the shape three times in four (else anywhere): shapes cover little of a scene,
    and uniform crops would teach mostly background."""
    n, _, h, w = pixels.shape
    near = torch.rand(n, generator=generator) < 0.75
    jitter = (torch.rand(n, 2, generator=generator) - 0.5) * 1.5 * size
    anywhere = torch.rand(n, 2, generator=generator) * torch.tensor([w - size, h - size])
    out = []
    for i, scene in enumerate(scenes[:n]):
        if near[i]:
            x = scene.cx * w - size / 2 + float(jitter[i, 0])
            y = scene.cy * h - size / 2 + float(jitter[i, 1])
        else:
            x, y = float(anywhere[i, 0]), float(anywhere[i, 1])
        x0 = int(min(max(round(x), 0), w - size))
        y0 = int(min(max(round(y), 0), h - size))
        out.append(pixels[i, :, y0 : y0 + size, x0 : x0 + size])
    return torch.stack(out)


@torch.no_grad()
def cache_latents(
    vae: torch.nn.Module, scenes: list[toyworld.Scene], device: torch.device, batch_size: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every scene, so stage 2 never runs the encoder again."""
    means, stds = [], []
    for start in tqdm(range(0, len(scenes), batch_size), desc="caching latents", unit="batch"):
        pixels = to_tensor([toyworld.render(s, RESOLUTION) for s in scenes[start : start + batch_size]]).to(device)
        posterior = vae.encode(pixels).latent_dist
        means.append(posterior.mean.float().cpu())
        stds.append(posterior.std.float().cpu())
    return torch.cat(means), torch.cat(stds)


def latent_scale(means: torch.Tensor, stds: torch.Tensor, generator: torch.Generator) -> float:
    """1 / std of sampled latents, SD's definition of `scaling_factor`."""
    sample = means + stds * torch.randn(means.shape, generator=generator)
    return float(1.0 / sample.std())


class Captioner:
    """Caption variants per scene, with empty captions for classifier-free guidance, tokenized once."""

    def __init__(self, tokenizer: Any, seed: int) -> None:
        self.tokenizer = tokenizer
        self.rng = random.Random(seed)
        self._ids: dict[str, torch.Tensor] = {}

    def ids(self, text: str) -> torch.Tensor:
        if text not in self._ids:
            self._ids[text] = self.tokenizer(
                text, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True, return_tensors="pt"
            ).input_ids[0]
        return self._ids[text]

    def texts(self, scenes: list[toyworld.Scene]) -> list[str]:
        return ["" if self.rng.random() < CAPTION_DROPOUT else toyworld.caption_variants(s, self.rng) for s in scenes]

    def batch(self, texts: list[str]) -> torch.Tensor:
        return torch.stack([self.ids(t) for t in texts])


def other_shape_caption(text: str, shape: str, rng: torch.Generator) -> str | None:
    """The caption with its shape word replaced by another shape (None when it names no shape)."""
    words = text.split(" ")
    if shape not in words:
        return None
    others = [s for s in toyworld.SHAPES if s != shape]
    swap = others[int(torch.randint(0, len(others), (1,), generator=rng))]
    return " ".join(swap if w == shape else w for w in words)


def loss_weights(alphas_cumprod: torch.Tensor, gamma: float = 5.0, boost: float = 5.0) -> torch.Tensor:
    """Per-timestep weights of the epsilon MSE: min-SNR-γ, times up to `boost` at high noise levels.

    Plain epsilon MSE weighs the implied x0 error by SNR, nearly nothing at high
    noise levels, which is where the caption has to decide colour and shape.
    min-SNR keeps the easy low noise levels from dominating; the extra factor
    1 + 1/SNR (v-prediction's weighting), capped at `boost`, makes the
    caption-driven high noise levels count without drowning the low ones.
    """
    snr = alphas_cumprod / (1 - alphas_cumprod)
    return torch.clamp(snr, max=gamma) / snr * torch.clamp(1 + 1 / snr, max=boost)


def shape_contrast_loss(
    unet: torch.nn.Module,
    text_encoder: torch.nn.Module,
    captioner: Captioner,
    scenes: list[toyworld.Scene],
    texts: list[str],
    noisy: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    per_sample: torch.Tensor,
    generator: torch.Generator,
    sharpness: float = 100.0,
) -> torch.Tensor:
    """Make the caption's shape word matter: the true caption must predict the noise better than the same
    caption naming another shape (a two-way classifier whose logits are the denoising errors).

    Why: circles and squares differ in a few corner pixels, so the plain loss gains little from telling
    them apart, and joint training settles on one rounded blob for both words."""
    swapped, rows = [], []
    for row, (scene, text) in enumerate(zip(scenes, texts)):
        other = other_shape_caption(text, scene.shape, generator)
        if other is not None:
            swapped.append(other)
            rows.append(row)
    if not rows:
        return per_sample.new_zeros(())
    select = torch.tensor(rows, device=noisy.device)
    hidden = text_encoder(captioner.batch(swapped).to(noisy.device))[0]
    pred = unet(noisy[select], t[select], hidden).sample
    wrong = (pred.float() - noise[select]).pow(2).mean(dim=(1, 2, 3))
    return F.softplus(sharpness * (per_sample[select] - wrong)).mean()


def load_denoiser_weights(components: dict[str, Any], folder: Path) -> None:
    """UNet and text-encoder weights of an earlier run (safetensors only), for a second training phase."""
    from safetensors.torch import load_file

    for name, file in (("unet", "diffusion_pytorch_model.safetensors"), ("text_encoder", "model.safetensors")):
        path = folder / name / file
        if not path.is_file():
            raise SystemExit(f"--init-from {folder}: {path} is missing")
        module = components[name]
        state = {k: v.float() for k, v in load_file(str(path)).items()}
        if name == "text_encoder":  # stored under text_model. (see prefix_text_encoder_keys); transformers 5 has no such level
            own = module.state_dict()
            state = {k if k in own else k.removeprefix("text_model."): v for k, v in state.items()}
        missing, unexpected = module.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.endswith("position_ids")]:
            raise SystemExit(f"--init-from {folder}: {name} does not match (missing {missing[:3]}, unexpected {unexpected[:3]})")


def train_denoiser(
    components: dict[str, Any],
    scenes: list[toyworld.Scene],
    means: torch.Tensor,
    stds: torch.Tensor,
    scale: float,
    args: argparse.Namespace,
    device: torch.device,
) -> dict[str, float]:
    """UNet + text encoder, weighted epsilon prediction with offset noise; EMA weights copied in at the end."""
    unet, text_encoder = components["unet"].to(device), components["text_encoder"].to(device)
    unet.train()
    text_encoder.train()
    scheduler = components["scheduler"]
    weights = loss_weights(scheduler.alphas_cumprod).to(device)
    params = [p for m in (unet, text_encoder) for p in m.parameters()]
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01)
    generator = torch.Generator().manual_seed(args.seed * 1000 + 3)
    captioner = Captioner(components["tokenizer"], args.seed * 1000 + 4)
    ema_loss = None
    bar = tqdm(range(args.steps), desc="stage 2: unet + text encoder", unit="step")
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, warmup=100)
        index = torch.randint(0, len(scenes), (args.batch_size,), generator=generator)
        latents = (means[index] + stds[index] * torch.randn(means[index].shape, generator=generator)) * scale
        noise = torch.randn(latents.shape, generator=generator)
        noise = noise + args.offset_noise * torch.randn((*noise.shape[:2], 1, 1), generator=generator)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch_size,), generator=generator)
        batch_scenes = [scenes[i] for i in index.tolist()]
        texts = captioner.texts(batch_scenes)
        ids = captioner.batch(texts)
        latents, noise, t, ids = latents.to(device), noise.to(device), t.to(device), ids.to(device)
        noisy = scheduler.add_noise(latents, noise, t)
        hidden = text_encoder(ids)[0]
        pred = unet(noisy, t, hidden).sample
        per_sample = (pred.float() - noise).pow(2).mean(dim=(1, 2, 3))
        loss = (per_sample * weights[t]).mean()
        if args.shape_contrast > 0:
            loss = loss + args.shape_contrast * shape_contrast_loss(
                unet, text_encoder, captioner, batch_scenes, texts, noisy, noise, t, per_sample, generator
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema, params):
                e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        plain = per_sample.mean().item()
        ema_loss = plain if ema_loss is None else 0.98 * ema_loss + 0.02 * plain
        bar.set_postfix(loss=f"{ema_loss:.4f}")
    with torch.no_grad():
        for e, p in zip(ema, params):
            p.copy_(e)
    unet.eval()
    text_encoder.eval()
    return {"diffusion_loss": float(ema_loss or 0.0)}


def write_pipeline(components: dict[str, Any], folder: Path) -> None:
    """fp16 safetensors in a diffusers folder, swapped in atomically; tokenizer files in CLIP's plain format."""
    folder = folder.resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=folder.parent))
    try:
        models = ("unet", "vae", "text_encoder")
        pipe = assemble_pipeline({k: (v.to("cpu") if k in models else v) for k, v in components.items()})
        pipe.to(torch.float16)
        pipe.save_pretrained(staging, safe_serialization=True)
        prefix_text_encoder_keys(staging / "text_encoder" / "model.safetensors")
        shutil.rmtree(staging / "tokenizer", ignore_errors=True)
        write_tokenizer_files(staging / "tokenizer")
        pipe.to(torch.float32)
        old = None
        if folder.exists():
            old = folder.parent / f".{folder.name}-old-{os.getpid()}"
            os.replace(folder, old)
        staging.chmod(0o755)
        os.replace(staging, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def prefix_text_encoder_keys(path: Path) -> None:
    """Store CLIP text weights under `text_model.`, the layout every transformers version loads.

    transformers 5 writes the keys without that prefix, which transformers 4.x (the
    WebUIs' pins) silently ignores, leaving a randomly initialised text encoder.
    """
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    renamed = {(k if k.startswith("text_model.") else f"text_model.{k}"): v.contiguous() for k, v in tensors.items()}
    tmp = path.with_suffix(".tmp")
    save_file(renamed, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def earlier_phases(folder: Path) -> list[str]:
    """The training commands of the run that `--init-from` continues, read from its README (oldest first)."""
    readme = folder / "README.md"
    if not readme.is_file():
        return [f"(earlier phase: weights from {folder.name}, no README)"]
    lines = readme.read_text(encoding="utf-8").splitlines()
    return [line.strip().split(" --output ")[0] for line in lines if line.strip().startswith("python tools/train_tiny_model.py")]


def write_readme(folder: Path, args: argparse.Namespace, stats: dict[str, Any]) -> None:
    """How the shipped weights were made, so anyone can rebuild and compare."""
    counts = stats["parameters"]
    command = f"python tools/train_tiny_model.py --device {args.device} --seed {args.seed} --steps {args.steps}"
    defaults = parse_args([])
    tuned = (
        "batch_size", "lr", "vae_steps", "vae_batch_size", "vae_crop", "vae_lr", "kl_weight", "scenes", "offset_noise",
        "shape_contrast", "ema", "threads",
    )  # fmt: skip
    for name in tuned:
        if getattr(args, name) != getattr(defaults, name):
            command += f" --{name.replace('_', '-')} {getattr(args, name)}"
    earlier = earlier_phases(args.init_from) if args.init_from is not None else []
    if earlier:  # one line a phase, each continuing from the folder the one before wrote
        phases = [f"{line} --output PHASE{i + 1}" for i, line in enumerate(earlier)]
        command = "\n    ".join([*phases, f"{command} --init-from PHASE{len(earlier)}"])
    if args.vae_from is not None:
        command += (
            "\n\n(run here in parts, stage 1 with `--vae-out DIR` and stage 2 with `--vae-from DIR`;"
            "\nevery stage seeds its own generators, so one run gives the same weights)"
        )
    text = f"""# tiny: the built-in toy-shapes model

A Stable Diffusion 1 architecture model small enough for a 2-core CPU, trained from
scratch on the synthetic toy shapes world of `lib_alignment/toyworld.py` (one coloured
circle, square or triangle on a plain coloured background, 128×128 px). Prompts such
as "a red circle on a blue background" or "a black triangle on a white background".

Rebuild it with:

    {command}

| | |
| --- | --- |
| device | {stats["device"]} |
| seed | {args.seed} |
| UNet | {counts["unet"]:,} parameters, {args.steps} steps{" (last phase)" if earlier else ""}, batch {args.batch_size}, peak lr {args.lr}, EMA {args.ema} |
| text encoder | {counts["text_encoder"]:,} parameters, trained with the UNet, {int(CAPTION_DROPOUT * 100)} % empty captions |
| VAE | {counts["vae"]:,} parameters, {args.vae_steps} steps, batch {args.vae_batch_size}, {args.vae_crop or RESOLUTION} px crops, KL weight {args.kl_weight} |
| scaling_factor | {stats["scaling_factor"]:.5f} (scaled latents have unit std) |
| stage 1 time | {stats["vae_seconds"] / 60:.1f} min |
| stage 2 time | {stats["unet_seconds"] / 60:.1f} min ({args.scenes} cached scene latents) |
| final VAE reconstruction loss (L1 + MSE, pixels in [−1, 1]) | {stats["vae_reconstruction_loss"]:.4f} |
| final diffusion loss (unweighted epsilon MSE, running mean) | {stats["diffusion_loss"]:.4f} |
| size on disk | {stats["size_bytes"] / 1e6:.1f} MB (fp16 safetensors) |

Objective: epsilon prediction under SD1's scaled-linear schedule (1000 steps), the epsilon
MSE weighted by min(SNR, 5)/SNR · min(1 + 1/SNR, 5) (min-SNR, with caption-driven high
noise levels boosted), offset noise {args.offset_noise} (so background colour follows the caption,
not the seed's mean); weights are the EMA of the run, stored in fp16 and loaded in fp32.
Sample with DDIM, about 20 steps, guidance 5–7.
"""
    (folder / "README.md").write_text(text, encoding="utf-8")


@torch.no_grad()
def write_contact_sheet(folder: Path, path: Path, seeds: int = 4) -> None:
    """One row per sample prompt, one column per seed: a quick look at what the model draws."""
    from diffusers import StableDiffusionPipeline
    from PIL import Image

    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    sheet = Image.new("RGB", (RESOLUTION * seeds, RESOLUTION * len(SAMPLE_PROMPTS)), "gray")
    for row, prompt in enumerate(tqdm(SAMPLE_PROMPTS, desc="contact sheet", unit="prompt")):
        generators = [torch.Generator().manual_seed(s) for s in range(seeds)]
        images = pipe([prompt] * seeds, num_inference_steps=20, guidance_scale=6.0, generator=generators).images
        for col, image in enumerate(images):
            sheet.paste(image, (col * RESOLUTION, row * RESOLUTION))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    seed_everything(args.seed)
    components = build_components(seed=args.seed)
    counts = {k: sum(p.numel() for p in components[k].parameters()) for k in ("unet", "vae", "text_encoder")}
    print("parameters: " + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in counts.items()))

    if args.vae_from is not None:
        components["vae"], vae_stats, vae_seconds = load_stage1(args.vae_from)
        print(f"stage 1 loaded from {args.vae_from}: {vae_stats}")
    else:
        start = time.time()
        vae_stats = train_vae(components["vae"], args, device)
        vae_seconds = time.time() - start
        if args.vae_out is not None:
            save_stage1(components["vae"], args.vae_out, vae_stats, vae_seconds, args)

    start = time.time()
    scene_rng = random.Random(args.seed * 1000 + 5)
    scenes = [toyworld.sample_scene(scene_rng) for _ in range(args.scenes)]
    cache = args.vae_from / f"latents-seed{args.seed}-{args.scenes}.pt" if args.vae_from is not None else None
    if cache is not None and cache.is_file():
        stored = torch.load(cache, weights_only=True)
        means, stds = stored["means"], stored["stds"]
    else:
        means, stds = cache_latents(components["vae"], scenes, device)
        if cache is not None:
            torch.save({"means": means, "stds": stds}, cache)
    scale = latent_scale(means, stds, torch.Generator().manual_seed(args.seed * 1000 + 6))
    components["vae"].register_to_config(scaling_factor=scale)
    print(f"latent mean {means.mean():.3f}, std {means.std():.3f}; scaling_factor {scale:.5f}")
    if args.init_from is not None:
        load_denoiser_weights(components, args.init_from)
        print(f"stage 2 continues from {args.init_from}")
    unet_stats = train_denoiser(components, scenes, means, stds, scale, args, device)
    unet_seconds = time.time() - start

    write_pipeline(components, args.output)
    stats = {
        **vae_stats,
        **unet_stats,
        "parameters": counts,
        "scaling_factor": scale,
        "vae_seconds": vae_seconds,
        "unet_seconds": unet_seconds,
        "device": describe_device(device),
        "size_bytes": folder_size(args.output),
    }
    write_readme(args.output, args, stats)
    stats["size_bytes"] = folder_size(args.output)
    print(json.dumps({k: v for k, v in stats.items()}, indent=1, default=str))
    if args.samples is not None:
        write_contact_sheet(args.output, args.samples)
        print(f"contact sheet: {args.samples}")
    return 0


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return f"{device.type}, {torch.get_num_threads()} threads (torch {torch.__version__})"


if __name__ == "__main__":
    raise SystemExit(main())
