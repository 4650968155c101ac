"""Rank & Refine against today's inference-time search over the initial noise, at equal numbers of rendered images.

Methods (every session starts from the same seed noise x0; scores are the oracle's, higher is better):

  rr        Rank & Refine as the tab runs it: ZO-RankSGD with line search, m = 6, the tab's μ, lr and step
            schedule; the oracle ranks every round the way a person would (it sees only the order).
            Result: the current image.
  rr+auto   the same with "Auto rounds: 1": every other round is ranked by a scorer that is not the person's
            taste (the oracle's score plus Gaussian noise of one standard deviation of that round's scores,
            rank correlation ≈ 0.7), so a person ranks half the rounds.
  paper     the ZO-RankSGD authors' settings: μ = 0.1, lr = 2, constant step, m = 4 (their gradio port).
  zo        Ma et al. 2025's zero-order search: K = 6 neighbours of a pivot (pivot + λ·ξ, λ = 0.5, rescaled to
            the Gaussian shell), scored by the verifier (the oracle's scores); the pivot moves to the best
            neighbour when it beats the pivot. Result: the best image seen.
  best-of-N N fresh random seeds, the best by the verifier.

Settings:
  latent  an SD1.5-sized latent (4×64×64) through a fixed smooth proxy decoder instead of a diffusion model:
          8×8 average pooling (×8, back to unit variance), A1111's linear SD1.5 latent-to-RGB approximation,
          bilinear up to 32×32 px. Free to render, so every method and oracle runs 12+ sessions.
  tiny    the shipped tiny model at 64 px (latent 4×8×8), DDIM 4 steps, no guidance, its UNet batched with the
          prompt encoded once; final latents are turned into pixels by a linear latent-to-RGB map fitted (least
          squares) to 64 of its own VAE decodes, as A1111's "Approx cheap" preview is, so no VAE runs per image.

Oracles (kinds): colour:red (pixel statistic, the built-in `color` oracle), layout (a hidden target per session:
where the shape sits and how big it is; the shape is the soft mask of pixels far from the border colour, the
score −(distance of its centroid to the target + |area − target area|)), and a reward loaded from
module:function (`refine_search:mirror_symmetry`, left-right symmetry, through `make_oracle`).

Judgements a person makes: rr and paper one ranking per round, rr+auto half of them; zo and best-of-N need a
score for every image (a verifier; done by a person that is one look and comparison per image).

    python benchmarks/refine_search.py                                   # both settings (see --help)
    python benchmarks/refine_search.py --settings latent --sessions 24
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib_alignment.generation import noise_from_seed  # noqa: E402
from lib_alignment.oracles import make_oracle, order_from_scores  # noqa: E402
from lib_alignment.zo import RankSGD  # noqa: E402
from lib_alignment.zo.defaults import DEFAULT_LR, DEFAULT_MU, DEFAULT_SHRINK  # noqa: E402

METHODS = ("rr", "rr+auto", "paper", "zo", "best-of-N")
BEST_OF_N_SEED_BASE = 10_000
#: A1111's linear SD1.5 latent-to-RGB approximation (its "Approx cheap" live preview).
SD15_TO_RGB = torch.tensor(
    [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]
)
Render = Callable[[torch.Tensor], torch.Tensor]  # noise [n, C, H, W] → RGB [n, 3, h, w] in 0…1


# ----- oracles on RGB tensors -----------------------------------------------------------------


def to_pil(rgb: torch.Tensor) -> list[Image.Image]:
    arrays = (rgb.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in arrays]


def mirror_symmetry(images: Sequence[Image.Image], prompt: str) -> list[float]:
    """A `module:function` reward: how left-right symmetric an image is (−mean |image − mirror| in 0…1)."""
    out = []
    for image in images:
        a = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
        out.append(-float(np.abs(a - a[:, ::-1]).mean()))
    return out


class Layout:
    """Hidden target: where the shape sits (centroid) and how big it is (area share)."""

    name = "layout"

    def __init__(self, seed: int) -> None:
        g = np.random.default_rng(seed)
        self.center = g.uniform(0.25, 0.75, size=2)
        self.area = g.uniform(0.08, 0.3)

    def score_rgb(self, rgb: torch.Tensor) -> list[float]:
        n, _, h, w = rgb.shape
        border = torch.cat([rgb[:, :, 0], rgb[:, :, -1], rgb[:, :, :, 0], rgb[:, :, :, -1]], dim=2)
        background = border.median(dim=2).values[:, :, None, None]
        distance = (rgb - background).norm(dim=1)
        spread = distance.flatten(1).std(dim=1).clamp_min(1e-6)[:, None, None]
        mask = torch.sigmoid((distance - distance.flatten(1).mean(dim=1)[:, None, None]) / (0.25 * spread))
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
        total = mask.sum(dim=(1, 2)).clamp_min(1e-6)
        cy = (mask.sum(dim=2) * ys).sum(dim=1) / total
        cx = (mask.sum(dim=1) * xs).sum(dim=1) / total
        area = mask.mean(dim=(1, 2))
        off = torch.sqrt((cx - self.center[0]) ** 2 + (cy - self.center[1]) ** 2)
        return (-(off + (area - self.area).abs())).tolist()


class PilOracle:
    """A project oracle (`make_oracle` spec) scored on the RGB tensors turned into images."""

    def __init__(self, spec: str) -> None:
        self.oracle = make_oracle(spec)
        self.name = spec

    def score_rgb(self, rgb: torch.Tensor) -> list[float]:
        return [float(s) for s in self.oracle.score(to_pil(rgb), "")]


def make_oracles(kind: str, seed: int) -> object:
    if kind == "layout":
        return Layout(seed + 7_000)
    if kind == "colour":
        return PilOracle("color:#dc1e1e")
    if kind == "reward":
        return PilOracle("refine_search:mirror_symmetry")
    raise ValueError(f"unknown oracle kind {kind!r}")


# ----- one session of each method ----------------------------------------------------------------


@dataclass
class Trace:
    """The method's result score after each batch of renders: (images rendered so far, score, person's judgements)."""

    points: list[tuple[int, float, int]] = field(default_factory=list)

    def at(self, budget: int) -> tuple[float, int]:
        within = [(s, j) for n, s, j in self.points if n <= budget]
        return within[-1] if within else (float("nan"), 0)


class Scored:
    """Renders and scores points, each distinct point once (as a session re-shows cached images)."""

    def __init__(self, render: Render, oracle: object) -> None:
        self.render, self.oracle = render, oracle
        self.cache: dict[bytes, float] = {}
        self.rendered = 0

    def scores(self, points: torch.Tensor) -> list[float]:
        keys = [p.numpy().tobytes() for p in points]
        new = [i for i, k in enumerate(keys) if k not in self.cache]
        fresh = list(dict.fromkeys(keys[i] for i in new))
        if fresh:
            index = {k: i for i, k in enumerate(keys)}
            batch = torch.stack([points[index[k]] for k in fresh])
            for k, s in zip(fresh, self.oracle.score_rgb(self.render(batch))):
                self.cache[k] = s
            self.rendered += len(fresh)
        return [self.cache[k] for k in keys]


def run_rank_refine(
    x0: torch.Tensor, scored: Scored, budget: int, seed: int, m: int, mu: float, lr: float, shrink: float, auto: int
) -> Trace:
    opt = RankSGD(x0, m=m, mu=mu, lr=lr, shrink=shrink, line_search=True, project_to_shell=True, seed=seed, undo_depth=0)
    trace, judgements, rounds = Trace(), 0, 0
    current = scored.scores(opt.x[None])[0]
    trace.points.append((scored.rendered, current, 0))
    noise = torch.Generator().manual_seed(seed + 99)
    while True:
        candidates = opt.ask()
        unseen = sum(c.numpy().tobytes() not in scored.cache for c in candidates)
        if scored.rendered + unseen > budget:
            return trace
        values = scored.scores(candidates)
        human = auto == 0 or rounds % (auto + 1) == 0
        if human:
            judgements += 1
            opt.tell(order_from_scores(values))
        else:  # a scorer that is not the person's taste ranks this round
            spread = float(np.std(values)) or 1.0
            noisy = [v + spread * float(torch.randn((), generator=noise)) for v in values]
            opt.tell(order_from_scores(noisy))
        rounds += 1
        trace.points.append((scored.rendered, scored.scores(opt.x[None])[0], judgements))


def run_zero_order(x0: torch.Tensor, scored: Scored, budget: int, seed: int, k: int = 6, radius: float = 0.5) -> Trace:
    g = torch.Generator().manual_seed(seed + 31)
    pivot = x0
    pivot_score = best = scored.scores(pivot[None])[0]
    trace = Trace([(scored.rendered, best, 0)])
    d = math.sqrt(x0.numel())
    while scored.rendered + k <= budget:
        moved = pivot[None] + radius * torch.randn((k, *x0.shape), generator=g)
        neighbours = moved * (d / moved.flatten(1).norm(dim=1)).view(-1, *[1] * x0.dim())
        values = scored.scores(neighbours)
        i = int(np.argmax(values))
        if values[i] > pivot_score:
            pivot, pivot_score = neighbours[i], values[i]
        best = max(best, values[i])
        trace.points.append((scored.rendered, best, scored.rendered))
    return trace


def run_best_of_n(shape: Sequence[int], scored: Scored, budget: int, seed: int, batch: int = 8) -> Trace:
    trace, best = Trace(), -float("inf")
    for start in range(0, budget, batch):
        seeds = range(start, min(budget, start + batch))
        noise = torch.stack([noise_from_seed(BEST_OF_N_SEED_BASE + seed * 1000 + i, shape) for i in seeds])
        best = max(best, max(scored.scores(noise)))
        trace.points.append((scored.rendered, best, scored.rendered))
    return trace


def run_session(
    render: Render, shape: Sequence[int], kind: str, seed: int, budget: int, methods: Sequence[str] = METHODS
) -> dict[str, Trace]:
    x0 = noise_from_seed(seed, shape)
    oracle = make_oracles(kind, seed)
    runs: dict[str, Callable[[], Trace]] = {
        "rr": lambda: run_rank_refine(x0, Scored(render, oracle), budget, seed, 6, DEFAULT_MU, DEFAULT_LR, DEFAULT_SHRINK, 0),
        "rr+auto": lambda: run_rank_refine(x0, Scored(render, oracle), budget, seed, 6, DEFAULT_MU, DEFAULT_LR, DEFAULT_SHRINK, 1),
        "paper": lambda: run_rank_refine(x0, Scored(render, oracle), budget, seed, 4, 0.1, 2.0, 1.0, 0),
        "zo": lambda: run_zero_order(x0, Scored(render, oracle), budget, seed),
        "best-of-N": lambda: run_best_of_n(shape, Scored(render, oracle), budget, seed),
    }
    return {m: runs[m]() for m in methods}


class RenderCache:
    """One session seed's renders shared by its methods and oracles (x0, best-of-N's seeds): the model runs
    once per distinct noise; each method still counts every image it needs as rendered."""

    def __init__(self, render: Render) -> None:
        self.inner = render
        self.seen: dict[bytes, torch.Tensor] = {}
        self.model_images = 0

    def __call__(self, noise: torch.Tensor) -> torch.Tensor:
        keys = [p.numpy().tobytes() for p in noise]
        missing = [i for i, k in enumerate(keys) if k not in self.seen]
        if missing:
            for i, rgb in zip(missing, self.inner(noise[missing])):
                self.seen[keys[i]] = rgb
            self.model_images += len(missing)
        return torch.stack([self.seen[k] for k in keys])


# ----- renderers ---------------------------------------------------------------------------------


def latent_proxy(noise: torch.Tensor) -> torch.Tensor:
    pooled = torch.nn.functional.avg_pool2d(noise.float(), 8) * 8
    rgb = torch.einsum("nchw,cr->nrhw", pooled, SD15_TO_RGB)
    rgb = torch.nn.functional.interpolate(rgb, size=(32, 32), mode="bilinear", align_corners=False)
    return ((rgb + 1) / 2).clamp(0, 1)


def tiny_renderer(size: int, steps: int, prompt: str) -> tuple[Render, tuple[int, int, int]]:
    """The tiny model's UNet under DDIM, prompt encoded once, pixels from a fitted linear latent-to-RGB map."""
    from diffusers import DDIMScheduler

    from lib_alignment.models import load_pipeline

    pipe = load_pipeline("tiny", device="cpu")
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    with torch.inference_mode():
        ids = pipe.tokenizer([prompt], padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
        embedding = pipe.text_encoder(ids)[0]
    factor = pipe.vae_scale_factor
    shape = (pipe.unet.config.in_channels, size // factor, size // factor)

    def sample(noise: torch.Tensor) -> torch.Tensor:
        scheduler.set_timesteps(steps)
        latents = noise * scheduler.init_noise_sigma
        with torch.inference_mode():
            for t in scheduler.timesteps:
                eps = pipe.unet(latents, t, encoder_hidden_states=embedding.expand(len(noise), -1, -1)).sample
                latents = scheduler.step(eps, t, latents).prev_sample
        return latents

    # Fit latent → RGB (per latent pixel, the mean colour of its 8×8 block) on 64 of the model's own decodes.
    fit_noise = torch.stack([noise_from_seed(90_000 + i, shape) for i in range(64)])
    latents = sample(fit_noise)
    with torch.inference_mode():
        decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    target = torch.nn.functional.avg_pool2d((decoded + 1) / 2, factor)
    design = torch.cat([latents, torch.ones_like(latents[:, :1])], dim=1).permute(0, 2, 3, 1).reshape(-1, shape[0] + 1)
    weights = torch.linalg.lstsq(design, target.permute(0, 2, 3, 1).reshape(-1, 3)).solution
    fitted = (design @ weights).reshape(target.permute(0, 2, 3, 1).shape).permute(0, 3, 1, 2)
    r2 = 1 - ((fitted - target) ** 2).sum() / ((target - target.mean(dim=(0, 2, 3), keepdim=True)) ** 2).sum()
    print(f"tiny: linear latent-to-RGB fit on 64 decodes, R² = {float(r2):.3f}", flush=True)

    def render(noise: torch.Tensor) -> torch.Tensor:
        out = []
        for start in range(0, len(noise), 64):
            lat = sample(noise[start : start + 64])
            design = torch.cat([lat, torch.ones_like(lat[:, :1])], dim=1).permute(0, 2, 3, 1)
            rgb = (design @ weights).permute(0, 3, 1, 2)
            out.append(torch.nn.functional.interpolate(rgb, scale_factor=4, mode="bilinear", align_corners=False))
        return torch.cat(out).clamp(0, 1)

    return render, shape


# ----- report ------------------------------------------------------------------------------------


def report(label: str, kind: str, sessions: list[dict[str, Trace]], budgets: Sequence[int], methods: Sequence[str]) -> list[str]:
    rows = []
    for budget in budgets:
        finals = {m: [s[m].at(budget)[0] for s in sessions] for m in methods}
        judgements = {m: statistics.median(s[m].at(budget)[1] for s in sessions) for m in methods}
        wins = {m: 0.0 for m in methods}
        for i in range(len(sessions)):
            top = max(finals[m][i] for m in methods)
            winners = [m for m in methods if finals[m][i] == top]
            for m in winners:
                wins[m] += 1 / len(winners)
        n = len(sessions)
        cells = " | ".join(
            f"{statistics.median(finals[m]):.4f} ({100 * wins[m] / n:.0f}%, {judgements[m]:.0f})" if m in methods else "–"
            for m in METHODS
        )
        ahead = all(statistics.median(finals["rr"]) > statistics.median(finals[o]) for o in ("zo", "best-of-N") if o in methods)
        rows.append(f"| {label} | {kind} | {budget} | {cells} | {'yes' if ahead else 'no'} |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="*", default=["latent", "tiny"], choices=["latent", "tiny"])
    parser.add_argument("--sessions", type=int, default=12, help="sessions (seeds) per setting and oracle")
    parser.add_argument("--tiny-sessions", type=int, default=None, help="sessions on the tiny model (default: --sessions)")
    parser.add_argument("--budgets", type=int, nargs="*", default=[40, 80, 160])
    parser.add_argument("--oracles", nargs="*", default=["layout", "colour", "reward"])
    parser.add_argument("--tiny-oracles", nargs="*", default=None, help="oracles on the tiny model (default: --oracles)")
    parser.add_argument("--tiny-methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--tiny-size", type=int, default=64)
    parser.add_argument("--tiny-steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    budget = max(args.budgets)
    started = time.time()
    header = ["| setting | oracle | images | " + " | ".join(METHODS) + " | rr ahead of zo and best-of-N |",
              "|---|---|---|" + "---|" * len(METHODS) + "---|"]
    rows: list[str] = []
    plans: list[tuple[str, Render, tuple[int, ...], list[str], int, Sequence[str]]] = []
    if "latent" in args.settings:
        plans.append(("latent 4×64×64 (proxy decoder)", latent_proxy, (4, 64, 64), args.oracles, args.sessions, METHODS))
    if "tiny" in args.settings:
        render, shape = tiny_renderer(args.tiny_size, args.tiny_steps, "a red circle on a white background")
        plans.append((f"tiny {args.tiny_size}px DDIM {args.tiny_steps}", render, shape,
                      args.tiny_oracles or args.oracles, args.tiny_sessions or args.sessions, args.tiny_methods))
    for label, render, shape, oracles, sessions, methods in plans:
        runs: dict[str, list[dict[str, Trace]]] = {kind: [] for kind in oracles}
        images = 0
        for seed in range(sessions):
            cache = RenderCache(render)
            for kind in oracles:
                runs[kind].append(run_session(cache, shape, kind, seed, budget, methods))
            cache.seen.clear()
            images += cache.model_images
            print(f"{label}: session {seed + 1}/{sessions}, {images} images through the model ({time.time() - started:.0f} s)", flush=True)
        for kind in oracles:
            done = report(label, kind, runs[kind], args.budgets, methods)
            print("\n".join(done), flush=True)
            rows += done
    print("\nmedian final score (share of sessions best, median judgements a person makes):\n")
    print("\n".join(header + rows))
    print(f"\ntotal {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
