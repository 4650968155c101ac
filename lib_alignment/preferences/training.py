"""Train from the store: the "@preferences" dataset value and the snapshot a job trains on.

A dataset value ``@preferences`` means "my preferences"; filters follow as a
query string, so the one value travels through the tab, POST /jobs and the
command line unchanged::

    @preferences
    @preferences?source=gallery,curate&prompt=cat&since=2026-12-01&checkpoint=v1-5
    @preferences?store=/path/to/store          (command line: a store other than the default)

A job never trains on the live store: `snapshot` exports the filtered entries
into the job's folder, in the layout the trainer reads for its method (pairs.csv,
kto.csv or rankings.csv with their images), so later labels cannot change what
a run (or its resume) trains on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from .derive import TrainingSets
from .exchange import export_store, training_sets
from .store import PreferenceError, PreferenceFilter, PreferenceStore

PREFERENCES = "@preferences"
_FILTER_KEYS = ("source", "checkpoint", "prompt", "since", "until", "human")
KTO_METHODS = ("kto",)


def is_spec(value: str) -> bool:
    text = (value or "").strip()
    return text == PREFERENCES or text.startswith(PREFERENCES + "?")


def parse_spec(value: str) -> tuple[PreferenceFilter, str | None]:
    """(filter, store folder or None) from '@preferences?key=value&…'; PreferenceError names a bad key."""
    text = (value or "").strip()
    if not is_spec(text):
        raise PreferenceError(f"dataset: {value!r} is not {PREFERENCES}[?filters]", "dataset")
    query = text[len(PREFERENCES) + 1 :]
    values: dict[str, Any] = {}
    store = None
    for key, item in parse_qsl(query, keep_blank_values=True):
        if key == "store":
            store = item
        elif key == "human":
            if item.lower() not in ("true", "false", "1", "0", ""):
                raise PreferenceError(f"human: true or false, not {item!r}", "human")
            values["human"] = None if item == "" else item.lower() in ("true", "1")
        elif key in _FILTER_KEYS:
            values[key] = item
        else:
            raise PreferenceError(f"{key}: unknown filter in {PREFERENCES}; use {', '.join(_FILTER_KEYS)}", key)
    return PreferenceFilter.from_dict(values), store


def make_spec(source: Any = None, checkpoint: str = "", prompt: str = "", since: Any = None, until: Any = None, human: bool | None = None) -> str:
    """The dataset value for these filters (what the tab sends)."""
    sources = source if isinstance(source, str) else ",".join(source or ())
    pairs = [(k, str(v)) for k, v in (("source", sources), ("checkpoint", checkpoint), ("prompt", prompt), ("since", since), ("until", until)) if v not in (None, "")]
    if human is not None:
        pairs.append(("human", "true" if human else "false"))
    return PREFERENCES + ("?" + urlencode(pairs, quote_via=quote) if pairs else "")


def needed(method: str) -> str:
    """What `method` counts: 'labels' (KTO), 'rankings' (listwise) or 'pairs'."""
    return "labels" if method in KTO_METHODS else ("rankings" if method == "listwise" else "pairs")


def summary(sets: TrainingSets, method: str, filters: PreferenceFilter) -> str:
    """One line for people: what a job of `method` will train on."""
    counts = sets.counts()
    if method in KTO_METHODS:
        what = f"{counts['kto_labels']} labels for KTO ({counts['kto_desirable']} desirable, {counts['kto_undesirable']} undesirable)"
    elif method == "listwise" and sets.listwise_on_rankings:
        what = f"{len(sets.rankings)} rankings of {counts['listwise_m']} for listwise"
    else:
        what = f"{counts['dpo_pairs']} pairs for {method.upper()}"
    extra = f"; {counts['no_prompt']} entr{'y' if counts['no_prompt'] == 1 else 'ies'} without a prompt left out" if counts["no_prompt"] else ""
    return f"My preferences ({filters.describe()}): {what}{extra}"


@dataclass
class Snapshot:
    data: Path
    counts: dict[str, int]
    summary: str


def snapshot(store: PreferenceStore, filters: PreferenceFilter, method: str, out_dir: str | Path) -> Snapshot:
    """Export what `method` trains on into out_dir; returns the file to give the trainer.

    Raises PreferenceError when the filter leaves nothing to train on (the message
    gives the counts, so the user sees which filter or label kind is missing).
    """
    sets = training_sets(store, filters)
    line = summary(sets, method, filters)
    if sets.for_method(method) == 0 or (method in KTO_METHODS and (sets.counts()["kto_desirable"] == 0 or sets.counts()["kto_undesirable"] == 0)):
        raise PreferenceError(f"dataset: nothing to train on. {line}", "dataset")
    if method in KTO_METHODS:
        layout, key = "kto-csv", "kto"
    elif method == "listwise" and sets.listwise_on_rankings:
        layout, key = "rankings-csv", "rankings"
    else:
        layout, key = "pairs-csv", "pairs"
    result = export_store(store, out_dir, layout, sets=sets, link=True)
    return Snapshot(result.files[key], sets.counts(), line)


def open_store(store_dir: str | None, default_root: Path) -> PreferenceStore:
    """The store a spec names (store=…) or the default one; a named folder must hold a store already."""
    if store_dir:
        root = Path(store_dir).expanduser()
        if not (root / "preferences.sqlite3").is_file():
            raise PreferenceError(f"store: {root} holds no preference store (preferences.sqlite3)", "store")
        return PreferenceStore(root)
    return PreferenceStore(default_root)


#: Where `serve` keeps its store by default (its output folder ./outputs/alignment, then preferences/).
CLI_DEFAULT_STORE = Path("outputs") / "alignment" / "preferences"


def cli_snapshot(data: str, method: str, run_dir: Path) -> Path:
    """`train --data @preferences[?filters]`: snapshot into RUN_DIR/data (data-2, … when taken) and print what it holds.

    The store is the one named by ``store=``, else ./outputs/alignment/preferences
    (the standalone app's default); raises ValueError naming the problem.
    """
    import sys

    filters, named = parse_spec(data)
    if named is None and not (CLI_DEFAULT_STORE / "preferences.sqlite3").is_file():
        raise PreferenceError(
            f"data: no preference store at {CLI_DEFAULT_STORE.resolve()}; name one with {PREFERENCES}?store=FOLDER", "data"
        )
    store = open_store(named, CLI_DEFAULT_STORE)
    try:
        target, number = run_dir / "data", 1
        while target.exists():
            number += 1
            target = run_dir / f"data-{number}"
        taken = snapshot(store, filters, method, target)
    finally:
        store.close()
    print(f"{taken.summary}; snapshot in {taken.data.parent}", file=sys.stderr)
    return taken.data
