"""`TrainConfig`: every option of a training run (DPO, KTO, MaPO, DDPO), with its documentation and checks.

One dataclass feeds the command line (a flag per field), TOML config files,
the WebUI tab and the metadata written into the LoRA, so an option is declared
once. Field metadata holds the help text and, for string options, the choices.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..paths import safe_name

METHODS = ("dpo", "ipo", "dpo_hinge", "kto", "mapo", "orpo", "listwise", "ddpo")
#: Where run folders go by default: OUTPUT_DIR/../alignment-runs/NAME (a LoRA folder holds LoRAs only).
RUNS_FOLDER = "alignment-runs"
#: Methods that learn from a reward on the model's own samples rather than from a dataset.
REWARD_METHODS = ("ddpo",)

#: Methods whose references train with caption dropout 0.2 and random horizontal flips (Diffusion-DPO's train.py,
#: Diffusion-KTO's train_kto_sd_v1.5.py); the DPO variants share DPO's recipe. Others default to neither.
RECIPE_AUGMENTED = ("dpo", "ipo", "dpo_hinge", "kto")
#: The references' caption dropout (the share of empty captions keeps classifier-free guidance working).
REFERENCE_CAPTION_DROPOUT = 0.2
#: Methods whose loss is a difference of denoising errors scaled by a large β (bf16 loses it; see docs/training.md).
LARGE_BETA_METHODS = ("dpo", "ipo", "dpo_hinge", "kto", "listwise")

#: β when `beta` is left unset: the papers' defaults in the convention each method documents.
DEFAULT_BETA = {"dpo": 5000.0, "ipo": 5000.0, "dpo_hinge": 5000.0, "kto": 1000.0, "mapo": 0.1, "orpo": 0.1, "listwise": 5000.0}

#: LoRA targets in the UNet: attention projections, feed-forward, and the transformer blocks'
#: in/out projections. The names are the same in SD1.x, SD2.x and SDXL UNets.
DEFAULT_UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out")
#: LoRA targets in CLIP text encoders (attention and MLP).
DEFAULT_TEXT_ENCODER_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


class ConfigError(ValueError):
    """A bad option value; the message names the field."""


def _opt(help: str, choices: tuple[str, ...] | None = None, group: str = "general", aliases: tuple[str, ...] = ()) -> dict[str, Any]:
    meta: dict[str, Any] = {"help": help, "group": group}
    if choices:
        meta["choices"] = choices
    if aliases:
        meta["aliases"] = aliases  # extra command-line spellings of the flag
    return meta


@dataclass
class TrainConfig:
    """All options of a DPO / KTO / MaPO / DDPO LoRA training run (see each field's help)."""

    # --- what to train -----------------------------------------------------------------------
    method: str = field(default="dpo", metadata=_opt("Training objective: dpo (pairs), ipo or dpo_hinge (DPO's margin with a squared or hinge loss), kto (liked/disliked images), mapo or orpo (pairs, no reference model), listwise (rankings of m images, or pairs: a Plackett–Luce likelihood over DPO's implicit rewards) or ddpo (a reward on the model's own samples).", METHODS, "run"))
    model: str = field(default="", metadata=_opt("Base model: 'tiny', 'tiny-random', a diffusers folder or a .safetensors/.ckpt checkpoint.", group="run"))
    tokenizer: str = field(default="", metadata=_opt("Tokenizer folder for a single-file checkpoint with none beside it (the WebUI tab hands over the loaded model's); empty = look beside the checkpoint, then in the local Hugging Face cache.", group="run"))
    data: str = field(default="", metadata=_opt("Preference data: a CSV/JSONL file or folder that lib_alignment.training.data reads (not used by DDPO).", group="run"))
    output_dir: str = field(default="", metadata=_opt("Folder for NAME.safetensors and its sidecars (e.g. the WebUI's models/Lora).", group="run"))
    vae: str = field(default="", metadata=_opt("VAE file (.safetensors/.pt/.ckpt in LDM layout, as in the WebUI's models/VAE) replacing the model's VAE; needed for checkpoints without VAE weights (the WebUI tab hands over the VAE selected there); empty = the checkpoint's own.", group="run"))
    name: str = field(default="", metadata=_opt("Output name (file stem and ss_output_name).", group="run"))
    run_dir: str = field(default="", metadata=_opt("Folder for checkpoints, logs, samples and events; default alignment-runs/NAME beside OUTPUT_DIR (not among the LoRAs).", group="run"))
    resume: str = field(default="", metadata=_opt("Continue from a checkpoint folder, or from the latest checkpoint in a run folder.", group="run"))
    seed: int = field(default=0, metadata=_opt("Seed of LoRA initialisation, data order, noise and timesteps.", group="run"))

    # --- data ----------------------------------------------------------------------------------
    resolution: int = field(default=0, metadata=_opt("Training resolution in pixels (multiple of 8); 0 = the model's native size.", group="data"))
    tie_policy: str = field(default="drop", metadata=_opt("Pairs rated as ties: drop them, or keep them weighted (the data module's policy).", ("drop", "weight"), "data"))
    skip_bad_rows: bool = field(default=False, metadata=_opt("Skip unreadable rows instead of stopping with a report.", group="data"))
    min_per_class: int = field(default=1, metadata=_opt("KTO: fewest desirable and undesirable images the data must have.", group="data"))
    caption_dropout: float | None = field(default=None, metadata=_opt("Probability of training a sample with an empty caption; default: 0.2 for DPO (and IPO, dpo_hinge) and KTO, as both references train, 0 for the others (the CPU preset sets 0).", group="data"))
    random_flip: bool | None = field(default=None, metadata=_opt("Flip each training image left-right at random (each image of a pair on its own, as Diffusion-DPO does); default: on for DPO (and IPO, dpo_hinge) and KTO, off for the others (the CPU preset turns it off). With cache_latents the latents are flipped instead.", group="data"))
    positive_ratio: float | None = field(default=0.8, metadata=_opt("KTO: share of desirable images the weighted sampler draws (reference: 0.8); 'none' = plain shuffling.", group="data"))
    cache_latents: bool = field(default=False, metadata=_opt("Encode every image once with the VAE (distribution mean) and keep the latents in memory.", group="data"))
    dataloader_workers: int = field(default=0, metadata=_opt("Worker processes reading images (0 = in the training process).", group="data"))
    strict_images: bool | None = field(default=None, metadata=_opt("Check every image before the first step. Default: yes for small tables and folders, no for parquet shard folders, datasets folders and tables over 20000 rows, whose structure is checked first and images as they are read (a bad one is skipped, counted and named).", group="data"))
    max_bad_images: float = field(default=0.01, metadata=_opt("Streamed data: stop when more than this share of the images read so far is unreadable.", group="data"))

    # --- objective -----------------------------------------------------------------------------
    beta: float | None = field(default=None, metadata=_opt(
        "Inverse temperature. DPO: the paper's β_T inside −log σ(−β/2·Δ), default 5000 (diffusers' example folds the ½ "
        "into its beta_dpo: theirs = ours/2). KTO: β of σ(β(g−KL)), default 1000. MaPO: weight of the margin term, default 0.1. IPO / dpo_hinge: as DPO (IPO's τ = β/2, target margin 1/β). ORPO: weight of the odds-ratio term, default 0.1. "
        "Errors are per-element means of squared differences, as in both reference codes.", group="objective"))
    kto_utility: str = field(default="sigmoid", metadata=_opt("KTO value function: sigmoid (1−σ) or loss_averse (1−log σ), as in the reference code's 'halo' option.", ("sigmoid", "loss_averse"), "objective"))
    kto_reference_point: str = field(default="batch_kl", metadata=_opt(
        "KTO reference point: batch_kl = max(0, mean g) over the batch of all processes (detached); "
        "batch_kl_local = the same without reducing across processes; zero = no reference point.", ("batch_kl", "batch_kl_local", "zero"), "objective"))
    kto_lambda_desirable: float = field(default=1.0, metadata=_opt("KTO λ_D: weight of desirable images.", group="objective"))
    kto_lambda_undesirable: float = field(default=1.0, metadata=_opt("KTO λ_U: weight of undesirable images.", group="objective"))
    mapo_snr_value: float = field(default=0.5, metadata=_opt("MaPO: the constant a in the score aL/(exp(aL)−1) of an image's error L.", group="objective"))

    # --- DDPO: reinforcement learning on a reward (Black et al. 2023) ---------------------------
    reward: str = field(default="", metadata=_opt(
        "DDPO: the reward — jpeg_compressibility, jpeg_incompressibility, aesthetic:WEIGHTS,CLIP_DIR (the LAION predictor "
        "from local files), preference:PAIRS_CSV[,CLIP_DIR] (fitted to Rank & Refine pairs), a Rank & Refine oracle "
        "(brightness, colourfulness, color:VALUE, clip:CLIP_DIR) or package.module:function (images, prompt) -> scores.", group="ddpo"))
    prompts: list[str] = field(default_factory=list, metadata=_opt(
        "DDPO: prompts to sample — text, prompt files (.txt, one per line) or templates such as 'a(n) [animal]' "
        "(slots: [animal] [activity] [color] [shape] [size] or [red|blue]).", group="ddpo"))
    samples_per_epoch: int = field(default=32, metadata=_opt("DDPO: trajectories sampled per epoch, per process; a multiple of batch_size × gradient_accumulation_steps.", group="ddpo"))
    rollout_batch_size: int = field(default=8, metadata=_opt("DDPO: trajectories sampled together in one batched pass.", group="ddpo"))
    eta: float = field(default=1.0, metadata=_opt("DDPO: DDIM η of the sampler; > 0, so every step is a Gaussian with a log-probability.", group="ddpo"))
    inner_epochs: int = field(default=1, metadata=_opt("DDPO: training passes over each epoch's trajectories.", group="ddpo"))
    ddpo_estimator: str = field(default="is", metadata=_opt("DDPO: 'is' (DDPO_IS, the PPO clipped objective) or 'sf' (DDPO_SF, REINFORCE; on-policy, so inner_epochs 1).", ("is", "sf"), "ddpo"))
    clip_range: float = field(default=1e-4, metadata=_opt("DDPO_IS: PPO clip range ε of the probability ratio.", group="ddpo"))
    adv_clip_max: float = field(default=5.0, metadata=_opt("DDPO: advantages are clipped to ±this.", group="ddpo"))
    timestep_fraction: float = field(default=1.0, metadata=_opt("DDPO: share of each trajectory's steps trained on (a random subset per trajectory).", group="ddpo"))
    advantages: str = field(default="per_prompt", metadata=_opt(
        "DDPO: reward normalisation — per_prompt (running mean/std per prompt, batch statistics until a prompt has "
        "stat_min_count rewards), batch (this epoch's mean/std) or group (GRPO-style: the samples of the same prompt "
        "this epoch; needs prompt_group_size ≥ 2).", ("per_prompt", "batch", "group"), "ddpo"))
    stat_buffer_size: int = field(default=16, metadata=_opt("DDPO per_prompt advantages: rewards remembered per prompt.", group="ddpo"))
    stat_min_count: int = field(default=16, metadata=_opt("DDPO per_prompt advantages: rewards a prompt needs before its own statistics are used.", group="ddpo"))
    prompt_group_size: int = field(default=1, metadata=_opt("DDPO: each drawn prompt is sampled this many times per epoch (a divisor of samples_per_epoch).", group="ddpo"))
    kl_samples: int = field(default=2, metadata=_opt(
        "DDPO: trajectories per epoch also scored under the base model (adapters off) to log the KL drift "
        "kl_to_base; each costs one more model pass per step (0 = off).", group="ddpo"))
    reward_target: float | None = field(default=None, metadata=_opt("DDPO: stop once an epoch's mean reward reaches this (guards against over-optimising the reward).", group="ddpo"))

    # --- LoRA ----------------------------------------------------------------------------------
    rank: int = field(default=8, metadata=_opt("LoRA rank (network dim).", group="lora"))
    lora_alpha: float | None = field(default=None, metadata=_opt("LoRA alpha (network alpha); scale = alpha/rank. Default: equal to rank.", group="lora"))
    lora_dropout: float = field(default=0.0, metadata=_opt("Dropout on the LoRA branch while training.", group="lora"))
    lora_targets: list[str] = field(default_factory=lambda: list(DEFAULT_UNET_TARGETS), metadata=_opt("UNet module names (suffixes) that get LoRA.", group="lora"))
    train_text_encoder: bool = field(default=False, metadata=_opt("Also train LoRA on the text encoder(s).", group="lora"))
    text_encoder_targets: list[str] = field(default_factory=lambda: list(DEFAULT_TEXT_ENCODER_TARGETS), metadata=_opt("Text-encoder module names that get LoRA.", group="lora"))
    text_encoder_lr: float | None = field(default=None, metadata=_opt("Learning rate of the text-encoder LoRA; default: learning_rate.", group="lora"))

    # --- optimisation --------------------------------------------------------------------------
    max_train_steps: int = field(default=1000, metadata=_opt("Optimizer steps to train.", group="optimization"))
    num_epochs: float | None = field(default=None, metadata=_opt("If set, train this many passes over the data (DDPO: sampling rounds) instead of max_train_steps.", group="optimization", aliases=("--epochs",)))
    batch_size: int = field(default=2, metadata=_opt("Pairs (DPO/MaPO), images (KTO) or trajectories (DDPO) per process per micro-batch.", group="optimization"))
    gradient_accumulation_steps: int = field(default=1, metadata=_opt("Micro-batches per optimizer step (DDPO: batches of trajectories, each over all its trained timesteps).", group="optimization"))
    learning_rate: float = field(default=1e-4, metadata=_opt("Peak learning rate of the LoRA weights.", group="optimization"))
    lr_scheduler: str = field(default="constant_with_warmup", metadata=_opt("Learning-rate schedule.", ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"), "optimization"))
    lr_warmup_steps: int = field(default=0, metadata=_opt("Steps of linear warm-up.", group="optimization"))
    lr_num_cycles: int = field(default=1, metadata=_opt("Restarts of cosine_with_restarts.", group="optimization"))
    lr_power: float = field(default=1.0, metadata=_opt("Power of the polynomial schedule.", group="optimization"))
    optimizer: str = field(default="auto", metadata=_opt("adamw, adamw8bit (needs bitsandbytes and CUDA), or auto (8-bit when bitsandbytes and CUDA are present).", ("auto", "adamw", "adamw8bit"), "optimization"))
    adam_beta1: float = field(default=0.9, metadata=_opt("Adam β1.", group="optimization"))
    adam_beta2: float = field(default=0.999, metadata=_opt("Adam β2.", group="optimization"))
    adam_epsilon: float = field(default=1e-8, metadata=_opt("Adam ε.", group="optimization"))
    weight_decay: float = field(default=1e-2, metadata=_opt("AdamW weight decay.", group="optimization"))
    max_grad_norm: float = field(default=1.0, metadata=_opt("Gradient clipping norm (0 = off).", group="optimization"))

    # --- hardware ------------------------------------------------------------------------------
    mixed_precision: str = field(default="no", metadata=_opt("Autocast precision; the frozen weights are stored in it, LoRA stays fp32.", ("no", "fp16", "bf16"), "hardware"))
    gradient_checkpointing: bool = field(default=False, metadata=_opt("Recompute UNet activations in the backward pass to save memory.", group="hardware"))
    device: str = field(default="auto", metadata=_opt("auto (what `accelerate launch` or the machine offers) or cpu.", ("auto", "cpu"), "hardware"))

    # --- validation: a held-out split and the best checkpoint ------------------------------------
    validation_split: float = field(default=0.05, metadata=_opt(
        "Share of the preference data held out for validation (never sharing an image or caption with training); "
        "scored every validation_every steps, the best step exported as NAME-best.safetensors. 0 = off.", group="validation"))
    validation_min: int = field(default=4, metadata=_opt("Fewest held-out items; data that cannot spare them (held-out > a quarter) trains without validation.", group="validation"))
    validation_every: int = field(default=0, metadata=_opt("Score the held-out split every N steps (0 = a tenth of the run), and at the start and the end.", group="validation"))
    validation_draws: int = field(default=4, metadata=_opt("Noise/timestep draws per held-out item (stratified over the schedule, fixed seed).", group="validation"))
    early_stopping_patience: int = field(default=0, metadata=_opt("Stop after this many held-out scores in a row without a new best (0 = never); the best weights are NAME-best.", group="validation"))

    # --- outputs and monitoring ----------------------------------------------------------------
    checkpoint_every: int = field(default=500, metadata=_opt("Save a resumable checkpoint every N steps (0 = only at the end).", group="output"))
    checkpoints_keep: int = field(default=2, metadata=_opt("Checkpoints to keep (0 = all).", group="output"))
    sample_every: int = field(default=0, metadata=_opt("Generate preview images every N steps (DDPO: every N epochs; 0 = never during training).", group="output"))
    sample_prompts: list[str] = field(default_factory=list, metadata=_opt("Prompts of the preview images; default: the first captions of the data.", group="output"))
    sample_seeds: list[int] = field(default_factory=lambda: [0], metadata=_opt("Seeds of the preview images (each prompt with each seed).", group="output"))
    sample_steps: int = field(default=20, metadata=_opt("Sampling steps of preview images (DDPO: also of the training trajectories).", group="output"))
    sample_cfg_scale: float = field(default=7.0, metadata=_opt("Guidance scale of preview images (DDPO: also of the training trajectories; ≤ 1 = no guidance).", group="output"))
    sample_sampler: str = field(default="DDIM", metadata=_opt("Sampler of preview images (see lib_alignment.generation.SAMPLERS).", group="output"))
    preview: bool = field(default=True, metadata=_opt("Write NAME.preview.png (first sample prompt and seed) next to the LoRA.", group="output"))
    log_every: int = field(default=1, metadata=_opt("Write metrics and a step event every N steps.", group="output"))
    tensorboard: bool | None = field(default=None, metadata=_opt("Also log to TensorBoard; default: when tensorboard is installed.", group="output"))
    events_stdout: bool = field(default=False, metadata=_opt("Print progress events as JSON lines on stdout (for the WebUI) instead of a progress bar.", group="output"))
    progress_bar: bool = field(default=True, metadata=_opt("Show a tqdm progress bar on the terminal.", group="output"))
    stop_file: str = field(default="", metadata=_opt("Creating this file stops the run cleanly; default RUN_DIR/STOP.", group="output"))
    save_precision: str = field(default="fp16", metadata=_opt("dtype of the exported LoRA tensors.", ("fp16", "bf16", "fp32"), "output"))
    preferred_weight: float = field(default=1.0, metadata=_opt("'preferred weight' in NAME.json for the WebUI's Lora card.", group="output"))
    description: str = field(default="", metadata=_opt("Description in NAME.json; default: what was trained and how.", group="output"))
    activation_text: str = field(default="", metadata=_opt("'activation text' in NAME.json.", group="output"))

    # ------------------------------------------------------------------------------------------
    @property
    def effective_beta(self) -> float:
        return float(self.beta) if self.beta is not None else DEFAULT_BETA.get(self.method, 0.0)

    @property
    def effective_caption_dropout(self) -> float:
        if self.caption_dropout is not None:
            return float(self.caption_dropout)
        return REFERENCE_CAPTION_DROPOUT if self.method in RECIPE_AUGMENTED else 0.0

    @property
    def effective_random_flip(self) -> bool:
        return bool(self.random_flip) if self.random_flip is not None else self.method in RECIPE_AUGMENTED

    def precision_warning(self) -> str:
        """Why bf16 is a poor choice for this run, or ''. DPO/KTO's margin is a small difference of large
        denoising errors times a large β: bf16 keeps 8 bits of mantissa, so at β in the thousands the
        rounding of each error (≈0.4% of it) is larger than the difference being learnt."""
        if self.mixed_precision != "bf16" or self.method not in LARGE_BETA_METHODS or self.effective_beta < 100:
            return ""
        return (f"mixed_precision bf16 with {self.method} at beta {self.effective_beta:g}: the margin is a small difference of large "
                "denoising errors, which bf16's 8-bit mantissa rounds away (noisy or NaN losses). Use fp16 (the LoRA stays fp32) "
                "or no mixed precision.")

    @property
    def effective_alpha(self) -> float:
        return float(self.lora_alpha) if self.lora_alpha is not None else float(self.rank)

    @property
    def data_kind(self) -> str:
        """'pairs' for DPO and MaPO, 'labeled' for KTO, 'rollouts' for DDPO."""
        if self.method in REWARD_METHODS:
            return "rollouts"
        if self.method == "listwise":
            return "rankings"
        return "labeled" if self.method == "kto" else "pairs"

    def resolved_run_dir(self) -> Path:
        """--run-dir, else alignment-runs/NAME beside OUTPUT_DIR: never inside the LoRA folder, whose
        listing in the WebUIs would otherwise pick up the checkpoints' .safetensors files."""
        if self.run_dir:
            return Path(self.run_dir).expanduser()
        return Path(self.output_dir or ".").expanduser().absolute().parent / RUNS_FOLDER / self.name

    def resolved_stop_file(self) -> Path:
        return Path(self.stop_file).expanduser() if self.stop_file else self.resolved_run_dir() / "STOP"

    def output_path(self) -> Path:
        return Path(self.output_dir).expanduser() / f"{self.name}.safetensors"

    def validate(self, require_paths: bool = True) -> TrainConfig:
        """Raise ConfigError listing every bad field; returns self for chaining."""
        problems: list[str] = []

        def bad(name: str, why: str) -> None:
            problems.append(f"{name}: {why} (got {getattr(self, name)!r})")

        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                bad(f.name, f"must be one of {', '.join(choices)}")
        if require_paths:
            needed = ("model", "output_dir", "name") + (("reward",) if self.method in REWARD_METHODS else ("data",))
            for name in needed:
                if not str(getattr(self, name)).strip():
                    problems.append(f"{name}: is required")
            if self.method in REWARD_METHODS and not self.prompts:
                problems.append("prompts: is required for DDPO (text, a prompt file or a template)")
        if self.method in REWARD_METHODS:
            self._validate_ddpo(bad)
        if self.name:
            try:
                safe_name(self.name, "name")
            except ValueError as error:
                problems.append(f"name: {error}")
        positive_ints = ("rank", "batch_size", "gradient_accumulation_steps", "sample_steps", "log_every")
        for name in positive_ints:
            if int(getattr(self, name)) < 1:
                bad(name, "must be ≥ 1")
        if self.vae and require_paths:
            from ..models.vae_file import check_vae_path

            try:
                check_vae_path(self.vae)
            except (ValueError, FileNotFoundError) as error:
                problems.append(f"vae: {error}")
        if not 0.0 <= self.validation_split < 0.5:
            bad("validation_split", "must be in [0, 0.5)")
        if self.validation_draws < 1:
            bad("validation_draws", "must be ≥ 1")
        for name in ("max_train_steps", "validation_min", "validation_every", "early_stopping_patience", "lr_warmup_steps", "checkpoint_every", "checkpoints_keep", "sample_every", "dataloader_workers", "min_per_class"):
            if int(getattr(self, name)) < 0:
                bad(name, "must be ≥ 0")
        if self.num_epochs is None and self.max_train_steps < 1:
            bad("max_train_steps", "must be ≥ 1 unless num_epochs is set")
        if self.num_epochs is not None and not (self.num_epochs > 0 and math.isfinite(self.num_epochs)):
            bad("num_epochs", "must be a positive number")
        if self.resolution < 0 or self.resolution % 8:
            bad("resolution", "must be 0 (native) or a positive multiple of 8")
        for name in ("caption_dropout", "lora_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= float(value) < 1.0:
                bad(name, "must be in [0, 1)")
        if not 0.0 <= self.max_bad_images <= 1.0:
            bad("max_bad_images", "must be in [0, 1]")
        if self.positive_ratio is not None and not 0.0 < self.positive_ratio < 1.0:
            bad("positive_ratio", "must be in (0, 1), or none for plain shuffling")
        for name in ("learning_rate", "adam_epsilon"):
            if not float(getattr(self, name)) > 0:
                bad(name, "must be > 0")
        if self.text_encoder_lr is not None and not self.text_encoder_lr > 0:
            bad("text_encoder_lr", "must be > 0")
        for name in ("weight_decay", "max_grad_norm", "kto_lambda_desirable", "kto_lambda_undesirable"):
            if float(getattr(self, name)) < 0:
                bad(name, "must be ≥ 0")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                bad(name, "must be in [0, 1)")
        if self.beta is not None and not (self.beta > 0 and math.isfinite(self.beta)):
            bad("beta", "must be a positive number")
        if self.lora_alpha is not None and not self.lora_alpha > 0:
            bad("lora_alpha", "must be > 0")
        if self.mapo_snr_value <= 0:
            bad("mapo_snr_value", "must be > 0")
        if not self.lora_targets:
            bad("lora_targets", "needs at least one module name")
        if self.train_text_encoder and not self.text_encoder_targets:
            bad("text_encoder_targets", "needs at least one module name when train_text_encoder is on")
        if self.sample_every and not self.sample_seeds:
            bad("sample_seeds", "needs at least one seed when sample_every is set")
        from ..generation import SAMPLERS

        if self.sample_sampler not in SAMPLERS:
            bad("sample_sampler", f"must be one of {', '.join(SAMPLERS)}")
        if problems:
            raise ConfigError("invalid training options:\n  " + "\n  ".join(problems))
        return self

    def _validate_ddpo(self, bad: Any) -> None:
        for name in ("samples_per_epoch", "rollout_batch_size", "inner_epochs", "stat_buffer_size", "stat_min_count", "prompt_group_size"):
            if int(getattr(self, name)) < 1:
                bad(name, "must be ≥ 1")
        if self.kl_samples < 0:
            bad("kl_samples", "must be ≥ 0")
        for name in ("eta", "clip_range", "adv_clip_max"):
            if not (float(getattr(self, name)) > 0 and math.isfinite(float(getattr(self, name)))):
                bad(name, "must be > 0")
        if not 0.0 < self.timestep_fraction <= 1.0:
            bad("timestep_fraction", "must be in (0, 1]")
        per_step = self.batch_size * self.gradient_accumulation_steps
        if self.samples_per_epoch >= 1 and per_step >= 1 and self.samples_per_epoch % per_step:
            bad("samples_per_epoch", f"must be a multiple of batch_size × gradient_accumulation_steps = {per_step}")
        if self.prompt_group_size >= 1 and self.samples_per_epoch % self.prompt_group_size:
            bad("samples_per_epoch", f"must be a multiple of prompt_group_size = {self.prompt_group_size}")
        if self.advantages == "group" and self.prompt_group_size < 2:
            bad("prompt_group_size", "must be ≥ 2 for group advantages (samples of one prompt are compared with each other)")
        if self.reward_target is not None and not math.isfinite(self.reward_target):
            bad("reward_target", "must be a finite number")
        if self.cache_latents:
            bad("cache_latents", "does not apply to DDPO, which trains on its own samples")

    # --- conversions ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "options") -> TrainConfig:
        """Build from a mapping (TOML, JSON, the WebUI), converting and checking each value's type."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = [k for k in values if k.replace("-", "_") not in known]
        if unknown:
            raise ConfigError(f"{source}: unknown option(s) {', '.join(map(repr, unknown))}; known: see `python -m lib_alignment train --help`")
        converted = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            converted[name] = coerce_value(known[name], value, source)
        return cls(**converted)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def field_kind(f: dataclasses.Field) -> str:
    """'bool', 'int', 'float', 'str', 'list[str]', 'list[int]' (with '?' appended when None is allowed)."""
    annotation = str(f.type).replace(" ", "")
    optional = annotation.endswith("|None")
    base = annotation[: -len("|None")] if optional else annotation
    return base + ("?" if optional else "")


def coerce_value(f: dataclasses.Field, value: Any, source: str = "options") -> Any:
    """Convert a TOML/JSON/command-line value to the field's type, with an error naming the field."""
    kind = field_kind(f)
    optional = kind.endswith("?")
    base = kind.rstrip("?")
    where = f"{source}: {f.name}"
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"{where}: a value is required")
    try:
        if base == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{value!r} is not a boolean")
        if base == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(f"{value!r} is not an integer")
            return int(value)
        if base == "float":
            if isinstance(value, bool):
                raise ValueError(f"{value!r} is not a number")
            return float(value)
        if base == "str":
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError(f"{value!r} is not text")
            return str(value)
        if base.startswith("list["):
            item = base[5:-1]
            items = value if isinstance(value, (list, tuple)) else [v.strip() for v in str(value).split(",") if v.strip()]
            return [int(v) if item == "int" else str(v) for v in items]
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None
    raise ConfigError(f"{where}: unsupported option type {kind}")


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file; tomllib on 3.11+, else tomli, else a clear error."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised in the 3.10 host stacks only
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise ConfigError(f"{path}: reading TOML on Python {sys.version_info.major}.{sys.version_info.minor} needs the 'tomli' package (pip install tomli)") from None
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist")
    try:
        with file.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{file}: not valid TOML: {error}") from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):  # [sections] only group options; their keys are option names
            flat.update(value)
        else:
            flat[key] = value
    return flat


#: Fields whose change makes a checkpoint's weights unusable for the run.
STRUCTURAL_FIELDS = ("model", "rank", "lora_targets", "train_text_encoder", "text_encoder_targets")
