"""`RefineSession`: one seed's Rank & Refine run, persisted so it survives restarts.

A session owns the generation settings, a `RankSGD` over the initial noise
latent (x0 = `noise_from_seed(seed, backend.latent_shape(w, h))`), a
`GenerationBackend` and a folder. Every call that changes it (`start`, `rank`,
`undo`, `reset`, `set_params`) leaves the folder consistent: round folders are
written completely under a temporary name and renamed into place, JSON and
safetensors files are replaced atomically, and `session.json` — written last —
names the live rounds.

Scorer assistance: with `session.scorer` set (any oracle, see
`lib_alignment.oracles`), every new round records the scorer's best-first order
of its candidates ("scorer_order", what the page shows pre-ranked); `rank`
records the submitted order and whether a person gave it ("source": "human" or
"scorer"), and `auto(n)` lets the scorer rank n rounds itself. A session may
carry an "owner" (the WebUI user who made it); sessions without one are
everybody's. See README.md in this package for the folder layout and
the preference-data formats.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..generation import GenerationBackend, GenerationSettings, ProgressCallback, noise_from_seed
from ..paths import atomic_write_json
from ..zo import DEFAULT_LR, DEFAULT_MU, DEFAULT_SHRINK, RankSGD, validate_order
from .storage import load_state, load_tensors, save_state, save_tensors

SESSION_FILE = "session.json"
ROUNDS_DIR = "rounds"
ROUND_FILE = "round.json"
STATE_FILE = "optimizer.safetensors"
LATENTS_FILE = "latents.safetensors"
CURRENT_IMAGE = "current.png"
SESSION_FORMAT = 1
_UNSET: Any = object()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RefineParams:
    """Optimiser settings of a session. m, k, mu, lr, shrink and auto_rounds can change mid-session (next round on).

    shrink: the step schedule (see `RankSGD`); sessions saved before it existed keep a constant step (1.0).
    auto_rounds: after each ranking by a person, how many rounds the session's scorer ranks by itself.
    scorer: the oracle spec the host turns into `session.scorer` (see `lib_alignment.oracles.make_oracle`).
    """

    m: int = 6
    k: int | None = None
    mu: float = DEFAULT_MU
    lr: float = DEFAULT_LR
    line_search: bool = True
    project_to_shell: bool = True
    optimizer_seed: int = 0
    shrink: float = DEFAULT_SHRINK
    auto_rounds: int = 0
    scorer: str | None = None


@dataclass
class Round:
    """One round as shown to the user: candidates in display order, plus the current image.

    `rank(order)` takes indices into `images` (best first). `roles[i]` says what
    candidate i is ("perturbation"; in line rounds "step …", "rank best",
    "current"); a UI may use it to mark the current image, or ignore it.
    """

    id: int
    round_type: str
    images: list[Image.Image]
    roles: list[str]
    image_paths: list[Path]
    latents: torch.Tensor
    current_image: Image.Image
    current_path: Path
    current_latent: torch.Tensor
    order: list[int] | None
    folder: Path
    scorer_order: list[int] | None = None
    source: str | None = None


class RefineSession:
    """Rank & Refine for one seed. Create with `create`, reopen with `load`; see module doc."""

    def __init__(self, folder: Path, backend: GenerationBackend, data: dict[str, Any], max_batch: int | None = None) -> None:
        self.folder = folder
        self.backend = backend
        self._data = data
        self.settings = GenerationSettings(**data["settings"])
        self.seed = int(data["seed"])
        self.max_batch = max_batch
        #: The oracle that pre-ranks each new round and ranks auto rounds (not persisted: the host sets it).
        self.scorer: Any = None
        self._data["params"] = {"shrink": 1.0, **data["params"]}  # no schedule in sessions saved before it
        self._lock = threading.RLock()
        self._optimizer = self._new_optimizer(int(data.get("resets", 0)))
        self._current: Round | None = None

    # ----- creation and loading ----------------------------------------------

    @classmethod
    def create(
        cls,
        folder: str | Path,
        backend: GenerationBackend,
        settings: GenerationSettings,
        seed: int,
        params: RefineParams | None = None,
        max_batch: int | None = None,
        owner: str | None = None,
        **param_overrides: Any,
    ) -> RefineSession:
        """A new session in `folder` (created; must not hold a session already). Nothing is generated until `start()`.

        owner: the user it belongs to (None: everybody's, as without WebUI auth)."""
        folder = Path(folder)
        if (folder / SESSION_FILE).exists():
            raise FileExistsError(f"{folder} already holds a refine session; load it or choose another folder")
        settings.validate()
        params = replace(params or RefineParams(), **param_overrides)
        data = {
            "format": SESSION_FORMAT,
            "kind": "lib_alignment.refine",
            "model": backend.model_name,
            "seed": int(seed),
            "owner": owner,
            "settings": asdict(settings),
            "params": asdict(params),
            "resets": 0,
            "rounds": [],
            "next_round": 1,
            "created": _now(),
            "updated": _now(),
        }
        folder.mkdir(parents=True, exist_ok=True)
        session = cls(folder, backend, data, max_batch=max_batch)  # validates params through the optimiser
        session._persist()
        return session

    @classmethod
    def load(cls, folder: str | Path, backend: GenerationBackend, max_batch: int | None = None) -> RefineSession:
        """Reopen a session; its pending round comes back exactly (same candidates, order and images)."""
        folder = Path(folder)
        path = folder / SESSION_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder} holds no refine session ({SESSION_FILE} is missing)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from error
        if data.get("format") != SESSION_FORMAT or data.get("kind") != "lib_alignment.refine":
            raise ValueError(f"{path}: not a refine session of format {SESSION_FORMAT}")
        if data["model"] != backend.model_name:
            raise ValueError(
                f"{path}: the session was made with model {data['model']!r}, but the backend has {backend.model_name!r}; "
                "the same latents give other images with another model"
            )
        session = cls(folder, backend, data, max_batch=max_batch)
        if data["rounds"]:
            last = data["rounds"][-1]
            session._optimizer.load_state_dict(load_state(session._round_dir(last) / STATE_FILE))
            session._apply_params()
            record = session._read_record(last)
            if record.get("order") is not None:  # ranked, but the next round was never committed
                session._write_record(last, {**record, "order": None, "source": None, "ranked_at": None})
            session._current = session._load_round(last)
        return session

    # ----- the public loop -----------------------------------------------------

    @property
    def params(self) -> RefineParams:
        return RefineParams(**self._data["params"])

    @property
    def owner(self) -> str | None:
        """The user the session belongs to; None for sessions without one (everybody's)."""
        owner = self._data.get("owner")
        return None if owner is None else str(owner)

    @property
    def optimizer(self) -> RankSGD:
        """The live optimiser (read it; change it only through this session)."""
        return self._optimizer

    @property
    def current_round(self) -> Round | None:
        """The pending round, or None before `start()`."""
        return self._current

    @property
    def round_ids(self) -> list[int]:
        """Live rounds, oldest first (undone rounds are gone)."""
        return list(self._data["rounds"])

    @property
    def rounds_ranked(self) -> int:
        """Live rounds with a ranking (a round left by Reset has none), as the preference export counts them."""
        return sum(1 for round_id in self._data["rounds"][:-1] if self._read_record(round_id).get("order") is not None)

    def round_number(self, round_id: int) -> int:
        """A live round's position, 1-based: what the page shows (ids stay unique, so a stale page's ranking
        of an undone round is refused rather than applied to its successor; numbers never skip)."""
        return self._data["rounds"].index(round_id) + 1

    @property
    def can_undo(self) -> bool:
        return len(self._data["rounds"]) >= 2

    @property
    def current_latent(self) -> torch.Tensor:
        return self._optimizer.x

    def start(self, progress: ProgressCallback | None = None) -> Round:
        """The first round (generated now), or the pending round of a resumed session."""
        with self._lock:
            if self._current is None:
                self._push(self._make_round(None, progress))
            assert self._current is not None
            return self._current

    def rank(self, order: Sequence[int], progress: ProgressCallback | None = None, human: bool = True) -> Round:
        """Apply a best-first ranking of the pending round's display indices; returns the next round.

        human: False when the scorer gave the ranking (an auto round); the round records its source."""
        with self._lock:
            current = self._require_current()
            display = validate_order(order, len(current.images))
            self._optimizer.tell(display)
            try:
                new = self._make_round(current, progress)
            except BaseException:
                self._optimizer.load_state_dict(load_state(current.folder / STATE_FILE))
                self._apply_params()
                raise
            record = self._read_record(current.id)
            source = "human" if human else "scorer"
            self._write_record(current.id, {**record, "order": display, "source": source, "ranked_at": _now()})
            current.order, current.source = display, source
            self._push(new)
            return new

    def suggest(self) -> list[int] | None:
        """The scorer's best-first order of the pending round (computed and recorded if the round has none yet)."""
        with self._lock:
            current = self._require_current()
            if self.scorer is None:
                return current.scorer_order
            if current.scorer_order is None or len(current.scorer_order) != len(current.images):
                current.scorer_order = self._score(current.images)
                record = self._read_record(current.id)
                self._write_record(current.id, {**record, "scorer_order": current.scorer_order, "scorer": self.scorer.name})
            return current.scorer_order

    def auto(self, rounds: int, progress: ProgressCallback | None = None) -> Round:
        """Let the scorer rank `rounds` rounds in a row (each recorded as source "scorer"); returns the pending round."""
        with self._lock:
            if rounds and self.scorer is None:
                raise ValueError("auto rounds need a scorer: choose one first")
            current = self._require_current()
            for _ in range(int(rounds)):
                order = self.suggest()
                assert order is not None
                current = self.rank(order, progress=progress, human=False)
            return current

    def round_log(self) -> list[dict[str, Any]]:
        """Per live round: its type, the scorer's order (what was shown pre-ranked), the submitted order and who gave it."""
        out = []
        for round_id in self._data["rounds"]:
            record = self._read_record(round_id)
            out.append(
                {
                    "round": round_id,
                    "type": record.get("type"),
                    "scorer": record.get("scorer"),
                    "scorer_order": record.get("scorer_order"),
                    "order": record.get("order"),
                    "source": record.get("source"),
                }
            )
        return out

    def undo(self) -> Round:
        """Take back the last ranking (or reset): the previous round is pending again, unchanged."""
        with self._lock:
            if not self.can_undo:
                raise RuntimeError("nothing to undo")
            dropped = self._data["rounds"].pop()
            previous = self._data["rounds"][-1]
            self._optimizer.load_state_dict(load_state(self._round_dir(previous) / STATE_FILE))
            self._apply_params()
            self._write_record(previous, {**self._read_record(previous), "order": None, "source": None, "ranked_at": None})
            self._persist()
            shutil.rmtree(self._round_dir(dropped), ignore_errors=True)
            self._current = self._load_round(previous)
            return self._current

    def reset(self, progress: ProgressCallback | None = None) -> Round:
        """Start again from the seed's noise with fresh perturbations; earlier rounds stay (undo brings them back)."""
        with self._lock:
            resets = int(self._data.get("resets", 0)) + 1
            optimizer = self._new_optimizer(resets)
            previous_optimizer, self._optimizer = self._optimizer, optimizer
            try:
                new = self._make_round(None, progress)
            except BaseException:  # a failed or interrupted generation leaves the session as it was
                self._optimizer = previous_optimizer
                raise
            self._data["resets"] = resets
            self._push(new)
            return new

    def set_params(
        self,
        m: int | None = None,
        mu: float | None = None,
        lr: float | None = None,
        k: Any = _UNSET,
        shrink: float | None = None,
        auto_rounds: int | None = None,
        scorer: Any = _UNSET,
    ) -> RefineParams:
        """Change m, mu, lr, k, shrink, auto_rounds or the scorer spec (the host sets `self.scorer` to match); the pending round stays as shown, the next one uses the new values."""
        with self._lock:
            pairs = (("m", m), ("mu", mu), ("lr", lr), ("shrink", shrink))
            changes: dict[str, Any] = {name: value for name, value in pairs if value is not None}
            if k is not _UNSET:
                changes["k"] = k
            old = self.params
            if auto_rounds is not None:
                if isinstance(auto_rounds, bool) or int(auto_rounds) != auto_rounds or auto_rounds < 0:
                    raise ValueError(f"auto_rounds must be a whole number ≥ 0 (got {auto_rounds!r})")
                old = replace(old, auto_rounds=int(auto_rounds))
            if scorer is not _UNSET:
                old = replace(old, scorer=scorer or None)
            try:
                for name, value in changes.items():
                    setattr(self._optimizer, name, value)
            except (TypeError, ValueError):
                for name in changes:
                    setattr(self._optimizer, name, getattr(old, name))
                raise
            self._data["params"] = asdict(replace(old, **{name: getattr(self._optimizer, name) for name in changes}))
            self._persist()
            return self.params

    def export(self, folder: str | Path | None = None, stem: str | None = None) -> Any:
        """Save the current image (rendered alone) with its infotext, and its latent; see `export.export_current`."""
        from .export import export_current

        with self._lock:
            return export_current(self, folder, stem)

    # ----- internals ----------------------------------------------------------

    def _new_optimizer(self, resets: int) -> RankSGD:
        p = self.params
        x0 = noise_from_seed(self.seed, self.backend.latent_shape(self.settings.width, self.settings.height))
        return RankSGD(
            x0,
            m=p.m,
            k=p.k,
            mu=p.mu,
            lr=p.lr,
            line_search=p.line_search,
            project_to_shell=p.project_to_shell,
            seed=p.optimizer_seed + resets,
            shrink=p.shrink,
            undo_depth=0,  # undo goes through the per-round snapshots on disk
        )

    def _apply_params(self) -> None:
        p = self.params
        self._optimizer.m, self._optimizer.k, self._optimizer.mu, self._optimizer.lr = p.m, p.k, p.mu, p.lr
        self._optimizer.shrink = p.shrink

    def _require_current(self) -> Round:
        if self._current is None:
            raise RuntimeError("the session has not started: call start() first")
        return self._current

    def _round_dir(self, round_id: int) -> Path:
        return self.folder / ROUNDS_DIR / f"{int(round_id):04d}"

    def _persist(self) -> None:
        self._data["updated"] = _now()
        atomic_write_json(self.folder / SESSION_FILE, self._data)

    def _push(self, new: Round) -> None:
        self._data["rounds"].append(new.id)
        self._data["next_round"] = new.id + 1
        self._persist()
        self._current = new

    def _read_record(self, round_id: int) -> dict[str, Any]:
        path = self._round_dir(round_id) / ROUND_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise FileNotFoundError(f"round record {path} is missing; the session folder is damaged") from error

    def _write_record(self, round_id: int, record: dict[str, Any]) -> None:
        atomic_write_json(self._round_dir(round_id) / ROUND_FILE, record)

    def _render(self, latents: list[torch.Tensor], progress: ProgressCallback | None) -> list[Image.Image]:
        if not latents:
            return []
        batch = self.max_batch or len(latents)
        images: list[Image.Image] = []
        for start in range(0, len(latents), batch):
            chunk = torch.stack(latents[start : start + batch])
            images.extend(self.backend.generate(self.settings, chunk, progress=progress).images)
        return images

    def _make_round(self, previous: Round | None, progress: ProgressCallback | None) -> Round:
        """Ask the optimiser, render what is new (reusing images of identical latents), write the round folder."""
        opt = self._optimizer
        candidates = opt.ask()
        roles = opt.roles
        current = opt.x
        wanted = [*candidates.unbind(0), current]
        known: list[tuple[torch.Tensor, Image.Image]] = []
        if previous is not None:
            known = [*zip(previous.latents.unbind(0), previous.images), (previous.current_latent, previous.current_image)]
        images: list[Image.Image | None] = []
        for latent in wanted:
            match = next((image for seen, image in known if seen.shape == latent.shape and torch.equal(seen, latent)), None)
            images.append(match)
        missing = [i for i, image in enumerate(images) if image is None]
        for i, image in zip(missing, self._render([wanted[i] for i in missing], progress)):
            images[i] = image
        round_id = int(self._data["next_round"])
        final = self._round_dir(round_id)
        temp = final.with_name(f".{final.name}.tmp")
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True)
        names = [f"candidate-{i}.png" for i in range(len(candidates))]
        for name, image in zip(names, images):
            assert image is not None
            image.save(temp / name, format="PNG")
        current_image = images[-1]
        assert current_image is not None
        current_image.save(temp / CURRENT_IMAGE, format="PNG")
        save_tensors(temp / LATENTS_FILE, {"candidates": candidates, "current": current})
        save_state(temp / STATE_FILE, opt.state_dict())
        candidate_images = [im for im in images[:-1] if im is not None]
        scorer_order = self._score(candidate_images) if self.scorer is not None else None
        record = {
            "round": round_id,
            "type": opt.round_type,
            "roles": roles,
            "images": names,
            "current_image": CURRENT_IMAGE,
            "latents": LATENTS_FILE,
            "model": self.backend.model_name,
            "seed": self.seed,
            "prompt": self.settings.prompt,
            "negative_prompt": self.settings.negative_prompt,
            "settings": asdict(self.settings),
            "params": self._data["params"],
            "order": None,
            "scorer_order": scorer_order,
            "scorer": None if self.scorer is None else self.scorer.name,
            "source": None,
            "created": _now(),
            "ranked_at": None,
        }
        atomic_write_json(temp / ROUND_FILE, record)
        shutil.rmtree(final, ignore_errors=True)  # a leftover of an interrupted step, never a live round
        temp.rename(final)
        return self._load_round(round_id, images=[im for im in images if im is not None])

    def _load_round(self, round_id: int, images: list[Image.Image] | None = None) -> Round:
        folder = self._round_dir(round_id)
        record = self._read_record(round_id)
        tensors, _ = load_tensors(folder / LATENTS_FILE)
        paths = [folder / name for name in record["images"]]
        if images is None:
            images = [_read_image(path) for path in [*paths, folder / record["current_image"]]]
        return Round(
            id=int(record["round"]),
            round_type=record["type"],
            images=images[:-1],
            roles=list(record["roles"]),
            image_paths=paths,
            latents=tensors["candidates"],
            current_image=images[-1],
            current_path=folder / record["current_image"],
            current_latent=tensors["current"],
            order=record.get("order"),
            folder=folder,
            scorer_order=record.get("scorer_order"),
            source=record.get("source"),
        )

    def _score(self, images: Sequence[Image.Image]) -> list[int]:
        from ..oracles import rank_images

        return rank_images(self.scorer, images, self.settings.prompt)


def _read_image(path: Path) -> Image.Image:
    if not path.is_file():
        raise FileNotFoundError(f"round image {path} is missing; the session folder is damaged")
    with Image.open(path) as image:
        image.load()
        return image.copy()


def create_sessions(
    root: str | Path,
    backend: GenerationBackend,
    settings: GenerationSettings,
    seeds: Sequence[int],
    params: RefineParams | None = None,
    **param_overrides: Any,
) -> list[RefineSession]:
    """Several seeds side by side: one independent session per seed in root/seed-<seed>."""
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat: {list(seeds)}")
    return [
        RefineSession.create(Path(root) / f"seed-{int(seed)}", backend, settings, int(seed), params, **param_overrides)
        for seed in seeds
    ]


def load_sessions(root: str | Path, backend: GenerationBackend) -> list[RefineSession]:
    """Every session directly under root (as `create_sessions` lays them out), by folder name."""
    root = Path(root)
    return [RefineSession.load(folder, backend) for folder in sorted(root.iterdir()) if (folder / SESSION_FILE).is_file()]
