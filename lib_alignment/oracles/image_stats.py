"""Oracles computed from pixels alone: no download, no weights.

Each returns one float per image, higher is better, so they can stand in for a
person ranking candidates in unattended runs, tests and benchmarks.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageColor


def _rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


class JpegSize:
    """JPEG file size at quality 95, in kB (DDPO's compressibility reward); `smaller=True` negates it."""

    def __init__(self, smaller: bool = True) -> None:
        self.smaller = smaller
        self.name = f"jpeg_size:{'smaller' if smaller else 'larger'}"

    def score(self, images: Sequence[Image.Image], prompt: str = "") -> list[float]:
        sign = -1.0 if self.smaller else 1.0
        scores = []
        for image in images:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=95)
            scores.append(sign * buffer.tell() / 1000.0)
        return scores


class Brightness:
    """Mean luma (ITU-R 601, as PIL's "L" mode) in 0…1; `darker=True` negates it."""

    def __init__(self, darker: bool = False) -> None:
        self.darker = darker
        self.name = "brightness:darker" if darker else "brightness"

    def score(self, images: Sequence[Image.Image], prompt: str = "") -> list[float]:
        sign = -1.0 if self.darker else 1.0
        return [sign * float(np.asarray(image.convert("L"), dtype=np.float64).mean() / 255.0) for image in images]


class Colourfulness:
    """Hasler & Süsstrunk (2003) colourfulness: σ_rgyb + 0.3·μ_rgyb on 0…255 values."""

    name = "colourfulness"

    def score(self, images: Sequence[Image.Image], prompt: str = "") -> list[float]:
        scores = []
        for image in images:
            rgb = _rgb(image)
            rg = rgb[..., 0] - rgb[..., 1]
            yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
            spread = math.sqrt(rg.std() ** 2 + yb.std() ** 2)
            mean = math.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
            scores.append(spread + 0.3 * mean)
        return scores


class ColourCloseness:
    """1 − mean per-pixel RGB distance to a target colour, scaled to 0…1 (1 = every pixel is the colour)."""

    def __init__(self, colour: str) -> None:
        try:
            rgb = ImageColor.getrgb(colour.strip())
        except ValueError as error:
            raise ValueError(f"oracle colour {colour!r} is not a colour name or #rrggbb value") from error
        self.target = np.asarray(rgb[:3], dtype=np.float64)
        self.name = f"color:{colour.strip()}"

    def score(self, images: Sequence[Image.Image], prompt: str = "") -> list[float]:
        scale = 255.0 * math.sqrt(3.0)
        return [1.0 - float(np.linalg.norm(_rgb(image) - self.target, axis=-1).mean() / scale) for image in images]
