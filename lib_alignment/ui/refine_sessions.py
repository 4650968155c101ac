"""Rank & Refine sessions of one host, by id: what the tab and the HTTP API share.

A session lives in <output_dir>/refine/<id>/ (id: 32 hex digits from uuid4, so a
client-given id can never name another folder) and is driven by
`lib_alignment.refine.RefineSession`, which persists every step. This module
adds what both front ends need on top: request validation with messages that
name the field, a small cache of open sessions, the WebUI job around every
generation (queue lock, progress bar, Interrupt), stale-submission checks, and
the session list for "resume", the scorer that pre-ranks rounds (and ranks
auto rounds), and ownership: under WebUI auth each session belongs to the user
who started it and is invisible to other users (`user` arguments; None means
no auth, where every session is visible). Sessions saved without an owner
(before ownership existed, or made without auth) are everybody's.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..generation import ANCESTRAL_SAMPLERS, SAMPLERS, GenerationSettings, ProgressCallback
from ..paths import confine
from ..zo import DEFAULT_LR, DEFAULT_MU, VARIETY

SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
SERVICE_NAME = "refine_sessions"
INIT_IMAGE = "init.png"
MAX_OPEN = 8
LIMITS = {
    "steps": (1, 150),
    "cfg_scale": (0.0, 30.0),
    "size": (64, 2048),
    "m": (3, 16),
    "mu": (1e-4, 10.0),
    "lr": (1e-4, 100.0),
    "auto_rounds": (0, 20),
}
#: Scorer specs whose argument is a path: confined to the models folder (the LoRA folder's parent).
_PATH_SCORERS = ("clip", "aesthetic")
#: Sampler names whose steps add fresh noise (A1111: "… a", SDE variants, Restart, LCM).
_STOCHASTIC = re.compile(r"( a$|\bSDE\b|^Restart$|^LCM$)")
PREFERRED_SAMPLERS = ("DPM++ 2M", "DDIM", "Euler")


class SessionNotFound(LookupError):
    """No session with this id in the output folder."""


class SessionUnavailable(RuntimeError):
    """The session exists but cannot be opened here (another model is loaded, damaged folder)."""


class StaleRound(RuntimeError):
    """A ranking was sent for a round that is no longer the pending one (double submit, other tab)."""


def is_stochastic_sampler(name: str) -> bool:
    """True for samplers that add noise at each step; their noise is fixed per candidate here."""
    return name in ANCESTRAL_SAMPLERS or bool(_STOCHASTIC.search(name))


def ordered_samplers(names: Sequence[str]) -> list[str]:
    """Deterministic samplers first (they suit refining the initial noise), each group in host order."""
    return [n for n in names if not is_stochastic_sampler(n)] + [n for n in names if is_stochastic_sampler(n)]


def default_sampler(names: Sequence[str]) -> str:
    return next((n for n in PREFERRED_SAMPLERS if n in names), next(iter(ordered_samplers(names)), "DDIM"))


@dataclass
class RefineRequest:
    """What starts a session; field names follow the A1111 API (sampler_name, cfg_scale).

    seed -1 draws one; width/height None or 0 use the model's native size; sampler None
    takes a deterministic default.
    """

    prompt: str
    negative_prompt: str = ""
    seed: int = -1
    steps: int = 20
    cfg_scale: float = 7.0
    width: int | None = None
    height: int | None = None
    sampler_name: str | None = None
    m: int = 6
    mu: float | None = None  # None: the variety's μ (default: medium)
    lr: float = DEFAULT_LR
    variety: str | None = None
    scorer: str | None = None
    auto_rounds: int = 0
    #: img2img: the init image (PIL; None = txt2img) and how much of it is re-drawn.
    init_image: Any = None
    denoising_strength: float = 0.75
    #: Hires fix (txt2img): 0 off, else the upscale factor; its denoising strength and steps (0: as the first pass).
    hires_scale: float = 0.0
    hires_denoising: float = 0.5
    hires_steps: int = 0

    def resolved_mu(self) -> float:
        """μ as given, else the variety's, else the default."""
        if self.mu is not None:
            return float(self.mu)
        return VARIETY.get(self.variety or "", DEFAULT_MU)

    def problems(self, samplers: Sequence[str] | None) -> list[str]:
        """One "field: message" per bad field (samplers None: the sampler is not checked)."""
        out = []
        if not isinstance(self.prompt, str):
            out.append("prompt: must be a string")
        if not isinstance(self.negative_prompt, str):
            out.append("negative_prompt: must be a string")
        if not (self.seed == -1 or 0 <= self.seed < 2**32):
            out.append(f"seed: must be -1 (random) or 0..{2**32 - 1} (got {self.seed})")
        out += _range("steps", self.steps, *LIMITS["steps"])
        out += _range("cfg_scale", self.cfg_scale, *LIMITS["cfg_scale"])
        for name in ("width", "height"):
            value = getattr(self, name)
            if value:
                low, high = LIMITS["size"]
                if not low <= value <= high or value % 8:
                    out.append(
                        f"{name}: must be a multiple of 8 in {low}..{high}, or 0 for the model's size (got {value})"
                    )
        if self.sampler_name and samplers is not None and self.sampler_name not in samplers:
            out.append(f"sampler_name: {self.sampler_name!r} is not one of {list(samplers)}")
        out += params_problems(self.m, self.mu, self.lr, self.auto_rounds)
        out += variety_problems(self.variety, self.mu)
        if self.auto_rounds and not self.scorer:
            out.append("auto_rounds: auto rounds need a scorer (choose one, or set auto rounds to 0)")
        out += _range("denoising_strength", self.denoising_strength, 0.01, 1.0)
        out += _range("hires_denoising", self.hires_denoising, 0.01, 1.0)
        out += _range("hires_steps", self.hires_steps, 0, LIMITS["steps"][1])
        if not (self.hires_scale == 0 or (isinstance(self.hires_scale, (int, float)) and 1.0 <= self.hires_scale <= 4.0)):
            out.append(f"hires_scale: must be 0 (off) or a number in 1..4 (got {self.hires_scale!r})")
        if self.init_image is not None and not isinstance(self.init_image, Image.Image):
            out.append("init_image: must be an image")
        if self.init_image is not None and self.hires_scale:
            out.append("hires_scale: hires fix is for txt2img; leave it 0 with an init image")
        return out


