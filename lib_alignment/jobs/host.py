"""What a job needs from the program it runs in: the WebUI (through the facade) or the standalone app."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _nothing() -> None:
    return None


def _false() -> bool:
    return False


@dataclass
class JobHost:
    """Host specifics behind the job runner.

    model_source: the model a new job trains ("tiny", a folder, or the WebUI's loaded checkpoint file).
    python / extension_root / env: how to start the trainer's command line.
    refresh_loras: make a new LoRA file show up as a card (WebUI), after a job wrote one.
    unload_model / reload_model: free the GPU from the host's own model while training, and take it back.
    model_on_gpu: whether the host's model currently holds GPU memory (for the memory warning).
    save_tokenizer: write the host's loaded tokenizer to a folder, for checkpoints without one nearby.
    vae_file: the VAE file the host selected to replace the checkpoint's VAE, or None (its own VAE).
    """

    name: str
    output_dir: Path
    lora_dir: Path
    model_source: Callable[[], str]
    python: str = sys.executable
    extension_root: Path = field(default_factory=lambda: Path(__file__).resolve().parent.parent.parent)
    env: dict[str, str] = field(default_factory=dict)
    refresh_loras: Callable[[], None] = _nothing
    unload_model: Callable[[], None] | None = None
    reload_model: Callable[[], None] | None = None
    model_on_gpu: Callable[[], bool] = _false
    save_tokenizer: Callable[[Path], Path | None] | None = None
    vae_file: Callable[[], Path | None] | None = None
    preferences_dir: Path | None = None  # the preference store ("My preferences"); None: <output_dir>/preferences

    @property
    def in_webui(self) -> bool:
        return self.name != "standalone"


def host_for(ctx: Any) -> JobHost:
    """The JobHost of a tab/API context (lib_alignment.ui.context.AppContext)."""
    from .. import webui_facade as webui

    if getattr(ctx, "in_webui", False):
        return JobHost(
            name=ctx.host,
            output_dir=Path(ctx.output_dir),
            lora_dir=Path(ctx.lora_dir),
            model_source=ctx.model_source,
            python=webui.python_executable(),
            extension_root=webui.EXTENSION_ROOT,
            refresh_loras=webui.refresh_loras,
            unload_model=webui.unload_model,
            reload_model=webui.reload_model,
            model_on_gpu=webui.model_on_gpu,
            save_tokenizer=webui.save_tokenizer,
            vae_file=webui.webui_vae_file,
            preferences_dir=_preferences_dir(ctx),
        )

    def standalone_model_on_gpu() -> bool:
        backend = getattr(ctx, "_backend", None)  # only if the app has loaded its model already
        pipe = getattr(backend, "pipe", None)
        device = getattr(getattr(pipe, "unet", None), "device", None)
        return getattr(device, "type", "cpu") == "cuda"

    return JobHost(
        name="standalone",
        output_dir=Path(ctx.output_dir),
        lora_dir=Path(ctx.lora_dir),
        model_source=ctx.model_source,
        extension_root=webui.EXTENSION_ROOT,
        model_on_gpu=standalone_model_on_gpu,
        preferences_dir=_preferences_dir(ctx),
    )


def _preferences_dir(ctx: Any) -> Path:
    from ..preferences import store_root

    return store_root(ctx)
