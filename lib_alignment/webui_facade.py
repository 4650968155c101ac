"""The one place that touches the WebUI's `modules` (A1111 v1.10 and Forge).

Everything else in lib_alignment stays importable and testable without a
WebUI; the thin files in `scripts/` and the WebUI-backed generation backend get
what they need from here. Every function imports `modules` lazily, so importing
this file outside the WebUI is harmless.
"""

from __future__ import annotations

import contextlib
import importlib.util
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXTENSION_ROOT = Path(__file__).resolve().parent.parent
_fallback_lock = threading.Lock()
_lock_depth = threading.local()


def webui_available() -> bool:
    """True inside a running A1111/Forge process (its `modules` package is importable)."""
    try:
        return importlib.util.find_spec("modules.script_callbacks") is not None
    except (ImportError, ValueError):
        return False


def is_forge() -> bool:
    """Forge ships a `modules_forge` package next to `modules`."""
    try:
        return importlib.util.find_spec("modules_forge") is not None
    except (ImportError, ValueError):
        return False


def host_name() -> str:
    if not webui_available():
        return "standalone"
    return "forge" if is_forge() else "a1111"


# --- callbacks -------------------------------------------------------------------------------


def on_ui_tabs(callback: Callable[[], list[tuple[Any, str, str]]]) -> None:
    """Register top-level tabs: the callback returns [(gr.Blocks, title, elem_id)]."""
    from modules import script_callbacks

    script_callbacks.on_ui_tabs(callback)


def on_app_started(callback: Callable[[Any, Any], None]) -> None:
    """Register a callback(demo, app) run once the FastAPI app exists (for our API routes)."""
    from modules import script_callbacks

    script_callbacks.on_app_started(callback)


# --- the loaded model ------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointInfo:
    """The checkpoint the WebUI has loaded: its file, the yaml beside it (if any), its title."""

    path: Path
    title: str
    yaml: Path | None

    @property
    def name(self) -> str:
        return self.path.stem


def loaded_checkpoint() -> CheckpointInfo | None:
    """The checkpoint the WebUI has loaded; in Forge before its first generation, the one it has selected."""
    from modules import shared

    model = getattr(shared, "sd_model", None)
    info = getattr(model, "sd_checkpoint_info", None)
    if info is None and is_forge():
        info = _forge_selected_checkpoint()
    filename = getattr(info, "filename", None)
    if not filename:
        return None
    path = Path(filename)
    yaml = path.with_suffix(".yaml")
    return CheckpointInfo(path=path, title=str(getattr(info, "title", path.name)), yaml=yaml if yaml.is_file() else None)


def _forge_selected_checkpoint() -> Any | None:
    """Forge loads lazily: its loading parameters (else the checkpoint option) name what it will load."""
    from modules import sd_models, shared

    parameters = getattr(getattr(sd_models, "model_data", None), "forge_loading_parameters", None) or {}
    if parameters.get("checkpoint_info") is not None:
        return parameters["checkpoint_info"]
    title = getattr(getattr(shared, "opts", None), "sd_model_checkpoint", None)
    if not title:
        return None
    found = getattr(sd_models, "checkpoints_list", {}).get(title)
    if found is None and hasattr(sd_models, "get_closet_checkpoint_match"):
        found = sd_models.get_closet_checkpoint_match(title)
    return found


def _forge_loaded_model() -> Any | None:
    """Forge's loaded diffusion engine, or None (before the first generation it is a FakeInitialModel)."""
    from modules import shared

    model = getattr(shared, "sd_model", None)
    return model if getattr(model, "forge_objects", None) is not None else None


#: Forge's tokenizer slots (`forge_objects.clip.tokenizer.<name>`) in diffusers' order: tokenizer, tokenizer_2.
FORGE_TOKENIZER_SLOTS = ("clip_l", "clip_h", "clip_g")
#: The folder under Forge's backend/huggingface that holds each family's configs and tokenizers.
FORGE_FAMILY_REPOS = {
    "sd1": "runwayml/stable-diffusion-v1-5",
    "sd2": "stabilityai/stable-diffusion-2-1",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
}


