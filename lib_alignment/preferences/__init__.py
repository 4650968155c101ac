"""The local preference store: every like, judgement and ranking, from every source, in one SQLite file.

    store = default_store(ctx)                      # <data dir>/alignment/preferences
    a = store.add_image(img_a, prompt="a red circle", seed=1, source="gallery")
    b = store.add_image(img_b, prompt="a red circle", seed=2, source="gallery")
    store.add_label(a, True, source="gallery")      # returns once durable
    store.add_judgement(a, [b], source="gallery")   # "prefer this one" in a batch
    store.counts(PreferenceFilter(sources=("gallery",)))

See store.py (storage, durability), derive.py (what each objective trains on)
and exchange.py (export to / import from the training data layouts).
"""

from .store import (
    KINDS,
    ImageRecord,
    NotInStore,
    PreferenceEntry,
    PreferenceError,
    PreferenceFilter,
    PreferenceStore,
    default_store,
    store_root,
)

__all__ = [
    "KINDS",
    "ImageRecord",
    "NotInStore",
    "PreferenceEntry",
    "PreferenceError",
    "PreferenceFilter",
    "PreferenceStore",
    "default_store",
    "store_root",
]
