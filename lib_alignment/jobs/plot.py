"""Loss and reward curves drawn with Pillow: no plotting library, same picture on every host.

gradio's LinePlot needs pandas/altair versions that differ between the
WebUIs' gradio releases; a PNG in a gr.Image works everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
AXIS = (120, 120, 120)
GRID = (232, 232, 232)
TEXT = (40, 40, 40)
COLORS = ((31, 119, 180), (214, 96, 36), (44, 160, 44), (148, 103, 189))
TITLES = {
    "loss": "loss",
    "reward_accuracy": "reward accuracy",
    "reward_margin": "reward margin",
    "reward_mean": "mean reward",
    "reward": "reward",
    "kl": "KL",
    "heldout_accuracy": "held-out accuracy",
    "heldout_margin": "held-out margin",
    "heldout_reward": "held-out reward",
    "approx_kl": "approx. KL",
    "drift": "drift from base",
    "grad_norm": "gradient norm",
    "kl_to_base": "KL to base",
    "clipfrac": "clip fraction",
}

Series = Sequence[tuple[float, float]]


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _smooth(points: Series, window: int) -> list[tuple[float, float]]:
    """Running mean over `window` points (noisy per-step losses read better smoothed)."""
    if window <= 1 or len(points) <= window:
        return list(points)
    out = []
    total = 0.0
    for i, (x, y) in enumerate(points):
        total += y
        if i >= window:
            total -= points[i - window][1]
        out.append((x, total / min(i + 1, window)))
    return out


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.1e}"
    return f"{value:.3g}"


def _panel(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    name: str,
    points: Series,
    color: tuple[int, int, int],
    total: int | None,
) -> None:
    left, top, right, bottom = box
    font = _font()
    title = TITLES.get(name, name.replace("_", " "))
    last = points[-1][1] if points else None
    draw.text(
        (left, top - 14), f"{title}" + (f"  (last {_label(last)})" if last is not None else ""), fill=TEXT, font=font
    )
    draw.rectangle(box, outline=AXIS)
    if not points:
        draw.text((left + 8, (top + bottom) // 2 - 6), "no data yet", fill=AXIS, font=font)
        return
    xs = [p[0] for p in points]
    ys = [p[1] for p in points if math.isfinite(p[1])]
    if not ys:
        return
    x_low, x_high = min(xs), max(max(xs), float(total or 0))
    if x_high <= x_low:
        x_high = x_low + 1
    y_low, y_high = min(ys), max(ys)
    if y_high - y_low < 1e-12:
        y_low, y_high = y_low - 0.5 * (abs(y_low) or 1), y_high + 0.5 * (abs(y_high) or 1)
    pad = (y_high - y_low) * 0.08
    y_low, y_high = y_low - pad, y_high + pad

    def to_xy(x: float, y: float) -> tuple[float, float]:
        return (
            left + (x - x_low) / (x_high - x_low) * (right - left),
            bottom - (y - y_low) / (y_high - y_low) * (bottom - top),
        )

    for tick in _ticks(y_low, y_high):
        _, y = to_xy(x_low, tick)
        draw.line((left + 1, y, right - 1, y), fill=GRID)
        text = _label(tick)
        draw.text((left - 6 - draw.textlength(text, font=font), y - 6), text, fill=TEXT, font=font)
    for tick in _ticks(x_low, x_high):
        x, _ = to_xy(tick, y_low)
        draw.line((x, bottom, x, bottom + 3), fill=AXIS)
        draw.text((x - 8, bottom + 4), _label(tick), fill=TEXT, font=font)
    finite = [p for p in points if math.isfinite(p[1])]
    raw = [to_xy(x, y) for x, y in finite]
    if len(finite) > 30:  # faint raw values under a smoothed line
        faint = tuple(int(c + (255 - c) * 0.7) for c in color)
        draw.line(raw, fill=faint, width=1)
        raw = [to_xy(x, y) for x, y in _smooth(finite, max(2, len(finite) // 30))]
    if len(raw) == 1:
        x, y = raw[0]
        draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=color)
    else:
        draw.line(raw, fill=color, width=2)


def render_curves(
    series: dict[str, Series], names: Sequence[str], total: int | None = None, width: int = 760, height: int = 250
) -> Image.Image:
    """One panel per metric in `names`, side by side (missing ones say "no data yet"), steps on the x axis."""
    margin_left, margin_right, margin_top, margin_bottom, gap = 52, 12, 24, 34, 64
    count = max(1, len(names))
    panel_width = (width - margin_left - margin_right - (count - 1) * gap) // count
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for i, name in enumerate(names):
        left = margin_left + i * (panel_width + gap)
        box = (left, margin_top, left + panel_width, height - margin_bottom)
        _panel(draw, box, name, list(series.get(name, [])), COLORS[i % len(COLORS)], total)
        draw.text((left + panel_width // 2 - 10, height - 14), "step", fill=TEXT, font=_font())
    return image


def render_health(series: dict[str, Series], names: Sequence[str], total: int | None = None, width: int = 760, per_row: int = 3) -> Image.Image:
    """Health curves (held-out and training accuracy, margin, drift, gradient norm) in rows of `per_row` panels."""
    names = list(names) or ["loss"]
    rows = [names[i : i + per_row] for i in range(0, len(names), per_row)]
    panels = [render_curves(series, row, total=total, width=width if len(row) == per_row else max(260, width * len(row) // per_row), height=220) for row in rows]
    image = Image.new("RGB", (width, sum(p.height for p in panels)), BACKGROUND)
    y = 0
    for panel in panels:
        image.paste(panel, (0, y))
        y += panel.height
    return image