def webui_tokenizers() -> list[Any]:
    """The loaded model's CLIP tokenizers in diffusers' slot order (SDXL: two); empty when none is loaded.

    A1111 keeps SD1/SD2's on `cond_stage_model.wrapped`; Forge keeps them on its CLIP patcher."""
    from modules import shared

    model = getattr(shared, "sd_model", None)
    forge_objects = getattr(model, "forge_objects", None)
    if forge_objects is not None:
        holder = getattr(getattr(forge_objects, "clip", None), "tokenizer", None)
        found = [getattr(holder, slot, None) for slot in FORGE_TOKENIZER_SLOTS]
        return [tokenizer for tokenizer in found if tokenizer is not None]
    cond = getattr(model, "cond_stage_model", None)
    wrapped = getattr(cond, "wrapped", cond)
    tokenizer = getattr(wrapped, "tokenizer", None)
    return [tokenizer] if tokenizer is not None else []


def webui_tokenizer() -> Any | None:
    """The (first) CLIP tokenizer of the loaded model, handed to our loaders so nothing is fetched."""
    tokenizers = webui_tokenizers()
    return tokenizers[0] if tokenizers else None


def checkpoint_family() -> str | None:
    """"sd1", "sd2" or "sdxl" for the loaded (Forge: or selected) checkpoint; None when unknown."""
    from modules import shared

    model = getattr(shared, "sd_model", None)
    for flag, family in (("is_sdxl", "sdxl"), ("is_sd2", "sd2"), ("is_sd1", "sd1")):
        if getattr(model, flag, False):
            return family
    checkpoint = loaded_checkpoint()
    if checkpoint is None:
        return None
    try:
        from .models.architecture import detect_architecture
        from .models.checkpoint_io import read_summary

        return detect_architecture(read_summary(checkpoint.path)).family
    except (OSError, ValueError):
        return None


def forge_vae_file() -> Path | None:
    """The VAE file Forge loads with the checkpoint (one of its "VAE / Text Encoder" modules), or None.

    Forge keeps the chosen files in its loading parameters' `additional_modules` (and the option
    `forge_additional_modules`); a VAE is one that lives in models/VAE or `--vae-dir`."""
    from modules import paths, shared, sd_models

    parameters = getattr(getattr(sd_models, "model_data", None), "forge_loading_parameters", None) or {}
    chosen = parameters.get("additional_modules")
    if chosen is None:
        chosen = getattr(getattr(shared, "opts", None), "forge_additional_modules", None) or []
    folders = [Path(paths.models_path) / "VAE"]
    vae_dir = getattr(shared.cmd_opts, "vae_dir", None)
    if isinstance(vae_dir, str) and vae_dir:
        folders.append(Path(vae_dir))
    roots = [folder.resolve() for folder in folders]
    for name in chosen:
        path = Path(name).resolve()
        if path.is_file() and any(root in path.parents for root in roots):
            return path
    return None


def forge_tokenizer_folders() -> list[Path]:
    """Forge's own tokenizer folders for the checkpoint's family (backend/huggingface/<repo>/tokenizer[_2])."""
    from modules import paths

    loaded = _forge_loaded_model()
    repo = getattr(getattr(loaded, "model_config", None), "huggingface_repo", None)
    repo = repo or FORGE_FAMILY_REPOS.get(checkpoint_family() or "")
    if not repo:
        return []
    root = Path(paths.script_path) / "backend" / "huggingface" / repo
    return [folder for folder in (root / "tokenizer", root / "tokenizer_2") if (folder / "vocab.json").is_file()]


def torch_device() -> Any:
    from modules import shared

    return shared.device


