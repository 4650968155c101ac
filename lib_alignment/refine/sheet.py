"""Contact sheets: one row per round, to see a refine run at a glance."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw

BACKGROUND = (24, 24, 24)
HIGHLIGHT = (40, 200, 80)
CURRENT = (230, 180, 40)


def contact_sheet(
    rows: Sequence[Sequence[Image.Image]],
    highlight: Sequence[int | None] | None = None,
    labels: Sequence[str] | None = None,
    cell: int = 128,
    border: int = 4,
) -> Image.Image:
    """Rows of images scaled to `cell` px; the image at highlight[r] of row r gets a green frame.

    By convention the refine command puts the current image first in each row
    (framed in amber) and the candidates after it in display order.
    """
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    columns = max(len(row) for row in rows)
    label_width = 40 if labels else 0
    pitch = cell + 2 * border
    sheet = Image.new("RGB", (label_width + columns * pitch, len(rows) * pitch), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        top = r * pitch
        if labels:
            draw.text((4, top + pitch // 2 - 6), labels[r], fill=(220, 220, 220))
        for c, image in enumerate(row):
            left = label_width + c * pitch
            frame = HIGHLIGHT if highlight is not None and highlight[r] == c else (CURRENT if c == 0 and labels else None)
            if frame is not None:
                draw.rectangle([left, top, left + pitch - 1, top + pitch - 1], fill=frame)
            sheet.paste(image.convert("RGB").resize((cell, cell)), (left + border, top + border))
    return sheet
