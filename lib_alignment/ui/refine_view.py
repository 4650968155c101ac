"""The Rank & Refine board as HTML: candidate tiles the page's script ranks, beside the current image.

Plain HTML with data: URIs, so it renders the same under gradio 3.41, 4.40 and
current releases; javascript/alignment.js finds the tiles by class and
`data-index` (the display index the engine's `rank` takes) and keeps the
ranking in the browser until Next.
"""

from __future__ import annotations

import base64
import html
import io
import uuid
from typing import Any

from PIL import Image

BOARD_CLASS = "alignment-board"
#: Above this many pixels a side, tiles are sent as JPEG (display only; files and the API stay PNG).
PNG_MAX_SIDE = 384
#: Each rendering carries a new data-render value: current gradio patches the old board in place,
#: so the page script cannot tell a new rendering (and end "busy") by its DOM node.


def image_data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    if max(image.size) <= PNG_MAX_SIDE:
        image.save(buffer, format="PNG")
        mime = "image/png"
    else:
        image.convert("RGB").save(buffer, format="JPEG", quality=92)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _columns(n: int) -> int:
    if n <= 4:
        return n
    if n <= 6:
        return 3
    return 4 if n <= 8 or n % 4 == 0 else 5


def _role_caption(role: str) -> str:
    if role == "current":
        return "current image"
    if role == "rank best":
        return "last pick"
    return ""


def _banner(message: str | None, error: str | None) -> str:
    parts = []
    if error:
        parts.append(f'<div class="alignment-banner alignment-error" role="alert">{html.escape(error)}</div>')
    if message:
        parts.append(f'<div class="alignment-banner alignment-note">{html.escape(message)}</div>')
    return "".join(parts)


def empty_board(message: str | None = None, error: str | None = None, forget: bool = False) -> str:
    """Before a session: what to do. forget=True tells the script to drop its remembered session id."""
    hint = (
        "Set the prompt and the generation settings, then press <b>Start</b>. Each round shows candidates "
        "made from small changes of the initial noise; rank them and press <b>Next</b>."
    )
    return (
        f'<div class="{BOARD_CLASS} alignment-empty" data-session="" data-round="" data-forget="{int(forget)}" '
        f'data-render="{uuid.uuid4().hex[:12]}">'
        f'{_banner(message, error)}<p class="alignment-hint">{hint}</p></div>'
    )


def _number(session: Any, round_id: int) -> int:
    """The round's position among the live rounds (no gaps after Undo); its id where that is unknown."""
    try:
        return int(session.round_number(round_id))
    except (AttributeError, ValueError):
        return round_id


def round_board(
    session_id: str,
    session: Any,
    rnd: Any,
    start_image: Image.Image | None = None,
    message: str | None = None,
    error: str | None = None,
) -> str:
    """The pending round: tiles in display order, the current image (best so far) and the seed's image."""
    params = session.params
    settings = session.settings
    kind = "line search" if rnd.round_type == "line" else "explore"
    tiles = []
    for index, (image, role) in enumerate(zip(rnd.images, rnd.roles)):
        caption = _role_caption(role)
        caption_html = f'<span class="alignment-role">{html.escape(caption)}</span>' if caption else ""
        key = f'<span class="alignment-key" aria-hidden="true">{index + 1}</span>' if index < 9 else ""
        tiles.append(
            f'<div class="alignment-tile" data-index="{index}" data-role="{html.escape(role)}" role="button" tabindex="0" '
            f'aria-label="Candidate {index + 1}{(", " + caption) if caption else ""}">'
            f'<img src="{image_data_uri(image)}" alt="Candidate {index + 1}" draggable="false">'
            f'{key}<span class="alignment-rank-badge" hidden></span>{caption_html}</div>'
        )
    side = [
        (
            '<figure class="alignment-current">'
            f'<img src="{image_data_uri(rnd.current_image)}" alt="Current image" draggable="false">'
            "<figcaption>Current image · best so far</figcaption></figure>"
        )
    ]
    if start_image is not None and session.rounds_ranked:
        side.append(
            '<figure class="alignment-start">'
            f'<img src="{image_data_uri(start_image)}" alt="Start image" draggable="false">'
            f"<figcaption>Start · seed {session.seed}</figcaption></figure>"
        )
    head = (
        f'<span class="alignment-round">Round {_number(session, rnd.id)}</span> · {kind} · {session.rounds_ranked} ranked · '
        f"{settings.width}×{settings.height}, {html.escape(settings.sampler)}, {settings.steps} steps · "
        f"next rounds: m={params.m}, μ={params.mu:g}, step={params.lr:g}"
    )
    suggested = getattr(rnd, "scorer_order", None) or []
    if suggested:
        scorer = getattr(session.params, "scorer", None) or "the scorer"
        head += f" · pre-ranked by {html.escape(str(scorer))}: correct the order, then Next"
    hint = (
        "Click the images from best to worse (or press 1–9), drag to reorder, Backspace takes back the last pick, "
        "Enter = Next. Ranking only the best is enough; unpicked images count as worse than every picked one."
    )
    return (
        f'<div class="{BOARD_CLASS}" data-session="{html.escape(session_id)}" data-round="{rnd.id}" '
        f'data-type="{html.escape(rnd.round_type)}" data-count="{len(rnd.images)}" data-forget="0" data-render="{uuid.uuid4().hex[:12]}" '
        f'data-suggested="{",".join(str(int(i)) for i in suggested)}">'
        f'<div class="alignment-board-head">{head}</div>{_banner(message, error)}'
        '<div class="alignment-board-main">'
        f'<div class="alignment-candidates" style="--alignment-cols: {_columns(len(tiles))}">{"".join(tiles)}</div>'
        f'<div class="alignment-side">{"".join(side)}</div></div>'
        '<div class="alignment-toolbar">'
        '<span class="alignment-toolbar-label">Your ranking:</span>'
        '<div class="alignment-ranking" aria-live="polite"><span class="alignment-ranking-empty">nothing picked yet</span></div>'
        '<label class="alignment-best-only-label"><input type="checkbox" class="alignment-best-only"> best only (submit on click)</label>'
        '<button type="button" class="alignment-clear">Clear</button></div>'
        f'<p class="alignment-hint">{hint}</p></div>'
    )
