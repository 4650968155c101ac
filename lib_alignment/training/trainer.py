"""The training loop shared by DPO, KTO, MaPO and DDPO.

Explicit, diffusers-examples style: accelerate for devices, mixed precision and
multi-process data parallelism; our own gradient accumulation, checkpoints
(exact resume), cancellation, NaN guard, logging and export. A `Method`
supplies the loss; `compute_loss` is the one place that runs the models, so a
method with another data flow can subclass the Trainer and override it, with
the hooks `micro_batches_per_step`, `before_step`, `samples_due`,
`epoch_progress`, `default_description`, `training_image_count` and
`process_state` (DDPO's `training.ddpo.DDPOTrainer` does).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch

from . import checkpoint as ckpt
from .config import STRUCTURAL_FIELDS, ConfigError, TrainConfig
from .data_stream import CachedLatents, SampleStream, class_balanced_weights, collate
from .denoiser import SDXL, Denoiser, detect_version, sdxl_time_ids, text_encoders_of, tokenizers_of
from .events import EventLog, MetricsLog
from .export import METHOD_TITLES, kohya_state_dict, save_lora, training_metadata, write_sidecars
from .health import HealthMonitor, Verdict
from .validation import HeldOutScore, Validator, score_from_dict, split_dataset
from .lora import adapters_disabled, add_lora, load_trainable_state, lora_layers, trainable_state
from .methods import Errors, Method, MethodOutput, build_method, denoising_errors


class NonFiniteLoss(RuntimeError):
    """A loss was NaN or infinite; the step was not applied."""


@dataclass
class TrainResult:
    #: "finished", "cancelled" or "error".
    status: str
    step: int
    total: int
    outputs: dict[str, str | None] = field(default_factory=dict)
    message: str = ""


@dataclass
class StepOutput:
    loss: float
    metrics: dict[str, float]


def _mix_seed(seed: int, rank: int) -> int:
    return (int(seed) * 1_000_003 + 7919 * rank + 17) % (2**63 - 1)


class Trainer:
    """Train a LoRA with one preference method.

    `pipe` and `dataset` may be passed in (tests, the WebUI with its loaded model);
    otherwise they are loaded from `config.model` and `config.data`. `listeners`
    receive every progress event (see events.py) in-process, on the main process.
    Call `train()`.
    """

    def __init__(
        self,
        config: TrainConfig,
        pipe: Any = None,
        dataset: Any = None,
        event_stream: TextIO | None = None,
        listeners: Sequence[Callable[[dict[str, Any]], None]] = (),
    ) -> None:
        config.validate(require_paths=False)
        for name in ("output_dir", "name"):
            if not getattr(config, name):
                raise ConfigError(f"invalid training options:\n  {name}: is required")
        if pipe is None and not config.model:
            raise ConfigError("invalid training options:\n  model: is required")
        if dataset is None and not config.data:
            raise ConfigError("invalid training options:\n  data: is required")
        self.config = config
        self.pipe = pipe
        self.dataset = dataset
        self.event_stream = event_stream
        self.listeners = list(listeners)
        self._stop_reason: str | None = None
        self._is_setup = False
        self.events: EventLog | None = None

    # ------------------------------------------------------------------ setup
    def request_stop(self, reason: str = "requested") -> None:
        """Ask the loop to save and stop after the current step (thread-safe)."""
        self._stop_reason = reason

    def _status(self, message: str) -> None:
        if self.events is not None:
            self.events.emit("status", message=message)

    def setup(self) -> None:
        """Load model and data, add LoRA, build optimizer and schedule, restore a checkpoint."""
        if self._is_setup:
            return
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        cfg = self.config
        self.run_dir = cfg.resolved_run_dir()
        self.accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=cfg.device == "cpu")
        acc = self.accelerator
        self.rank = acc.process_index
        self.world = acc.num_processes
        self.is_main = acc.is_main_process
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.events = EventLog(self.run_dir / "events.jsonl", cfg.name, stream=self.event_stream, enabled=self.is_main, listeners=self.listeners)

        self.resume_from: Path | None = None
        self.state = ckpt.TrainingState(started_at=time.time())
        if cfg.resume:
            self.resume_from = ckpt.resolve_checkpoint(cfg.resume)
            saved = ckpt.read_state(self.resume_from)
            changed = [name for name in STRUCTURAL_FIELDS if name in saved.config and saved.config[name] != getattr(cfg, name)]
            if changed:
                raise ConfigError(
                    f"--resume {self.resume_from}: the checkpoint was trained with different "
                    + ", ".join(f"{n} ({saved.config[n]!r} there, {getattr(cfg, n)!r} now)" for n in changed)
                )
            self.state = saved

        set_seed(cfg.seed)
        if cfg.precision_warning():
            self._status("warning: " + cfg.precision_warning())
        if self.dataset is None:  # read and check the data before the model loads (seconds, not a minute, to a bad row)
            from .data import load_preference_data

            self._status(f"reading data {cfg.data}")
            self.dataset = load_preference_data(
                cfg.data,
                method=cfg.method,
                resolution=cfg.resolution or 512,  # only a placeholder until the model's native size is known
                skip_bad_rows=cfg.skip_bad_rows,
                min_per_class=cfg.min_per_class,
                tie_policy=cfg.tie_policy,
                strict_images=cfg.strict_images,
            )
        if len(self.dataset) == 0:
            raise ValueError(f"{cfg.data or 'the dataset'}: no usable training items")
        if self.pipe is None:
            from ..models import load_pipeline

            self._status(f"loading model {cfg.model}")
            if cfg.tokenizer and not Path(cfg.tokenizer).expanduser().is_dir():
                raise ConfigError(f"tokenizer: {cfg.tokenizer} is not a folder holding a saved CLIP tokenizer")
            self.pipe = load_pipeline(cfg.model, device="cpu", dtype="fp32", tokenizer=cfg.tokenizer or None, vae=cfg.vae or None)
        pipe = self.pipe
        self.version = detect_version(pipe)
        native = int(pipe.unet.config.sample_size) * int(getattr(pipe, "vae_scale_factor", 8))
        self.resolution = cfg.resolution or native
        cfg.resolution = self.resolution
        if hasattr(self.dataset, "resolution"):
            self.dataset.resolution = self.resolution  # images are read at this size, lazily

        from diffusers import DDPMScheduler

        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.prediction_type = self.noise_scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction type {self.prediction_type!r} is not supported (epsilon or v_prediction)")
        self.method: Method = build_method(cfg, self.noise_scheduler.config.num_train_timesteps)
        self._check_data_kind()
        self.held_out: Any = None
        if self.method.data_kind in ("pairs", "labeled", "rankings") and cfg.validation_split > 0:
            self.dataset, self.held_out, note = split_dataset(self.dataset, cfg.validation_split, cfg.validation_min, cfg.seed)
            self._status(note)

        # LoRA, then placement: frozen weights in the mixed-precision dtype, LoRA in fp32.
        self.weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(acc.mixed_precision, torch.float32)
        unet = pipe.unet
        self.unet_params = add_lora(unet, cfg.rank, cfg.effective_alpha, cfg.lora_dropout, cfg.lora_targets, "UNet")
        self.text_encoders = text_encoders_of(pipe)
        self.te_params: list[torch.nn.Parameter] = []
        if cfg.train_text_encoder:
            for i, encoder in enumerate(self.text_encoders):
                self.te_params += add_lora(encoder, cfg.rank, cfg.effective_alpha, cfg.lora_dropout, cfg.text_encoder_targets, f"text encoder {i + 1}")
        else:
            for encoder in self.text_encoders:
                encoder.requires_grad_(False)
        pipe.vae.requires_grad_(False)
        device = acc.device
        for module, dtype in ((unet, self.weight_dtype), *((e, self.weight_dtype) for e in self.text_encoders), (pipe.vae, torch.float32)):
            module.to(device)
            if module.dtype != dtype:  # (diffusers warns on every .to(dtype), even a no-op one)
                module.to(dtype)
        for p in (*self.unet_params, *self.te_params):
            p.data = p.data.float()
        if cfg.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        unet.train()
        for encoder in self.text_encoders:
            encoder.train(cfg.train_text_encoder)
        pipe.vae.eval()
        self.denoiser = Denoiser(unet, self.text_encoders, tokenizers_of(pipe), self.version, cfg.train_text_encoder)
        self.adapter_layers = lora_layers([unet, *self.text_encoders])

        self.optimizer = self._build_optimizer()
        self.total_steps = self._total_steps()
        from diffusers.optimization import get_scheduler

        self.lr_scheduler = get_scheduler(
            cfg.lr_scheduler,
            optimizer=self.optimizer,
            num_warmup_steps=cfg.lr_warmup_steps,
            num_training_steps=self.total_steps,
            num_cycles=cfg.lr_num_cycles,
            power=cfg.lr_power,
        )
        self.model, self.optimizer = acc.prepare(self.denoiser, self.optimizer)
        self.generator = torch.Generator().manual_seed(_mix_seed(cfg.seed, self.rank))

        if cfg.cache_latents:
            self._status("encoding the training images once (cache_latents)")
            self.dataset = self._cache_latents(self.dataset)
            if self.held_out is not None:
                self.held_out = self._cache_latents(self.held_out)

        if self.resume_from is not None:
            self._restore(self.resume_from)
        self.state.config = cfg.to_dict()

        weights = None
        if self.method.data_kind == "labeled" and cfg.positive_ratio is not None:
            weights = class_balanced_weights(self.dataset.labels() if hasattr(self.dataset, "labels") else [self.dataset[i]["label"] for i in range(len(self.dataset))], cfg.positive_ratio)
        blocks = self.dataset.block_sizes() if hasattr(self.dataset, "block_sizes") else None  # streamed data: group-local order
        self.stream = SampleStream(len(self.dataset), cfg.seed, start=self.state.consumed, rank=self.rank, world_size=self.world, weights=weights, blocks=blocks)
        self._check_data_position()
        self.loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=cfg.batch_size,
            sampler=self.stream,
            collate_fn=collate,
            num_workers=cfg.dataloader_workers,
            pin_memory=acc.device.type == "cuda",
            # its own generator: creating the iterator would otherwise draw from the global RNG
            # (which drives LoRA dropout) and a resumed run would diverge
            generator=torch.Generator().manual_seed(_mix_seed(cfg.seed, self.rank) + 1),
        )

        tensorboard = cfg.tensorboard if cfg.tensorboard is not None else _tensorboard_installed()
        self.metrics_log = MetricsLog(
            self.run_dir / "metrics.csv",
            [*self.method.metric_names, *HEALTH_COLUMNS],
            self.run_dir / "tensorboard" if tensorboard else None,
            enabled=self.is_main,
        )
        if self.metrics_log.tensorboard_error and cfg.tensorboard:
            self._status(self.metrics_log.tensorboard_error)
        self.metrics_log.truncate_after(self.state.step)
        self.health = HealthMonitor(cfg.method, self.total_steps)
        self._verdict: Verdict | None = None
        self.validator: Validator | None = None
        if self.held_out is not None:
            every = cfg.validation_every or max(1, self.total_steps // 10)
            self.validator = Validator(self.held_out, every, cfg.validation_draws, cfg.seed + 4242, self.method.margin_scale, cfg.early_stopping_patience)
            self._restore_best()
        self.sampler = self._build_sampler()
        self._is_setup = True

    def _check_data_kind(self) -> None:
        item = self.dataset[0]
        pixels = item.get("pixel_values", item.get("latents"))
        pairs = pixels is not None and pixels.ndim == 4
        if self.method.data_kind == "rankings":  # rankings of m images; pairs are rankings of two
            if not pairs:
                raise ValueError(f"method {self.method.name!r} trains on rankings (or pairs), but the data holds single images")
            return
        if (self.method.data_kind == "pairs") != pairs:
            want = "pairs of images" if self.method.data_kind == "pairs" else "single labelled images"
            raise ValueError(f"method {self.method.name!r} trains on {want}, but the data holds {'pairs' if pairs else 'single images'}")

    # ------------------------------------------------------------------ hooks for other data flows
    @property
    def micro_batches_per_step(self) -> int:
        """Micro-batches accumulated into one optimizer step."""
        return self.config.gradient_accumulation_steps

    def before_step(self) -> str | None:
        """Called before every optimizer step; a returned reason ends the run there (saved and exported)."""
        return None

    def samples_due(self, step: int) -> bool:
        """Whether to save preview images after this step."""
        every = self.config.sample_every
        return bool(every) and step % every == 0

    def epoch_progress(self) -> float:
        """Epochs completed, for the logs."""
        return self.stream.epoch_of(self.state.consumed)

    def default_description(self) -> str:
        """NAME.json's description when the user gave none."""
        title = METHOD_TITLES.get(self.config.method, self.config.method)
        kind = {"pairs": "pairs", "rankings": "rankings"}.get(self.method.data_kind, "images")
        return f"{title} LoRA of {self.model_name}, {self.state.step} steps, beta {self.method.beta:g}, rank {self.config.rank}, {len(self.dataset)} {kind}."

    def training_image_count(self) -> int:
        """ss_num_train_images of the metadata."""
        if self.method.data_kind == "rankings" and hasattr(self.dataset, "records"):
            return sum(len(record.images) for record in self.dataset.records)
        return len(self.dataset) * (2 if self.method.data_kind in ("pairs", "rankings") else 1)

    def _build_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        groups = [{"params": self.unet_params, "lr": cfg.learning_rate}]
        if self.te_params:
            groups.append({"params": self.te_params, "lr": cfg.text_encoder_lr or cfg.learning_rate})
        kwargs = {"betas": (cfg.adam_beta1, cfg.adam_beta2), "eps": cfg.adam_epsilon, "weight_decay": cfg.weight_decay}
        choice = cfg.optimizer
        if choice == "auto":
            choice = "adamw8bit" if self.accelerator.device.type == "cuda" and _bitsandbytes_installed() else "adamw"
        if choice == "adamw8bit":
            try:
                import bitsandbytes as bnb
            except ImportError:
                raise ConfigError("optimizer: adamw8bit needs the bitsandbytes package (pip install bitsandbytes)") from None
            return bnb.optim.AdamW8bit(groups, **kwargs)
        return torch.optim.AdamW(groups, **kwargs)

    def _total_steps(self) -> int:
        cfg = self.config
        if cfg.num_epochs is None:
            return cfg.max_train_steps
        per_process = math.ceil(len(self.dataset) / self.world)
        return max(1, math.ceil(cfg.num_epochs * per_process / (cfg.batch_size * cfg.gradient_accumulation_steps)))

    def _build_sampler(self) -> Any:
        cfg = self.config
        if not self.is_main or not (cfg.sample_every or cfg.preview):
            return None
        from .sampling import PreviewSampler

        prompts = list(cfg.sample_prompts)
        if not prompts:
            for i in range(min(len(self.dataset), 50)):
                caption = str(self.dataset[i]["caption"])
                if caption not in prompts:
                    prompts.append(caption)
                if len(prompts) == 2:
                    break
        return PreviewSampler(
            self.pipe,
            prompts,
            cfg.sample_seeds or [0],
            self.resolution,
            cfg.sample_steps,
            cfg.sample_cfg_scale,
            cfg.sample_sampler,
            model_name=self.model_name,
        )

    @property
    def model_name(self) -> str:
        source = self.config.model or "model"
        return Path(source).stem if ("/" in source or "\\" in source or source.endswith((".safetensors", ".ckpt"))) else source

    # ------------------------------------------------------------------ model passes
    def encode_images(self, pixel_values: torch.Tensor, sample: bool = True) -> torch.Tensor:
        """Pixels in [-1, 1] → scaled latents (a draw from the VAE's posterior, or its mean)."""
        vae = self.pipe.vae
        with torch.no_grad():
            dist = vae.encode(pixel_values.to(vae.device, vae.dtype)).latent_dist
            latents = dist.sample(generator=self.generator) if sample else dist.mean
        return latents.float() * vae.config.scaling_factor

    def _cache_latents(self, dataset: Any) -> Any:
        """Encode each distinct image once (posterior mean); the data module's own cache when it has one."""
        device = self.accelerator.device
        if hasattr(dataset, "cache_latents"):
            dataset.cache_latents(lambda pixels: self.encode_images(pixels.to(device), sample=False).cpu())
            return dataset
        items = []
        for i in range(len(dataset)):
            item = dict(dataset[i])
            pixels = item.pop("pixel_values")
            latents = self.encode_images(pixels if pixels.ndim == 4 else pixels[None], sample=False)
            item["latents"] = latents.cpu() if pixels.ndim == 4 else latents[0].cpu()
            items.append(item)
        return CachedLatents(items)

    def _flipped(self, images: torch.Tensor) -> torch.Tensor:
        """random_flip: each image (pixels, or cached latents) mirrored left-right with probability ½, on its own."""
        if not self.config.effective_random_flip:
            return images
        flip = (torch.rand(images.shape[0], generator=self.generator) < 0.5).to(images.device)
        return torch.where(flip.view(-1, *([1] * (images.ndim - 1))), images.flip(-1), images)

    def draw_noise(self, latents: torch.Tensor, pairs: bool | int) -> tuple[torch.Tensor, torch.Tensor]:
        """(timesteps, noise) from the trainer's generator; shared by the images of a pair (or of a ranking:
        `pairs` = its size, the batch being rank-major)."""
        group = 2 if pairs is True else max(1, int(pairs))
        n = latents.shape[0]
        draws = n // group
        timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (draws,), generator=self.generator)
        noise = torch.randn((draws, *latents.shape[1:]), generator=self.generator)
        if group > 1:
            timesteps = timesteps.repeat(group)
            noise = noise.repeat(group, 1, 1, 1)
        return timesteps.to(latents.device), noise.to(latents.device)

    def noisy_and_target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        if self.prediction_type == "v_prediction":
            return noisy, self.noise_scheduler.get_velocity(latents, noise, timesteps)
        return noisy, noise

    def predict(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        captions: list[str],
        repeat: int,
        reference: bool = False,
        conditioning: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """Prediction of the trained model, or (reference=True) of the base model with adapters off, without gradients.

        `conditioning` (from `condition`) reuses token ids, and text embeddings when the
        text encoders are frozen, across the two passes of a micro-batch.
        """
        conditioning = conditioning if conditioning is not None else self.condition(captions, noisy.shape[0], noisy.device)
        kwargs = {"repeat": repeat, "time_ids": conditioning["time_ids"], "encoded": conditioning.get("encoded")}
        if reference:
            with torch.no_grad(), adapters_disabled(self.adapter_layers):
                return self.accelerator.unwrap_model(self.model)(noisy, timesteps, conditioning["input_ids"], **kwargs)
        return self.model(noisy, timesteps, conditioning["input_ids"], **kwargs)

    def condition(self, captions: list[str], n: int, device: torch.device) -> dict[str, Any]:
        """Token ids, SDXL size conditioning, and the text embeddings when the text encoders are frozen."""
        input_ids = self.denoiser.tokenize(captions, device)
        conditioning: dict[str, Any] = {
            "input_ids": input_ids,
            "time_ids": sdxl_time_ids(n, self.resolution, device) if self.version == SDXL else None,
        }
        if not self.config.train_text_encoder:
            with torch.no_grad():
                conditioning["encoded"] = self.denoiser.encode(input_ids)
        return conditioning

    def compute_loss(self, batch: dict[str, Any]) -> MethodOutput:
        """Loss of one micro-batch: latents, shared or separate noise, reference pass, method."""
        group = int(batch.get("group", 2)) if self.method.data_kind in ("pairs", "rankings") else 1
        if "latents" in batch:
            latents = self._flipped(batch["latents"].to(self.accelerator.device, torch.float32))
        else:
            latents = self.encode_images(self._flipped(batch["pixel_values"]))
        captions = list(batch["caption"])
        dropout = self.config.effective_caption_dropout
        if dropout > 0:  # the references' recipe: empty captions keep classifier-free guidance working
            drop = torch.rand(len(captions), generator=self.generator) < dropout
            captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
        timesteps, noise = self.draw_noise(latents, group)
        noisy, target = self.noisy_and_target(latents, noise, timesteps)
        repeat = group
        conditioning = self.condition(captions, noisy.shape[0], noisy.device)
        reference_errors = None
        if self.method.needs_reference:  # first, so its activations are freed before the graph is built
            reference_errors = denoising_errors(self.predict(noisy, timesteps, captions, repeat, reference=True, conditioning=conditioning), target)
        policy_errors = denoising_errors(self.predict(noisy, timesteps, captions, repeat, conditioning=conditioning), target)
        return self.method.loss(Errors(policy_errors, reference_errors), batch, reduce_mean=self.reduce_mean)

    def reduce_mean(self, value: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return value
        return self.accelerator.reduce(value.detach().clone(), reduction="mean")

    def _any_process(self, flag: bool) -> bool:
        if self.world == 1:
            return flag
        tensor = torch.tensor([1.0 if flag else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(tensor, reduction="sum").item() > 0)

    # ------------------------------------------------------------------ one optimizer step
    def train_step(self, batches: Iterator[dict[str, Any]]) -> StepOutput:
        """Accumulate micro-batches, clip, step. Raises NonFiniteLoss before any update if a loss is NaN/Inf."""
        cfg = self.config
        accum = self.micro_batches_per_step
        totals: dict[str, float] = {}
        loss_total = 0.0
        self.optimizer.zero_grad(set_to_none=True)
        for micro in range(accum):
            batch = next(batches)
            last = micro == accum - 1
            context = self.accelerator.no_sync(self.model) if (self.world > 1 and not last) else nullcontext()
            with context:
                out = self.compute_loss(batch)
                finite = bool(torch.isfinite(out.loss.detach()).item())
                if self._any_process(not finite):
                    self.optimizer.zero_grad(set_to_none=True)
                    raise NonFiniteLoss(f"non-finite loss ({out.loss.item() if not finite else 'on another process'})")
                self.accelerator.backward(out.loss / accum)
            loss_total += float(out.loss.detach().item()) / accum
            for name, value in out.metrics.items():
                totals[name] = totals.get(name, 0.0) + float(value) / accum
        # clipping at infinity only measures the norm (and multiplies by exactly 1)
        grad_norm = self.accelerator.clip_grad_norm_([*self.unet_params, *self.te_params], cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf)
        if grad_norm is not None:
            totals["grad_norm"] = float(grad_norm)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepOutput(loss=loss_total, metrics=totals)

    # ------------------------------------------------------------------ checkpoints
    def _tensors(self) -> dict[str, Any]:
        tensors: dict[str, Any] = {
            "unet": trainable_state(self.pipe.unet),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
        }
        if self.te_params:
            tensors["text_encoders"] = [trainable_state(e) for e in self.text_encoders]
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None:
            tensors["scaler"] = scaler.state_dict()
        return tensors

    def process_state(self) -> dict[str, Any]:
        """What each process saves for itself (rng-RANK.bin): its random generators."""
        return ckpt.rng_state(self.generator)

    def restore_process_state(self, state: dict[str, Any]) -> None:
        ckpt.restore_rng(state, self.generator)

    def _guarded_batches(self) -> Any:
        """The loader's batches with unreadable streamed images skipped, named in events and counted (data_stream.BadImageGuard)."""
        from .data_stream import BadImageGuard, where

        shown = [0]

        def on_skip(info: dict[str, Any]) -> None:
            shown[0] += 1
            if shown[0] <= 50 or shown[0] % 1000 == 0:
                self._status(f"skipped {'an unreadable image' if info.get('bad', True) else 'a pair of identical images'} ({shown[0]} so far): {where(info)}: {info.get('message', '')}")

        group = 2 if self.method.data_kind in ("pairs", "rankings") else 1
        self.bad_images = BadImageGuard(iter(self.loader), self.config.max_bad_images, group, len(self.dataset) * group, on_skip)
        return self.bad_images

    def _check_data_position(self) -> None:
        """The data position goes into checkpoints; on resume, say so when the data no longer matches it."""
        saved = dict(getattr(self.state, "data_position", {}) or {})
        if saved and saved.get("item") is not None and self.state.consumed:
            now = self._data_position()
            if {k: now.get(k) for k in ("item", "shard", "row")} != {k: saved.get(k) for k in ("item", "shard", "row")}:
                self._status(f"the data changed since the checkpoint: it stopped before item {saved.get('item')} ({saved.get('shard', '')} row {saved.get('record', '')}), which is now item {now.get('item')}")

    def _data_position(self) -> dict[str, Any]:
        """Epoch, offset, next item and seed of this process's stream; shard, row group and row for streamed data."""
        position: dict[str, Any] = dict(self.stream.position(self.state.consumed))
        if hasattr(self.dataset, "locate"):
            position.update(self.dataset.locate(position["item"]))
        return position

    def save_checkpoint(self) -> Path:
        acc = self.accelerator
        self.state.data_position = self._data_position()
        acc.wait_for_everyone()
        folder = ckpt.save_checkpoint(
            self.run_dir,
            self.state,
            self._tensors() if self.is_main else None,
            self.process_state(),
            rank=self.rank,
        )
        acc.wait_for_everyone()
        if self.is_main:
            folder = ckpt.finalize_checkpoint(self.run_dir, self.state.step, keep=self.config.checkpoints_keep)
            self.events.emit("checkpoint", step=self.state.step, path=str(folder))
        acc.wait_for_everyone()
        self._last_checkpoint = folder
        return folder

    def _restore(self, folder: Path) -> None:
        self._status(f"resuming from {folder}")
        tensors = ckpt.load_tensors(folder)
        load_trainable_state(self.pipe.unet, tensors["unet"], "UNet")
        if self.te_params:
            for encoder, state in zip(self.text_encoders, tensors.get("text_encoders", [])):
                load_trainable_state(encoder, state, "text encoder")
        self.optimizer.load_state_dict(tensors["optimizer"])
        self.lr_scheduler.load_state_dict(tensors["lr_scheduler"])
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None and "scaler" in tensors:
            scaler.load_state_dict(tensors["scaler"])
        self.restore_process_state(ckpt.load_rng(folder, self.rank))

    # ------------------------------------------------------------------ the loop
    def train(self) -> TrainResult:
        """Run to max_train_steps (or until stopped); export the LoRA; never raises for NaN or cancel."""
        handlers = self._install_signal_handlers()
        try:
            try:
                self.setup()
            except Exception as error:
                self._emit_error(error, kind="data" if type(error).__name__ == "DatasetValidationError" else ("config" if isinstance(error, ConfigError) else "exception"))
                raise
            try:
                return self._loop()
            except Exception as error:  # the traceback goes on to the log; the event names the cause in one line
                self._emit_error(error, kind="exception")
                raise
        finally:
            self._restore_signal_handlers(handlers)
            if getattr(self, "metrics_log", None) is not None:
                self.metrics_log.close()
            if self.events is not None:
                self.events.close()

    def _emit_error(self, error: BaseException, kind: str, outputs: dict[str, Any] | None = None) -> None:
        message = str(error)
        report = getattr(error, "report", None)
        if report is not None and hasattr(report, "format_text"):
            message = report.format_text()
        elif kind == "exception":
            message = one_line_cause(error)
        if self.events is None:
            return
        fields: dict[str, Any] = {"message": message, "kind": kind, "step": self.state.step if hasattr(self, "state") else 0}
        if outputs:
            fields["outputs"] = outputs
        self.events.emit("error", **fields)

    def _loop(self) -> TrainResult:
        cfg = self.config
        acc = self.accelerator
        total = self.total_steps
        self._last_checkpoint: Path | None = self.resume_from
        self._early_stop: int | None = None
        self.events.emit(
            "start",
            method=cfg.method,
            step=self.state.step,
            total=total,
            resumed=self.resume_from is not None,
            device=str(acc.device),
            processes=self.world,
            output=str(cfg.output_path()),
            run_dir=str(self.run_dir),
        )
        progress = None
        if self.is_main and cfg.progress_bar and not cfg.events_stdout:
            from tqdm.auto import tqdm

            progress = tqdm(total=total, initial=self.state.step, desc=f"{cfg.method.upper()} {cfg.name}", unit="step", dynamic_ncols=True)
        if self.validator is not None and self.state.step == 0:
            self.validate()
        if self.is_main and self.sampler is not None and self.config.sample_every and self.state.step == 0:
            self.save_samples(0)  # the baseline: the base model on the same prompts and seeds
        batches = self._guarded_batches()
        session_start = time.time()
        session_steps = 0
        base_elapsed = self.state.elapsed
        reason = "finished"
        try:
            while self.state.step < total:
                if self._should_stop():
                    reason = "cancelled"
                    break
                ending = self.before_step()
                if ending:
                    reason = ending
                    break
                try:
                    out = self.train_step(batches)
                except NonFiniteLoss as error:
                    return self._stop_on_non_finite(error, progress)
                self.state.step += 1
                self.state.consumed += cfg.batch_size * cfg.gradient_accumulation_steps
                session_steps += 1
                self.state.elapsed = base_elapsed + (time.time() - session_start)
                step = self.state.step
                if step % cfg.log_every == 0 or step == total:
                    self._log_step(out, total, session_start, session_steps, progress)
                elif progress is not None:
                    progress.update(1)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total:
                    self.save_checkpoint()
                if self.is_main and self.sampler is not None and self.samples_due(step):
                    self.save_samples(step)
                if self.validator is not None and self.validator.due(step, total):
                    self.validate()
                    self._report_health(progress)
                    if self._any_process(self.validator.should_stop()):
                        self._early_stop = step
                        break
        finally:
            if progress is not None:
                progress.close()
        if self._last_checkpoint is None or ckpt.checkpoint_dir(self.run_dir, self.state.step) != self._last_checkpoint:
            self.save_checkpoint()
        self._report_health(final=True)
        if self._early_stop is not None:
            best = self.validator.best
            self._status(f"stopping early at step {self._early_stop}: {self.validator.patience} held-out scores without a new best (best: {best.describe()})")
        outputs = self.export(status=reason)
        if reason == "cancelled":
            self._clear_stop_file()
        extra = {"stopped_early": True} if self._early_stop is not None else {}
        self.events.emit("done", step=self.state.step, total=total, reason=reason, outputs=outputs, **extra)
        return TrainResult(status=reason, step=self.state.step, total=total, outputs=outputs)

    def save_samples(self, step: int) -> list[Path]:
        """Preview images of this step into RUN_DIR/samples, announced by a "sample" event (main process)."""
        paths = self.sampler.save(self.run_dir / "samples", step, autocast=self.accelerator.autocast())
        self.events.emit("sample", step=step, path=str(paths[0]) if paths else None, paths=[str(p) for p in paths])
        return paths

    def _log_step(self, out: StepOutput, total: int, session_start: float, session_steps: int, progress: Any) -> None:
        values = {"loss": out.loss, **out.metrics}
        if self.world > 1:
            keys = sorted(values)
            tensor = torch.tensor([values[k] for k in keys], device=self.accelerator.device)
            reduced = self.accelerator.reduce(tensor, reduction="mean").tolist()
            values = dict(zip(keys, reduced))
        if not self.is_main:
            return
        step = self.state.step
        per_step = (time.time() - session_start) / max(session_steps, 1)
        lr = float(self.lr_scheduler.get_last_lr()[0])
        epoch = self.epoch_progress()
        row = {"step": step, "epoch": round(epoch, 4), "lr": lr, "elapsed": round(self.state.elapsed, 3), **values}
        self.metrics_log.write(row)
        self.events.emit("step", step=step, total=total, epoch=round(epoch, 4), loss=values["loss"], lr=lr,
                         elapsed=round(self.state.elapsed, 3), eta=round(per_step * (total - step), 1),
                         **{k: v for k, v in values.items() if k != "loss"})
        self.health.observe_step(step, row)
        self._report_health(progress)
        if progress is not None:
            progress.update(step - progress.n)
            shown = {"loss": f"{values['loss']:.4f}"}
            if "reward_accuracy" in values:
                shown["acc"] = f"{values['reward_accuracy']:.2f}"
            if "reward_mean" in values:
                shown["reward"] = f"{values['reward_mean']:.4g}"
            progress.set_postfix(shown, refresh=False)

    # ------------------------------------------------------------------ validation and the best weights
    def validate(self) -> HeldOutScore | None:
        """Score the held-out split (main process), emit a "validation" event, keep the weights of a new best."""
        result = None
        if self.is_main:
            result, improved = self.validator.score(self, self.state.step)
            if improved:
                self._save_best(result)
            best = self.validator.best
            self.events.emit("validation", step=result.step, **result.event_fields(),
                             best_step=best.step if best else None, best=best.value if best else None)
            self.health.observe_validation(result.step, *list(result.event_fields().values())[:2])
        self.accelerator.wait_for_everyone()
        return result

    def _best_dir(self) -> Path:
        return self.run_dir / "best"

    def _save_best(self, score: HeldOutScore) -> None:
        """The LoRA of the best held-out score so far, in RUN_DIR/best (survives a resume)."""
        from ..paths import atomic_write_json

        tensors = kohya_state_dict(self.pipe.unet, self.text_encoders if self.te_params else (), alpha=self.config.effective_alpha, version=self.version)
        folder = self._best_dir()
        folder.mkdir(parents=True, exist_ok=True)
        save_lora(folder / "lora.safetensors", tensors, {"step": str(score.step)}, "fp32")
        first = self.validator.history[0] if self.validator.history else score
        atomic_write_json(folder / "best.json", {**score.__dict__, "first": first.__dict__})

    def _restore_best(self) -> None:
        """On resume: the best score so far, when it was reached no later than the checkpoint."""
        import json

        file = self._best_dir() / "best.json"
        if self.state.step == 0 or not file.is_file():
            return
        try:
            saved = json.loads(file.read_text(encoding="utf-8"))
            best = score_from_dict(saved)
            first = score_from_dict(saved["first"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        if best.step <= self.state.step:
            self.validator.best = best
            self.validator.history = [first, best] if first.step != best.step else [best]
            for item in self.validator.history:
                self.health.observe_validation(item.step, *list(item.event_fields().values())[:2])

    def _export_best(self, final_path: Path) -> dict[str, str | None]:
        """OUTPUT_DIR/NAME-best.safetensors (+ .json) from the best held-out step, beside the final LoRA."""
        from safetensors.torch import load_file

        best = self.validator.best if self.validator is not None else None
        source = self._best_dir() / "lora.safetensors"
        if best is None or not source.is_file():
            return {}
        cfg = self.config
        metadata = training_metadata(cfg, self.version, self.model_name, started_at=self.state.started_at, steps=best.step,
                                     hyperparameters=self.method.hyperparameters(), num_images=self.training_image_count(),
                                     status=f"best held-out score at step {best.step}")
        metadata.update(best.metadata())
        metadata["ss_output_name"] = f"{cfg.name}-best"
        path = save_lora(final_path.with_name(f"{cfg.name}-best.safetensors"), load_file(str(source)), metadata, cfg.save_precision)
        notes = f"Best held-out step {best.step} of {self.state.step}: {best.describe()}. {cfg.name}.safetensors holds the final weights."
        description = (cfg.description or self.default_description()) + f" Weights of step {best.step} (best held-out score)."
        sidecars = write_sidecars(path, self.version, cfg.preferred_weight, description, cfg.activation_text, notes=notes)
        return {"best": str(path), "best_metadata": str(sidecars["metadata"]), "best_step": str(best.step)}

    def _report_health(self, progress: Any = None, final: bool = False) -> None:
        """Emit a "health" event (and a log line) when the verdict changes, every tenth of the run, and at the end."""
        if not self.is_main:
            return
        verdict = self.health.verdict()
        every = max(1, self.total_steps // 10)
        previous = self._verdict
        if not final and previous is not None and previous.state == verdict.state and previous.guidance == verdict.guidance and verdict.step - previous.step < every:
            return
        self._verdict = verdict
        self.events.emit("health", **verdict.to_event())
        line = f"[{self.config.name}] {verdict.text()}"
        if progress is not None:
            progress.write(line)
        elif not self.config.events_stdout and self.config.progress_bar:
            print(line, flush=True)

    def _stop_on_non_finite(self, error: NonFiniteLoss, progress: Any) -> TrainResult:
        """Keep the last good weights: they were never updated with the bad step's gradients."""
        if progress is not None:
            progress.close()
        step = self.state.step
        self.health.observe_non_finite(step + 1, str(error))
        self._report_health(final=True)
        folder = self.save_checkpoint()
        outputs = self.export(status=f"stopped after step {step}: non-finite loss")
        outputs["checkpoint"] = str(folder)
        kept = (
            f"The weights after step {step} (the last good ones) are saved in {outputs.get('lora')} and {folder}"
            if outputs.get("lora")
            else "No step succeeded, so no LoRA was written"
        )
        message = (
            f"training stopped at step {step + 1} of {self.total_steps}: {error}. {kept}; lower the learning rate or beta, "
            "or train in fp32 (for DPO/KTO at a large beta not bf16: the margin is a small difference of large errors), and resume with --resume."
        )
        self._emit_error(NonFiniteLoss(message), kind="non_finite_loss", outputs=outputs)
        return TrainResult(status="error", step=step, total=self.total_steps, outputs=outputs, message=message)

    # ------------------------------------------------------------------ stopping
    def _should_stop(self) -> bool:
        local = self._stop_reason is not None or self.config.resolved_stop_file().exists()
        return self._any_process(local)

    def _clear_stop_file(self) -> None:
        if self.is_main:
            try:
                self.config.resolved_stop_file().unlink()
            except (FileNotFoundError, OSError):
                pass

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}

        def handler(signum: int, _frame: Any) -> None:
            if self._stop_reason is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C stops at once
            self.request_stop(signal.Signals(signum).name)

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, handler)
            except (ValueError, OSError):
                pass
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for sig, old in previous.items():
            try:
                signal.signal(sig, old)
            except (ValueError, OSError):
                pass

    # ------------------------------------------------------------------ export
    def export(self, status: str = "finished") -> dict[str, str | None]:
        """Write OUTPUT_DIR/NAME.safetensors with metadata, NAME.json and NAME.preview.png (main process)."""
        acc = self.accelerator
        acc.wait_for_everyone()
        outputs: dict[str, str | None] = {}
        if self.state.step == 0:  # nothing trained: a LoRA of zeros would only clutter the LoRA list
            if self.is_main:
                self._status(f"no LoRA written: {status} before the first training step")
            return {"lora": None, "checkpoint": str(self._last_checkpoint) if getattr(self, "_last_checkpoint", None) else None}
        if self.is_main:
            cfg = self.config
            self._status("exporting the LoRA")
            tensors = kohya_state_dict(
                self.pipe.unet,
                self.text_encoders if self.te_params else (),
                alpha=cfg.effective_alpha,
                version=self.version,
            )
            metadata = training_metadata(
                cfg,
                self.version,
                self.model_name,
                started_at=self.state.started_at,
                steps=self.state.step,
                hyperparameters=self.method.hyperparameters(),
                num_images=self.training_image_count(),
                status=status,
            )
            last = self.validator.history[-1] if self.validator is not None and self.validator.history else None
            if last is not None:
                metadata.update(last.metadata())
            lora_path = save_lora(cfg.output_path(), tensors, metadata, cfg.save_precision)
            preview = None
            if cfg.preview and self.sampler is not None and self.sampler.prompts:
                preview = self.sampler.generate(prompts=self.sampler.prompts[:1], seeds=self.sampler.seeds[:1], autocast=acc.autocast())[0]
            description = cfg.description or self.default_description()
            notes = status
            if last is not None:
                notes += f"; {last.describe()}"
                best = self.validator.best
                if best is not None:
                    notes += f", best {best.value:.4g} at step {best.step} ({cfg.name}-best.safetensors)"
            if getattr(self, "_verdict", None) is not None:
                notes += f". Verdict: {self._verdict.title} — {self._verdict.reason}"
            sidecars = write_sidecars(lora_path, self.version, cfg.preferred_weight, description, cfg.activation_text, notes=notes, preview=preview)
            outputs = {
                "lora": str(lora_path),
                "metadata": str(sidecars["metadata"]),
                "preview": str(sidecars["preview"]) if sidecars["preview"] else None,
                "checkpoint": str(self._last_checkpoint) if getattr(self, "_last_checkpoint", None) else None,
                **self._export_best(lora_path),
            }
        acc.wait_for_everyone()
        return outputs


#: Columns the trainer adds to every method's metrics.
HEALTH_COLUMNS = ("grad_norm",)


def _tensorboard_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _bitsandbytes_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


def one_line_cause(error: BaseException, limit: int = 500) -> str:
    """`Type: first line of the message`, as the last line of a traceback names it, cut to `limit` characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def train(config: TrainConfig, **kwargs: Any) -> TrainResult:
    """Convenience: `Trainer(config, **kwargs).train()`."""
    return Trainer(config, **kwargs).train()


__all__ = ["NonFiniteLoss", "TrainResult", "Trainer", "train"]
