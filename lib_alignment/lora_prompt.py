"""`<lora:NAME:WEIGHT>` in prompts outside the WebUI: the LoRA is applied, the tag taken out of the text.

The WebUI handles these tags itself; the standalone app's backend is wrapped in
LoraTagBackend, which resolves NAME to NAME.safetensors in its LoRA folder (where
the training tab puts finished LoRAs), merges it for the duration of one batch
(restoring the exact weights afterwards) and generates from the prompt without the
tag. An unknown name or a weight that is not a number is refused with a message.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: <lora:NAME> or <lora:NAME:WEIGHT> (A1111 also allows a further ":..." part, ignored here).
LORA_TAG = re.compile(r"<lora:([^:>]*)(?::([^:>]*))?(?::[^>]*)?>", re.IGNORECASE)


def parse_lora_tags(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """(the prompt without its lora tags, [(name, weight), ...]); ValueError for an empty name or a bad weight."""
    tags: list[tuple[str, float]] = []
    for match in LORA_TAG.finditer(prompt or ""):
        name, weight_text = match.group(1).strip(), (match.group(2) or "1").strip()
        if not name:
            raise ValueError(f"prompt: {match.group(0)} names no LoRA; write <lora:NAME:1>")
        try:
            weight = float(weight_text)
        except ValueError:
            raise ValueError(f"prompt: the weight of {match.group(0)} is not a number; write e.g. <lora:{name}:0.8>") from None
        tags.append((name, weight))
    clean = re.sub(r"\s+,", ",", re.sub(r"\s{2,}", " ", LORA_TAG.sub(" ", prompt or ""))).strip(" ,")
    return clean, tags


def check_prompt_loras(prompt: str, folder: Path) -> list[tuple[Path, float]]:
    """The LoRA files and weights a prompt's tags ask for; ValueError for a bad tag or a missing or bad file."""
    _, tags = parse_lora_tags(prompt)
    return [(resolve_lora(folder, name), weight) for name, weight in tags]


def resolve_lora(folder: Path, name: str) -> Path:
    """folder/NAME.safetensors; ValueError naming the folder and what is there when it is missing."""
    from .paths import safe_name

    try:
        safe_name(name, "LoRA name")
    except ValueError:
        raise ValueError(f"prompt: <lora:{name}> is not a LoRA name (letters, digits, '.', '_', '-' and spaces)") from None
    path = folder / f"{name}.safetensors"
    if path.is_file():
        check_lora_file(path)
        return path
    known = sorted(p.stem for p in folder.glob("*.safetensors")) if folder.is_dir() else []
    listed = ", ".join(known[:10]) + (" …" if len(known) > 10 else "") if known else "none yet"
    raise ValueError(f"prompt: <lora:{name}> — no {name}.safetensors in {folder} (trained LoRAs: {listed})")


def check_lora_file(path: Path) -> None:
    """ValueError unless `path` is a readable safetensors file of kohya LoRA tensors (reads the header only)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())  # noqa: SIM118 - safe_open is not a dict
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types for a bad header
        raise ValueError(f"{path}: not a LoRA .safetensors file ({str(error).splitlines()[0][:200]})") from None
    if not any(key.endswith((".lora_down.weight", ".lora_up.weight")) for key in keys):
        raise ValueError(f"{path}: holds no kohya LoRA tensors (no *.lora_down.weight / *.lora_up.weight)")


class LoraTagBackend:
    """A GenerationBackend over a diffusers one that applies the `<lora:...>` tags of the prompts."""

    def __init__(self, inner: Any, lora_dir: Path) -> None:
        self.inner = inner
        self.lora_dir = Path(lora_dir)
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # model_name, pipe, latent_shape, default_size, sampler_names, ...
        return getattr(self.inner, name)

    def generate(self, settings: Any, initial_latents: Any, prompts: Sequence[str] | None = None, progress: Any = None) -> Any:
        """The inner backend's images, with the tagged LoRAs merged for this batch (the same tags in every prompt)."""
        texts = list(prompts) if prompts is not None else [settings.prompt]
        parsed = [parse_lora_tags(text) for text in texts]
        tag_sets = {tuple(tags) for _, tags in parsed}
        if len(tag_sets) > 1:
            raise ValueError("prompt: every prompt of one batch must ask for the same <lora:...> tags")
        tags = next(iter(tag_sets)) if tag_sets else ()
        if not tags:
            return self.inner.generate(settings, initial_latents, prompts=prompts, progress=progress)
        files = check_prompt_loras(settings.prompt if prompts is None else texts[0], self.lora_dir)
        clean_settings = settings.with_(prompt=parse_lora_tags(settings.prompt)[0])
        clean_prompts = [text for text, _ in parsed] if prompts is not None else None
        from .jobs.compare import lora_merged

        with self._lock, contextlib.ExitStack() as stack:
            for path, weight in files:
                stack.enter_context(lora_merged(self.inner.pipe, path, weight))
            return self.inner.generate(clean_settings, initial_latents, prompts=clean_prompts, progress=progress)
