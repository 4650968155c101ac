"""`load_pipeline`: resolve a model source and load it offline onto a device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..devices import select_device, select_dtype

BUILTIN_SOURCES = ("tiny", "tiny-random")
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


@dataclass
class PipelineOptions:
    """How to place and run a loaded pipeline.

    device/dtype: "auto" picks cuda > mps > cpu and fp16 on accelerators, fp32 on cpu.
    attention: "sdpa" (PyTorch's fused attention, diffusers' default), or "sliced"
    for attention slicing on small GPUs. vae_tiling decodes big images in tiles.
    tokenizer: a folder, or a tokenizer object handed over by the WebUI, for
    single-file checkpoints whose tokenizer cannot be found locally otherwise.
    config: a local diffusers config folder overriding the one chosen for a
    single-file checkpoint. seed: for "tiny-random".
    vae: a VAE file in LDM layout (.safetensors/.pt/.ckpt, as in the WebUI's
    models/VAE) replacing the model's VAE; needed for checkpoints without one.
    """

    device: str | None = "auto"
    dtype: str | None = "auto"
    attention: str = "sdpa"
    vae_tiling: bool = False
    tokenizer: Any = None
    config: str | Path | None = None
    seed: int = 0
    vae: str | Path | None = None


def load_pipeline(source: str | Path, **options: Any) -> Any:
    """Load "tiny", "tiny-random", a diffusers folder or a single-file checkpoint, offline.

    Keyword options are the fields of `PipelineOptions`.
    """
    opts = PipelineOptions(**options)
    if opts.vae:
        from .vae_file import check_vae_path

        check_vae_path(opts.vae)  # a wrong path fails before any model is loaded
    pipe = _load_on_cpu(source, opts)
    if opts.vae and not _is_single_file(source):
        from .vae_file import load_vae_file

        pipe.register_modules(vae=load_vae_file(opts.vae, pipe.vae.config).to(device=pipe.device, dtype=pipe.dtype))
    return place_pipeline(pipe, opts)


def _is_single_file(source: str | Path) -> bool:
    path = Path(source).expanduser()
    return path.is_file() and path.suffix.lower() in SINGLE_FILE_SUFFIXES


def _load_on_cpu(source: str | Path, opts: PipelineOptions) -> Any:
    from .tiny import tiny_pipeline, tiny_random_pipeline

    if str(source) == "tiny":
        return tiny_pipeline()
    if str(source) == "tiny-random":
        return tiny_random_pipeline(seed=opts.seed)
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(f"{path} is a folder but not a diffusers pipeline: model_index.json is missing")
        return load_diffusers_folder(path)
    if path.is_file():
        if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
            raise ValueError(f"{path}: unsupported checkpoint type {path.suffix!r}; expected one of {SINGLE_FILE_SUFFIXES}")
        from .single_file import load_single_file

        return load_single_file(path, config=opts.config, tokenizer=opts.tokenizer, vae=opts.vae or None)
    raise FileNotFoundError(
        f"model source {str(source)!r} is neither {' nor '.join(map(repr, BUILTIN_SOURCES))}, "
        "nor an existing diffusers folder or .safetensors/.ckpt file"
    )


def load_diffusers_folder(path: Path) -> Any:
    """A diffusers pipeline folder, from local files only."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(path, local_files_only=True, safety_checker=None, requires_safety_checker=False)
    return pipe


def place_pipeline(pipe: Any, opts: PipelineOptions) -> Any:
    """Move to the chosen device and dtype and apply the memory options."""
    device = select_device(opts.device)
    dtype = select_dtype(opts.dtype, device)
    if pipe.device != device or pipe.dtype != dtype:
        pipe = pipe.to(device=device, dtype=dtype)
    if opts.attention == "sliced":
        pipe.enable_attention_slicing()
    elif opts.attention != "sdpa":
        raise ValueError(f"attention {opts.attention!r} is not one of 'sdpa', 'sliced'")
    if opts.vae_tiling:
        pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    return pipe
