"""The training tab's "Compare (blind A/B)" section: judge a LoRA against the base model without knowing which is which.

Start renders base and LoRA images of the same prompts and seeds through the
host's backend (lib_alignment.jobs.ab_compare), then shows one pair at a time as
"A" and "B" in a random order; "A is better" / "B is better" / "Skip" (or keys
1 / 2 / space) record the pick. After the last pair: the LoRA's win rate with its
95% interval and a per-prompt table, saved beside the LoRA
(NAME.alignment-compare.json, a line on its card). "Past comparisons" lists every
saved result of the Lora folder (they survive a restart), and the picks of the
one on show or chosen there can be added to the preference data (the preference
store, source "ab-compare"). The page keeps only the comparison's id
(gr.State); the images stay on the server.
"""

from __future__ import annotations

import datetime as _dt
import html
from pathlib import Path
from typing import Any

import gradio as gr

from ..jobs.ab_compare import CompareNotFound, Comparison, for_context, lora_files
from .context import AppContext

ELEM_ID = "alignment_training_ab"


def _id(name: str) -> str:
    return f"{ELEM_ID}_{name}"


def lora_choices(ctx: AppContext) -> list[str]:
    """LoRA names (file stems) in the host's Lora folder."""
    return [path.stem for path in lora_files(Path(ctx.lora_dir))]


def result_html(result: dict[str, Any]) -> str:
    """Win rate with its interval, counts and the per-prompt table."""
    if result.get("win_rate") is None:
        head = "Every pair was skipped: no win rate."
    else:
        low, high = result["interval"]
        head = (
            f"LoRA preferred in <b>{result['lora_wins']} of {result['judged']}</b> pairs: win rate "
            f"<b class='alignment-ab-rate'>{100 * result['win_rate']:.0f}%</b> "
            f"(95% interval {100 * low:.0f}–{100 * high:.0f}%), {result['skipped']} skipped."
        )
    rows = "".join(
        f"<tr><td>{html.escape(prompt)}</td><td>{row['lora']}</td><td>{row['base']}</td><td>{row['skipped']}</td></tr>"
        for prompt, row in result.get("per_prompt", {}).items()
    )
    saved = f"<p>Saved <code>{html.escape(str(result['saved']))}</code>.</p>" if result.get("saved") else ""
    return (
        f"<div class='alignment-ab-result'><p>{head}</p>"
        "<table><thead><tr><th>prompt</th><th>LoRA better</th><th>base better</th><th>skipped</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{saved}</div>"
    )


def past_label(record: dict[str, Any]) -> str:
    """'2026-12-07 06:40 · mylora @1 · 75% of 8 · person [ab12cd34]' for the past-results dropdown."""
    summary = record["summary"]
    when = _dt.datetime.fromtimestamp(float(record.get("finished") or 0)).strftime("%Y-%m-%d %H:%M")
    rate = "no win rate" if summary.get("win_rate") is None else f"{100 * summary['win_rate']:.0f}% of {summary['judged']}"
    name = Path(str(summary.get("lora", ""))).stem
    return f"{when} · {name} @{float(summary.get('weight', 1)):g} · {rate} · {summary.get('judge', 'person')} [{str(record.get('id', ''))[:8]}]"


def past_choices(sessions: Any) -> list[str]:
    return [past_label(record) for record in sessions.past()]


def _past_id(sessions: Any, label: str | None) -> str | None:
    """The saved comparison a past-results label names (by the id in its brackets)."""
    if not label or not label.endswith("]") or "[" not in label:
        return None
    short = label.rsplit("[", 1)[1][:-1]
    return next((str(r.get("id")) for r in sessions.past() if str(r.get("id", "")).startswith(short)), None)


def _view(comparison: Comparison | None, message: str = "") -> list[Any]:
    """[state, progress, image A, image B, judge box, result, message] for a comparison (or none)."""
    if comparison is None:
        return [{}, "", None, None, gr.update(visible=False), "", message]
    state = {"id": comparison.id}
    pair = comparison.pair()
    if pair is None:
        return [state, f"Done: {comparison.picked} of {comparison.picked} judged.", None, None,
                gr.update(visible=False), result_html(comparison.result() or {}), message]  # fmt: skip
    progress = f"Pair <b>{pair.number} of {pair.total}</b>: which image is better?"
    return [state, progress, pair.images[0], pair.images[1], gr.update(visible=True), "", message]


