"""Automatic rankers ("oracles") that stand in for a person in Rank & Refine.

An oracle has a `name` and `score(images, prompt) -> list[float]` (higher is
better); `rank_images` / `order_from_scores` turn scores into the best-first
display indices `RankSGD.tell` and `RefineSession.rank` take (ties keep their
display order).

Specs accepted by `make_oracle` (and the `refine --oracle` flag):

    jpeg_size[:smaller|larger]   JPEG bytes at quality 95 in kB (default smaller is better)
    brightness[:darker]          mean luma in 0…1
    colourfulness / colorfulness Hasler–Süsstrunk colourfulness
    color:VALUE / colour:VALUE   closeness to a colour: "#ff0000", "red", "rgb(0,0,255)"
    clip:CLIP_DIR                100 × cos(image, prompt) with a local transformers CLIP folder
    aesthetic:WEIGHTS,CLIP_DIR   LAION-style aesthetic MLP (.safetensors/.pth) over a local CLIP
    package.module:function      any importable callable (images, prompt) -> scores
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from PIL import Image

from ..zo.ranking import order_from_scores

__all__ = ["BUILTIN_ORACLES", "CallableOracle", "Oracle", "make_oracle", "order_from_scores", "rank_images"]

BUILTIN_ORACLES = ("jpeg_size", "brightness", "colourfulness", "colorfulness", "color", "colour", "clip", "aesthetic")


class Oracle(Protocol):
    name: str

    def score(self, images: Sequence[Image.Image], prompt: str) -> list[float]:
        """One score per image, higher is better."""
        ...


def rank_images(oracle: Oracle, images: Sequence[Image.Image], prompt: str) -> list[int]:
    """Best-first indices of `images` by the oracle's scores (stable on ties)."""
    return order_from_scores(checked_scores(oracle.score(images, prompt), len(images), oracle.name))


def checked_scores(scores: Any, n: int, name: str) -> list[float]:
    """Scores as floats; a clear error when there are not n finite numbers."""
    try:
        values = [float(s) for s in scores]
    except (TypeError, ValueError) as error:
        raise ValueError(f"oracle {name!r} must return a list of numbers, got {scores!r:.200}") from error
    if len(values) != n:
        raise ValueError(f"oracle {name!r} returned {len(values)} scores for {n} images")
    bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
    if bad:
        raise ValueError(f"oracle {name!r} returned non-finite scores at indices {bad}")
    return values


class CallableOracle:
    """Wraps a user function (images, prompt) -> scores, checking what it returns."""

    def __init__(self, function: Callable[[list[Image.Image], str], Sequence[float]], name: str) -> None:
        self.function = function
        self.name = name

    def score(self, images: Sequence[Image.Image], prompt: str) -> list[float]:
        return checked_scores(self.function(list(images), prompt), len(images), self.name)


def _load_callable(spec: str) -> CallableOracle:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"oracle {spec!r}: a custom oracle is written 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"oracle {spec!r}: cannot import module {module_name!r} ({error}); "
            f"built-in oracles are {', '.join(BUILTIN_ORACLES)}"
        ) from error
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"oracle {spec!r}: module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"oracle {spec!r}: {attribute!r} is not callable")
    return CallableOracle(target, spec)


def make_oracle(spec: str, device: str = "cpu") -> Oracle:
    """An oracle from a spec string (see the module doc); ValueError/FileNotFoundError name what is wrong."""
    from .image_stats import Brightness, ColourCloseness, Colourfulness, JpegSize

    spec = spec.strip()
    name, _, argument = spec.partition(":")
    key = name.lower()
    if key == "jpeg_size":
        if argument not in ("", "smaller", "larger"):
            raise ValueError(f"oracle {spec!r}: jpeg_size takes ':smaller' or ':larger'")
        return JpegSize(smaller=argument != "larger")
    if key == "brightness":
        if argument not in ("", "darker", "brighter"):
            raise ValueError(f"oracle {spec!r}: brightness takes ':darker' or ':brighter'")
        return Brightness(darker=argument == "darker")
    if key in ("colourfulness", "colorfulness"):
        if argument:
            raise ValueError(f"oracle {spec!r}: colourfulness takes no argument")
        return Colourfulness()
    if key in ("color", "colour"):
        if not argument:
            raise ValueError(f"oracle {spec!r}: give the target colour, e.g. 'color:#ff0000' or 'color:red'")
        return ColourCloseness(argument)
    if key == "clip":
        if not argument:
            raise ValueError(f"oracle {spec!r}: give a local CLIP folder, e.g. 'clip:/models/clip-vit-large-patch14'")
        from .clip import ClipScore

        return ClipScore(argument, device=device)
    if key == "aesthetic":
        weights, _, clip_folder = argument.rpartition(",")
        if not weights or not clip_folder:
            raise ValueError(f"oracle {spec!r}: write 'aesthetic:WEIGHTS_FILE,CLIP_FOLDER'")
        from .clip import AestheticScore

        return AestheticScore(weights, clip_folder, device=device)
    if argument:
        return _load_callable(spec)
    raise ValueError(f"unknown oracle {spec!r}: use one of {', '.join(BUILTIN_ORACLES)} or 'package.module:function'")