def variety_problems(variety: str | None, mu: float | None) -> list[str]:
    if variety is None:
        return []
    if variety not in VARIETY:
        return [f"variety: must be one of {', '.join(VARIETY)} (got {variety!r})"]
    if mu is not None and abs(float(mu) - VARIETY[variety]) > 1e-9:
        return [f"variety: {variety!r} means μ = {VARIETY[variety]:g}, but mu = {mu!r} was given too; give one of them"]
    return []


def params_problems(m: int | None, mu: float | None, lr: float | None, auto_rounds: int | None = None) -> list[str]:
    out: list[str] = []
    for name, value in (("m", m), ("mu", mu), ("lr", lr), ("auto_rounds", auto_rounds)):
        if value is not None:
            out += _range(name, value, *LIMITS[name])
    if auto_rounds is not None and isinstance(auto_rounds, float) and not auto_rounds.is_integer():
        out.append(f"auto_rounds: must be a whole number (got {auto_rounds!r})")
    return out


def visible_to(owner: str | None, user: str | None) -> bool:
    """Whether a session of `owner` shows for `user`: always without auth (user None); else own and ownerless ones."""
    return user is None or owner is None or owner == user


def _range(name: str, value: float, low: float, high: float) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        return [f"{name}: must be a number in {low:g}..{high:g} (got {value!r})"]
    return []


@dataclass
class SessionSummary:
    id: str
    prompt: str
    seed: int
    rounds: int
    model: str
    updated: str
    owner: str | None = None

    def label(self) -> str:
        """Dropdown text; starts with the id so it can be read back without a (label, value) pair."""
        prompt = self.prompt if len(self.prompt) <= 48 else self.prompt[:47] + "…"
        return f"{self.id} · {self.updated[:16].replace('T', ' ')} · round {self.rounds} · {prompt}"


