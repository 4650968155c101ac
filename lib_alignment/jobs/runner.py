"""Training jobs: one trainer process at a time, each with a folder that survives restarts.

A job folder <output_dir>/jobs/<id>/ holds
- job.json: the request, the full trainer config, the model, every attempt
  (pid, start, end, exit code), whether a cancel was asked for;
- config.json: the trainer options, as passed on its command line;
- train.log: the trainer's stdout and stderr;
- run/: the trainer's run folder (events.jsonl, metrics.csv, checkpoints/, samples/);
- data/: the job's own copy of uploaded or Rank & Refine data;
- compare/: before/after grids.
The LoRA itself goes to the host's Lora folder.

A job's state is derived, never stored: from the events file (the trainer ends
every run with one "done" or "error" event) and whether its process lives.
queued → running → (cancelling →) finished | cancelled | error; a process
that vanished without a final event (the machine or the WebUI went down
with it) is "interrupted". Cancelled, interrupted and failed jobs can be
resumed from their last checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..paths import atomic_write_json, atomic_write_text
from .datasets import (
    RANK_REFINE,
    DatasetError,
    ReportCache,
    adopt_staged,
    data_methods,
    export_rank_refine,
    export_store_preferences,
    is_preferences,
    resolve_path,
)
from .host import JobHost
from .process import pid_alive, process_token, spawn, terminate
from .progress import EventSummary
from .request import (
    JobRequest,
    RequestError,
    build_config,
    check_name,
    command_line_flags,
    merge_options,
    reward_prompt_options,
    trainer_methods,
)

JOB_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
ACTIVE = ("queued", "running", "cancelling")
ENDED = ("finished", "cancelled", "error", "interrupted")
RESUMABLE = ("cancelled", "interrupted", "error")
#: A job with no process this long after it was set up never started (the host stopped in between).
NEVER_STARTED_S = 120.0


class JobNotFound(LookupError):
    """No job with this id."""


class JobBusy(RuntimeError):
    """Another job runs; only one at a time per host."""

    def __init__(self, message: str, active: str | None = None) -> None:
        self.active = active
        super().__init__(message)


class JobConflict(RuntimeError):
    """The request collides with existing state (a LoRA of that name, a job that cannot resume...)."""


@dataclass
class JobStatus:
    """A job as the tab and the API show it."""

    id: str
    name: str
    method: str
    state: str
    message: str = ""
    phase: str = ""
    step: int = 0
    total: int | None = None
    seconds_per_step: float | None = None
    eta_seconds: float | None = None
    figures: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    checkpoints: int = 0
    created: float = 0.0
    started: float | None = None
    ended: float | None = None
    model: str = ""
    dataset: str = ""
    resumable: bool = False
    pid: int | None = None
    version: int = 0
    #: the trainer's latest health verdict ("state", "title", "reason", "advice", "numbers"), {} before one
    health: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def fraction(self) -> float:
        if not self.total:
            return 0.0
        return max(0.0, min(1.0, self.step / self.total))

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["progress"] = round(self.fraction, 4)
        return body


def new_job_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def last_error_line(text: str) -> str:
    """The line of a log that names the cause: the last `SomeError: message` line (a traceback's last line), else
    the last non-empty line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b:?", line) and not line.startswith("Traceback"):
            return line[:500]
    return lines[-1][:500] if lines else ""


def log_tail(path: Path, lines: int = 40, max_bytes: int = 64_000) -> str:
    """The last lines of a log file (carriage-return progress redraws collapsed)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(clean_log_lines(data)[-lines:])


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def clean_log_lines(text: str) -> list[str]:
    """A log's lines as a person reads them: terminal escape codes (tqdm's cursor moves) removed, a line
    redrawn with carriage returns shown as its last state, blank lines and library noise (lib_alignment.quiet) dropped."""
    from ..quiet import is_noise

    rows = []
    for row in text.split("\n"):  # not splitlines(): it would split at every \r redraw too
        row = _ANSI.sub("", row).rstrip("\r").rsplit("\r", 1)[-1].rstrip()
        if row.strip() and not is_noise(row):
            rows.append(row)
    return rows


class JobRunner:
    """Start, watch, cancel and resume training jobs of one host (thread-safe)."""

    def __init__(self, host: JobHost) -> None:
        self.host = host
        self.root = Path(host.output_dir) / "jobs"
        self._lock = threading.RLock()
        self._start_lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen] = {}
        self._summaries: dict[str, EventSummary] = {}
        self._finalize_lock = threading.Lock()
        self.reports = ReportCache()

    # ------------------------------------------------------------------ folders and records
    def folder(self, job_id: str) -> Path:
        if not isinstance(job_id, str) or not JOB_ID.match(job_id):
            raise JobNotFound(f"no job {job_id!r} (job ids look like 20250101-120000-abc123)")
        folder = self.root / job_id
        if not (folder / "job.json").is_file():
            raise JobNotFound(f"no job {job_id!r} in {self.root}")
        return folder

    def record(self, job_id: str) -> dict[str, Any]:
        path = self.folder(job_id) / "job.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise JobNotFound(f"job {job_id}: unreadable {path}: {error}") from None

    def _update(self, job_id: str, **changes: Any) -> dict[str, Any]:
        with self._lock:
            record = self.record(job_id)
            record.update(changes)
            atomic_write_json(self.folder(job_id) / "job.json", record)
            return record

    def _update_attempt(self, job_id: str, **changes: Any) -> None:
        with self._lock:
            record = self.record(job_id)
            if record.get("attempts"):
                record["attempts"][-1].update(changes)
                atomic_write_json(self.folder(job_id) / "job.json", record)

    def job_ids(self) -> list[str]:
        """Every job in the folder, newest first."""
        if not self.root.is_dir():
            return []
        ids = [p.name for p in self.root.iterdir() if JOB_ID.match(p.name) and (p / "job.json").is_file()]
        return sorted(ids, reverse=True)

    def summary(self, job_id: str) -> EventSummary:
        with self._lock:  # one reader at a time: update() moves the file offset
            summary = self._summaries.get(job_id)
            if summary is None:
                summary = self._summaries[job_id] = EventSummary(self.folder(job_id) / "run" / "events.jsonl")
            summary.update()
        return summary

    # ------------------------------------------------------------------ state
    def _alive(self, job_id: str, attempt: dict[str, Any]) -> tuple[bool, int | None]:
        """(alive, exit code if known) of the attempt's process."""
        proc = self._procs.get(job_id)
        if proc is not None and proc.pid == attempt.get("pid"):
            code = proc.poll()
            return code is None, code
        if attempt.get("exit_code") is not None:
            return False, int(attempt["exit_code"])
        return pid_alive(attempt.get("pid"), attempt.get("pid_token")), None

    def status(self, job_id: str, finalize: bool = True) -> JobStatus:
        record = self.record(job_id)
        summary = self.summary(job_id)
        attempts = record.get("attempts") or []
        status = JobStatus(
            id=job_id,
            name=record.get("name", ""),
            method=record.get("method", ""),
            state="queued",
            created=float(record.get("created", 0.0)),
            model=record.get("model", ""),
            dataset=record.get("dataset", {}).get("used", "") if isinstance(record.get("dataset"), dict) else "",
            step=summary.step,
            total=summary.total if summary.total is not None else record.get("config", {}).get("max_train_steps"),
            figures=summary.figures(),
            samples=summary.sample_paths(),
            checkpoints=len(summary.checkpoints),
            phase=summary.status,
            version=summary.events,
            health=dict(summary.verdict or {}),
        )
        if attempts:
            first, last = attempts[0], attempts[-1]
            status.started = float(first.get("started", 0.0))
            status.pid = last.get("pid")
            alive, code = self._alive(job_id, last)
            ending = (
                summary.ending
                if summary.ending and float(summary.ending.get("time", 0)) >= float(last.get("started", 0)) - 1
                else None
            )
            if alive:
                status.state = "cancelling" if record.get("cancel_requested") else "running"
                status.seconds_per_step = summary.seconds_per_step()
                status.eta_seconds = summary.eta()
            elif ending is not None and ending.get("event") == "done":
                status.state = "finished" if ending.get("reason") == "finished" else "cancelled"
                status.outputs = dict(ending.get("outputs") or {})
            elif ending is not None:
                status.state = "error"
                status.message = str(ending.get("message", "the trainer reported an error"))
                status.outputs = dict(ending.get("outputs") or {})
            elif code is None:
                status.state = "interrupted"
                status.message = (
                    "the trainer process ended without a final event (the WebUI or the machine stopped while it ran)"
                )
            elif record.get("cancel_requested"):
                status.state = "interrupted"
                status.message = f"stopped by force (exit code {code}) before the trainer could save; resume continues from its last checkpoint, if any"
            else:
                status.state = "error"
                cause = last_error_line(log_tail(self.folder(job_id) / "train.log", lines=40))
                status.message = f"the trainer exited with code {code}" + (f": {cause}" if cause else "") + " (full traceback in train.log)"
            if not alive:
                status.ended = float(ending.get("time")) if ending else last.get("ended")
        elif record.get("launch_error"):
            status.state = "error"
            status.message = f"could not start the trainer process: {record['launch_error']}"
        elif time.time() - status.created > NEVER_STARTED_S:
            status.state = "interrupted"
            status.message = "the job was set up but its process never started"
        status.resumable = status.state in RESUMABLE
        status.version = hash((status.version, status.state, status.message)) & 0xFFFFFFF
        if finalize and status.state in ENDED and record.get("finalized") != len(attempts):
            self._finalize(job_id, status, len(attempts))
        return status

    def list(self) -> list[JobStatus]:
        out = []
        for job_id in self.job_ids():
            try:
                out.append(self.status(job_id))
            except JobNotFound:
                continue
        return out

    def active(self) -> JobStatus | None:
        for job_id in self.job_ids():
            try:
                record = self.record(job_id)
            except JobNotFound:
                continue
            if record.get("finalized") == len(record.get("attempts") or []):
                continue  # ended, and seen to have ended
            status = self.status(job_id)
            if status.active:
                return status
        return None

    def _finalize(self, job_id: str, status: JobStatus, attempts: int) -> None:
        """Once per ended attempt: show the new LoRA in the host, give the GPU back to the host's model.

        Callers wait for a finalization another thread has begun, so whoever sees the job ended
        also sees its LoRA listed."""
        with self._finalize_lock:
            record = self.record(job_id)
            if record.get("finalized") == attempts or len(record.get("attempts") or []) != attempts:
                return  # done already, or a new attempt began since `status` was read
            notes = []
            if status.outputs.get("lora"):
                try:
                    self.host.refresh_loras()
                except Exception as error:  # noqa: BLE001 - the job is done either way
                    notes.append(f"refreshing the Lora list failed: {error}")
            if record.get("unloaded_webui_model") and self.host.reload_model is not None:
                try:
                    self.host.reload_model()
                    self._update(job_id, unloaded_webui_model=False)
                except Exception as error:  # noqa: BLE001
                    notes.append(f"loading the WebUI's model back failed: {error}")
            if notes:
                self._log(job_id, "; ".join(notes))
            self._update(job_id, finalized=attempts)

    def _log(self, job_id: str, line: str) -> None:
        with (self.folder(job_id) / "train.log").open("a", encoding="utf-8") as handle:
            handle.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {line}\n")

    # ------------------------------------------------------------------ checks
    def check_dataset(self, dataset: str, method: str, options: dict[str, Any] | None = None) -> Any:
        """The validation report of a dataset for a method (Rank & Refine rankings are exported first)."""
        from ..training.data import ValidationReport

        options = options or {}
        if method not in data_methods():
            report = ValidationReport(source=dataset or "(none)")
            report.notes.append(f"{method} samples its own images: no dataset to check")
            return report
        try:
            if dataset == RANK_REFINE:
                path = export_rank_refine(self.host.output_dir, self.root / ".staging" / "rank_refine_preview", method)
            elif is_preferences(dataset):
                preview = self.root / ".staging" / "preferences_preview"
                shutil.rmtree(preview, ignore_errors=True)
                path, line, _ = export_store_preferences(
                    self._preferences_dir(), dataset, preview / uuid.uuid4().hex, method, self.host.output_dir
                )
                report = self.reports.validate(
                    path, method, skip_bad_rows=bool(options.get("skip_bad_rows", False)),
                    tie_policy=str(options.get("tie_policy", "drop")), min_per_class=int(options.get("min_per_class", 1)),
                )
                report.notes.insert(0, line)
                return report
            else:
                if not dataset.strip():
                    raise RequestError(
                        "dataset: give a file or folder path, an upload, or the Rank & Refine rankings", "dataset"
                    )
                path = resolve_path(dataset, self.host.output_dir)
        except DatasetError as error:
            return error.report
        return self.reports.validate(
            path,
            method,
            skip_bad_rows=bool(options.get("skip_bad_rows", False)),
            tie_policy=str(options.get("tie_policy", "drop")),
            min_per_class=int(options.get("min_per_class", 1)),
        )

    def _check_not_busy(self) -> None:
        active = self.active()
        if active is not None:
            raise JobBusy(
                f"job {active.name!r} ({active.id}) is {active.state}; one training job runs at a time here. "
                "Wait for it, or cancel it first.",
                active.id,
            )

    def _check_name_free(self, name: str, exclude: str | None = None) -> None:
        lora = self.host.lora_dir / f"{name}.safetensors"
        if lora.exists():
            raise JobConflict(f"name: a LoRA named {name!r} already exists ({lora}); choose another name")
        for job_id in self.job_ids():
            if job_id == exclude:
                continue
            try:
                record = self.record(job_id)
            except JobNotFound:
                continue
            if record.get("name") == name and self.status(job_id, finalize=False).state != "error":
                raise JobConflict(f"name: job {job_id} already trains a LoRA named {name!r}; choose another name")

    # ------------------------------------------------------------------ start / resume / cancel
    def start(self, request: JobRequest) -> JobStatus:
        """Validate everything, then start the trainer. Raises RequestError, DatasetError, JobBusy, JobConflict."""
        methods = trainer_methods()
        if request.method not in methods:
            raise RequestError(f"method: {request.method!r} is not one of {', '.join(methods)}", "method")
        name = check_name(request.name)
        with self._start_lock:
            self._check_not_busy()
            self._check_name_free(name)
            options = merge_options(request)
            try:
                model = request.model or self.host.model_source()
            except RuntimeError as error:
                raise JobConflict(f"model: {error}") from None
            job_id = new_job_id()
            folder = self.root / job_id
            staging = self.root / ".staging" / f"new-{job_id}"
            staging.mkdir(parents=True, exist_ok=True)
            try:
                dataset_record, data_path = self._prepare_data(request, options, staging, job_id)

                def write_prompts(lines: list[str]) -> Path:
                    path = staging / "prompts.txt"
                    atomic_write_text(path, "\n".join(lines) + "\n")
                    return folder / "prompts.txt"

                options.update(reward_prompt_options(request, write_prompts))
                options.update(
                    method=request.method,
                    name=name,
                    model=model,
                    output_dir=str(self.host.lora_dir),
                    run_dir=str(folder / "run"),
                )
                options.update(events_stdout=False, progress_bar=False)  # progress comes from the events file
                if data_path is not None:
                    options["data"] = str(data_path)
                self._hand_over_tokenizer(options, staging, folder)
                self._hand_over_vae(options)
                config = build_config(options)
                if request.method in data_methods() and data_path is not None:
                    report = self.reports.validate(
                        Path(self._staged(data_path, staging, folder)),
                        request.method,
                        skip_bad_rows=config.skip_bad_rows,
                        tie_policy=config.tie_policy,
                        min_per_class=config.min_per_class,
                    )
                    if report.blocking:
                        raise DatasetError(report)
                    dataset_record["counts"] = dict(report.counts)
                    dataset_record["report"] = report.format_text()
                staging.rename(folder)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            if dataset_record.get("source") == "upload":  # the upload's staging folder now belongs to the job
                moved = adopt_staged(Path(dataset_record["path"]), self.root, folder / "data")
                config.data = str(moved)
                dataset_record["used"] = str(moved)
            flags = command_line_flags(config)
            record = {
                "id": job_id,
                "name": name,
                "method": request.method,
                "created": time.time(),
                "host": self.host.name,
                "model": model,
                "dataset": dataset_record,
                "request": request.to_dict(),
                "config": config.to_dict(),
                "attempts": [],
                "cancel_requested": False,
                "finalized": None,
                "unloaded_webui_model": False,
            }
            atomic_write_json(folder / "job.json", record)
            atomic_write_json(folder / "config.json", config.to_dict())
            if request.unload_webui_model and self.host.unload_model is not None:
                self.host.unload_model()
                self._update(job_id, unloaded_webui_model=True)
            self._launch_or_report(job_id, flags)
        return self.status(job_id)

    def _hand_over_tokenizer(self, options: dict[str, Any], staging: Path, folder: Path) -> None:
        """The host's tokenizer for a trainer that takes one (a single-file checkpoint carries none)."""
        from .request import config_fields

        if "tokenizer" not in config_fields() or options.get("tokenizer") or self.host.save_tokenizer is None:
            return
        try:
            saved = self.host.save_tokenizer(staging / "tokenizer")
        except Exception:  # noqa: BLE001 - the trainer then looks for one itself
            saved = None
        if saved is not None:
            options["tokenizer"] = str(folder / "tokenizer")

    def _hand_over_vae(self, options: dict[str, Any]) -> None:
        """The VAE file selected in the WebUI, which replaces the checkpoint's own there (and is needed without one)."""
        from .request import config_fields

        if "vae" not in config_fields() or options.get("vae") or self.host.vae_file is None:
            return
        try:
            selected = self.host.vae_file()
        except Exception:  # noqa: BLE001 - the trainer then uses the checkpoint's VAE
            selected = None
        if selected is not None:
            options["vae"] = str(selected)

    @staticmethod
    def _staged(path: Path, staging: Path, folder: Path) -> Path:
        """Paths are written for the job folder; before it exists they live in its staging twin."""
        try:
            return staging / Path(path).relative_to(folder)
        except ValueError:
            return Path(path)

    def _prepare_data(
        self, request: JobRequest, options: dict[str, Any], staging: Path, job_id: str
    ) -> tuple[dict[str, Any], Path | None]:
        folder = self.root / job_id
        if request.method not in data_methods():
            if request.dataset:
                raise RequestError(
                    f"dataset: {request.method} samples its own images; give a reward and prompts instead", "dataset"
                )
            return {"source": "none"}, None
        if not request.dataset:
            raise RequestError(
                "dataset: give a file or folder path, an upload, or the Rank & Refine rankings", "dataset"
            )
        if request.dataset == RANK_REFINE:
            exported = export_rank_refine(self.host.output_dir, staging / "data", request.method)
            used = folder / "data" / exported.name
            return {"source": "rank_refine", "path": RANK_REFINE, "used": str(used)}, used
        if is_preferences(request.dataset):
            exported, line, counts = export_store_preferences(
                self._preferences_dir(), request.dataset, staging / "data", request.method, self.host.output_dir
            )
            used = folder / "data" / exported.name
            return {"source": "preferences", "path": request.dataset, "used": str(used), "summary": line, "preferences": counts}, used
        path = resolve_path(request.dataset, self.host.output_dir)
        staging_root = (self.root / ".staging").resolve()
        source = "upload" if staging_root in path.resolve().parents else "path"
        return {"source": source, "path": str(path), "used": str(path)}, path

    def _preferences_dir(self) -> Path:
        return Path(self.host.preferences_dir or Path(self.host.output_dir) / "preferences")

    def _argv(self, flags: list[str], resume: Path | None = None) -> list[str]:
        argv = [self.host.python, "-m", "lib_alignment", "train", *flags]
        if resume is not None:
            argv += ["--resume", str(resume)]
        return argv

    def _env(self, tokenizer: Path | None = None) -> dict[str, str]:
        env = dict(os.environ)
        root = str(self.host.extension_root)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.update(
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            PYTHONUNBUFFERED="1",
            PYTHONIOENCODING="utf-8",
        )
        env.update(self.host.env)
        return env

    def _launch(self, job_id: str, flags: list[str], resume: Path | None = None) -> None:
        folder = self.folder(job_id)
        (folder / "run").mkdir(parents=True, exist_ok=True)
        stop = folder / "run" / "STOP"
        if stop.exists():
            stop.unlink()  # a stale request would end the new attempt at once
        argv = self._argv(flags, resume)
        started = time.time()
        proc = spawn(argv, cwd=folder, env=self._env(), log_path=folder / "train.log")
        how = f"resuming from {resume}" if resume else "starting"
        self._log(job_id, f"{how}: `train` process {proc.pid} (its options: config.json; the command line: job.json)")
        with self._lock:
            self._procs[job_id] = proc
            record = self.record(job_id)
            record.pop("launch_error", None)
            record.setdefault("attempts", []).append(
                {
                    "pid": proc.pid,
                    "pid_token": process_token(proc.pid),
                    "started": started,
                    "resumed": resume is not None,
                    "argv": argv,
                }
            )
            record["cancel_requested"] = False
            atomic_write_json(folder / "job.json", record)
        threading.Thread(target=self._watch, args=(job_id, proc), name=f"alignment-job-{job_id}", daemon=True).start()

    def _launch_or_report(self, job_id: str, flags: list[str], resume: Path | None = None) -> None:
        try:
            self._launch(job_id, flags, resume)
        except OSError as error:  # the interpreter is missing, the folder is not writable...
            self._log(job_id, f"could not start the trainer: {error}")
            self._update(job_id, launch_error=str(error))
            raise JobConflict(f"could not start the trainer process: {error}") from error

    def _watch(self, job_id: str, proc: subprocess.Popen) -> None:
        code = proc.wait()
        try:
            self._update_attempt(job_id, exit_code=code, ended=time.time())
            self.status(job_id)  # finalizes
        except JobNotFound:
            pass

    def resume(self, job_id: str, options: dict[str, Any] | None = None) -> JobStatus:
        """Continue a cancelled, interrupted or failed job from its last checkpoint (or from the start)."""
        from ..training.checkpoint import list_checkpoints
        from ..training.config import STRUCTURAL_FIELDS, TrainConfig

        with self._start_lock:
            status = self.status(job_id)
            if status.state not in RESUMABLE:
                raise JobConflict(
                    f"job {job_id} is {status.state}; only cancelled, interrupted or failed jobs can be resumed"
                )
            self._check_not_busy()
            record = self.record(job_id)
            values = dict(record["config"])
            for key, value in (options or {}).items():
                key = key.replace("-", "_")
                if key in STRUCTURAL_FIELDS or key in ("method", "data", "name", "output_dir", "run_dir", "resume"):
                    raise RequestError(
                        f"options: {key!r} cannot change when resuming (the checkpoint depends on it)", key
                    )
                values[key] = value
            try:
                config = TrainConfig.from_dict(values, source="options")
                config.validate(require_paths=False)
            except ValueError as error:
                raise RequestError(str(error)) from None
            run_dir = self.folder(job_id) / "run"
            resume_from = run_dir if list_checkpoints(run_dir) else None
            self._update(job_id, config=config.to_dict())
            atomic_write_json(self.folder(job_id) / "config.json", config.to_dict())
            if record.get("request", {}).get("unload_webui_model") and self.host.unload_model is not None:
                self.host.unload_model()
                self._update(job_id, unloaded_webui_model=True)
            self._launch_or_report(job_id, command_line_flags(config), resume=resume_from)
        return self.status(job_id)

    def cancel(self, job_id: str, force: bool = False) -> JobStatus:
        """Ask the trainer to save a checkpoint and the LoRA so far and stop (its stop file).

        force: end the process now (a checkpoint is only there if one was written earlier)."""
        status = self.status(job_id)
        if not status.active:
            raise JobConflict(f"job {job_id} is {status.state}; there is nothing to cancel")
        record = self.record(job_id)
        attempt = (record.get("attempts") or [{}])[-1]
        stop = self.folder(job_id) / "run" / "STOP"
        stop.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(stop, f"cancelled at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        first_request = not record.get("cancel_requested")
        self._update(job_id, cancel_requested=True, cancel_time=record.get("cancel_time") or time.time())
        if first_request:
            self._log(job_id, "cancel requested: the trainer saves a checkpoint and the LoRA after the current step")
        if force and attempt.get("pid") and status.pid:
            self._log(job_id, "force stop requested")
            alive, _ = self._alive(job_id, attempt)
            if alive:
                terminate(int(attempt["pid"]), kill=True)
        return self.status(job_id)

    def wait(self, job_id: str, timeout: float = 600.0, poll: float = 0.5) -> JobStatus:
        """Block until the job has ended (for scripts and tests)."""
        deadline = time.time() + timeout
        while True:
            status = self.status(job_id)
            if status.state in ENDED:
                proc = self._procs.get(job_id)
                if proc is None or proc.poll() is not None:
                    return status
            if time.time() > deadline:
                raise TimeoutError(f"job {job_id} is still {status.state} after {timeout:.0f} s")
            time.sleep(poll)

    def log(self, job_id: str, lines: int = 40) -> str:
        return log_tail(self.folder(job_id) / "train.log", lines)


_RUNNERS: dict[int, tuple[Any, JobRunner]] = {}
_RUNNERS_LOCK = threading.Lock()
SERVICE_NAME = "training_jobs"


def runner_for(ctx: Any) -> JobRunner:
    """The one JobRunner of a host context, shared by its tab and its API routes."""
    from .host import host_for

    service = getattr(ctx, "service", None)
    if callable(service):
        return service(SERVICE_NAME, lambda: JobRunner(host_for(ctx)))
    with _RUNNERS_LOCK:
        entry = _RUNNERS.get(id(ctx))
        if entry is None or entry[0] is not ctx:
            entry = _RUNNERS[id(ctx)] = (ctx, JobRunner(host_for(ctx)))
        return entry[1]
