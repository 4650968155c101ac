"""The training tab's *My preferences* dataset: filters over the preference store and the counts a job will use.

The filters become the dataset value ``@preferences?source=…&prompt=…`` (see
lib_alignment.preferences.training), which the job runner snapshots at Start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

#: Sources offered even before they have written anything (the store adds whatever else it has seen).
KNOWN_SOURCES = ("gallery", "curate", "rank-refine", "compare", "import", "api")


@dataclass
class FilterComponents:
    box: Any
    sources: Any
    checkpoint: Any
    prompt: Any
    since: Any
    until: Any
    counts: Any
    refresh: Any

    @property
    def inputs(self) -> list[Any]:
        """The filter values, in the order `spec` and `counts_text` take them."""
        return [self.sources, self.checkpoint, self.prompt, self.since, self.until]


def _store(ctx: Any) -> Any:
    from ..preferences import default_store
    from ..preferences.refine_sync import sync_all

    store = default_store(ctx)
    sync_all(store, ctx.output_dir)  # Rank & Refine rounds count too
    return store


def build_filters(ctx: Any, visible: bool = False) -> FilterComponents:
    """The filter row and the counts line, inside the current gradio context."""
    try:
        seen = _store(ctx).sources()
    except Exception:  # noqa: BLE001 - an unreadable store is reported by the counts line, not at page build
        seen = []
    choices = list(dict.fromkeys([*KNOWN_SOURCES, *seen]))
    with gr.Column(visible=visible, elem_id="alignment_training_prefs") as box:
        sources = gr.Dropdown(
            label="Sources (none chosen: all)", choices=choices, value=[], multiselect=True,
            elem_id="alignment_training_prefs_sources",
        )
        with gr.Row():
            checkpoint = gr.Textbox(label="Checkpoint (name or hash contains)", elem_id="alignment_training_prefs_checkpoint")
            prompt = gr.Textbox(label="Prompt contains", elem_id="alignment_training_prefs_prompt")
        with gr.Row():
            since = gr.Textbox(label="Since (YYYY-MM-DD)", elem_id="alignment_training_prefs_since")
            until = gr.Textbox(label="Until (YYYY-MM-DD, not included)", elem_id="alignment_training_prefs_until")
        with gr.Row():
            counts = gr.Markdown(elem_id="alignment_training_prefs_counts")
            refresh = gr.Button("Count", size="sm", scale=0, min_width=90, elem_id="alignment_training_prefs_count")
    return FilterComponents(box, sources, checkpoint, prompt, since, until, counts, refresh)


def spec(sources: Any, checkpoint: Any, prompt: Any, since: Any, until: Any) -> str:
    """The dataset value for these filter values."""
    from ..preferences.training import make_spec

    chosen = [sources] if isinstance(sources, str) else list(sources or [])
    return make_spec(source=[s for s in chosen if s], checkpoint=(checkpoint or "").strip(), prompt=(prompt or "").strip(),
                     since=(since or "").strip() or None, until=(until or "").strip() or None)


def counts_text(ctx: Any, method: str, sources: Any, checkpoint: Any, prompt: Any, since: Any, until: Any) -> str:
    """What a job of `method` would train on with these filters, and what the store holds, in one short paragraph."""
    from ..preferences import PreferenceError
    from ..preferences.exchange import training_sets
    from ..preferences.training import parse_spec, summary

    try:
        filters, _ = parse_spec(spec(sources, checkpoint, prompt, since, until))
        store = _store(ctx)
        sets = training_sets(store, filters)
        counts = store.counts(filters)
    except PreferenceError as error:
        return f"**Filter not understood:** {error}"
    except Exception as error:  # noqa: BLE001 - shown in the page instead of a console traceback
        return f"**The preference store could not be read:** {error}"
    held = (
        f"{counts['entries']} entries ({counts['liked']} likes, {counts['disliked']} dislikes, "
        f"{counts['judgements']} judgements, {counts['rankings']} rankings) over {counts['images']} images"
    )
    return f"**{summary(sets, method, filters)}.** Selected: {held}. Store: `{store.root}`"