# --- folders ---------------------------------------------------------------------------------


def lora_dir() -> Path:
    """The WebUI's Lora folder (`--lora-dir`, default models/Lora)."""
    from modules import shared

    configured = getattr(shared.cmd_opts, "lora_dir", None)
    if configured:
        return Path(configured)
    from modules import paths

    return Path(paths.models_path) / "Lora"


def data_dir() -> Path:
    """The WebUI's data folder (`--data-dir`; where config.json and models/ live)."""
    from modules import paths

    return Path(paths.data_path)


def output_dir() -> Path:
    """Where the extension keeps sessions and jobs: <WebUI data dir>/outputs/alignment."""
    return data_dir() / "outputs" / "alignment"


_IMAGE_FOLDER_OPTIONS = (
    "outdir_samples", "outdir_txt2img_samples", "outdir_img2img_samples", "outdir_extras_samples",
    "outdir_grids", "outdir_txt2img_grids", "outdir_img2img_grids", "outdir_save", "outdir_init_images", "temp_dir",
)


def images_dir() -> Path:
    """The WebUI's image outputs: Settings' "Output directory for images" when set, else its outputs/ folder."""
    from modules import shared

    chosen = getattr(getattr(shared, "opts", None), "outdir_samples", "") or ""
    if chosen:
        return _webui_path(chosen)
    try:
        from modules.paths_internal import default_output_dir

        return _webui_path(default_output_dir)
    except ImportError:
        return data_dir() / "outputs"


