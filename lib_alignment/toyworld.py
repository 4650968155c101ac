"""The synthetic "toy shapes" world the built-in tiny model is trained on.

A scene is one coloured shape (circle, square or triangle) on a plain coloured
background. Scenes render deterministically from a seed, and every scene has a
caption such as "a red circle on a blue background", so the tiny model learns
words whose effect is visible and measurable in pixels (colour, shape, size).
Tests and benchmarks use the same world to build synthetic preference data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 180),
    "orange": (245, 140, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: dict[str, float] = {"small": 0.25, "big": 0.45}

#: Words the tiny tokenizer keeps whole; anything else falls back to characters.
VOCABULARY_WORDS: tuple[str, ...] = (
    *COLORS,
    *SHAPES,
    *SIZES,
    "a",
    "an",
    "on",
    "the",
    "background",
    "of",
    "with",
    "and",
    "in",
    "picture",
    "photo",
    "image",
    "shape",
    "large",
    "tiny",
    "left",
    "right",
    "center",
)


@dataclass(frozen=True)
class Scene:
    """One toy image: a shape of one colour on a background of another."""

    shape: str
    color: str
    background: str
    size: str = "big"
    cx: float = 0.5
    cy: float = 0.5

    def caption(self, with_size: bool = False) -> str:
        size = f"{self.size} " if with_size else ""
        return f"a {size}{self.color} {self.shape} on a {self.background} background"


def sample_scene(rng: random.Random) -> Scene:
    """Draw a random scene; the shape's colour always differs from the background."""
    color = rng.choice(list(COLORS))
    background = rng.choice([c for c in COLORS if c != color])
    size = rng.choice(list(SIZES))
    radius = SIZES[size]
    margin = radius * 0.5
    return Scene(
        shape=rng.choice(SHAPES),
        color=color,
        background=background,
        size=size,
        cx=rng.uniform(0.5 - margin * 0.5, 0.5 + margin * 0.5),
        cy=rng.uniform(0.5 - margin * 0.5, 0.5 + margin * 0.5),
    )


def render(scene: Scene, resolution: int = 128, supersample: int = 4) -> Image.Image:
    """Render a scene as an RGB image (anti-aliased by supersampling)."""
    big = resolution * supersample
    image = Image.new("RGB", (big, big), COLORS[scene.background])
    draw = ImageDraw.Draw(image)
    r = SIZES[scene.size] * big / 2
    cx, cy = scene.cx * big, scene.cy * big
    fill = COLORS[scene.color]
    if scene.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif scene.shape == "square":
        s = r * 0.886  # same area as the circle
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif scene.shape == "triangle":
        h = r * 1.2
        draw.polygon([(cx, cy - h), (cx - h * 0.95, cy + h * 0.6), (cx + h * 0.95, cy + h * 0.6)], fill=fill)
    else:
        raise ValueError(f"unknown shape {scene.shape!r}; expected one of {SHAPES}")
    return image.resize((resolution, resolution), Image.LANCZOS)


def caption_variants(scene: Scene, rng: random.Random) -> str:
    """A caption with some wording variety, so prompts need not be verbatim."""
    choice = rng.random()
    if choice < 0.15:
        return f"a {scene.color} {scene.shape}"
    if choice < 0.25:
        return f"a {scene.shape} on a {scene.background} background"
    if choice < 0.5:
        return scene.caption(with_size=True)
    return scene.caption()


def redness(image: Image.Image) -> float:
    """Mean of R minus the mean of G and B, in [−1, 1]: a pixel-space probe for tests."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return float((arr[..., 0] - 0.5 * (arr[..., 1] + arr[..., 2])).mean())


def blueness(image: Image.Image) -> float:
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return float((arr[..., 2] - 0.5 * (arr[..., 0] + arr[..., 1])).mean())