class RefineSessions:
    """The open sessions of one host context (see `for_context`)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self._open: OrderedDict[str, tuple[Any, str]] = OrderedDict()  # id → (session, its model's name)
        self._lock = threading.Lock()
        self._guards: dict[str, threading.RLock] = {}
        self._scorers: dict[str, Any] = {}

    @property
    def root(self) -> Path:
        return Path(self.ctx.output_dir) / "refine"

    # ----- ids, folders, cache ---------------------------------------------------------------

    def folder(self, session_id: str) -> Path:
        if not isinstance(session_id, str) or not SESSION_ID.match(session_id):
            raise SessionNotFound(f"no refine session {session_id!r} (ids are 32 hex digits)")
        return confine(self.root, session_id, "session id")

    def get(self, session_id: str, user: str | None = None) -> Any:
        """The session, from the cache or reopened from its folder (after a restart); another user's is not found."""
        session = self._get(session_id)
        if not visible_to(session.owner, user):
            raise SessionNotFound(f"no refine session {session_id!r} in {self.root}")
        return session

    def _get(self, session_id: str) -> Any:
        from ..refine import RefineSession

        folder = self.folder(session_id)
        with self._lock:
            entry = self._open.get(session_id)
            if entry is not None:
                session, model = entry
                if session.backend.model_name != model:
                    # The WebUI switched checkpoints under an open session: the same latents would give
                    # other images. Drop it; switching back reopens it from its folder.
                    del self._open[session_id]
                    raise SessionUnavailable(
                        f"session {session_id} was made with model {model!r}, but {session.backend.model_name!r} "
                        "is loaded now; load that model again to continue it"
                    )
                self._open.move_to_end(session_id)
                return session
        if not (folder / "session.json").is_file():
            raise SessionNotFound(f"no refine session {session_id!r} in {self.root}")
        try:
            session = RefineSession.load(folder, self.ctx.backend())
        except (ValueError, FileNotFoundError) as error:
            raise SessionUnavailable(str(error)) from error
        return self._remember(session_id, session)

    def guard(self, session_id: str) -> Any:
        """A lock per session id: a check (pending round, can undo) and the step it allows happen together."""
        with self._lock:
            return self._guards.setdefault(session_id, threading.RLock())

    def _remember(self, session_id: str, session: Any) -> Any:
        with self._lock:
            existing, _ = self._open.setdefault(session_id, (session, session.backend.model_name))
            self._open.move_to_end(session_id)
            while len(self._open) > MAX_OPEN:
                self._open.popitem(last=False)
            return existing

    def summaries(self, user: str | None = None) -> list[SessionSummary]:
        """The user's sessions in the output folder, newest first (read from session.json; no model needed)."""
        out = []
        if not self.root.is_dir():
            return out
        for folder in self.root.iterdir():
            path = folder / "session.json"
            if not SESSION_ID.match(folder.name) or not path.is_file():
                continue
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                out.append(
                    SessionSummary(
                        id=folder.name,
                        prompt=str(data["settings"]["prompt"]),
                        seed=int(data["seed"]),
                        rounds=len(data.get("rounds", [])),
                        model=str(data.get("model", "")),
                        updated=str(data.get("updated", "")),
                        owner=None if data.get("owner") is None else str(data["owner"]),
                    )
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged folder is skipped here; opening it reports why
        return sorted((s for s in out if visible_to(s.owner, user)), key=lambda s: s.updated, reverse=True)

    # ----- scorers ----------------------------------------------------------------------------

    def scorer_spec(self, spec: str | None) -> str | None:
        """The spec with a clip/aesthetic path resolved inside the models folder; None for no scorer."""
        spec = (spec or "").strip()
        if not spec or spec.lower() == "none":
            return None
        name, _, argument = spec.partition(":")
        if name.lower() in _PATH_SCORERS and argument:
            base = Path(self.ctx.lora_dir).parent
            parts = [str(confine(base, part.strip(), "scorer: path")) for part in argument.split(",")]
            return f"{name}:{','.join(parts)}"
        return spec

    def scorer(self, spec: str | None) -> Any:
        """The oracle of a spec, loaded once per host (CLIP weights are large); errors name the field."""
        from ..oracles import make_oracle

        resolved = self.scorer_spec(spec)
        if resolved is None:
            return None
        with self._lock:
            oracle = self._scorers.get(resolved)
        if oracle is None:
            try:
                oracle = make_oracle(resolved)
            except (ValueError, FileNotFoundError) as error:
                raise ValueError(f"scorer: {error}") from error
            with self._lock:
                oracle = self._scorers.setdefault(resolved, oracle)
        return oracle

    def _attach_scorer(self, session: Any) -> None:
        """Give the session the oracle its params name (the host loads it; sessions persist only the spec)."""
        spec = session.params.scorer
        session.scorer = self.scorer(spec) if spec else None

    # ----- the loop ---------------------------------------------------------------------------

    def samplers(self) -> list[str]:
        backend = self.ctx.backend()
        names = backend.sampler_names() if hasattr(backend, "sampler_names") else list(SAMPLERS)
        return list(names)

    @contextlib.contextmanager
    def job(self, task_id: str | None) -> Iterator[None]:
        """Generation inside the WebUI runs as a WebUI job (queue lock, progress, Interrupt)."""
        if not self.ctx.in_webui:
            yield
            return
        from .. import webui_facade

        with webui_facade.webui_task(task_id or None):
            yield

    def end_task(self, task_id: str | None) -> None:
        """The page's progress bar for this request can go (also when the request never generated)."""
        if self.ctx.in_webui and task_id:
            from .. import webui_facade

            webui_facade.end_webui_task(task_id)

    def start(
        self,
        request: RefineRequest,
        task_id: str | None = None,
        progress: ProgressCallback | None = None,
        user: str | None = None,
    ) -> tuple[str, Any, Any]:
        """A new session of `user` and its first round: (id, session, round)."""
        from ..refine import RefineParams, RefineSession

        problems = request.problems(None)  # everything but the sampler, before the model loads
        if problems:
            raise ValueError("; ".join(problems))
        scorer = self.scorer(request.scorer)  # a bad scorer is refused before the model loads too
        if not self.ctx.in_webui:  # the WebUI applies <lora:...> itself; here a missing LoRA is said up front
            from ..lora_prompt import check_prompt_loras

            check_prompt_loras(request.prompt, self.ctx.lora_dir)
        backend = self.ctx.backend()
        samplers = self.samplers()
        problems = request.problems(samplers)
        if problems:
            raise ValueError("; ".join(problems))
        size = backend.default_size()
        if request.init_image is not None:  # img2img: default to the init image's own size
            size_w, size_h = (max(LIMITS["size"][0], min(LIMITS["size"][1], v // 8 * 8)) for v in request.init_image.size)
        else:
            size_w = size_h = size
        seed = request.seed if request.seed != -1 else random.randrange(2**32)
        session_id = uuid.uuid4().hex
        folder = self.folder(session_id)
        init_path = _save_init_image(folder, request.init_image) if request.init_image is not None else None
        settings = GenerationSettings(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            steps=int(request.steps),
            cfg_scale=float(request.cfg_scale),
            width=int(request.width or size_w),
            height=int(request.height or size_h),
            sampler=request.sampler_name or default_sampler(samplers),
            noise_seed=seed,
            init_image=str(init_path or ""),
            denoising_strength=float(request.denoising_strength),
            hires_scale=float(request.hires_scale or 0.0),
            hires_denoising=float(request.hires_denoising),
            hires_steps=int(request.hires_steps),
        )
        params = RefineParams(
            m=int(request.m),
            mu=request.resolved_mu(),
            lr=float(request.lr),
            optimizer_seed=seed,
            scorer=(request.scorer or "").strip() or None,
            auto_rounds=int(request.auto_rounds),
        )
        try:
            session = RefineSession.create(folder, backend, settings, seed, params, owner=user)
            with self.job(task_id):
                session.scorer = scorer
                first = session.start(progress=progress)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._remember(session_id, session)
        return session_id, session, first

    def current(
        self, session_id: str, progress: ProgressCallback | None = None, user: str | None = None
    ) -> tuple[Any, Any]:
        """(session, pending round); renders the first round of a session whose start was cut off, and the
        scorer's order of a round shown before a scorer was chosen."""
        with self.guard(session_id):
            session = self.get(session_id, user)
            self._attach_scorer(session)
            if session.current_round is None:
                with self.job(None):
                    session.start(progress=progress)
            if session.scorer is not None:
                session.suggest()
            return session, session.current_round

    def rank(
        self,
        session_id: str,
        order: Sequence[int],
        round_id: int | None = None,
        task_id: str | None = None,
        progress: ProgressCallback | None = None,
        user: str | None = None,
    ) -> Any:
        """A person's ranking of the pending round, then the session's auto rounds (if set); the round to show."""
        with self.guard(session_id):
            session, pending = self.current(session_id, user=user)
            if round_id is not None and int(round_id) != pending.id:
                raise StaleRound(f"round: the ranking is for round {round_id}, but round {pending.id} is shown")
            try:
                with self.job(task_id):
                    nxt = session.rank(list(order), progress=progress)
            except ValueError as error:
                raise ValueError(f"order: {error}") from error
            if session.params.auto_rounds and session.scorer is not None:
                with self.job(task_id):
                    nxt = session.auto(session.params.auto_rounds, progress=progress)
            self._to_store(session_id)
            return nxt

    def auto(
        self,
        session_id: str,
        rounds: int,
        task_id: str | None = None,
        progress: ProgressCallback | None = None,
        user: str | None = None,
    ) -> Any:
        """Let the session's scorer rank `rounds` rounds now; the round to show."""
        problems = _range("rounds", rounds, 1, LIMITS["auto_rounds"][1])
        if problems:
            raise ValueError("; ".join(problems))
        with self.guard(session_id):
            session, _ = self.current(session_id, user=user)
            if session.scorer is None:
                raise ValueError("scorer: auto rounds need a scorer; choose one for this session first")
            with self.job(task_id):
                shown = session.auto(int(rounds), progress=progress)
            self._to_store(session_id)
            return shown

    def undo(self, session_id: str, user: str | None = None) -> Any:
        with self.guard(session_id):
            session, _ = self.current(session_id, user=user)
            if not session.can_undo:
                raise StaleRound("nothing to undo: this is the session's first round")
            shown = session.undo()
            self._to_store(session_id)
            return shown

    def _to_store(self, session_id: str) -> None:
        """Mirror the session's ranked rounds into the preference store (source "rank-refine").

        Never fails a ranking: the rounds stay in the session folder, and the next
        sync (any ranking, or the store's next reader) brings in what was missed."""
        try:
            from ..preferences import default_store
            from ..preferences.refine_sync import sync_to_store

            sync_to_store(default_store(self.ctx), self.folder(session_id))
        except Exception as error:  # noqa: BLE001
            import logging

            logging.getLogger(__name__).warning("Rank & Refine round not yet in the preference store: %s", error)

    def reset(
        self,
        session_id: str,
        task_id: str | None = None,
        progress: ProgressCallback | None = None,
        user: str | None = None,
    ) -> Any:
        with self.guard(session_id):
            session, _ = self.current(session_id, user=user)
            with self.job(task_id):
                return session.reset(progress=progress)

    def set_params(
        self,
        session_id: str,
        m: int | None = None,
        mu: float | None = None,
        lr: float | None = None,
        *,
        variety: str | None = None,
        scorer: str | None = None,
        auto_rounds: int | None = None,
        user: str | None = None,
    ) -> Any:
        """Change the session's settings from its next round (scorer "" or "none" turns the scorer off)."""
        problems = params_problems(m, mu, lr, auto_rounds) + variety_problems(variety, mu)
        if problems:
            raise ValueError("; ".join(problems))
        if variety is not None:
            mu = VARIETY[variety]
        session = self.get(session_id, user)
        if scorer is not None:
            self.scorer(scorer)  # refused here when it cannot load
        spec = None if scorer is None else (scorer.strip() if self.scorer_spec(scorer) else "")
        will_score = bool(spec) if scorer is not None else session.params.scorer is not None
        if auto_rounds and not will_score:
            raise ValueError("auto_rounds: auto rounds need a scorer (choose one, or set auto rounds to 0)")
        changes: dict[str, Any] = {} if scorer is None else {"scorer": spec}
        params = session.set_params(m=None if m is None else int(m), mu=mu, lr=lr, auto_rounds=auto_rounds, **changes)
        self._attach_scorer(session)
        return params

    def export(self, session_id: str, task_id: str | None = None, user: str | None = None) -> Any:
        """The current image rendered alone, with infotext, and its latent, in <output_dir>/refined/."""
        session, _ = self.current(session_id, user=user)
        stem = f"{session_id[:8]}-seed{session.seed}-r{session.rounds_ranked:03d}"
        with self.job(task_id):
            return session.export(Path(self.ctx.output_dir) / "refined", stem)

    def export_preferences(self, user: str | None = None) -> Any:
        """pairs.csv / kto.csv over the user's sessions' ranked rounds, for the DPO/KTO trainers
        (<output_dir>/preferences/rank_refine, or rank_refine-<user> under auth)."""
        from ..refine import export_preferences

        folders = [self.folder(s.id) for s in self.summaries(user)]
        if not folders:
            raise SessionNotFound(f"no refine sessions in {self.root} yet")
        name = "rank_refine" if user is None else f"rank_refine-{re.sub(r'[^A-Za-z0-9._-]+', '_', user)}"
        return export_preferences(sorted(folders), Path(self.ctx.output_dir) / "preferences" / name)

    # ----- views ------------------------------------------------------------------------------

    def start_image(self, session: Any) -> Image.Image | None:
        """The seed's own image (the current image of the oldest live round), to compare against."""
        ids = session.round_ids
        if not ids:
            return None
        path = session.folder / "rounds" / f"{int(ids[0]):04d}" / "current.png"
        if not path.is_file():
            return None
        with Image.open(path) as image:
            image.load()
            return image.copy()


def decode_image(text: str, field: str = "init_image") -> Image.Image:
    """A base64 image from an API body (a data URL's header is allowed), refused with the field's name."""
    import base64
    import binascii
    import io

    payload = text.split(",", 1)[1] if text.startswith("data:") else text
    try:
        with Image.open(io.BytesIO(base64.b64decode(payload, validate=True))) as image:
            image.load()
            return image.convert("RGB")
    except (binascii.Error, ValueError, OSError) as error:
        raise ValueError(f"{field}: not a base64-encoded PNG/JPEG image ({error})") from error


def request_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """An API body's fields as RefineRequest takes them (the init image decoded)."""
    out = dict(fields)
    if out.get("init_image"):
        out["init_image"] = decode_image(out["init_image"])
    else:
        out["init_image"] = None
    return out


def _save_init_image(folder: Path, image: Image.Image) -> Path:
    """The img2img init image kept in the session's folder (written whole, then renamed), so the session
    regenerates the same images after a restart and its export names a file that stays."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / INIT_IMAGE
    temp = folder / f".{INIT_IMAGE}.tmp"
    image.convert("RGB").save(temp, format="PNG")
    temp.replace(path)
    return path


def for_context(ctx: Any) -> RefineSessions:
    """The one RefineSessions of a host context (shared by its tab and its routes)."""
    return ctx.service(SERVICE_NAME, lambda: RefineSessions(ctx))
