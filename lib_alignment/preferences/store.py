"""One local preference store: every label, judgement and ranking, from every source, in SQLite.

Layout of a store folder::

    ROOT/preferences.sqlite3        entries, images (metadata), schema version
    ROOT/images/ab/abcdef….png      each image once, named by the sha256 of its bytes

Why SQLite: the gallery buttons, the Curate tab, Rank & Refine and the API write
at the same time from threads of one WebUI, and a second process (a CLI, a test)
may write too. WAL lets readers go on while one writer commits; busy_timeout
makes a second writer wait instead of failing; each thread gets its own
connection (sqlite3 connections must not be shared across threads).

Durability: ``synchronous=FULL`` in WAL mode fsyncs the WAL on every commit, so
a call that has returned (an *acknowledged* label) survives kill -9 of the
process and even a power cut. (NORMAL would already survive kill -9, since the
committed WAL frames sit in the OS page cache, but FULL costs one fsync per
human click and also covers the machine going down.) An image file is written
and fsynced (temp file + rename) before the row that refers to it commits, so
a row never names a missing file; a crash in between leaves at most an
unreferenced image, which the next add of the same bytes adopts.

Entries are never deleted: ``undo`` marks one undone, and listing, counting and
exporting leave undone entries out unless asked.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..paths import atomic_write_bytes

DB_NAME = "preferences.sqlite3"
IMAGES_DIR = "images"
SCHEMA_VERSION = 1
KINDS = ("label", "judgement", "ranking")
#: Largest image stored (pixels), as the training data reader's limit: refuses decompression bombs.
MAX_PIXELS = 8192 * 8192
_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,            -- sha256 hex of the stored file's bytes
    ext TEXT NOT NULL,              -- png | jpg | webp
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    prompt TEXT NOT NULL DEFAULT '',
    negative_prompt TEXT NOT NULL DEFAULT '',
    seed INTEGER,
    settings TEXT NOT NULL DEFAULT '{}',   -- JSON
    checkpoint TEXT NOT NULL DEFAULT '',
    checkpoint_hash TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL,
    path TEXT,                      -- where the image came from (the WebUI's saved file), if known
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('label', 'judgement', 'ranking')),
    source TEXT NOT NULL,
    human INTEGER NOT NULL,
    liked INTEGER,                  -- labels: 1 liked, 0 disliked
    group_id TEXT,                  -- e.g. the batch a "prefer this one" came from, a refine round
    created REAL NOT NULL,
    undone REAL
);
CREATE TABLE IF NOT EXISTS entry_images (
    entry_id INTEGER NOT NULL REFERENCES entries(id),
    position INTEGER NOT NULL,      -- label 0, judgement 0 = winner and 1.. losers, ranking best first
    image_id TEXT NOT NULL REFERENCES images(id),
    PRIMARY KEY (entry_id, position)
);
CREATE INDEX IF NOT EXISTS entries_created ON entries(created);
CREATE INDEX IF NOT EXISTS entries_group ON entries(group_id);
CREATE INDEX IF NOT EXISTS entry_images_image ON entry_images(image_id);
"""


class PreferenceError(ValueError):
    """Bad input to the store; ``field`` names the argument or request field at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class NotInStore(PreferenceError, LookupError):
    """An image or entry id the store does not hold."""


def _timestamp(value: Any, name: str) -> float | None:
    """Unix seconds from None, a number, a datetime/date, or ISO text ('2026-12-07', '2026-12-07T10:00Z')."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise PreferenceError(f"{name}: a date (YYYY-MM-DD), a date and time, or Unix seconds", name)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, _dt.datetime):
        moment = value if value.tzinfo else value.astimezone()
        return moment.timestamp()
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day).astimezone().timestamp()
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PreferenceError(f"{name}: {text!r} is not a date (YYYY-MM-DD), a date and time, or Unix seconds", name) from None
    return (moment if moment.tzinfo else moment.astimezone()).timestamp()