def image_folders() -> list[Path]:
    """Every folder the WebUI writes result images to (its output folders from Settings, its temporary
    folders, gradio's): a gallery image given by path must lie in one of them."""
    import os
    import tempfile

    from modules import shared

    opts = getattr(shared, "opts", None)
    folders = [images_dir(), data_dir() / "outputs"]
    folders += [_webui_path(value) for name in _IMAGE_FOLDER_OPTIONS if (value := getattr(opts, name, "") or "")]
    folders.append(Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio"))
    return folders


def _webui_path(value: str) -> Path:
    """A folder setting: relative ones are relative to the WebUI's working folder, as its image saving reads them."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path.cwd() / path


# --- locking, auth, refresh ------------------------------------------------------------------


@contextlib.contextmanager
def queue_lock() -> Iterator[None]:
    """The WebUI's generation queue lock, so our work never overlaps a txt2img run.

    Re-entrant for our own nesting (a `webui_task` around several generations holds it
    once; the generations inside do not wait for themselves)."""
    if getattr(_lock_depth, "value", 0):
        _lock_depth.value += 1
        try:
            yield
        finally:
            _lock_depth.value -= 1
        return
    if not webui_available():
        lock: Any = _fallback_lock
    else:
        from modules.call_queue import queue_lock as lock
    with lock:
        _lock_depth.value = 1
        try:
            yield
        finally:
            _lock_depth.value = 0


@contextlib.contextmanager
def webui_task(id_task: str | None = None, job: str = "Rank & Refine") -> Iterator[None]:
    """Run a unit of work as a WebUI job: queued under `id_task` (the page's progress bar polls
    /internal/progress with it), then under the queue lock with `shared.state` begun (fresh
    Interrupt flag, step counters) and ended. Outside the WebUI: just the fallback lock."""
    if not webui_available():
        with queue_lock():
            yield
        return
    from modules import progress, shared

    if id_task:
        progress.add_task_to_queue(id_task)
    with queue_lock():
        shared.state.begin(job=job)
        progress.start_task(id_task)
        try:
            yield
        finally:
            progress.finish_task(id_task)
            shared.state.end()


def end_webui_task(id_task: str | None) -> None:
    """Mark a task the page announced as finished even if it never ran (a request refused before
    any generation), so the page's progress bar goes away at once instead of waiting on it."""
    if not id_task or not webui_available():
        return
    from modules import progress

    progress.pending_tasks.pop(id_task, None)
    if id_task not in progress.finished_tasks:
        progress.finish_task(id_task)


def interrupt() -> None:
    """The WebUI's Interrupt: stops the running sampling (ours or txt2img's)."""
    from modules import shared

    shared.state.interrupt()


class Interrupted(RuntimeError):
    """The user pressed Interrupt while our images were being made."""


def register_send_to_buttons(buttons: dict[str, Any], image_component: Any, infotext_component: Any) -> None:
    """Wire "Send to txt2img/img2img" buttons the way the WebUI's own image panels do: the image
    goes to the target tab, the infotext fills its prompt, seed, size... fields. Call it while the
    tab is being built (the WebUI connects registered bindings after all tabs exist)."""
    try:
        from modules import infotext_utils as paste
    except ImportError:  # before v1.8 the module had its old name
        from modules import generation_parameters_copypaste as paste  # type: ignore[no-redef]

    for tabname, button in buttons.items():
        paste.register_paste_params_button(
            paste.ParamBinding(
                paste_button=button,
                tabname=tabname,
                source_text_component=infotext_component,
                source_image_component=image_component,
            )
        )


def api_credentials() -> dict[str, str]:
    """Users and passwords from `--api-auth user:pass,user2:pass2`; empty when the API is open."""
    if not webui_available():
        return {}
    from modules import shared

    raw = getattr(shared.cmd_opts, "api_auth", None)
    credentials: dict[str, str] = {}
    for item in (raw or "").split(","):
        if ":" in item:
            user, password = item.split(":", 1)
            credentials[user.strip().strip('"')] = password.strip().strip('"')
    return credentials


def api_dependencies() -> list[Any]:
    """FastAPI dependencies that enforce the WebUI's API auth when it is set (none otherwise)."""
    credentials = api_credentials()
    if not credentials:
        return []
    from fastapi import Depends, HTTPException
    from fastapi.security import HTTPBasic, HTTPBasicCredentials

    def check(creds: HTTPBasicCredentials = Depends(HTTPBasic())) -> bool:  # noqa: B008 - FastAPI idiom
        expected = credentials.get(creds.username)
        if expected is not None and secrets.compare_digest(creds.password, expected):
            return True
        raise HTTPException(status_code=401, detail="Incorrect username or password", headers={"WWW-Authenticate": "Basic"})

    # With postponed annotations, FastAPI 0.94 (A1111) looks "HTTPBasicCredentials" up in this
    # module's globals, where the local import is not: give it the class itself.
    check.__annotations__ = {"creds": HTTPBasicCredentials, "return": bool}
    return [Depends(check)]


def refresh_loras() -> None:
    """Ask the built-in Lora extension to rescan its folder so new files show up as cards."""
    try:
        import networks  # the built-in Lora extension's module, on sys.path inside the WebUI
    except ImportError:
        return
    networks.list_available_networks()


# --- generation through the WebUI's own sampler ----------------------------------------------


class _GivenFirstNoise:
    """Stands in for the WebUI's ImageRNG: the first draw is our initial noise, later draws
    (ancestral samplers' per-step noise, hires fix) come from the WebUI's own seeded RNG."""

    def __init__(self, first: Any, fallback: Any) -> None:
        self._first = first
        self._fallback = fallback

    def next(self) -> Any:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return self._fallback.next()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fallback, name)


def _host_txt2img_params(extra_params: dict[str, Any] | None) -> dict[str, Any]:
    """txt2img's extra fields, with what the host needs for them: Forge's hires pass reads
    `hr_additional_modules` as a list (its UI sends ["Use same choices"]) and fails on the default None."""
    params = dict(extra_params or {})
    if params.get("enable_hr") and is_forge():
        params.setdefault("hr_additional_modules", ["Use same choices"])
    return params


