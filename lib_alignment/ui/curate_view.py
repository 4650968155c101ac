"""The Curate tab: rank images already on disk, two of the same prompt at a time.

Open a folder (by default the WebUI's outputs) or upload images; the session lists the files at once and
reads their metadata as pairs are needed (lib_alignment.curate). Each answer is a judgement in the
preference store; Skip, Undo and a restart (the same folder resumes) work at any time. Images without a
readable prompt are listed with the reason and can be captioned here. The tab also carries the page token
the gallery's Like buttons send (lib_alignment.api.page_auth).
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from ..api.page_auth import token_html
from ..curate.service import CurateNotFound, for_context
from ..curate.session import CurateSession
from .compat import file_path
from .context import AppContext

TITLE = "Curate"
ELEM_ID = "alignment_curate"
MAX_LISTED = 200


def _id(name: str) -> str:
    return f"{ELEM_ID}_{name}"


def progress_html(session: CurateSession) -> str:
    p = session.progress()
    consistency = (
        f"{100 * (1 - p.intransitive_share):.0f}% consistent ({p.cyclic_triples} of {p.judged_triples} judged triples intransitive)"
        if p.intransitive_share is not None
        else "consistency: not enough answers yet (needs triples of images judged pairwise)"
    )
    return (
        f"<div class='alignment-curate-progress'><b>{p.judgements}</b> judgements · <b>{p.implied}</b> of {p.possible} pairs "
        f"ordered (with those implied) · <b>{p.prompts_covered}</b> of {p.prompts} prompts covered · {consistency}<br>"
        f"<span class='alignment-curate-folder'>{html.escape(str(session.folder))}: {len(session.files)} images, "
        f"{session.indexed} read so far</span></div>"
    )


def unreadable_html(session: CurateSession) -> str:
    rows = session.unreadable()
    if not rows:
        return "<p>None so far.</p>"
    items = "".join(
        f"<tr><td><code>{html.escape(rel)}</code></td><td>{html.escape(why)}</td></tr>" for rel, why in rows[:MAX_LISTED]
    )
    more = f"<p>… and {len(rows) - MAX_LISTED} more.</p>" if len(rows) > MAX_LISTED else ""
    return f"<table class='alignment-curate-unreadable'><thead><tr><th>image</th><th>why</th></tr></thead><tbody>{items}</tbody></table>{more}"


def _thumb(session: CurateSession, rel: str) -> Any:
    from PIL import Image

    from ..curate.thumbs import thumbnail

    with Image.open(thumbnail(session.path_of(rel), session.state_path.parent / "thumbs")) as image:
        return image.copy()


def view(session: CurateSession | None, message: str = "") -> list[Any]:
    """[state, progress, prompt, left image, right image, unreadable list, message]."""
    if session is None:
        return [{}, "", "", None, None, "", message]
    pair = session.next_pair()
    state: dict[str, Any] = {"id": session.key}
    if pair is None:
        done = "No pair left: every prompt's order is known or skipped." if session.progress().prompts else "No two images share a prompt here."
        return [state, progress_html(session), f"<p>{done}</p>", None, None, unreadable_html(session), message]
    state.update(left=pair.left, right=pair.right)
    meta = session.meta(pair.left)
    prompt = (
        f"<div class='alignment-curate-prompt'><b>Which is better for:</b> {html.escape(meta.prompt or '')}"
        f"<br><small><code>{html.escape(pair.left)}</code> ◀ ▶ <code>{html.escape(pair.right)}</code></small></div>"
    )
    return [state, progress_html(session), prompt, _thumb(session, pair.left), _thumb(session, pair.right), unreadable_html(session), message]


def build(ctx: AppContext) -> None:
    """The tab's components and events, inside the current gradio context."""
    sessions = for_context(ctx)
    gr.HTML(token_html(), elem_id=_id("token"))
    gr.Markdown(
        "Rank images you already have: pairs of the same prompt, chosen so each answer tells the most "
        "(no pair whose order earlier answers imply). Answers go to the preference store (*My preferences*); "
        "the same folder resumes where you left off."
    )
    with gr.Row():
        folder = gr.Textbox(label="Folder", value=str(sessions.default_folder()), elem_id=_id("folder"), scale=4)
        open_button = gr.Button("Open", variant="primary", elem_id=_id("open"), scale=1)
    with gr.Accordion("Upload images instead", open=False, elem_id=_id("upload_box")):
        uploads = gr.File(file_count="multiple", label="PNG, JPEG or WebP images", elem_id=_id("upload"))
        upload_button = gr.Button("Curate the uploaded images", elem_id=_id("upload_open"))
    progress = gr.HTML(elem_id=_id("progress"))
    prompt = gr.HTML(elem_id=_id("prompt"))
    with gr.Row(elem_classes="alignment-curate-pair"):
        left = gr.Image(label="Left", type="pil", interactive=False, elem_id=_id("left"))
        right = gr.Image(label="Right", type="pil", interactive=False, elem_id=_id("right"))
    with gr.Row():
        pick_left = gr.Button("◀ Left is better", variant="primary", elem_id=_id("pick_left"))
        skip = gr.Button("Skip", elem_id=_id("skip"))
        pick_right = gr.Button("Right is better ▶", variant="primary", elem_id=_id("pick_right"))
        undo = gr.Button("Undo", elem_id=_id("undo"))
    message = gr.Markdown(elem_id=_id("message"))
    with gr.Accordion("Images without a readable prompt", open=False, elem_id=_id("unreadable_box")):
        unreadable = gr.HTML(elem_id=_id("unreadable"))
        with gr.Row():
            caption_image = gr.Textbox(label="Image (as listed)", elem_id=_id("caption_image"))
            caption_text = gr.Textbox(label="Its prompt", elem_id=_id("caption_text"))
            caption_button = gr.Button("Save caption", elem_id=_id("caption_save"))
    state = gr.State({})
    outputs = [state, progress, prompt, left, right, unreadable, message]

    def guarded(fn: Any) -> Any:
        def run(*args: Any) -> list[Any]:
            try:
                return fn(*args)
            except CurateNotFound:
                return view(None, "The session is gone (the WebUI restarted): press Open to resume it.")
            except (ValueError, OSError) as error:
                return [gr.update()] * (len(outputs) - 1) + [f"**{html.escape(str(error))}**"]

        return run

    def session_of(current: dict[str, Any]) -> CurateSession:
        if not current or not current.get("id"):
            raise ValueError("Open a folder first.")
        return sessions.get(current["id"])

    def do_open(path: str) -> list[Any]:
        return view(sessions.open(path))

    def do_upload(files: Any) -> list[Any]:
        items = []
        for value in files or []:
            path = file_path(value)
            if path:
                from pathlib import Path

                items.append((Path(path).name, Path(path).read_bytes()))
        return view(sessions.upload(items), f"{len(items)} images uploaded.")

    def do_pick(current: dict[str, Any], side: str) -> list[Any]:
        session = session_of(current)
        if not current.get("left"):
            raise ValueError("No pair on show.")
        winner, loser = (current["left"], current["right"]) if side == "left" else (current["right"], current["left"])
        session.judge(winner, loser)
        return view(session, "Saved ✓")

    def do_skip(current: dict[str, Any]) -> list[Any]:
        session = session_of(current)
        if current.get("left"):
            session.skip(current["left"], current["right"])
        return view(session, "Skipped")

    def do_undo(current: dict[str, Any]) -> list[Any]:
        session = session_of(current)
        undone = session.undo()
        return view(session, {"judge": "Took back the last answer.", "skip": "Took back the last skip."}.get(undone or "", "Nothing to undo."))

    def do_caption(current: dict[str, Any], image: str, text: str) -> list[Any]:
        session = session_of(current)
        session.caption(image.strip(), text)
        return view(session, "Caption saved ✓")

    open_button.click(guarded(do_open), inputs=[folder], outputs=outputs)
    upload_button.click(guarded(do_upload), inputs=[uploads], outputs=outputs)
    pick_left.click(guarded(lambda s: do_pick(s, "left")), inputs=[state], outputs=outputs)
    pick_right.click(guarded(lambda s: do_pick(s, "right")), inputs=[state], outputs=outputs)
    skip.click(guarded(do_skip), inputs=[state], outputs=outputs)
    undo.click(guarded(do_undo), inputs=[state], outputs=outputs)
    caption_button.click(guarded(do_caption), inputs=[state, caption_image, caption_text], outputs=outputs)