def build(ctx: AppContext) -> None:
    """The section's components and events, inside the current gradio context."""
    sessions = for_context(ctx)
    choices = lora_choices(ctx)
    with gr.Accordion("Compare (blind A/B)", open=False, elem_id=_id("box")):
        gr.Markdown(
            "Base and LoRA images of the same seeds, one pair at a time in a random order: pick the better one "
            "without knowing which is the LoRA (keys 1, 2, space). The result is saved with the LoRA."
        )
        with gr.Row():
            lora = gr.Dropdown(label="LoRA", choices=choices, value=choices[0] if choices else None,
                               scale=4, elem_id=_id("lora"))  # fmt: skip
            refresh = gr.Button("↻", size="sm", scale=0, min_width=50, elem_id=_id("refresh"))
            weight = gr.Slider(label="LoRA weight", minimum=-2, maximum=2, step=0.05, value=1.0, elem_id=_id("weight"))
        with gr.Row():
            prompts = gr.Textbox(label="Prompts (one per line)", lines=2, elem_id=_id("prompts"))
            seeds = gr.Textbox(label="Seeds", value="1, 2, 3, 4", elem_id=_id("seeds"))
            steps = gr.Number(label="Steps", value=20, precision=0, elem_id=_id("steps"))
            size = gr.Number(label="Size (px; 0: the model's)", value=0, precision=0, elem_id=_id("size"))
        start = gr.Button("Start the blind comparison", variant="primary", elem_id=_id("start"))
        message = gr.Markdown(elem_id=_id("message"))
        progress = gr.Markdown(elem_id=_id("progress"))
        with gr.Column(visible=False, elem_id=_id("judge")) as judge:
            with gr.Row():
                image_a = gr.Image(label="A", type="pil", interactive=False, elem_id=_id("image_a"))
                image_b = gr.Image(label="B", type="pil", interactive=False, elem_id=_id("image_b"))
            with gr.Row():
                pick_a = gr.Button("A is better", elem_id=_id("pick_a"))
                pick_b = gr.Button("B is better", elem_id=_id("pick_b"))
                skip = gr.Button("Skip", elem_id=_id("pick_skip"))
        result = gr.HTML(elem_id=_id("result"))
        past_names = past_choices(sessions)
        with gr.Row():
            past = gr.Dropdown(label="Past comparisons (saved beside each LoRA)", choices=past_names, value=None,
                               scale=4, elem_id=_id("past"))  # fmt: skip
        past_result = gr.HTML(elem_id=_id("past_result"))
        export = gr.Button("Add the picks to the preference data", elem_id=_id("export"))
        export_message = gr.Markdown(elem_id=_id("export_message"))
        state = gr.State({})

    outputs = [state, progress, image_a, image_b, judge, result, message]

    def on_refresh(current: str | None) -> Any:
        names = lora_choices(ctx)
        return gr.update(choices=names, value=current if current in names else (names[0] if names else None)), gr.update(choices=past_choices(sessions))

    refresh.click(on_refresh, inputs=[lora], outputs=[lora, past])

    def on_past(label: str | None) -> str:
        compare_id = _past_id(sessions, label)
        if compare_id is None:
            return ""
        try:
            record = sessions.saved(compare_id)
        except CompareNotFound:
            return "This result is gone (its file was removed?)."
        kept = "" if record.get("images") else "<p>Its images were not kept: its picks cannot be added to the preference data.</p>"
        return result_html({**record["summary"], "saved": record.get("file")}) + kept

    past.change(on_past, inputs=[past], outputs=[past_result])

    def on_start(
        name: str | None, w: float, prompt_text: str, seed_text: str, step_count: Any, pixels: Any
    ) -> list[Any]:
        from .training_view import parse_seeds

        try:
            comparison = sessions.start(
                name or "", float(w), (prompt_text or "").splitlines(), parse_seeds(seed_text),
                steps=int(step_count if step_count not in (None, "") else 20), size=int(pixels or 0) or None,
            )  # fmt: skip
        except (ValueError, OSError, RuntimeError) as error:
            return _view(None, f"**Not started:** {error}")
        return _view(comparison)

    start.click(on_start, inputs=[lora, weight, prompts, seeds, steps, size], outputs=outputs)

    def picker(choice: str) -> Any:
        def on_pick(current: dict[str, Any] | None) -> list[Any]:
            compare_id = (current or {}).get("id")
            if not compare_id:
                return _view(None, "Start a comparison first.")
            keep = gr.update()
            try:
                comparison = sessions.pick(compare_id, choice)
            except CompareNotFound:
                return [*_view(None, "This comparison is gone (the app restarted?): start it again."), keep]
            except ValueError as error:
                return [*_view(sessions.get(compare_id), str(error)), keep]
            return [*_view(comparison), gr.update(choices=past_choices(sessions)) if comparison.done else keep]

        return on_pick

    pick_a.click(picker("A"), inputs=[state], outputs=[*outputs, past])
    pick_b.click(picker("B"), inputs=[state], outputs=[*outputs, past])
    skip.click(picker("skip"), inputs=[state], outputs=[*outputs, past])

    def on_export(current: dict[str, Any] | None, label: str | None) -> str:
        compare_id = _past_id(sessions, label) or (current or {}).get("id") or ""
        if not compare_id:
            return "Finish a comparison, or choose one under *Past comparisons*, first."
        try:
            done = sessions.export_picks(compare_id)
        except CompareNotFound:
            return "Finish a comparison, or choose one under *Past comparisons*, first."
        except (ValueError, OSError) as error:
            return f"**Not added:** {error}"
        if "pairs_csv" in done:
            return f"Wrote {done['added']} picks to `{done['pairs_csv']}`: train on it as a DPO dataset (its path in *Dataset path*)."
        if done.get("already"):
            return f"These picks are already in the preference data (`{done['store']}`)."
        return (f"Added {done['added']} picks to the preference data (`{done['store']}`, source {done['source']}): "
                f"train on them with the dataset `@preferences?source={done['source']}`.")

    export.click(on_export, inputs=[state, past], outputs=[export_message])
