"""Image references, safe checks and the crop/resize that turns an image into a training tensor.

Preprocessing is a center crop to a square followed by a resize to the training
resolution: the simplest choice, the one diffusers' training examples and the
Diffusion-DPO/KTO code use, and it keeps latents cacheable. Aspect-ratio buckets
are left out: SD1-class models train well on square crops and buckets would make
every batch shape-dependent.

Decompression bombs are caught by reading the declared size from the header
before any pixel is decoded (our own limit, so a WebUI that switched off PIL's
global ``Image.MAX_IMAGE_PIXELS`` guard does not switch off ours) and by turning
PIL's own DecompressionBombWarning into an error while opening.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ...paths import confine

#: Largest image accepted, in pixels (8192 x 8192 = 64 MP): far above any training resolution.
DEFAULT_MAX_PIXELS = 8192 * 8192
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class ImageRef:
    """Where an image comes from: a file inside the dataset folder, or bytes from a parquet cell.

    ``key`` identifies the image (resolved path, or sha256 of the bytes) for
    duplicate detection and the latent cache; ``display`` is what reports show.
    """

    key: str
    display: str
    path: str | None = None
    data: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_path(cls, path: Path, display: str) -> ImageRef:
        return cls(key=f"file:{path}", display=display, path=str(path))

    @classmethod
    def from_bytes(cls, data: bytes, display: str) -> ImageRef:
        return cls(key=f"sha256:{hashlib.sha256(data).hexdigest()}", display=display, data=data)

    def open(self) -> IO[bytes]:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return open(self.path, "rb")

    def cache_key(self) -> str:
        """Identity that changes when a file is edited in place (size and mtime), for on-disk caches."""
        if self.path is None:
            return self.key
        st = os.stat(self.path)
        return f"{self.key}|{st.st_size}|{st.st_mtime_ns}"


class ImageProblem(Exception):
    """Why an image cannot be used; ``code`` is the Problem code."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


def resolve_image_path(root: Path, value: str) -> Path:
    """The file ``value`` names, relative to ``root``; raises ImageProblem for paths that leave it.

    Backslashes count as separators, so CSVs written on Windows work and cannot
    sneak a '..' past the check.
    """
    raw = value.strip()
    if not raw:
        raise ImageProblem("missing_value", "no image path given")
    if "://" in raw:
        raise ImageProblem("bad_path", f"{raw!r} is a URL; images are never downloaded, give a path inside {root}")
    norm = raw.replace("\\", "/")
    if norm.startswith("/") or PureWindowsPath(raw).drive or PurePosixPath(norm).is_absolute():
        raise ImageProblem("path_escapes", f"absolute path {raw!r} is not allowed: write it relative to {root}")
    try:
        return confine(root, norm, "image path")
    except ValueError:
        lexical = os.path.normpath(norm)
        how = "through '..'" if lexical == ".." or lexical.startswith("../") else "through a symbolic link"
        raise ImageProblem("path_escapes", f"{raw!r} leads outside the dataset folder {root} ({how})") from None


def _check_size(image: Image.Image, max_pixels: int) -> None:
    w, h = image.size
    if w * h > max_pixels:
        raise ImageProblem(
            "decompression_bomb",
            f"declares {w}x{h} pixels ({w * h / 1e6:.0f} MP), over the limit of {max_pixels / 1e6:.0f} MP "
            "(a decompression bomb, or far larger than training needs)",
        )


@contextmanager
def _guarded(ref: ImageRef, max_pixels: int) -> Iterator[Image.Image]:
    """Image.open with the size limit applied before any pixel is decoded."""
    with ref.open() as handle:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(handle)
        with image:
            _check_size(image, max_pixels)
            yield image


def _file_problem(ref: ImageRef) -> ImageProblem | None:
    """Missing / not a file / not readable, told apart before PIL sees the bytes."""
    if ref.path is None:
        return None
    path = Path(ref.path)
    if not path.exists():
        return ImageProblem("missing_image", f"image file not found: {ref.display}")
    if not path.is_file():
        return ImageProblem("unreadable_image", f"not a regular file: {ref.display}")
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        return ImageProblem("unreadable_image", f"cannot read {ref.display}: {exc.strerror or exc}")
    if path.stat().st_size == 0:
        return ImageProblem("corrupt_image", f"empty file: {ref.display}")
    return None


def check_image(ref: ImageRef, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageProblem | None:
    """Open, verify() and fully decode one image; the reason it is unusable, or None."""
    problem = _file_problem(ref)
    if problem is not None:
        return problem
    if ref.data is not None and not ref.data:
        return ImageProblem("corrupt_image", f"empty image bytes in {ref.display}")
    try:
        with _guarded(ref, max_pixels) as image:
            image.verify()  # checksums and structure (PNG CRCs, chunk order)
        with _guarded(ref, max_pixels) as image:
            image.draft("RGB", (1, 1))  # JPEG: decode at 1/8 scale, still reads all the data
            image.load()  # catches truncated data verify() does not see
    except ImageProblem as exc:
        return exc
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        return ImageProblem("decompression_bomb", f"refused as a decompression bomb: {exc}")
    except UnidentifiedImageError:
        return ImageProblem("corrupt_image", f"not an image file PIL can read (damaged or unknown format): {ref.display}")
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, struct.error... for damaged data
        return ImageProblem("corrupt_image", f"damaged or truncated image {ref.display}: {exc}")
    return None


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, compositing any transparency onto white instead of exposing hidden colours."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def center_crop_resize(image: Image.Image, resolution: int) -> Image.Image:
    """The largest centred square, resized to resolution x resolution (bicubic)."""
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    # crop first: resize(box=...) would let the filter read pixels outside the crop at its edges
    square = image.crop((left, top, left + side, top + side))
    return square.resize((resolution, resolution), Image.BICUBIC)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB image -> FloatTensor[3, H, W] in [-1, 1].

    The arithmetic runs in numpy: torch's intra-op thread pool makes these tiny
    element-wise ops 100x slower on a busy machine (and in DataLoader workers).
    """
    array = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def load_image_tensor(ref: ImageRef, resolution: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Decode, upright (EXIF), RGB, center-crop, resize: FloatTensor[3, R, R] in [-1, 1]."""
    with _guarded(ref, max_pixels) as image:
        image.draft("RGB", (resolution, resolution))  # JPEG: skip decoding pixels we would throw away
        upright = ImageOps.exif_transpose(image)
        return to_tensor(center_crop_resize(_to_rgb(upright), resolution))
