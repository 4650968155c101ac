"""The "Rank & Refine" tab: refine an image by ranking candidates (ZO-RankSGD on the initial noise).

Built by the same function in the standalone app and the WebUI (gradio 3.41, 4.40
and current). Session state stays on the server (`RefineSessions`, persisted by
the refine engine); the page holds only the session id, in a hidden textbox and
in localStorage so a reload resumes. Ranking happens in the browser
(javascript/alignment.js): it writes {"round", "order"} into a hidden textbox
and clicks Next.

With a scorer chosen, each round arrives pre-ranked by it (the page fills the
ranking with the scorer's order; the user corrects it), and *Auto rounds* lets
the scorer rank that many rounds after each of the user's. Under the WebUI's
--gradio-auth every handler gets the logged-in user (`gr.Request.username`) and
the tab shows and ranks only that user's sessions (and ownerless old ones).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import gradio as gr

from ..generation import SAMPLERS
from ..zo import DEFAULT_LR, DEFAULT_MU, DEFAULT_VARIETY, VARIETY, variety_of
from .context import AppContext
from .fields import number
from .refine_sessions import (
    LIMITS,
    RefineRequest,
    RefineSessions,
    SessionNotFound,
    StaleRound,
    default_sampler,
    for_context,
    ordered_samplers,
)
from .refine_source import build_source_inputs, source_fields
from .refine_view import empty_board, round_board

TITLE = "Rank & Refine"
ELEM_ID = "alignment_rank_refine"
HIDDEN = ["alignment-hidden"]
_log = logging.getLogger(__name__)

SAMPLER_NOTE = (
    "Deterministic samplers come first and suit this best. Ancestral and SDE samplers (names ending in "
    "“a”, or with SDE) add noise at every step; here that noise is fixed (seeded by the seed, the same "
    "for every candidate), so results repeat, but part of the image is then decided by noise the "
    "ranking cannot move."
)


SEED_LABEL = "Seed (-1: random)"
M_LABEL = "Candidates per round (m)"
MU_LABEL = "Exploration μ (noise change per candidate)"
LR_LABEL = "Step size (line search)"
VARIETY_LABEL = "Variety: how different the candidates are"
SCORER_LABEL = "Scorer (pre-ranks each round; you only correct the order)"
AUTO_LABEL = "Auto rounds: rounds the scorer ranks after each of yours"
#: Scorers offered in the dropdown; any other spec can be typed (clip:FOLDER and aesthetic:WEIGHTS,FOLDER
#: inside the models folder, package.module:function).
SCORER_CHOICES = ["none", "colourfulness", "brightness", "brightness:darker", "jpeg_size:smaller", "jpeg_size:larger", "color:red"]


def request_user(request: Any) -> str | None:
    """The logged-in user of a gradio request (--gradio-auth), None without auth."""
    return getattr(request, "username", None) or None


def _id(name: str) -> str:
    return f"{ELEM_ID}_{name}"


def sampler_choices(ctx: AppContext) -> list[str]:
    """The host's samplers, deterministic first (the WebUI's list inside it, diffusers' standalone)."""
    names: list[str] = list(SAMPLERS)
    if ctx.in_webui:
        from .. import webui_facade

        try:
            names = webui_facade.sampler_names() or names
        except Exception:  # noqa: BLE001 - a WebUI without its sampler list still gets a usable tab
            _log.warning("could not read the WebUI's samplers; offering the built-in list", exc_info=True)
    return ordered_samplers(names)


def parse_order(text: str) -> tuple[list[int], int | None]:
    """The ranking the page sends: {"round": r, "order": [...]}, a JSON list, or "3, 0, 5"."""
    text = (text or "").strip()
    if not text:
        raise ValueError("order: pick at least the best image (click it or press its number), then Next")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        items = [item for item in re.split(r"[\s,]+", text) if item]
        if not all(item.isdigit() for item in items):
            raise ValueError(f"order: expected candidate indices such as [2, 0, 5], got {text!r}") from None
        data = [int(item) for item in items]
    round_id = None
    if isinstance(data, dict):
        round_id = data.get("round")
        data = data.get("order", [])
    if not isinstance(data, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in data):
        raise ValueError(f"order: expected a list of candidate indices, got {text!r}")
    if not data:
        raise ValueError("order: pick at least the best image (click it or press its number), then Next")
    return data, (int(round_id) if isinstance(round_id, int) else None)