def _with_initial_noise(base: Any, initial_noise: Any, captured: list[Any]) -> Any:
    """A subclass of the WebUI's txt2img or img2img processing whose sample() draws our noise first.

    txt2img's and img2img's sample() both start with x = self.rng.next(): txt2img samples from it,
    img2img adds it to the init image's latent (init_latent) at the denoising strength's noise level."""
    import torch
    from modules import shared

    class _WithInitialNoise(base):  # type: ignore[misc, valid-type]
        def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):  # type: ignore[no-untyped-def]
            start = self.iteration * self.batch_size
            noise = initial_noise[start : start + self.batch_size].to(device=shared.device, dtype=torch.float32)
            self.rng = _GivenFirstNoise(noise, self.rng)
            # Forge's own sample() draws x = self.rng.next() (ours) and then copies
            # forge_objects_after_applying_lora (the prompt's LoRAs) into forge_objects: calling it keeps both.
            samples = super().sample(conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts)
            # With hires fix, keep the first pass's latents (A1111 returns the hires latents, Forge decoded images).
            first = self.__dict__.pop("_first_pass_latents", None)
            final = first if first is not None else samples
            captured.append(final.detach().float().cpu())
            return samples

        def sample_hr_pass(self, samples, decoded_samples, *args, **kwargs):  # type: ignore[no-untyped-def]
            self._first_pass_latents = samples
            return super().sample_hr_pass(samples, decoded_samples, *args, **kwargs)

    return _WithInitialNoise


def _with_seeded_init_latent(base: Any, seed: int) -> Any:
    """img2img whose init latent repeats: A1111 encodes the init image by *sampling* the VAE's posterior with
    the global torch RNG, once per image of the batch, so the same noise gave another image in the next call
    (or at another batch position). Seeded by noise_seed and with the first row used for every candidate,
    a candidate's image depends only on its noise."""
    import torch

    class _SeededInitLatent(base):  # type: ignore[misc, valid-type]
        def init(self, all_prompts, all_seeds, all_subseeds):  # type: ignore[no-untyped-def]
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                super().init(all_prompts, all_seeds, all_subseeds)
            latent = getattr(self, "init_latent", None)
            if isinstance(latent, torch.Tensor) and latent.shape[0] > 1:
                self.init_latent = latent[:1].expand_as(latent).clone()

    return _SeededInitLatent


def _run_with_initial_noise(p: Any, n: int, batch_size: int, captured: list[Any]) -> tuple[list[Any], Any]:
    import torch
    from modules import processing, shared

    try:
        with queue_lock():
            processed = processing.process_images(p)
    finally:
        p.close()
    if getattr(shared.state, "interrupted", False):
        raise Interrupted("interrupted: the images of this batch were not finished")
    images = list(processed.images[:n])
    if len(images) < n or len(captured) * batch_size < n:
        raise RuntimeError(f"the WebUI returned {len(images)} of {n} images (interrupted?)")
    return images, torch.cat(captured)[:n]


def _common_params(
    prompts: list[str], negative_prompt: str, noise_seed: int, steps: int, cfg_scale: float, width: int,
    height: int, sampler_name: str, batch_size: int,
) -> dict[str, Any]:
    from modules import shared

    n = len(prompts)
    if n % batch_size:
        raise ValueError(f"{n} images do not split into batches of {batch_size}")
    return {
        "sd_model": shared.sd_model,
        "prompt": list(prompts),
        "negative_prompt": [negative_prompt] * n,
        "seed": [int(noise_seed)] * n,
        "sampler_name": sampler_name,
        "batch_size": batch_size,
        "n_iter": n // batch_size,
        "steps": steps,
        "cfg_scale": cfg_scale,
        "width": width,
        "height": height,
        "do_not_save_samples": True,
        "do_not_save_grid": True,
    }


