"""`DDPOTrainer`: the shared Trainer with DDPO's data flow (sample, reward, then PPO on the recorded steps).

An epoch samples `samples_per_epoch` trajectories with the current LoRA (DDIM,
η > 0, guidance as in generation), scores the final images with the reward,
turns rewards into advantages, and then trains `inner_epochs` passes over the
recorded steps. A micro-batch is `batch_size` trajectories at one of their
(shuffled) timesteps; an optimizer step accumulates
`gradient_accumulation_steps` batches × the trained timesteps, as in the
reference code. Everything else — accelerate, LoRA, the optimizer and schedule,
the NaN guard, checkpoints, events, metrics, previews and the kohya export — is
the base Trainer's. The current epoch's trajectories travel in each process's
checkpoint file, so a run stopped mid-epoch resumes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch

from .. import checkpoint as ckpt
from ..config import ConfigError, TrainConfig
from ..denoiser import SDXL, sdxl_time_ids
from ..methods import Errors, MethodOutput
from ..trainer import Trainer
from .prompts import PromptSource
from .sampler_logprob import Trajectories, check_step_noise, ddim_step, ddpo_scheduler, guided, sample_trajectories
from .stat_tracker import PerPromptStatTracker, compute_advantages

RewardFn = Callable[[Sequence[Any], Sequence[str]], torch.Tensor]

#: Epoch-level values repeated on every step row of that epoch.
EPOCH_METRICS = ("reward_mean", "reward_std", "kl_to_base")


@dataclass
class Rollout:
    """One epoch's trajectories on this process, with the order they are trained in and a cursor."""

    latents: torch.Tensor  # [N, T + 1, C, h, w]
    log_probs: torch.Tensor  # [N, T]
    timesteps: torch.Tensor  # [T]
    advantages: torch.Tensor  # [N]
    hidden: torch.Tensor  # [N, L, D] prompt embeddings
    pooled: torch.Tensor | None  # [N, P] (SDXL)
    prompts: list[str]
    rewards: torch.Tensor  # [N]
    sample_order: torch.Tensor  # [inner_epochs, N]
    step_order: torch.Tensor  # [inner_epochs, N, T]: per trajectory, its timestep indices in training order
    metrics: dict[str, float] = field(default_factory=dict)
    cursor: int = 0
    #: The options that fix how the cursor maps to micro-batches (checked when a run resumes mid-epoch).
    layout: dict[str, float] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        state = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in state.items()}

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> Rollout:
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) and k not in ("timesteps", "sample_order", "step_order") else v) for k, v in state.items()}
        return cls(**moved)


class _MicroBatches:
    """The iterable the base loop reads micro-batches from: the current rollout, in training order."""

    def __init__(self, trainer: DDPOTrainer) -> None:
        self.trainer = trainer

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            yield self.trainer.next_micro_batch()


