"""Load a WebUI single-file checkpoint (original LDM layout) as a diffusers pipeline, offline.

Steps: read tensor names (`checkpoint_io`), detect the family (`architecture`),
choose a local diffusers config folder (the `config=` option, else one derived
from `<name>.yaml` beside the checkpoint, else the shipped one), resolve the
tokenizers locally (`tokenizers`), and hand everything to diffusers'
`from_single_file(config=<folder>, local_files_only=True)`. With a local config
folder and the tokenizers passed in, diffusers has nothing to fetch; without
one it would guess a hub repo and download from it.

`.ckpt` files: our own reads use `torch.load(weights_only=True)`, and diffusers
0.30.3, 0.31.0 and 0.42 load them through `load_state_dict`, which passes
weights_only=True whenever torch ≥ 1.13 (tests/test_single_file.py checks it).

After loading, `repair.repair_pipeline` casts fp16/bf16 files to float32 and
resets the CLIP `position_ids` that community files store as floats. A file
without VAE weights needs `vae=` (a WebUI VAE file); `vae=` always replaces the
checkpoint's own VAE, as selecting a VAE in the WebUI does.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .architecture import Architecture, detect_architecture, predicts_v, switch_to_v_prediction
from .checkpoint_io import read_summary
from .ldm_config import LdmYaml, derive_config_folder
from .repair import repair_pipeline
from .tokenizers import resolve_tokenizers
from .vae_file import check_vae_path, has_vae_weights, load_vae_file


def load_single_file(
    path: str | Path, config: str | Path | None = None, tokenizer: Any = None, vae: str | Path | None = None
) -> Any:
    """A StableDiffusionPipeline / StableDiffusionXLPipeline on the CPU in float32 from one checkpoint file.

    config: a local diffusers config folder to use instead of the derived/shipped one.
    tokenizer: a folder with vocab.json/merges.txt, or a tokenizer object (first slot).
    vae: a VAE file in LDM layout (.safetensors/.pt/.ckpt) used instead of the checkpoint's VAE.
    """
    path = Path(path).expanduser()
    summary = read_summary(path)
    yaml_path = path.with_suffix(".yaml")
    ldm = LdmYaml(yaml_path) if config is None and yaml_path.is_file() else None
    arch = detect_architecture(summary, ldm.parameterization() if ldm else None)
    vae_path = check_vae_path(vae) if vae else None
    if vae_path is None and not has_vae_weights(summary.shapes):
        raise ValueError(
            f"{path}: the checkpoint holds no VAE weights (first_stage_model.*); pass --vae FILE "
            "(a VAE .safetensors/.pt/.ckpt as in the WebUI's models/VAE), or select a VAE in the WebUI's settings (SD VAE)"
        )
    with tempfile.TemporaryDirectory(prefix="lib-alignment-config-") as tmp:
        if config is not None:
            config_dir = Path(config).expanduser()
            if not (config_dir / "model_index.json").is_file():
                raise FileNotFoundError(f"config folder {config_dir} has no model_index.json (needed for {path})")
        elif ldm is not None:
            config_dir = derive_config_folder(ldm, arch, Path(tmp))
        else:
            config_dir = arch.config_dir
        tokenizers = resolve_tokenizers(config_dir, arch.tokenizer_slots, tokenizer, path)
        components = dict(tokenizers)
        if vae_path is not None:
            components["vae"] = load_vae_file(vae_path, _read_json(config_dir / "vae" / "config.json"))
        pipe = _from_single_file(arch, path, config_dir, components)
    _check_all_weights_loaded(pipe, path)
    repair_pipeline(pipe)
    if arch.family == "sd2" and arch.prediction_type is None and config is None and predicts_v(pipe.unet):
        switch_to_v_prediction(pipe)
    return pipe


def _read_json(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def _from_single_file(arch: Architecture, path: Path, config_dir: Path, components: dict[str, Any]) -> Any:
    import diffusers

    pipeline_class = getattr(diffusers, arch.pipeline_class_name)
    extra: dict[str, Any] = {}
    if arch.family != "sdxl":
        extra.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    try:
        pipe = pipeline_class.from_single_file(
            str(path), config=str(config_dir), local_files_only=True, **components, **extra
        )
    except Exception as error:  # diffusers raises assorted types (SingleFileComponentError, ValueError, RuntimeError…)
        raise ValueError(
            f"{path}: diffusers could not build a {arch.family} pipeline from it with the config folder {config_dir} "
            f"({type(error).__name__}: {error}). If its architecture is non-standard, put its original LDM yaml "
            f"beside it as {path.with_suffix('.yaml').name}"
        ) from error
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _check_all_weights_loaded(pipe: Any, path: Path) -> None:
    """diffusers leaves parameters the checkpoint lacks on the meta device; say so here, not at .to()."""
    for name, component in pipe.components.items():
        params = getattr(component, "named_parameters", None)
        if params is None:
            continue
        missing = [key for key, value in params() if value.device.type == "meta"]
        if missing:
            raise ValueError(f"{path}: the checkpoint lacks {len(missing)} {name} weights, e.g. {missing[:3]}")