@dataclass(frozen=True)
class PreferenceFilter:
    """Which entries to list, count, export or train on; empty fields match everything.

    sources: any of these sources ("gallery", "curate", "rank-refine", "import", ...).
    checkpoint: text in the checkpoint name or hash of the entry's first image (case-insensitive).
    prompt: text in that image's prompt (case-insensitive).
    since / until: creation time, since inclusive, until exclusive; Unix seconds, a
    datetime, or ISO text (a bare date `until` means the start of that day).
    human: True = people's judgements only, False = automatic ones only.
    """

    sources: tuple[str, ...] = ()
    checkpoint: str = ""
    prompt: str = ""
    since: Any = None
    until: Any = None
    human: bool | None = None
    kinds: tuple[str, ...] = ()
    include_undone: bool = False

    def __post_init__(self) -> None:
        sources = self.sources
        if isinstance(sources, str):
            sources = tuple(s.strip() for s in sources.split(",") if s.strip())
        object.__setattr__(self, "sources", tuple(sources or ()))
        kinds = (self.kinds,) if isinstance(self.kinds, str) else tuple(self.kinds or ())
        bad = [k for k in kinds if k not in KINDS]
        if bad:
            raise PreferenceError(f"kinds: {bad[0]!r} is not one of {', '.join(KINDS)}", "kinds")
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "since", _timestamp(self.since, "since"))
        object.__setattr__(self, "until", _timestamp(self.until, "until"))
        object.__setattr__(self, "checkpoint", (self.checkpoint or "").strip())
        object.__setattr__(self, "prompt", (self.prompt or "").strip())

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> PreferenceFilter:
        """From request fields (`source` or `sources`, ...); unknown keys raise PreferenceError naming them."""
        values = dict(values or {})
        if "source" in values:
            values["sources"] = values.pop("source")
        known = {"sources", "checkpoint", "prompt", "since", "until", "human", "kinds", "include_undone"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PreferenceError(f"{unknown[0]}: unknown filter; filters are source, checkpoint, prompt, since, until, human, kinds", unknown[0])
        return cls(**{k: v for k, v in values.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def describe(self) -> str:
        """One line for people: 'source gallery, prompt "cat", since 2026-12-01'."""
        parts = []
        if self.sources:
            parts.append("source " + " or ".join(self.sources))
        if self.checkpoint:
            parts.append(f"checkpoint {self.checkpoint!r}")
        if self.prompt:
            parts.append(f"prompt containing {self.prompt!r}")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name} {_dt.datetime.fromtimestamp(value).isoformat(sep=' ', timespec='minutes')}")
        if self.human is not None:
            parts.append("people's judgements" if self.human else "automatic judgements")
        return ", ".join(parts) or "everything"


@dataclass(frozen=True)
class ImageRecord:
    """An image of the store and what it was made with."""

    id: str
    ext: str
    width: int
    height: int
    prompt: str
    negative_prompt: str
    seed: int | None
    settings: dict[str, Any]
    checkpoint: str
    checkpoint_hash: str
    source: str
    path: str | None
    created: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PreferenceEntry:
    """One acknowledged act of judgement.

    label: images = (image,), liked True/False. judgement: images = (winner, *losers).
    ranking: images best first.
    """

    id: int
    kind: str
    source: str
    human: bool
    created: float
    images: tuple[str, ...]
    liked: bool | None = None
    group: str | None = None
    undone: float | None = None
    prompt: str = ""
    checkpoint: str = ""

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["images"] = list(self.images)
        return body


@dataclass
class _Encoded:
    data: bytes
    ext: str
    size: tuple[int, int]
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        self.digest = hashlib.sha256(self.data).hexdigest()


def _check_size(width: int, height: int, what: str) -> None:
    if width * height > MAX_PIXELS:
        raise PreferenceError(f"image: {what} declares {width}x{height} pixels, over the {MAX_PIXELS // 10**6} MP limit", "image")


def encode_image(image: Any) -> _Encoded:
    """The bytes to store: PNG/JPEG/WebP files as they are; other files and PIL images as PNG.

    A PIL image keeps its A1111 infotext ("parameters") as a PNG text chunk.
    """
    from PIL import Image, PngImagePlugin

    if isinstance(image, Image.Image):
        _check_size(*image.size, "the image")
        info = PngImagePlugin.PngInfo()
        params = image.info.get("parameters") if isinstance(getattr(image, "info", None), dict) else None
        if isinstance(params, str):
            info.add_text("parameters", params)
        out = io.BytesIO()
        picture = image if image.mode in ("RGB", "RGBA", "L", "LA", "P", "I", "I;16", "1") else image.convert("RGB")
        picture.save(out, format="PNG", pnginfo=info)
        return _Encoded(out.getvalue(), "png", image.size)
    if isinstance(image, (str, Path)):
        path = Path(image)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise PreferenceError(f"image: cannot read {path}: {error.strerror or error}", "image") from None
        what = str(path)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        data, what = bytes(image), "the image bytes"
    else:
        raise PreferenceError(f"image: a PIL image, bytes or a file path, not {type(image).__name__}", "image")
    if not data:
        raise PreferenceError(f"image: {what} is empty", "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                _check_size(*probe.size, what)
                kind, size = probe.format, probe.size
                probe.verify()
            if kind not in _FORMATS:
                with Image.open(io.BytesIO(data)) as picture:
                    picture.load()
                    return encode_image(picture.copy())
    except PreferenceError:
        raise
    except Exception as error:  # PIL raises many types for damaged data
        raise PreferenceError(f"image: {what} is not a readable image ({error})", "image") from None
    return _Encoded(data, _FORMATS[kind], size)


class PreferenceStore:
    """The preference store in folder ``root`` (created on first use). Safe across threads and processes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.db_path = self.root / DB_NAME
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.db_path.exists():
            # sqlite would create the file 0644; 0666 less the umask is what the user's umask asks for
            try:
                os.close(os.open(self.db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except FileExistsError:
                pass
        self._init_schema()

    # ------------------------------------------------------------------ connections
    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (one per thread and process; sqlite connections are not shareable)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        conn = sqlite3.connect(str(self.db_path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=True)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"{self.db_path}: SQLite could not switch to WAL mode (got {mode}); is the folder on a network drive?")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._all_lock:
            self._all.append(conn)
        return conn

    def _write(self, work: Any) -> Any:
        """Run work(conn) in one IMMEDIATE transaction (the write lock is taken up front, so no upgrade deadlock)."""
        conn = self._connection()
        if conn.in_transaction:  # inside batch(): that transaction commits
            return work(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Several entries in one transaction: all of them become durable together, or none (add images first)."""
        conn = self._connection()
        if conn.in_transaction:
            yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _init_schema(self) -> None:
        def create(conn: sqlite3.Connection) -> None:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.db_path} was written by a newer version (schema {version}); update the extension")
            # one statement at a time: executescript() would COMMIT the transaction
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

        self._write(create)

    def close(self) -> None:
        """Close every connection this object opened (each thread's); later calls open new ones."""
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.ProgrammingError:  # made in another thread: closed when that thread's object goes
                pass
        self._local = threading.local()

    def __enter__(self) -> PreferenceStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ images
    def image_file(self, image_id: str, ext: str | None = None) -> Path:
        """Where the image with this id lives (images/<id[:2]>/<id>.<ext>)."""
        if ext is None:
            ext = self.image(image_id).ext
        return self.root / IMAGES_DIR / image_id[:2] / f"{image_id}.{ext}"

    def add_image(
        self,
        image: Any,
        *,
        prompt: str,
        negative_prompt: str = "",
        seed: int | None = None,
        settings: dict[str, Any] | None = None,
        checkpoint: str = "",
        checkpoint_hash: str = "",
        source: str,
        path: str | None = None,
    ) -> str:
        """Store an image (PIL image, bytes or a file) once by content; returns its id (sha256 of the stored bytes).

        Adding the same bytes again returns the same id; an empty prompt/checkpoint
        of the stored record is filled from the new call, nothing else changes.
        """
        source = _required_text(source, "source")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise PreferenceError(f"seed: a whole number or None, not {seed!r}", "seed")
        try:
            settings_json = json.dumps(settings or {}, sort_keys=True, default=str)
        except (TypeError, ValueError) as error:
            raise PreferenceError(f"settings: not representable as JSON ({error})", "settings") from None
        encoded = encode_image(image)
        target = self.image_file(encoded.digest, encoded.ext)
        if not target.is_file() or target.stat().st_size != len(encoded.data):
            atomic_write_bytes(target, encoded.data)  # fsynced and renamed before any row names it

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO images (id, ext, width, height, prompt, negative_prompt, seed, settings,"
                " checkpoint, checkpoint_hash, source, path, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (encoded.digest, encoded.ext, encoded.size[0], encoded.size[1], str(prompt or ""), str(negative_prompt or ""),
                 seed, settings_json, str(checkpoint or ""), str(checkpoint_hash or ""), source, path, time.time()),
            )
            for column, value in (("prompt", prompt), ("negative_prompt", negative_prompt), ("checkpoint", checkpoint), ("checkpoint_hash", checkpoint_hash)):
                if value:
                    conn.execute(f"UPDATE images SET {column}=? WHERE id=? AND {column}=''", (str(value), encoded.digest))
            if path:
                conn.execute("UPDATE images SET path=? WHERE id=? AND path IS NULL", (path, encoded.digest))

        self._write(insert)
        return encoded.digest

    def set_prompt(self, image_id: str, prompt: str, negative_prompt: str | None = None) -> None:
        """Caption an image by hand (images without readable infotext)."""
        self._require_images([image_id], "image_id")
        sets, values = ["prompt=?"], [str(prompt)]
        if negative_prompt is not None:
            sets.append("negative_prompt=?")
            values.append(str(negative_prompt))
        self._write(lambda conn: conn.execute(f"UPDATE images SET {', '.join(sets)} WHERE id=?", (*values, image_id)))

    def image(self, image_id: str) -> ImageRecord:
        row = self._connection().execute("SELECT * FROM images WHERE id=?", (str(image_id),)).fetchone()
        if row is None:
            raise NotInStore(f"image_id: no image {str(image_id)[:16]!r}… in the preference store", "image_id")
        return _image_record(row)

    def images(self, image_ids: Iterable[str]) -> dict[str, ImageRecord]:
        ids = list(dict.fromkeys(image_ids))
        out: dict[str, ImageRecord] = {}
        conn = self._connection()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = conn.execute(f"SELECT * FROM images WHERE id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
            out.update((row["id"], _image_record(row)) for row in rows)
        return out

    def prompts(self, image_ids: Iterable[str]) -> dict[str, str]:
        """{image id: prompt}: all that counting and deriving training sets need (cheaper than images())."""
        ids = list(dict.fromkeys(image_ids))
        out: dict[str, str] = {}
        conn = self._connection()
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            out.update(conn.execute(f"SELECT id, prompt FROM images WHERE id IN ({','.join('?' * len(chunk))})", chunk).fetchall())
        return out

    def has_image(self, image_id: str) -> bool:
        return self._connection().execute("SELECT 1 FROM images WHERE id=?", (str(image_id),)).fetchone() is not None

    def _require_images(self, ids: Sequence[str], field_name: str) -> None:
        known = self.images(ids)
        missing = [i for i in ids if i not in known]
        if missing:
            raise NotInStore(f"{field_name}: no image {str(missing[0])[:16]!r}… in the preference store (add it first)", field_name)

    # ------------------------------------------------------------------ entries
    def _add_entry(self, kind: str, image_ids: Sequence[str], source: str, human: bool, liked: bool | None, group: str | None, field_name: str) -> int:
        source = _required_text(source, "source")
        if not isinstance(human, bool):
            raise PreferenceError(f"human: true or false, not {human!r}", "human")
        ids = [str(i) for i in image_ids]
        self._require_images(ids, field_name)

        def insert(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO entries (kind, source, human, liked, group_id, created) VALUES (?,?,?,?,?,?)",
                (kind, source, int(human), None if liked is None else int(liked), group, time.time()),
            )
            entry_id = int(cursor.lastrowid)
            conn.executemany(
                "INSERT INTO entry_images (entry_id, position, image_id) VALUES (?,?,?)",
                [(entry_id, position, image_id) for position, image_id in enumerate(ids)],
            )
            return entry_id

        return int(self._write(insert))

    def add_label(self, image_id: str, liked: bool, *, source: str, human: bool = True, group: str | None = None) -> int:
        """Like (liked=True) or dislike one image; returns the entry id once it is durable."""
        if not isinstance(liked, bool):
            raise PreferenceError(f"liked: true or false, not {liked!r}", "liked")
        return self._add_entry("label", [image_id], source, human, liked, group, "image_id")

    def add_judgement(self, winner_id: str, loser_ids: Sequence[str], *, source: str, human: bool = True, group: str | None = None) -> int:
        """One image preferred over each of the others (e.g. "prefer this one" among a batch); returns the entry id."""
        if isinstance(loser_ids, str):
            loser_ids = [loser_ids]
        losers = [str(i) for i in loser_ids]
        if not losers:
            raise PreferenceError("loser_ids: at least one image the winner is preferred to", "loser_ids")
        if str(winner_id) in losers:
            raise PreferenceError("loser_ids: the winner cannot also be a loser", "loser_ids")
        if len(set(losers)) != len(losers):
            raise PreferenceError("loser_ids: an image is listed twice", "loser_ids")
        self._require_images([str(winner_id)], "winner_id")
        return self._add_entry("judgement", [str(winner_id), *losers], source, human, None, group, "loser_ids")

    def add_ranking(self, image_ids_best_first: Sequence[str], *, source: str, human: bool = True, group: str | None = None) -> int:
        """A best-first order of two or more images (of one prompt); returns the entry id."""
        ids = [str(i) for i in image_ids_best_first]
        if len(ids) < 2:
            raise PreferenceError("image_ids: a ranking orders at least two images", "image_ids")
        if len(set(ids)) != len(ids):
            raise PreferenceError("image_ids: an image is ranked twice", "image_ids")
        return self._add_entry("ranking", ids, source, human, None, group, "image_ids")

    def undo(self, entry_id: int) -> bool:
        """Mark an entry undone (it stays in the history); False if it already was."""
        try:
            number = int(entry_id)
        except (TypeError, ValueError):
            raise PreferenceError(f"entry_id: a whole number, not {entry_id!r}", "entry_id") from None

        def mark(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT undone FROM entries WHERE id=?", (number,)).fetchone()
            if row is None:
                raise NotInStore(f"entry_id: no entry {number} in the preference store", "entry_id")
            if row["undone"] is not None:
                return False
            conn.execute("UPDATE entries SET undone=? WHERE id=?", (time.time(), number))
            return True

        return bool(self._write(mark))

    def undo_group(self, group: str) -> int:
        """Mark every active entry of a group undone (a refine round taken back); returns how many."""
        def mark(conn: sqlite3.Connection) -> int:
            return conn.execute("UPDATE entries SET undone=? WHERE group_id=? AND undone IS NULL", (time.time(), group)).rowcount

        return int(self._write(mark))

    def groups(self, prefix: str) -> list[str]:
        """The groups of active entries that start with `prefix` (e.g. one refine session's rounds)."""
        rows = self._connection().execute(
            "SELECT DISTINCT group_id FROM entries WHERE undone IS NULL AND substr(group_id, 1, ?) = ?", (len(prefix), prefix)
        )
        return [row[0] for row in rows]

    def has_group(self, group: str) -> bool:
        """Whether an active entry carries this group (imports and refine rounds stay idempotent)."""
        return self._connection().execute("SELECT 1 FROM entries WHERE group_id=? AND undone IS NULL LIMIT 1", (group,)).fetchone() is not None

    def entry(self, entry_id: int) -> PreferenceEntry:
        found = self._select("e.id = ?", [int(entry_id)])
        if not found:
            raise NotInStore(f"entry_id: no entry {entry_id} in the preference store", "entry_id")
        return found[0]

    # ------------------------------------------------------------------ queries
    def _where(self, filters: PreferenceFilter | None) -> tuple[str, list[Any]]:
        f = filters or PreferenceFilter()
        clauses: list[str] = []
        values: list[Any] = []
        if not f.include_undone:
            clauses.append("e.undone IS NULL")
        if f.sources:
            clauses.append(f"e.source IN ({','.join('?' * len(f.sources))})")
            values.extend(f.sources)
        if f.kinds:
            clauses.append(f"e.kind IN ({','.join('?' * len(f.kinds))})")
            values.extend(f.kinds)
        if f.human is not None:
            clauses.append("e.human = ?")
            values.append(int(f.human))
        if f.since is not None:
            clauses.append("e.created >= ?")
            values.append(f.since)
        if f.until is not None:
            clauses.append("e.created < ?")
            values.append(f.until)
        if f.prompt:
            clauses.append("instr(lower(i.prompt), lower(?)) > 0")
            values.append(f.prompt)
        if f.checkpoint:
            clauses.append("(instr(lower(i.checkpoint), lower(?)) > 0 OR lower(i.checkpoint_hash) LIKE lower(?) || '%')")
            values.extend([f.checkpoint, f.checkpoint])
        return " AND ".join(clauses) or "1", values

    def _select(self, where: str, values: list[Any], limit: int | None = None, offset: int = 0, newest_first: bool = True) -> list[PreferenceEntry]:
        order = "DESC" if newest_first else "ASC"
        page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
        conn = self._connection()
        rows = conn.execute(
            "SELECT e.*, i.prompt AS prompt, i.checkpoint AS checkpoint FROM entries e"
            " JOIN entry_images first ON first.entry_id = e.id AND first.position = 0"
            f" JOIN images i ON i.id = first.image_id WHERE {where} ORDER BY e.id {order}{page}",
            values,
        ).fetchall()
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        members: dict[int, list[str]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for link in conn.execute(
                f"SELECT entry_id, image_id FROM entry_images WHERE entry_id IN ({','.join('?' * len(chunk))}) ORDER BY entry_id, position",
                chunk,
            ):
                members.setdefault(link["entry_id"], []).append(link["image_id"])
        return [
            PreferenceEntry(
                id=row["id"], kind=row["kind"], source=row["source"], human=bool(row["human"]), created=row["created"],
                images=tuple(members.get(row["id"], ())), liked=None if row["liked"] is None else bool(row["liked"]),
                group=row["group_id"], undone=row["undone"], prompt=row["prompt"], checkpoint=row["checkpoint"],
            )
            for row in rows
        ]

    def list(self, filters: PreferenceFilter | None = None, limit: int | None = None, offset: int = 0, newest_first: bool = True) -> list[PreferenceEntry]:
        """Entries matching the filter, newest first (or oldest first)."""
        where, values = self._where(filters)
        return self._select(where, values, limit, offset, newest_first)

    def counts(self, filters: PreferenceFilter | None = None) -> dict[str, int]:
        """What the filter selects and what training would use.

        entries, labels, liked, disliked, judgements, rankings, images; and the
        training sets derived from them: dpo_pairs (pairs for DPO-like methods),
        kto_desirable / kto_undesirable / kto_labels (KTO), listwise_rankings
        (whole rankings a listwise job trains on; 0 means it trains on the pairs).
        """
        from .derive import derive

        entries = self.list(filters, newest_first=False)
        counts = {
            "entries": len(entries),
            "labels": sum(e.kind == "label" for e in entries),
            "liked": sum(e.kind == "label" and bool(e.liked) for e in entries),
            "disliked": sum(e.kind == "label" and e.liked is False for e in entries),
            "judgements": sum(e.kind == "judgement" for e in entries),
            "rankings": sum(e.kind == "ranking" for e in entries),
            "images": len({i for e in entries for i in e.images}),
        }
        sets = derive(entries)  # each entry carries its first image's prompt, the caption
        counts.update(sets.counts())
        return counts

    def sources(self) -> list[str]:
        """Every source that has written an entry (for the filter's choices)."""
        return [row[0] for row in self._connection().execute("SELECT DISTINCT source FROM entries ORDER BY source")]

    def checkpoints(self) -> list[str]:
        """Every checkpoint name of an image that is part of an entry."""
        return [
            row[0]
            for row in self._connection().execute(
                "SELECT DISTINCT i.checkpoint FROM images i JOIN entry_images ei ON ei.image_id = i.id WHERE i.checkpoint != '' ORDER BY 1"
            )
        ]


def _required_text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PreferenceError(f"{name}: a non-empty string is required", name)
    return value.strip()


def _image_record(row: sqlite3.Row) -> ImageRecord:
    try:
        settings = json.loads(row["settings"] or "{}")
    except json.JSONDecodeError:
        settings = {}
    return ImageRecord(
        id=row["id"], ext=row["ext"], width=row["width"], height=row["height"], prompt=row["prompt"],
        negative_prompt=row["negative_prompt"], seed=row["seed"], settings=settings, checkpoint=row["checkpoint"],
        checkpoint_hash=row["checkpoint_hash"], source=row["source"], path=row["path"], created=row["created"],
    )


# ---------------------------------------------------------------------- where the store lives

STORE_SERVICE = "preference_store"


def store_root(ctx_or_data_dir: Any) -> Path:
    """The store folder: <data dir>/alignment/preferences.

    A path is taken as the data dir. A host context: in the WebUI its data dir
    (``--data-dir``, where config.json lives); standalone, the app's output folder
    (``serve --output-dir``, default ./outputs/alignment) holds it as preferences/.
    A context may name the folder itself with a ``preferences_dir`` attribute.
    """
    if isinstance(ctx_or_data_dir, (str, Path)):
        return Path(ctx_or_data_dir).expanduser() / "alignment" / "preferences"
    explicit = getattr(ctx_or_data_dir, "preferences_dir", None)
    if explicit:
        return Path(explicit)
    if getattr(ctx_or_data_dir, "in_webui", False):
        from .. import webui_facade

        return Path(webui_facade.data_dir()) / "alignment" / "preferences"
    return Path(ctx_or_data_dir.output_dir) / "preferences"


def default_store(ctx_or_data_dir: Any) -> PreferenceStore:
    """The host's store, one object per context (shared by the gallery, Curate, Rank & Refine and the API)."""
    if isinstance(ctx_or_data_dir, (str, Path)):
        return PreferenceStore(store_root(ctx_or_data_dir))
    service = getattr(ctx_or_data_dir, "service", None)
    if callable(service):
        return service(STORE_SERVICE, lambda: PreferenceStore(store_root(ctx_or_data_dir)))
    return PreferenceStore(store_root(ctx_or_data_dir))
