"""The training tab's *My preferences* dataset: its filters, the counts shown before Start, the check and the start."""

from __future__ import annotations

import pytest
from PIL import Image

from ui_handlers import build_app, call, handler

T = "alignment_training"
P = "alignment_training_prefs"


def _update(value):
    return value if isinstance(value, dict) else {"value": value}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from lib_alignment.preferences import PreferenceStore

    out = tmp_path_factory.mktemp("ui")
    with PreferenceStore(out / "preferences") as store:  # the standalone app's store: <output dir>/preferences
        for prompt, colours in (("a red circle", ("red", "blue", "green")), ("a square", ("white", "black", "grey"))):
            ids = [store.add_image(Image.new("RGB", (64, 64), c), prompt=prompt, source="gallery") for c in colours]
            store.add_judgement(ids[0], ids[1:], source="gallery" if prompt != "a square" else "curate")
            store.add_label(ids[0], True, source="gallery")
    return build_app(out), out


def test_my_preferences_shows_its_filters_and_the_counts_each_method_uses(app):
    demo, _ = app
    out = call(demo, "training_tab", "on_source", **{f"{T}_source": "My preferences"})
    by_id = {c.elem_id: _update(v) for c, v in zip(handler(demo, "training_tab", "on_source").outputs, out)}
    assert by_id[P]["visible"] is True and by_id[f"{T}_dataset"]["visible"] is False

    def counts(method: str, **filters) -> str:
        values = {f"{T}_source": "My preferences", f"{T}_method": method, **{f"{P}_{k}": v for k, v in filters.items()}}
        (text,) = call(demo, "training_tab", "on_prefs_counts", **values)
        return text

    assert "4 pairs for DPO" in counts("DPO")
    kto = counts("KTO")
    assert "6 labels for KTO (2 desirable, 4 undesirable)" in kto and "2 likes" in kto
    assert "2 pairs for DPO" in counts("DPO", sources=["gallery"])
    assert "2 pairs for DPO" in counts("DPO", prompt="SQUARE")
    assert "0 pairs for DPO" in counts("DPO", since="2999-01-01")
    assert "Filter not understood" in counts("DPO", since="soon")
    (unchanged,) = call(demo, "training_tab", "on_prefs_counts", **{f"{T}_source": "A file or folder"})
    assert _update(unchanged).get("value") is None  # other sources leave the line alone


def test_check_and_start_train_on_the_filtered_store(app):
    demo, out = app
    chosen = {f"{T}_source": "My preferences", f"{T}_method": "DPO", f"{P}_sources": ["curate"]}
    (report,) = call(demo, "training_tab", "on_check", **chosen)
    assert "My preferences (source curate): 2 pairs for DPO" in report and "no problems" in report, report
    message, report, _ = call(demo, "training_tab", "on_start", **chosen, **{f"{T}_name": "ui-prefs", f"{T}_steps": 1, f"{P}_prompt": "circle"})
    assert message.startswith("**Not started:**") and "nothing to train on" in report  # curation judged no circle
