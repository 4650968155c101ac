"""Validated preference examples as torch Datasets, with an optional latent cache.

Items are decoded lazily (one image file read per access) so large datasets fit
in memory; parquet image bytes are the exception and stay in memory. When
latents are cached, items carry ``latents`` instead of ``pixel_values`` and no
image is decoded again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ...paths import atomic_write_bytes
from .images import DEFAULT_MAX_PIXELS, ImageRef, load_image_tensor
from .report import ValidationReport

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class PairRecord:
    """A preference pair: ``preferred`` beat ``other`` for ``caption``; weight 0.5 for each order of a tie."""

    caption: str
    preferred: ImageRef
    other: ImageRef
    weight: float
    file: str
    row: int | None
    tie: bool = False


@dataclass(frozen=True)
class LabeledRecord:
    """One image marked desirable (1.0) or undesirable (0.0) for ``caption``."""

    caption: str
    image: ImageRef
    label: float
    file: str
    row: int | None


class PreferenceDataset(Dataset):
    """Common part of the pair and labeled datasets: images, resolution, report, latent cache."""

    kind = ""

    def __init__(self, records: Sequence[Any], resolution: int, report: ValidationReport, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.records = list(records)
        self.resolution = resolution
        self.report = report
        self.max_pixels = max_pixels
        self.latents: dict[str, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def _refs(self, record: Any) -> list[ImageRef]:
        raise NotImplementedError

    def image_refs(self) -> list[ImageRef]:
        """Every distinct image, in first-use order."""
        seen: dict[str, ImageRef] = {}
        for record in self.records:
            for ref in self._refs(record):
                seen.setdefault(ref.key, ref)
        return list(seen.values())

    def _pixels(self, ref: ImageRef) -> torch.Tensor:
        return load_image_tensor(ref, self.resolution, self.max_pixels)

    def _image(self, ref: ImageRef) -> tuple[str, torch.Tensor]:
        if self.latents is not None:
            return "latents", self.latents[ref.key]
        return "pixel_values", self._pixels(ref)

    def labels(self) -> list[float]:
        raise TypeError(f"{self.kind} data has no per-item labels")

    def cache_latents(
        self,
        encode: Callable[[torch.Tensor], torch.Tensor],
        batch_size: int = 8,
        cache_file: str | Path | None = None,
        fingerprint: str = "",
        progress: ProgressFn | None = None,
    ) -> None:
        """Encode every distinct image once with ``encode`` (pixels [B,3,R,R] in [-1,1] -> latents).

        With ``cache_file`` (a .safetensors path) the latents are saved and
        reused by a later call whose resolution, ``fingerprint`` (say, the VAE's
        name and hash) and images (path, size and mtime) match.
        """
        refs = self.image_refs()
        names = {ref.key: hashlib.sha256(ref.cache_key().encode()).hexdigest() for ref in refs}
        meta = {"resolution": str(self.resolution), "fingerprint": fingerprint}
        if cache_file is not None and Path(cache_file).is_file():
            loaded = _load_cache(Path(cache_file), meta, set(names.values()))
            if loaded is not None:
                self.latents = {key: loaded[name] for key, name in names.items()}
                return
        latents: dict[str, torch.Tensor] = {}
        for start in range(0, len(refs), batch_size):
            chunk = refs[start : start + batch_size]
            with torch.no_grad():
                encoded = encode(torch.stack([self._pixels(ref) for ref in chunk]))
            for ref, latent in zip(chunk, encoded):
                latents[ref.key] = latent.detach().cpu().contiguous()
            if progress is not None:
                progress(min(start + batch_size, len(refs)), len(refs))
        self.latents = latents
        if cache_file is not None:
            from safetensors.torch import save

            data = save({names[key]: value for key, value in latents.items()}, metadata={"lib_alignment": json.dumps(meta)})
            atomic_write_bytes(Path(cache_file), data)


def _load_cache(file: Path, meta: dict[str, str], wanted: set[str]) -> dict[str, torch.Tensor] | None:
    """The cached tensors if the file was made for the same resolution, VAE and images; else None."""
    from safetensors import safe_open
    from safetensors.torch import load

    try:
        with safe_open(str(file), framework="pt") as handle:
            stored = json.loads((handle.metadata() or {}).get("lib_alignment", "{}"))
            if stored != meta or not wanted.issubset(set(handle.keys())):
                return None
        return load(file.read_bytes())
    except Exception:  # a damaged cache is rebuilt, not fatal
        return None


class PairDataset(PreferenceDataset):
    """Items: caption, pixel_values [2, 3, R, R] (preferred first) or latents [2, C, h, w], weight."""

    kind = "pairs"
    records: list[PairRecord]

    def _refs(self, record: PairRecord) -> list[ImageRef]:
        return [record.preferred, record.other]

    def weights(self) -> list[float]:
        return [r.weight for r in self.records]

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        name, first = self._image(record.preferred)
        _, second = self._image(record.other)
        # numpy stack: see images.to_tensor on torch's thread pool and tiny ops
        both = torch.from_numpy(np.stack([first.numpy(), second.numpy()]))
        return {"caption": record.caption, name: both, "weight": record.weight}


class LabeledDataset(PreferenceDataset):
    """Items: caption, pixel_values [3, R, R] or latents [C, h, w], label 1.0 / 0.0."""

    kind = "labeled"
    records: list[LabeledRecord]

    def _refs(self, record: LabeledRecord) -> list[ImageRef]:
        return [record.image]

    def labels(self) -> list[float]:
        """Per-item labels, for the trainer's weighted sampler."""
        return [r.label for r in self.records]

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        name, value = self._image(record.image)
        return {"caption": record.caption, name: value, "label": record.label}
