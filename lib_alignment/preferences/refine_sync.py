"""Rank & Refine rounds in the preference store (source "rank-refine").

Each session keeps its own round.json records (its own export reads them);
`sync_to_store` mirrors them into the store, so the training tab's *My
preferences*, the API and the counts see them beside gallery likes and curation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..refine.preferences import complete_order, ranked_records

_log = logging.getLogger(__name__)

STORE_SOURCE = "rank-refine"


def round_group(session_folder: Path, round_id: int) -> str:
    """The store group of one ranked round: re-syncing finds it, undoing the round undoes it."""
    return f"{STORE_SOURCE}:{Path(session_folder).name}:{int(round_id):04d}"


def sync_to_store(store: Any, session_folder: str | Path) -> int:
    """Mirror a session's ranked rounds into the preference store; returns the entries added.

    Idempotent: a round already in the store is left alone, and rounds taken back
    (undo) have their entries marked undone. A fully ordered round becomes a
    ranking; a partial one (the top k, or just the best) becomes one judgement per
    ranked image over every image after it and every unranked one, the same pairs
    as pairs.csv. Rounds ranked by the session's scorer are stored with human=False.
    """
    folder = Path(session_folder)
    records = ranked_records(folder)
    live = {round_group(folder, record["round"]): record for record in records}
    for group in store.groups(f"{STORE_SOURCE}:{folder.name}:"):
        if group not in live:
            store.undo_group(group)
    added = 0
    for group, record in live.items():
        if store.has_group(group):
            continue
        round_folder = Path(record["folder"])
        ids = [
            store.add_image(
                round_folder / name,
                prompt=str(record.get("prompt") or ""),
                negative_prompt=str(record.get("negative_prompt") or ""),
                seed=record.get("seed") if isinstance(record.get("seed"), int) else None,
                settings=record.get("settings") or {},
                checkpoint=str(record.get("model") or ""),
                source=STORE_SOURCE,
                path=str(round_folder / name),
            )
            for name in record["images"]
        ]
        order = [int(i) for i in record["order"]]
        human = record.get("source", "human") != "scorer"
        full = complete_order(order, len(ids))
        with store.batch():  # every entry of the round, or none; the write lock makes check-and-add atomic
            if store.has_group(group):  # another thread or process synced it meanwhile
                continue
            if full is not None:
                store.add_ranking([ids[i] for i in full], source=STORE_SOURCE, human=human, group=group)
                added += 1
            else:
                rest = [i for i in range(len(ids)) if i not in set(order)]
                for position, better in enumerate(order):
                    losers = [ids[i] for i in [*order[position + 1 :], *rest] if ids[i] != ids[better]]
                    if losers:
                        store.add_judgement(ids[better], list(dict.fromkeys(losers)), source=STORE_SOURCE, human=human, group=group)
                        added += 1
    return added


def sync_all(store: Any, output_dir: str | Path) -> int:
    """sync_to_store for every Rank & Refine session under <output_dir>/refine/; returns the entries added."""
    root = Path(output_dir) / "refine"
    if not root.is_dir():
        return 0
    added = 0
    for folder in sorted(root.iterdir()):
        if not (folder / "session.json").is_file():
            continue
        try:
            added += sync_to_store(store, folder)
        except (OSError, ValueError, KeyError) as error:  # a damaged session, or one caught mid-write: next time
            _log.warning("Rank & Refine session %s not brought into the preference store: %s", folder.name, error)
    return added
