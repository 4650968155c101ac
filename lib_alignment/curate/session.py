"""A curation session over one folder: lazy metadata, prompt groups, the next pair, answers, skip, undo.

Opening lists files only (os.scandir); metadata is read a chunk at a time when pairs run out, and cached
beside the session state (keyed by size and mtime) so a reopened folder reads nothing it read before.
The state is one JSON file per folder, written atomically after every answer: a restart resumes it.
Answers go to the preference store (when one is given) as judgements; undo takes them back there too.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..paths import atomic_write_json, confine
from . import pairing
from .metadata import ImageMeta, normalise_prompt, read_metadata
from .scan import ImageFile, scan_folder

CHUNK = 256  # metadata read per step when no pair is left among the files read so far
SOURCE = "curate"


def folder_key(folder: Path) -> str:
    return hashlib.sha1(str(Path(folder).resolve()).encode()).hexdigest()[:16]


class CurateSession:
    """One folder's curation. Thread-safe: the tab and the API may act on it at once."""

    def __init__(self, folder: Path, state_dir: Path, store: Any = None, seed: int = 0) -> None:
        self.folder = Path(folder).resolve()
        self.files: list[ImageFile] = scan_folder(self.folder)
        self.by_rel = {item.rel: item for item in self.files}
        self.key = folder_key(self.folder)
        self.state_path = Path(state_dir) / f"{self.key}.json"
        self.cache_path = Path(state_dir) / f"{self.key}.meta.json"
        self.store = store
        self.seed = seed
        self.reads = 0  # metadata files opened by this session (tests check it stays small)
        self._lock = threading.RLock()
        self._meta: dict[str, ImageMeta] = {}
        self._indexed = 0  # files[:_indexed] have their metadata
        self._cache_saved = 0
        self._cache = self._load_json(self.cache_path, {})
        state = self._load_json(self.state_path, {})
        self.judgements: list[dict[str, Any]] = state.get("judgements", [])
        self.skips: list[list[str]] = state.get("skips", [])
        self.captions: dict[str, str] = state.get("captions", {})
        self.history: list[dict[str, Any]] = state.get("history", [])
        self.store_ids: dict[str, str] = state.get("store_ids", {})
        # A resumed session reads as far as it had read (from the cache, opening nothing it read before),
        # so it asks the same questions as one that never stopped.
        self.index_more(int(state.get("indexed", 0)))

    # --- metadata -------------------------------------------------------------------------------

    @staticmethod
    def _load_json(path: Path, default: Any) -> Any:
        import json

        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return default

    def path_of(self, rel: str) -> Path:
        """The file of a listed image; anything not listed (or escaping the folder) is refused."""
        if rel not in self.by_rel:
            raise ValueError(f"image: {rel!r} is not an image of this folder")
        return confine(self.folder, rel, "image")

    def meta(self, rel: str) -> ImageMeta:
        """Metadata of one listed image (read once; a hand-typed caption wins over the file's)."""
        with self._lock:
            if rel in self.captions:
                return ImageMeta(prompt=self.captions[rel], source="caption")
            if rel in self._meta:
                return self._meta[rel]
            item = self.by_rel[rel]
            cached = self._cache.get(rel)
            if cached and cached[0] == item.size and cached[1] == item.mtime:
                meta = ImageMeta.from_json(cached[2])
            else:
                self.reads += 1
                meta = read_metadata(self.folder / rel)
                self._cache[rel] = [item.size, item.mtime, meta.to_json()]
            self._meta[rel] = meta
            return meta

    def index_more(self, count: int = CHUNK) -> int:
        """Read the metadata of the next `count` files in path order; returns how many were read."""
        with self._lock:
            start = self._indexed
            end = min(len(self.files), start + count)
            for item in self.files[start:end]:
                self.meta(item.rel)
            self._indexed = end
            if self.reads > self._cache_saved:
                atomic_write_json(self.cache_path, self._cache)
                self._cache_saved = self.reads
            return end - start

    @property
    def indexed(self) -> int:
        return self._indexed

    def groups(self) -> dict[str, list[str]]:
        """Readable images read so far, grouped by normalised prompt."""
        with self._lock:
            groups: dict[str, list[str]] = defaultdict(list)
            for rel in set(self._meta) | {rel for rel in self.captions if rel in self.by_rel}:
                meta = self.meta(rel)
                if meta.readable and meta.prompt:
                    groups[normalise_prompt(meta.prompt)].append(rel)
            return {key: sorted(items) for key, items in groups.items()}

    def unreadable(self) -> list[tuple[str, str]]:
        """(image, reason) for every image read so far whose prompt could not be read."""
        with self._lock:
            return sorted(
                (rel, meta.reason or "no prompt")
                for rel, meta in self._meta.items()
                if not meta.readable and rel not in self.captions
            )

    def caption(self, rel: str, text: str) -> None:
        """Give an image without a readable prompt one typed by hand (empty text removes it)."""
        self.path_of(rel)
        with self._lock:
            if text.strip():
                self.captions[rel] = text.strip()
            else:
                self.captions.pop(rel, None)
            self._save()

    # --- pairs and answers ----------------------------------------------------------------------

    def _triples(self) -> list[tuple[str, str, str]]:
        return [(j["group"], j["winner"], j["loser"]) for j in self.judgements]

    def next_pair(self) -> pairing.Pair | None:
        """The next pair to ask about, reading more metadata only while none is left."""
        with self._lock:
            skipped = [frozenset(s) for s in self.skips]
            while True:
                pair = pairing.next_pair(self.groups(), self._triples(), skipped, self.seed)
                if pair is not None or self.index_more() == 0:
                    return pair

    def judge(self, winner: str, loser: str) -> dict[str, Any]:
        """Record `winner` preferred over `loser` (both of one prompt); written to the store first."""
        with self._lock:
            group = self._group_of(winner, loser)
            entry = None
            if self.store is not None:
                winner_id = self._store_image(winner)
                loser_id = self._store_image(loser)
                entry = self.store.add_judgement(winner_id, [loser_id], source=SOURCE, group=group)
            record = {"group": group, "winner": winner, "loser": loser, "entry": entry, "time": time.time()}
            self.judgements.append(record)
            self.history.append({"kind": "judge"})
            self._save()
            return record

    def skip(self, left: str, right: str) -> None:
        with self._lock:
            self._group_of(left, right)
            self.skips.append(sorted((left, right)))
            self.history.append({"kind": "skip"})
            self._save()

    def undo(self) -> str | None:
        """Take back the last answer or skip (in the store too); returns what was undone."""
        with self._lock:
            if not self.history:
                return None
            kind = self.history.pop()["kind"]
            if kind == "judge" and self.judgements:
                record = self.judgements.pop()
                if self.store is not None and record.get("entry") is not None:
                    self.store.undo(record["entry"])
            elif kind == "skip" and self.skips:
                self.skips.pop()
            self._save()
            return kind

    def progress(self) -> pairing.Progress:
        with self._lock:
            return pairing.progress(self.groups(), self._triples())

    def _group_of(self, left: str, right: str) -> str:
        for rel in (left, right):
            self.path_of(rel)
        if left == right:
            raise ValueError("loser: the same image as the winner")
        keys = {normalise_prompt(self.meta(rel).prompt or "") for rel in (left, right)}
        if len(keys) != 1 or not self.meta(left).readable:
            raise ValueError("loser: the two images do not share a prompt")
        return keys.pop()

    def _store_image(self, rel: str) -> str:
        if rel in self.store_ids:
            return self.store_ids[rel]
        meta = self.meta(rel)
        path = self.path_of(rel)
        image_id = self.store.add_image(
            path,
            prompt=meta.prompt or "",
            negative_prompt=meta.negative_prompt,
            seed=meta.seed,
            settings=meta.settings,
            checkpoint=meta.checkpoint,
            checkpoint_hash=meta.checkpoint_hash,
            source=SOURCE,
            path=str(path),
        )
        self.store_ids[rel] = image_id
        return image_id

    def _save(self) -> None:
        atomic_write_json(
            self.state_path,
            {
                "folder": str(self.folder),
                "judgements": self.judgements,
                "skips": self.skips,
                "captions": self.captions,
                "history": self.history,
                "store_ids": self.store_ids,
                "indexed": self._indexed,
            },
        )