class DDPOTrainer(Trainer):
    """Train a LoRA with DDPO. `prompts` (a PromptSource) and `reward` (images, prompts -> tensor) may be passed in."""

    def __init__(
        self,
        config: TrainConfig,
        pipe: Any = None,
        prompts: PromptSource | None = None,
        reward: RewardFn | None = None,
        event_stream: TextIO | None = None,
        listeners: Sequence[Callable[[dict[str, Any]], None]] = (),
    ) -> None:
        if config.method != "ddpo":
            raise ConfigError(f"DDPOTrainer trains method 'ddpo', not {config.method!r}")
        if config.train_text_encoder:
            raise ConfigError("invalid training options:\n  train_text_encoder: DDPO trains the UNet's LoRA only")
        if reward is None and not config.reward.strip():
            raise ConfigError("invalid training options:\n  reward: is required for DDPO")
        source = prompts if prompts is not None else PromptSource(config.prompts)
        super().__init__(config, pipe=pipe, dataset=source, event_stream=event_stream, listeners=listeners)
        self.prompt_source = source
        self.reward_fn = reward
        self.tracker = PerPromptStatTracker(config.stat_buffer_size, config.stat_min_count)
        self.rollout: Rollout | None = None
        self._plain_forward = False

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        if self._is_setup:
            return
        cfg = self.config
        self.rollout = None
        super().setup()  # (restores a checkpoint, which may bring back the current rollout)
        from ...generation import DiffusersBackend

        self.ddim = ddpo_scheduler(self.pipe.scheduler.config)
        check_step_noise(self.ddim, cfg.sample_steps)
        self.trained_timesteps = max(1, int(cfg.sample_steps * cfg.timestep_fraction))
        self.decoder = DiffusersBackend(self.pipe, model_name=self.model_name)
        self.do_cfg = cfg.sample_cfg_scale > 1.0
        self.uncond = self._uncond_embeddings()
        if self.reward_fn is None:
            from .rewards import make_reward

            self._status(f"loading reward {cfg.reward}")
            self.reward_fn = make_reward(cfg.reward, device=self.accelerator.device)
        self.loader = _MicroBatches(self)
        self._setup_validation()

    def _setup_validation(self) -> None:
        """Held-out prompts (out of the training draws), scored with the reward every N steps; the best step is NAME-best."""
        cfg = self.config
        if cfg.validation_split <= 0:
            return
        from .held_out import RewardValidator, choose_held_out_prompts

        prompts, training, note, _disjoint = choose_held_out_prompts(self.prompt_source, cfg.validation_split, cfg.validation_min, cfg.seed)
        self._status(note)
        if not prompts:
            return
        self.prompt_source = training
        every = cfg.validation_every or max(self.steps_per_epoch, self.total_steps // 10)
        self.validator = RewardValidator(prompts, every, cfg.validation_draws, cfg.seed + 4242, cfg.early_stopping_patience, cfg.validation_min)
        self._restore_best()

    def _check_data_kind(self) -> None:
        """Prompts, not images: nothing to check."""

    @property
    def steps_per_epoch(self) -> int:
        cfg = self.config
        return cfg.inner_epochs * (cfg.samples_per_epoch // cfg.batch_size) // cfg.gradient_accumulation_steps

    def _total_steps(self) -> int:
        cfg = self.config
        if cfg.num_epochs is None:
            return cfg.max_train_steps
        return max(1, math.ceil(cfg.num_epochs * self.steps_per_epoch))

    # ------------------------------------------------------------------ framework hooks
    @property
    def micro_batches_per_step(self) -> int:
        return self.config.gradient_accumulation_steps * self.trained_timesteps

    def epoch_progress(self) -> float:
        return self.state.step / self.steps_per_epoch

    def before_step(self) -> str | None:
        """At an epoch's start: sample and score its trajectories; stop if the reward target is reached."""
        if self.rollout is not None and self.rollout.cursor < self._micro_batches_per_epoch():
            return None
        self.rollout = None
        return self.collect_rollout()

    def samples_due(self, step: int) -> bool:
        every = self.config.sample_every
        return bool(every) and step % self.steps_per_epoch == 0 and (step // self.steps_per_epoch) % every == 0

    def save_samples(self, step: int) -> list[Path]:
        """Fixed-seed previews, with their rewards in the "sample" event (drift in reward is visible per epoch)."""
        from PIL import Image

        paths = self.sampler.save(self.run_dir / "samples", step, autocast=self.accelerator.autocast())
        prompts = [p for p in self.sampler.prompts for _ in self.sampler.seeds]
        images = []
        for path in paths:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        rewards = self.reward_fn(images, prompts).tolist() if images else []
        self.events.emit("sample", step=step, path=str(paths[0]) if paths else None, paths=[str(p) for p in paths], rewards=rewards, epoch=step // self.steps_per_epoch)
        return paths

    def default_description(self) -> str:
        cfg = self.config
        epochs = self.state.step / self.steps_per_epoch
        return (
            f"DDPO LoRA of {self.model_name} trained on the reward {cfg.reward or getattr(self.reward_fn, 'name', 'custom')}: "
            f"{epochs:g} epochs ({self.state.step} steps) of {cfg.samples_per_epoch * self.world} samples, rank {cfg.rank}."
        )

    def training_image_count(self) -> int:
        epochs = math.ceil(self.state.step / self.steps_per_epoch)
        return epochs * self.config.samples_per_epoch * self.world

    # ------------------------------------------------------------------ checkpoints
    def _tensors(self) -> dict[str, Any]:
        tensors = super()._tensors()
        tensors["ddpo_tracker"] = self.tracker.state_dict()
        return tensors

    def process_state(self) -> dict[str, Any]:
        state = super().process_state()
        rollout = self.rollout
        state["ddpo_rollout"] = rollout.state_dict() if rollout is not None and rollout.cursor < self._micro_batches_per_epoch() else None
        return state

    def _restore(self, folder: Path) -> None:
        super()._restore(folder)
        tracker = ckpt.load_tensors(folder).get("ddpo_tracker")
        if tracker is not None:
            self.tracker.load_state_dict(tracker)

    def restore_process_state(self, state: dict[str, Any]) -> None:
        super().restore_process_state(state)
        saved = state.get("ddpo_rollout")
        self.rollout = Rollout.from_state(saved, self.accelerator.device) if saved is not None else None
        if self.rollout is not None and self.rollout.layout != self._layout():
            changed = ", ".join(f"{k} ({v!r} there, {self._layout().get(k)!r} now)" for k, v in self.rollout.layout.items() if self._layout().get(k) != v)
            raise ConfigError(f"--resume: the checkpoint stopped in the middle of an epoch sampled with other options: {changed}; resume with those")

    def _layout(self) -> dict[str, float]:
        cfg = self.config
        names = ("samples_per_epoch", "sample_steps", "inner_epochs", "batch_size", "gradient_accumulation_steps", "timestep_fraction")
        return {name: getattr(cfg, name) for name in names}

    # ------------------------------------------------------------------ conditioning and the guided model
    def encode_prompts(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        device = self.accelerator.device
        with torch.no_grad():
            hidden, pooled = self.denoiser.encode(self.denoiser.tokenize(list(prompts), device))
        return hidden, pooled

    def _uncond_embeddings(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The empty prompt's embeddings, or zeros where the pipeline uses zeros for it (SDXL)."""
        hidden, pooled = self.encode_prompts([""])
        if self.version == SDXL and getattr(self.pipe.config, "force_zeros_for_empty_prompt", False):
            hidden = torch.zeros_like(hidden)
            pooled = torch.zeros_like(pooled) if pooled is not None else None
        return hidden, pooled

    def guided_prediction(self, latents: torch.Tensor, timesteps: torch.Tensor, hidden: torch.Tensor, pooled: torch.Tensor | None, reference: bool = False) -> torch.Tensor:
        """The model output the sampler steps with: [uncond; cond] in one pass, combined with the guidance scale."""
        n = latents.shape[0]
        device = latents.device
        timesteps = timesteps.to(device)
        if self.do_cfg:
            uncond_hidden, uncond_pooled = self.uncond
            latents = torch.cat([latents, latents])
            timesteps = torch.cat([timesteps, timesteps])
            hidden = torch.cat([uncond_hidden.expand(n, -1, -1), hidden])
            if pooled is not None and uncond_pooled is not None:
                pooled = torch.cat([uncond_pooled.expand(n, -1), pooled])
        conditioning = {
            "input_ids": None,
            "time_ids": sdxl_time_ids(latents.shape[0], self.resolution, device) if self.version == SDXL else None,
            "encoded": (hidden, pooled),
        }
        if self._plain_forward and not reference:  # main process alone (validation): no DDP wrapper
            model = self.accelerator.unwrap_model(self.model)
            output = model(latents, timesteps, None, repeat=1, time_ids=conditioning["time_ids"], encoded=conditioning["encoded"])
        else:
            output = self.predict(latents, timesteps, [], 1, reference=reference, conditioning=conditioning)
        return guided(output, self.config.sample_cfg_scale) if self.do_cfg else output

    # ------------------------------------------------------------------ sampling
    def latent_shape(self) -> tuple[int, int, int]:
        return self.decoder.latent_shape(self.resolution, self.resolution)

    @torch.no_grad()
    def sample(
        self,
        prompts: Sequence[str],
        initial: torch.Tensor,
        generators: torch.Generator | Sequence[torch.Generator],
        reference_count: int = 0,
    ) -> tuple[Trajectories, list[Any], torch.Tensor, torch.Tensor | None]:
        """Trajectories and decoded images for these prompts from this initial noise (policy in eval mode)."""
        hidden, pooled = self.encode_prompts(prompts)
        unet = self.pipe.unet
        was_training = unet.training
        unet.eval()
        try:
            trajectories = sample_trajectories(
                lambda x, t: self.guided_prediction(x, t, hidden, pooled),
                self.ddim,
                initial.to(self.accelerator.device),
                self.config.sample_steps,
                self.config.eta,
                generators,
                reference=(lambda x, t: self.guided_prediction(x, t, hidden[: x.shape[0]], None if pooled is None else pooled[: x.shape[0]], reference=True)),
                reference_count=reference_count,
            )
        finally:
            unet.train(was_training)
        images = self.decoder.decode(trajectories.latents[:, -1])
        return trajectories, images, hidden, pooled

    def sample_seeded(self, prompts: Sequence[str], seeds: Sequence[int], batch_size: int | None = None) -> tuple[list[Any], torch.Tensor]:
        """Images and rewards for (prompt, seed) pairs, each seed fixing its own initial and step noise (batch-independent)."""
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts for {len(seeds)} seeds")
        self.setup()
        size = batch_size or self.config.rollout_batch_size
        images: list[Any] = []
        self._plain_forward = True
        try:
            for start in range(0, len(prompts), size):
                chunk_prompts = list(prompts[start : start + size])
                generators = [torch.Generator().manual_seed(int(s)) for s in seeds[start : start + size]]
                initial = torch.stack([torch.randn(self.latent_shape(), generator=g) for g in generators])
                images += self.sample(chunk_prompts, initial, generators)[1]
        finally:
            self._plain_forward = False
        return images, self.reward_fn(images, list(prompts))

    def collect_rollout(self) -> str | None:
        """Sample, score and normalise one epoch; build its training order. Returns "target_reached" to stop."""
        cfg = self.config
        acc = self.accelerator
        epoch = self.state.step // self.steps_per_epoch
        n = cfg.samples_per_epoch
        self._status(f"epoch {epoch + 1}: sampling {n * self.world} trajectories")
        unique = self.prompt_source.draw(n // cfg.prompt_group_size, self.generator)
        prompts = [p for p in unique for _ in range(cfg.prompt_group_size)]
        parts: list[tuple[Trajectories, torch.Tensor, torch.Tensor | None]] = []
        images: list[Any] = []
        kl_left = cfg.kl_samples
        for start in range(0, n, cfg.rollout_batch_size):
            chunk = prompts[start : start + cfg.rollout_batch_size]
            initial = torch.randn((len(chunk), *self.latent_shape()), generator=self.generator)
            trajectories, chunk_images, hidden, pooled = self.sample(chunk, initial, self.generator, reference_count=kl_left)
            kl_left -= trajectories.kl.numel()
            parts.append((trajectories, hidden, pooled))
            images += chunk_images
        rewards = self.reward_fn(images, prompts).float().to(acc.device)
        kl = torch.cat([t.kl for t, _, _ in parts]).float()

        all_rewards, all_prompts, all_kl = rewards, prompts, kl
        if self.world > 1:
            from accelerate.utils import gather_object

            all_rewards = acc.gather(rewards)
            all_prompts = gather_object(list(prompts))
            all_kl = acc.gather(kl.to(acc.device))
        advantages = compute_advantages(cfg.advantages, all_prompts, all_rewards.cpu(), self.tracker, clip=cfg.adv_clip_max)
        advantages = advantages.reshape(self.world, n)[self.rank].to(acc.device)
        metrics = {
            "reward_mean": float(all_rewards.mean()),
            "reward_std": float(all_rewards.std(unbiased=False)),
            "kl_to_base": float(all_kl.mean()) if all_kl.numel() else float("nan"),
        }
        self._status(
            f"epoch {epoch + 1}: reward mean {metrics['reward_mean']:.5g} (std {metrics['reward_std']:.3g}), "
            f"KL to the base model {metrics['kl_to_base']:.3g}"
        )
        if cfg.reward_target is not None and metrics["reward_mean"] >= cfg.reward_target:
            self._status(f"reward target {cfg.reward_target:g} reached (mean {metrics['reward_mean']:.5g}) at epoch {epoch + 1}; stopping")
            return "target_reached"

        steps = cfg.sample_steps
        sample_order = torch.stack([torch.randperm(n, generator=self.generator) for _ in range(cfg.inner_epochs)])
        step_order = torch.stack(
            [torch.stack([torch.randperm(steps, generator=self.generator) for _ in range(n)]) for _ in range(cfg.inner_epochs)]
        )
        pooled_parts = [p for _, _, p in parts]
        self.rollout = Rollout(
            latents=torch.cat([t.latents for t, _, _ in parts]),
            log_probs=torch.cat([t.log_probs for t, _, _ in parts]),
            timesteps=parts[0][0].timesteps,
            advantages=advantages,
            hidden=torch.cat([h for _, h, _ in parts]),
            pooled=None if pooled_parts[0] is None else torch.cat(pooled_parts),  # type: ignore[arg-type]
            prompts=list(prompts),
            rewards=rewards.cpu(),
            sample_order=sample_order,
            step_order=step_order,
            metrics=metrics,
            layout=self._layout(),
        )
        return None

    # ------------------------------------------------------------------ training
    def _micro_batches_per_epoch(self) -> int:
        cfg = self.config
        return cfg.inner_epochs * (cfg.samples_per_epoch // cfg.batch_size) * self.trained_timesteps

    def next_micro_batch(self) -> dict[str, Any]:
        """`batch_size` trajectories at one of their timesteps: inner epoch, then batch, then timestep slot."""
        rollout = self.rollout
        if rollout is None or rollout.cursor >= self._micro_batches_per_epoch():
            raise RuntimeError("no trajectories left to train on: before_step samples an epoch first")
        cfg = self.config
        per_inner = (cfg.samples_per_epoch // cfg.batch_size) * self.trained_timesteps
        inner, rest = divmod(rollout.cursor, per_inner)
        batch, slot = divmod(rest, self.trained_timesteps)
        index = rollout.sample_order[inner, batch * cfg.batch_size : (batch + 1) * cfg.batch_size]
        step = rollout.step_order[inner, index, slot]
        rollout.cursor += 1
        device = rollout.latents.device
        index_d, step_d = index.to(device), step.to(device)
        return {
            "latents": rollout.latents[index_d, step_d],
            "next_latents": rollout.latents[index_d, step_d + 1],
            "timesteps": rollout.timesteps[step],
            "old_log_prob": rollout.log_probs[index_d, step_d],
            "advantages": rollout.advantages[index_d],
            "hidden": rollout.hidden[index_d],
            "pooled": None if rollout.pooled is None else rollout.pooled[index_d],
            "caption": [rollout.prompts[i] for i in index.tolist()],
        }

    def compute_loss(self, batch: dict[str, Any]) -> MethodOutput:
        """Log-probability of the recorded steps under the current LoRA, then the DDPO objective."""
        output = self.guided_prediction(batch["latents"], batch["timesteps"], batch["hidden"], batch["pooled"])
        step = ddim_step(self.ddim, output, batch["timesteps"], batch["latents"], self.config.eta, prev_sample=batch["next_latents"])
        out = self.method.loss(Errors(policy=step.log_prob), batch, reduce_mean=self.reduce_mean)
        assert self.rollout is not None
        out.metrics.update({k: self.rollout.metrics[k] for k in EPOCH_METRICS})
        return out


__all__ = ["DDPOTrainer", "Rollout"]
