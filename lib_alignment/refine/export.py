"""Final export of a refine session: the image with its infotext, and the latent that regenerates it.

The PNG is rendered from the current latent *alone* (a batch of one), so
`regenerate(latent_file, backend)` — which renders it the same way — gives the
same pixels. The latent file is safetensors: tensor "latent" [1, C, H/8, W/8]
(unit-variance initial noise) and metadata "settings" (GenerationSettings as
JSON), "seed", "model", "infotext" and "format".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from ..generation import GenerationBackend, GenerationSettings
from ..infotext import format_infotext, png_info
from ..paths import atomic_save_image, safe_name
from .storage import load_tensors, save_tensors

if TYPE_CHECKING:
    from .session import RefineSession

LATENT_FORMAT = "lib_alignment.refined_latent/1"


@dataclass
class ExportResult:
    image_path: Path
    latent_path: Path
    infotext: str
    image: Image.Image


def export_current(session: RefineSession, folder: str | Path | None = None, stem: str | None = None) -> ExportResult:
    """Write <stem>.png (with A1111 infotext) and <stem>.safetensors into folder (default: <session>/export)."""
    out = Path(folder) if folder is not None else session.folder / "export"
    ranked = session.rounds_ranked
    stem = safe_name(stem, "export name") if stem else f"refined-seed{session.seed}-r{ranked}"
    latent = session.current_latent.unsqueeze(0).float().cpu()
    image = session.backend.generate(session.settings, latent).images[0]
    infotext = format_infotext(
        session.settings,
        session.seed,
        session.backend.model_name,
        {"Refine rounds": ranked, "Refine latent": f"{stem}.safetensors"},
    )
    out.mkdir(parents=True, exist_ok=True)
    latent_path = out / f"{stem}.safetensors"
    image_path = out / f"{stem}.png"
    save_tensors(
        latent_path,
        {"latent": latent},
        {
            "format": LATENT_FORMAT,
            "settings": json.dumps(asdict(session.settings)),
            "seed": str(session.seed),
            "model": session.backend.model_name,
            "infotext": infotext,
        },
    )
    atomic_save_image(image, image_path, pnginfo=png_info(infotext))
    return ExportResult(image_path=image_path, latent_path=latent_path, infotext=infotext, image=image)


def load_refined_latent(path: str | Path) -> tuple[torch.Tensor, GenerationSettings, dict[str, str]]:
    """The latent [1, C, H, W], its settings and the file's metadata."""
    path = Path(path)
    tensors, metadata = load_tensors(path)
    if metadata.get("format") != LATENT_FORMAT or "latent" not in tensors:
        raise ValueError(f"{path} is not a refined-latent file ({LATENT_FORMAT})")
    try:
        settings = GenerationSettings(**json.loads(metadata["settings"]))
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: its 'settings' metadata is unreadable ({error})") from error
    return tensors["latent"], settings, metadata


def regenerate(path: str | Path, backend: GenerationBackend) -> Image.Image:
    """Render an exported latent again with its own settings; same model → same pixels as the exported PNG."""
    latent, settings, metadata = load_refined_latent(path)
    if metadata.get("model") and metadata["model"] != backend.model_name:
        raise ValueError(f"{path} was made with model {metadata['model']!r}, but the backend has {backend.model_name!r}")
    return backend.generate(settings, latent).images[0]