def _assist(scorer_value: Any, auto_value: Any) -> dict[str, Any]:
    """The scorer spec (None for none) and the auto-round count from their fields."""
    scorer = str(scorer_value or "").strip()
    return {
        "scorer": None if scorer.lower() in ("", "none") else scorer,
        "auto_rounds": number(auto_value or 0, AUTO_LABEL, integer=True, minimum=0, maximum=LIMITS["auto_rounds"][1]),
    }


def _params(m_value: Any, mu_value: Any, lr_value: Any) -> dict[str, Any]:
    """m, mu and lr from their fields, each refused with its label when empty or not a positive number."""
    return {
        "m": number(m_value, M_LABEL, integer=True, minimum=LIMITS["m"][0], maximum=LIMITS["m"][1]),
        "mu": number(mu_value, MU_LABEL, minimum=LIMITS["mu"][0], maximum=LIMITS["mu"][1]),
        "lr": number(lr_value, LR_LABEL, minimum=LIMITS["lr"][0], maximum=LIMITS["lr"][1]),
    }


def _session_id_of(label: str | None) -> str:
    """The id at the start of a session dropdown label."""
    return (label or "").split(" ", 1)[0].strip()


class _Handlers:
    """The tab's callbacks; each returns the board HTML (with a message or error) and the session id."""

    def __init__(self, ctx: AppContext, sessions: RefineSessions) -> None:
        self.ctx = ctx
        self.sessions = sessions

    def show(
        self, session_id: str | None, message: str | None = None, error: str | None = None, user: str | None = None
    ) -> str:
        """The board of a session's pending round, or the empty board (with the message) without one."""
        if session_id:
            try:
                session, rnd = self.sessions.current(session_id, user=user)
                return round_board(session_id, session, rnd, self.sessions.start_image(session), message, error)
            except Exception as problem:  # noqa: BLE001 - shown to the user instead of the board
                return empty_board(message, error or _describe(problem), forget=isinstance(problem, SessionNotFound))
        return empty_board(message, error)

    def guarded(
        self,
        session_id: str | None,
        step: Callable[[], tuple[str, str | None]],
        task: str | None = None,
        user: str | None = None,
    ) -> tuple[str, str]:
        """Run a step returning (session id, note); on failure keep showing the session with the error.

        task: the WebUI progress-bar id the page sent with the request; it is closed in every case."""
        try:
            new_id, note = step()
            return self.show(new_id, message=note, user=user), new_id
        except StaleRound as problem:
            return self.show(session_id, message=str(problem), user=user), session_id or ""
        except Exception as problem:  # noqa: BLE001 - every failure becomes a message on the board
            if not isinstance(problem, (ValueError, LookupError, RuntimeError, OSError)):
                _log.exception("Rank & Refine step failed")
            return self.show(session_id, error=_describe(problem), user=user), session_id or ""
        finally:
            self.sessions.end_task(task)


def _describe(problem: BaseException) -> str:
    if isinstance(problem, (ValueError, LookupError, RuntimeError, OSError)):
        return str(problem).strip("'\"") or type(problem).__name__
    return f"{type(problem).__name__}: {problem}"


def _reporter(progress: Any, what: str) -> Callable[[int, int], None]:
    def report(step: int, total: int) -> None:
        try:
            progress((step, total), desc=what)
        except Exception:  # noqa: BLE001 - progress display must never break a round
            _log.debug("progress update failed", exc_info=True)

    return report


def _session_choices(sessions: RefineSessions, user: str | None = None) -> list[str]:
    return [summary.label() for summary in sessions.summaries(user)]