def txt2img_with_initial_noise(
    *,
    prompts: list[str],
    negative_prompt: str,
    initial_noise: Any,
    noise_seed: int,
    steps: int,
    cfg_scale: float,
    width: int,
    height: int,
    sampler_name: str,
    batch_size: int,
    extra_params: dict[str, Any] | None = None,
) -> tuple[list[Any], Any]:
    """Run the WebUI's txt2img processing with our unit-variance initial noise.

    Everything the WebUI applies to txt2img applies here: the loaded checkpoint and
    VAE (SDXL's conditioning included), LoRAs named in the prompt, sampler and scheduler, clip skip, hires fix
    (through extra_params: its pass draws fresh noise from noise_seed, the same for every candidate).
    Returns (images, final latents on the CPU; with hires fix, the first pass's). All
    candidates share `noise_seed`, so an ancestral sampler's per-step noise is the
    same for every candidate and round. Runs under the WebUI's queue lock.
    """
    from modules import processing

    captured: list[Any] = []
    common = _common_params(prompts, negative_prompt, noise_seed, steps, cfg_scale, width, height, sampler_name, batch_size)
    cls = _with_initial_noise(processing.StableDiffusionProcessingTxt2Img, initial_noise, captured)
    p = cls(**common, **_host_txt2img_params(extra_params))
    return _run_with_initial_noise(p, len(prompts), batch_size, captured)


def img2img_with_initial_noise(
    *,
    init_image: Any,
    denoising_strength: float,
    prompts: list[str],
    negative_prompt: str,
    initial_noise: Any,
    noise_seed: int,
    steps: int,
    cfg_scale: float,
    width: int,
    height: int,
    sampler_name: str,
    batch_size: int,
    extra_params: dict[str, Any] | None = None,
) -> tuple[list[Any], Any]:
    """Run the WebUI's img2img processing from one init image (PIL) with our noise as the noise img2img
    adds to the init latent; the image is resized to width×height (resize mode 0) as in the img2img tab.
    Returns (images, final latents on the CPU). Runs under the WebUI's queue lock."""
    from modules import processing

    captured: list[Any] = []
    common = _common_params(prompts, negative_prompt, noise_seed, steps, cfg_scale, width, height, sampler_name, batch_size)
    cls = _with_seeded_init_latent(
        _with_initial_noise(processing.StableDiffusionProcessingImg2Img, initial_noise, captured), int(noise_seed)
    )
    params = {"resize_mode": 0, **dict(extra_params or {})}
    p = cls(**common, init_images=[init_image], denoising_strength=float(denoising_strength), **params)
    return _run_with_initial_noise(p, len(prompts), batch_size, captured)


def native_size() -> int:
    """The loaded model's training resolution: LDM's latent image_size × 8 (SDXL: 1024)."""
    from modules import shared

    model = shared.sd_model
    if getattr(model, "is_sdxl", False):
        return 1024
    latent_size = getattr(model, "image_size", None)
    if latent_size:
        return int(latent_size) * 8
    if is_forge():  # Forge's engines carry no image_size; before the first generation nothing is loaded
        return _forge_native_size()
    return 512


def _forge_native_size() -> int:
    """SDXL 1024, SD2 v-prediction 768, otherwise 512 (Forge: from the loaded engine, else the selected file)."""
    family = checkpoint_family()
    if family == "sdxl":
        return 1024
    if family != "sd2":
        return 512
    loaded = _forge_loaded_model()
    if loaded is not None:
        predictor = getattr(getattr(loaded.forge_objects.unet, "model", None), "predictor", None)
        prediction = getattr(predictor, "prediction_type", None)
    else:
        checkpoint = loaded_checkpoint()
        prediction = None
        if checkpoint is not None:
            from .models.architecture import detect_architecture
            from .models.checkpoint_io import read_summary

            prediction = detect_architecture(read_summary(checkpoint.path)).prediction_type
    return 768 if prediction == "v_prediction" else 512


def sampler_names() -> list[str]:
    from modules import sd_samplers

    return [sampler.name for sampler in sd_samplers.visible_samplers()]


