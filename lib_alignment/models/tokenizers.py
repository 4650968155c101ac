"""Find the CLIP tokenizer(s) for a single-file checkpoint without touching the network.

Checkpoints carry no tokenizer and the shipped config folders hold only the
tokenizer configs (which pad token, which length), not the 1.6 MB vocabulary.
Every SD family uses the same CLIP BPE vocabulary and merges, so any local copy
serves any slot; the slot's config from the config folder decides the rest.

Sources, first found wins: a tokenizer object handed over (used as is for the
first slot), a folder given by the user (`<folder>/<slot>/` or the folder
itself), the config folder (filled from the text-encoder folder a yaml names),
the tokenizer folders Forge ships in its own tree (`backend/huggingface/<repo>/`,
when this extension sits in a Forge install), and the Hugging Face cache the
WebUI already filled (`CACHE_REPOS`). A folder
with only tokenizer.json (what transformers 5 saves) is loaded as it is.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

VOCAB_FILES = ("vocab.json", "merges.txt")
CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")

#: (repo id, subfolder) pairs whose cached vocab.json/merges.txt are CLIP's BPE files.
CACHE_REPOS: tuple[tuple[str, str], ...] = (
    ("openai/clip-vit-large-patch14", ""),
    ("laion/CLIP-ViT-H-14-laion2B-s32B-b79K", ""),
    ("laion/CLIP-ViT-bigG-14-laion2B-39B-b160k", ""),
    ("stabilityai/stable-diffusion-xl-base-1.0", "tokenizer"),
    ("stabilityai/stable-diffusion-xl-base-1.0", "tokenizer_2"),
    ("stabilityai/stable-diffusion-2-1", "tokenizer"),
    ("stabilityai/stable-diffusion-2-1-base", "tokenizer"),
    ("stabilityai/stable-diffusion-2", "tokenizer"),
    ("stabilityai/stable-diffusion-2-base", "tokenizer"),
    ("runwayml/stable-diffusion-v1-5", "tokenizer"),
    ("sd-legacy/stable-diffusion-v1-5", "tokenizer"),
    ("CompVis/stable-diffusion-v1-4", "tokenizer"),
)

#: Hugging Face hub cache to search; None means huggingface_hub's default (HF_HUB_CACHE / HF_HOME).
HF_CACHE_DIR: str | None = None


def resolve_tokenizers(config_dir: Path, slots: tuple[str, ...], given: Any, checkpoint: Path) -> dict[str, Any]:
    """One loaded tokenizer per slot ("tokenizer", "tokenizer_2"), or a FileNotFoundError saying what to provide."""
    given_folder: Path | None = None
    given_object: Any = None
    if isinstance(given, (str, os.PathLike)):
        given_folder = Path(given).expanduser()
        if not given_folder.is_dir():
            raise FileNotFoundError(f"tokenizer folder {given_folder} does not exist")
    elif given is not None:
        given_object = given
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lib-alignment-tokenizer-") as tmp:
        for slot in slots:
            if given_object is not None and slot == "tokenizer":
                result[slot] = given_object
                continue
            source = _vocab_source(slot, given_folder, given_object, config_dir, Path(tmp))
            if source is None:
                raise FileNotFoundError(_missing_message(checkpoint, slot, given_folder, config_dir))
            result[slot] = _assemble_and_load(source, config_dir / slot, Path(tmp) / f"assembled-{slot}")
    return result


def _vocab_source(slot: str, folder: Path | None, obj: Any, config_dir: Path, tmp: Path) -> Path | None:
    """A folder holding vocab.json and merges.txt, or a complete tokenizer.json, for this slot, in the documented order."""
    candidates: list[Path] = []
    if folder is not None:
        candidates += [folder / slot, folder]
    if obj is not None:
        saved = tmp / "given-object"
        if not saved.exists():
            save_bpe_files(obj, saved)
        candidates.append(saved)
    candidates.append(config_dir / slot)
    candidates += host_tokenizer_folders()
    for candidate in candidates:
        if all((candidate / name).is_file() for name in VOCAB_FILES) or (candidate / "tokenizer.json").is_file():
            return candidate
    return find_in_hf_cache(tmp)


def host_tokenizer_folders(webui_root: Path | None = None) -> list[Path]:
    """Forge's own copies of the CLIP tokenizers (`<webui>/backend/huggingface/<repo>/<subfolder>`).

    webui_root: default, the WebUI this extension is installed in (`<webui>/extensions/<ext>/`)."""
    if webui_root is None:
        extension = Path(__file__).resolve().parents[2]
        if extension.parent.name != "extensions":
            return []
        webui_root = extension.parent.parent
    tree = webui_root / "backend" / "huggingface"
    if not tree.is_dir():
        return []
    return [tree / repo / (subfolder or "tokenizer") for repo, subfolder in CACHE_REPOS]


def save_bpe_files(tokenizer: Any, folder: Path) -> None:
    """vocab.json and merges.txt of a CLIP tokenizer object (transformers 5 saves only tokenizer.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    backend = getattr(tokenizer, "backend_tokenizer", None)  # tokenizers-backed: transformers 5, *Fast classes
    if backend is not None:
        backend.model.save(str(folder))
    else:
        tokenizer.save_vocabulary(str(folder))
    for name in VOCAB_FILES:
        if not (folder / name).is_file():
            raise ValueError(f"the tokenizer ({type(tokenizer).__name__}) gave no {name}; a CLIP BPE tokenizer is needed")


def find_in_hf_cache(tmp: Path) -> Path | None:
    """Copy CLIP's vocab.json/merges.txt from the local HF cache into `tmp/cache`, if any repo has them."""
    for repo, subfolder in CACHE_REPOS:
        files = _cached_files(repo, subfolder)
        if files is not None:
            target = tmp / "cache"
            target.mkdir(parents=True, exist_ok=True)
            for name, path in zip(VOCAB_FILES, files):
                shutil.copyfile(path, target / name)
            return target
    return None


def _cached_files(repo: str, subfolder: str) -> tuple[Path, ...] | None:
    from huggingface_hub import try_to_load_from_cache

    names = [f"{subfolder}/{name}" if subfolder else name for name in VOCAB_FILES]
    found = [try_to_load_from_cache(repo, name, cache_dir=HF_CACHE_DIR) for name in names]
    if all(isinstance(path, str) and Path(path).is_file() for path in found):
        return tuple(Path(str(path)) for path in found)
    # A snapshot folder without refs/main (copied caches): take any snapshot that has both files.
    snapshots = Path(HF_CACHE_DIR or _default_cache()) / f"models--{repo.replace('/', '--')}" / "snapshots"
    for snapshot in sorted(snapshots.glob("*")) if snapshots.is_dir() else []:
        paths = tuple(snapshot / name for name in names)
        if all(path.is_file() for path in paths):
            return paths
    return None


def _default_cache() -> str:
    from huggingface_hub import constants

    return str(getattr(constants, "HF_HUB_CACHE", None) or getattr(constants, "HUGGINGFACE_HUB_CACHE"))


def _assemble_and_load(source: Path, slot_config: Path, target: Path) -> Any:
    """vocab/merges from `source`, tokenizer configs from the config folder's slot (else from `source`).

    A saved diffusers folder written by transformers 5 holds only tokenizer.json: that one is loaded as it is.
    """
    from transformers import AutoTokenizer, CLIPTokenizer

    if not all((source / name).is_file() for name in VOCAB_FILES):
        return AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    target.mkdir(parents=True, exist_ok=True)
    for name in VOCAB_FILES:
        shutil.copyfile(source / name, target / name)
    for name in CONFIG_FILES:
        for origin in (slot_config / name, source / name):
            if origin.is_file():
                shutil.copyfile(origin, target / name)
                break
    return CLIPTokenizer.from_pretrained(str(target), local_files_only=True)


def _missing_message(checkpoint: Path, slot: str, folder: Path | None, config_dir: Path) -> str:
    looked = []
    if folder is not None:
        looked.append(f"the tokenizer folder {folder} (and {folder / slot})")
    looked.append(f"{config_dir / slot}")
    if host_tokenizer_folders():
        looked.append("the WebUI's backend/huggingface folders")
    looked.append("the Hugging Face cache (" + ", ".join(sorted({repo for repo, _ in CACHE_REPOS})) + ")")
    return (
        f"{checkpoint}: no CLIP tokenizer files (vocab.json, merges.txt) found for its {slot}; looked in "
        + "; ".join(looked)
        + ". Provide a folder holding them with the tokenizer= option (CLI: --tokenizer DIR), "
        "for example a downloaded copy of openai/clip-vit-large-patch14"
    )