def build(ctx: AppContext) -> None:
    """Create the tab's components inside the current gradio context."""
    sessions = for_context(ctx)
    handlers = _Handlers(ctx, sessions)
    samplers = sampler_choices(ctx)
    in_webui = ctx.in_webui

    with gr.Row(elem_id=_id("layout")):
        with gr.Column(scale=1, min_width=320, elem_id=_id("settings")):
            prompt = gr.Textbox(
                label="Prompt", lines=3, value="a red circle on a blue background", elem_id=_id("prompt")
            )
            negative = gr.Textbox(label="Negative prompt", lines=2, value="", elem_id=_id("negative"))
            pull = gr.Button("Copy prompt and settings from txt2img", visible=in_webui, elem_id=_id("pull"))
            with gr.Row():
                seed = gr.Number(label=SEED_LABEL, value=-1, precision=0, elem_id=_id("seed"))
                steps = gr.Slider(
                    label="Steps",
                    minimum=LIMITS["steps"][0],
                    maximum=LIMITS["steps"][1],
                    step=1,
                    value=20,
                    elem_id=_id("steps"),
                )
            with gr.Row():
                cfg = gr.Slider(label="CFG scale", minimum=0, maximum=30, step=0.5, value=7.0, elem_id=_id("cfg"))
                sampler = gr.Dropdown(
                    label="Sampler", choices=samplers, value=default_sampler(samplers), elem_id=_id("sampler")
                )
            with gr.Row():
                width = gr.Slider(
                    label="Width (0: the model's size)",
                    minimum=0,
                    maximum=LIMITS["size"][1],
                    step=8,
                    value=0,
                    elem_id=_id("width"),
                )
                height = gr.Slider(
                    label="Height (0: the model's size)",
                    minimum=0,
                    maximum=LIMITS["size"][1],
                    step=8,
                    value=0,
                    elem_id=_id("height"),
                )
            gr.Markdown(SAMPLER_NOTE, elem_classes=["alignment-note-text"])
            variety = gr.Radio(
                label=VARIETY_LABEL, choices=list(VARIETY), value=DEFAULT_VARIETY, elem_id=_id("variety")
            )
            with gr.Row():
                scorer = gr.Dropdown(
                    label=SCORER_LABEL,
                    choices=SCORER_CHOICES,
                    value="none",
                    allow_custom_value=True,
                    elem_id=_id("scorer"),
                )
                auto_rounds = gr.Number(label=AUTO_LABEL, value=0, precision=0, elem_id=_id("auto_rounds"))
            with gr.Accordion("Candidates and step size", open=False, elem_id=_id("params")):
                m = gr.Slider(
                    label=M_LABEL,
                    minimum=LIMITS["m"][0],
                    maximum=LIMITS["m"][1],
                    step=1,
                    value=6,
                    elem_id=_id("m"),
                )
                with gr.Row():
                    mu = gr.Number(label=MU_LABEL, value=VARIETY[DEFAULT_VARIETY], elem_id=_id("mu"))
                    lr = gr.Number(label=LR_LABEL, value=DEFAULT_LR, elem_id=_id("lr"))
                apply_params = gr.Button("Apply to the running session (from its next round)", elem_id=_id("apply"))
            source = build_source_inputs(ELEM_ID)
            start = gr.Button("Start", variant="primary", elem_id=_id("start"))
            with gr.Accordion("Earlier sessions", open=False, elem_id=_id("history")):
                session_list = gr.Dropdown(label="Session", choices=[], elem_id=_id("sessions"))
                with gr.Row():
                    refresh = gr.Button("Refresh list", elem_id=_id("refresh"))
                    resume = gr.Button("Resume", elem_id=_id("resume"))
        with gr.Column(scale=3, elem_id=_id("main")):
            if in_webui:  # the WebUI's progress bar goes above this anchor (javascript/alignment.js)
                gr.HTML(
                    f'<div id="{_id("progress_anchor")}"></div>',
                    elem_id=_id("progress"),
                    elem_classes=["alignment-progress"],
                )
            board = gr.HTML(empty_board(), elem_id=_id("board"))
            with gr.Row(elem_id=_id("actions")):
                next_button = gr.Button("Next", variant="primary", elem_id=_id("next"))
                undo = gr.Button("Undo", elem_id=_id("undo"))
                reset = gr.Button("Reset to the seed", elem_id=_id("reset"))
                interrupt = gr.Button("Interrupt", visible=in_webui, elem_id=_id("interrupt"))
            with gr.Accordion("Final image and preference data", open=True), gr.Row():
                with gr.Column(scale=1, min_width=200):
                    final_image = gr.Image(label="Final image", type="pil", interactive=False, elem_id=_id("final"))
                with gr.Column(scale=2):
                    save = gr.Button(
                        "Save the current image (PNG with infotext + latent)",
                        variant="primary",
                        elem_id=_id("save"),
                    )
                    infotext = gr.Textbox(label="Infotext", lines=3, interactive=False, elem_id=_id("infotext"))
                    saved = gr.Markdown("", elem_id=_id("saved"))
                    with gr.Row(visible=in_webui):
                        send = {
                            "txt2img": gr.Button("Send to txt2img", elem_id=_id("send_txt2img")),
                            "img2img": gr.Button("Send to img2img", elem_id=_id("send_img2img")),
                        }
                    prefs = gr.Button("Export preference data of all sessions (for DPO/KTO)", elem_id=_id("prefs"))
                    prefs_info = gr.Markdown("", elem_id=_id("prefs_info"))
    # What the page's script reads and writes: present in the DOM, hidden by style.css.
    with gr.Row(elem_classes=HIDDEN):
        session_box = gr.Textbox(value="", label="session", elem_id=_id("session"), elem_classes=HIDDEN)
        order_box = gr.Textbox(value="", label="order", elem_id=_id("order"), elem_classes=HIDDEN)
        task_box = gr.Textbox(value="", label="task", elem_id=_id("task"), elem_classes=HIDDEN)
        auto_resume = gr.Button("resume", elem_id=_id("auto_resume"), elem_classes=HIDDEN)

    if in_webui:
        from .. import webui_facade

        try:
            webui_facade.register_send_to_buttons(send, final_image, infotext)
        except Exception:  # noqa: BLE001 - the tab works without the buttons
            _log.warning("could not register the Send to txt2img/img2img buttons", exc_info=True)
        interrupt.click(lambda: webui_facade.interrupt(), inputs=[], outputs=[])
    _ = pull  # handled by javascript/alignment.js (copies the txt2img fields in the page)

    round_outputs = [board, session_box, order_box]

    def on_start(
        prompt_text,
        negative_text,
        seed_value,
        steps_value,
        cfg_value,
        w,
        h,
        sampler_name,
        m_value,
        mu_value,
        lr_value,
        scorer_value,
        auto_value,
        session_id,
        task,
        init_image=None,
        strength=0.75,
        hires_scale=1.0,
        hires_denoising=0.5,
        request: gr.Request = None,
        progress=gr.Progress(),  # noqa: B008 - gradio's way to ask for a progress tracker
    ):
        user = request_user(request)

        def step() -> tuple[str, str | None]:
            request = RefineRequest(
                **source_fields(init_image, strength, hires_scale, hires_denoising),
                prompt=prompt_text or "",
                negative_prompt=negative_text or "",
                seed=number(seed_value, SEED_LABEL, integer=True, minimum=-1),
                steps=number(steps_value, "Steps", integer=True, minimum=1),
                cfg_scale=number(cfg_value, "CFG scale", minimum=0),
                width=number(w, "Width", integer=True, minimum=0) or None,
                height=number(h, "Height", integer=True, minimum=0) or None,
                sampler_name=sampler_name or None,
                **_params(m_value, mu_value, lr_value),
                **_assist(scorer_value, auto_value),
            )
            new_id, session, _ = sessions.start(
                request, task_id=task or None, progress=_reporter(progress, "Candidates"), user=user
            )
            return new_id, f"Started with seed {session.seed}."

        html, new_id = handlers.guarded(session_id, step, task, user=user)
        return html, new_id, "", gr.update(choices=_session_choices(sessions, user))

    def on_next(session_id, order_text, task, request: gr.Request = None, progress=gr.Progress()):  # noqa: B008
        user = request_user(request)

        def step() -> tuple[str, str | None]:
            if not session_id:
                raise SessionNotFound("press Start first")
            order, round_id = parse_order(order_text)
            before = sessions.get(session_id, user).rounds_ranked
            sessions.rank(
                session_id,
                order,
                round_id=round_id,
                task_id=task or None,
                progress=_reporter(progress, "Candidates"),
                user=user,
            )
            auto = sessions.get(session_id, user).rounds_ranked - before - 1
            return session_id, (f"The scorer ranked {auto} more round{'s' * (auto != 1)}." if auto > 0 else None)

        html, new_id = handlers.guarded(session_id, step, task, user=user)
        return html, new_id, ""

    def on_undo(session_id, request: gr.Request = None):
        user = request_user(request)

        def step() -> tuple[str, str | None]:
            if not session_id:
                raise SessionNotFound("press Start first")
            sessions.undo(session_id, user=user)
            return session_id, "Took back the last ranking."

        html, new_id = handlers.guarded(session_id, step, user=user)
        return html, new_id, ""

    def on_reset(session_id, task, request: gr.Request = None, progress=gr.Progress()):  # noqa: B008
        user = request_user(request)

        def step() -> tuple[str, str | None]:
            if not session_id:
                raise SessionNotFound("press Start first")
            sessions.reset(session_id, task_id=task or None, progress=_reporter(progress, "Candidates"), user=user)
            return session_id, "Back at the seed's noise with new candidates (Undo returns to where you were)."

        html, new_id = handlers.guarded(session_id, step, task, user=user)
        return html, new_id, ""

    settings_fields = [prompt, negative, seed, steps, cfg, width, height, sampler, m, mu, lr, variety, scorer, auto_rounds]

    def settings_of(session_id: str, user: str | None) -> list[Any]:
        """The resumed session's settings back in the form, so Start repeats them and the page tells the truth."""
        try:
            session = sessions.get(session_id, user)
        except Exception:  # noqa: BLE001 - the board already says why
            return [gr.update()] * len(settings_fields)
        st, params = session.settings, session.params
        return [
            st.prompt,
            st.negative_prompt,
            session.seed,
            st.steps,
            st.cfg_scale,
            st.width,
            st.height,
            st.sampler if st.sampler in samplers else gr.update(),
            params.m,
            params.mu,
            params.lr,
            variety_of(params.mu) or gr.update(),
            params.scorer or "none",
            params.auto_rounds,
        ]

    def on_resume(session_id, request: gr.Request = None):
        """The page's remembered session (reload) or the one picked from the list."""
        user = request_user(request)
        choices = gr.update(choices=_session_choices(sessions, user))
        session_id = (session_id or "").strip()
        if not session_id:
            return [empty_board(), "", "", *[gr.update()] * len(settings_fields), choices]
        html, _ = handlers.guarded(None, lambda: (session_id, "Resumed."), user=user)
        resumed = f'data-session="{session_id}"' in html
        return [
            html,
            session_id if resumed else "",
            "",
            *(settings_of(session_id, user) if resumed else [gr.update()] * len(settings_fields)),
            choices,
        ]

    def on_resume_selected(label, request: gr.Request = None):
        return on_resume(_session_id_of(label), request)

    def on_apply(session_id, m_value, mu_value, lr_value, scorer_value, auto_value, request: gr.Request = None):
        user = request_user(request)

        def step() -> tuple[str, str | None]:
            if not session_id:
                raise SessionNotFound("press Start first (these values are also used by Start)")
            params = sessions.set_params(
                session_id, **_params(m_value, mu_value, lr_value), **_assist(scorer_value, auto_value), user=user
            )
            scorer_note = f", scorer {params.scorer}, {params.auto_rounds} auto rounds" if params.scorer else ""
            return session_id, f"From the next round: m={params.m}, μ={params.mu:g}, step={params.lr:g}{scorer_note}."

        return handlers.guarded(session_id, step, user=user)

    def on_save(session_id, task, request: gr.Request = None):
        try:
            if not session_id:
                raise SessionNotFound("press Start first")
            result = sessions.export(session_id, task_id=task or None, user=request_user(request))
        except Exception as problem:  # noqa: BLE001
            return gr.update(), gr.update(), f"**Not saved:** {_describe(problem)}"
        finally:
            sessions.end_task(task)
        note = f"Saved `{result.image_path}` and the latent that regenerates it, `{result.latent_path.name}`."
        return result.image, result.infotext, note

    def on_prefs(request: gr.Request = None):
        try:
            out = sessions.export_preferences(request_user(request))
        except Exception as problem:  # noqa: BLE001
            return f"**No preference data:** {_describe(problem)}"
        return (
            f"{out.rounds} ranked rounds → {out.pairs} pairs in `{out.pairs_csv}` (DPO) and "
            f"{out.kto_rows} rows in `{out.kto_csv}` (KTO)."
        )

    start.click(
        on_start,
        inputs=[
            *[prompt, negative, seed, steps, cfg, width, height, sampler, m, mu, lr, scorer, auto_rounds],
            *[session_box, task_box, *source.components()],
        ],
        outputs=[*round_outputs, session_list],
    )
    next_button.click(on_next, inputs=[session_box, order_box, task_box], outputs=round_outputs)
    undo.click(on_undo, inputs=[session_box], outputs=round_outputs)
    reset.click(on_reset, inputs=[session_box, task_box], outputs=round_outputs)
    auto_resume.click(on_resume, inputs=[session_box], outputs=[*round_outputs, *settings_fields, session_list])
    resume.click(on_resume_selected, inputs=[session_list], outputs=[*round_outputs, *settings_fields, session_list])

    def on_refresh(request: gr.Request = None):
        return gr.update(choices=_session_choices(sessions, request_user(request)))

    refresh.click(on_refresh, inputs=[], outputs=[session_list])
    variety.change(lambda word: VARIETY.get(word, DEFAULT_MU), inputs=[variety], outputs=[mu])
    apply_params.click(on_apply, inputs=[session_box, m, mu, lr, scorer, auto_rounds], outputs=[board, session_box])
    save.click(on_save, inputs=[session_box, task_box], outputs=[final_image, infotext, saved])
    prefs.click(on_prefs, inputs=[], outputs=[prefs_info])