def max_batch_size() -> int:
    """The largest batch the WebUI's txt2img accepts (its batch-size slider's maximum, 8)."""
    return 8


# --- training jobs ---------------------------------------------------------------------------


def python_executable() -> str:
    """The WebUI's own interpreter (its venv), which runs our trainer's command line."""
    import sys

    return sys.executable


def model_on_gpu() -> bool:
    """Whether the WebUI's model currently sits on a CUDA device (and so holds GPU memory)."""
    if is_forge():  # Forge moves its ModelPatchers on demand and lists what sits on a device
        from backend import memory_management

        return any(getattr(entry.device, "type", None) == "cuda" for entry in memory_management.current_loaded_models)
    from modules import shared

    model = getattr(shared, "sd_model", None)
    if model is None:
        return False
    device = getattr(model, "device", None)
    if device is None:
        device = getattr(shared, "device", None)
    return getattr(device, "type", str(device)) == "cuda"


def unload_model() -> None:
    """Move the WebUI's model off the GPU, as /sdapi/v1/unload-checkpoint does.

    Forge: its memory management unloads every model from the device and empties the CUDA cache."""
    if is_forge():
        from backend import memory_management

        with queue_lock():
            memory_management.unload_all_models()
            memory_management.soft_empty_cache(force=True)
        return
    from modules import sd_models

    with queue_lock():
        sd_models.unload_model_weights()


def reload_model() -> None:
    """Put the WebUI's model back on its device, as /sdapi/v1/reload-checkpoint does in A1111.

    Forge's reload-checkpoint is a no-op stub (its samplers load what they need); here its memory
    management loads the UNet, CLIP and VAE patchers back. A model not loaded yet stays for Forge to load."""
    if is_forge():
        loaded = _forge_loaded_model()
        if loaded is None:
            return
        from backend import memory_management

        parts = loaded.forge_objects
        patchers = [parts.unet, getattr(parts.clip, "patcher", None), getattr(parts.vae, "patcher", None)]
        with queue_lock():
            memory_management.load_models_gpu([p for p in patchers if p is not None])
        return
    from modules import sd_models, shared

    with queue_lock():
        if getattr(shared, "sd_model", None) is not None:
            sd_models.send_model_to_device(shared.sd_model)


def save_tokenizer(folder: Path) -> Path | None:
    """Write the WebUI's CLIP tokenizer(s) to `folder` (for a trainer started without a local one).

    The first goes into `folder`, an SDXL model's second into `folder/tokenizer_2`. The loaded
    model's objects come first; Forge before its first generation gives its own files for the family."""
    targets = (folder, folder / "tokenizer_2")
    tokenizers = [t for t in webui_tokenizers() if hasattr(t, "save_pretrained")]
    if tokenizers:
        for tokenizer, target in zip(tokenizers, targets):
            target.mkdir(parents=True, exist_ok=True)
            tokenizer.save_pretrained(str(target))
        return folder
    if not is_forge():
        return None
    sources = forge_tokenizer_folders()
    if not sources:
        return None
    for source, target in zip(sources, targets):
        shutil.copytree(source, target, dirs_exist_ok=True)
    return folder


def webui_vae_file() -> Path | None:
    """The VAE file the WebUI loaded over the checkpoint's own (`modules.sd_vae.loaded_vae_file`), or None.

    None means the checkpoint's own VAE is in use (A1111 sets loaded_vae_file only for a separate VAE file).
    Forge chooses VAEs among its additional modules: `forge_vae_file`.
    """
    if is_forge():
        try:
            return forge_vae_file()
        except (ImportError, AttributeError):
            return None
    try:
        from modules import sd_vae
    except ImportError:
        return None
    filename = getattr(sd_vae, "loaded_vae_file", None)
    if not filename:
        return None
    path = Path(filename)
    return path if path.is_file() else None
