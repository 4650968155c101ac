"""A job request (from the tab or POST /jobs) and the trainer options and command line it becomes.

Options are keyed like the trainer's TrainConfig, i.e. its command-line flags
in snake_case (max_train_steps, learning_rate, ...); they are checked by
TrainConfig itself, so a new trainer option (DDPO's, say) works here without a
change. Precedence: job defaults < memory preset < the request's options.
The job decides where things go (output_dir, run_dir, name, ...): those keys
are refused in `options`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..paths import safe_name
from .datasets import RANK_REFINE, data_methods

#: Options the job sets itself; the request names them through its own fields or not at all.
RESERVED = {
    "method": "the request's 'method'",
    "data": "the request's 'dataset'",
    "name": "the request's 'name'",
    "output_dir": "nothing: the LoRA goes to the host's Lora folder",
    "run_dir": "nothing: the job folder holds the run",
    "resume": "POST /jobs/{id}/resume",
    "stop_file": "POST /jobs/{id}/cancel",
    "events_stdout": "nothing: the job reads the events file",
    "progress_bar": "nothing",
}
#: Defaults of a job that differ from the command line's: steps the UI can watch.
JOB_DEFAULTS: dict[str, Any] = {"max_train_steps": 500, "checkpoints_keep": 2, "log_every": 1, "preview": True}


class RequestError(ValueError):
    """A bad request; `field` names the offending field or option."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


@dataclass
class JobRequest:
    method: str
    name: str
    dataset: str = ""
    reward: str | None = None
    prompts: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None
    model: str | None = None
    skip_bad_rows: bool | None = None
    unload_webui_model: bool = False

    @classmethod
    def from_body(cls, body: Any) -> JobRequest:
        """Check the shape of a JSON body; values are checked later, against the trainer's config."""
        if not isinstance(body, dict):
            raise RequestError("the body must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(body) - known)
        if unknown:
            raise RequestError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}", unknown[0])
        for name in ("method", "name"):
            if not isinstance(body.get(name), str) or not body[name].strip():
                raise RequestError(f"{name}: a non-empty string is required", name)
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise RequestError("options: must be an object keyed by trainer option (e.g. max_train_steps)", "options")
        for name in ("dataset", "reward", "preset", "model"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise RequestError(f"{name}: must be a string", name)
        prompts = body.get("prompts")
        if prompts is not None and not (
            isinstance(prompts, str) or (isinstance(prompts, list) and all(isinstance(p, str) for p in prompts))
        ):
            raise RequestError(
                "prompts: must be a string (a file path or prompts one per line) or a list of strings", "prompts"
            )
        for name in ("skip_bad_rows", "unload_webui_model"):
            if body.get(name) is not None and not isinstance(body[name], bool):
                raise RequestError(f"{name}: must be true or false", name)
        return cls(
            method=body["method"].strip().lower(),
            name=body["name"].strip(),
            dataset=(body.get("dataset") or "").strip(),
            reward=body.get("reward"),
            prompts=prompts,
            options={str(k).replace("-", "_"): v for k, v in options.items()},
            preset=body.get("preset") or None,
            model=body.get("model") or None,
            skip_bad_rows=body.get("skip_bad_rows"),
            unload_webui_model=bool(body.get("unload_webui_model") or False),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def trainer_methods() -> tuple[str, ...]:
    from ..training import config

    return tuple(config.METHODS)


def config_fields() -> dict[str, dataclasses.Field]:
    from ..training.config import TrainConfig

    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def check_name(name: str) -> str:
    try:
        return safe_name(name, "name")
    except ValueError as error:
        raise RequestError(str(error), "name") from None


def merge_options(request: JobRequest) -> dict[str, Any]:
    """Job defaults, then the preset, then the request's options (reserved keys refused)."""
    from .presets import preset_options

    fields = config_fields()
    for key in request.options:
        if key in RESERVED:
            raise RequestError(f"options: {key!r} cannot be set here; use {RESERVED[key]}", key)
        if key not in fields:
            raise RequestError(
                f"options: unknown option {key!r}; the trainer's options are the `train` command's flags in snake_case (see `python -m lib_alignment train --help`)",
                key,
            )
    try:
        preset = preset_options(request.preset, set(fields), uses_data=request.method in data_methods())
    except ValueError as error:
        raise RequestError(str(error), "preset") from None
    merged = {k: v for k, v in JOB_DEFAULTS.items() if k in fields}
    merged.update(preset)
    merged.update(request.options)
    if "skip_bad_rows" in fields and request.skip_bad_rows is not None:
        merged["skip_bad_rows"] = request.skip_bad_rows
    steps = merged.get("max_train_steps")
    if isinstance(steps, int) and steps > 0:  # watchable by default: samples and checkpoints along the way
        for key in ("sample_every", "checkpoint_every"):
            if key in fields and key not in request.options:
                merged[key] = max(1, steps // 10)
    return merged


def reward_prompt_options(request: JobRequest, write_prompts: Any) -> dict[str, Any]:
    """DDPO's `reward` and `prompts`, in whatever form the trainer's fields take."""
    from ..training.config import field_kind

    fields = config_fields()
    out: dict[str, Any] = {}
    if request.reward is not None:
        if "reward" not in fields:
            raise RequestError(f"reward: the {request.method} trainer takes no reward", "reward")
        out["reward"] = request.reward
    if request.prompts is not None:
        if "prompts" not in fields:
            raise RequestError(f"prompts: the {request.method} trainer takes no prompts", "prompts")
        kind = field_kind(fields["prompts"])
        prompts = request.prompts
        lines = [p.strip() for p in (prompts if isinstance(prompts, list) else str(prompts).splitlines()) if p.strip()]
        if kind.startswith("list["):
            out["prompts"] = lines
        elif isinstance(prompts, list) or len(lines) > 1:
            out["prompts"] = str(write_prompts(lines))
        else:
            out["prompts"] = lines[0] if lines else ""
    return out


def build_config(options: dict[str, Any]) -> Any:
    """TrainConfig from the merged options, with errors that name the option."""
    from ..training.config import ConfigError, TrainConfig

    try:
        config = TrainConfig.from_dict(options, source="options")
        config.validate(require_paths=True)
    except ConfigError as error:
        text = str(error)
        bad = next((name for name in options if f" {name}:" in text or text.startswith(f"options: {name}:")), None)
        raise RequestError(text.replace("invalid training options:\n  ", ""), bad) from None
    if config.method in data_methods() and not config.data:
        raise RequestError(f"dataset: {config.method} trains on a dataset; give a path or {RANK_REFINE!r}", "dataset")
    return config


def command_line_flags(config: Any) -> list[str]:
    """The `train` flags that reproduce `config` (every field, so the run does not depend on defaults)."""
    from ..training.config import field_kind

    flags: list[str] = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "resume" and not value:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = field_kind(f)
        if value is None:
            flags.append(f"{flag}=none")
        elif kind.startswith("list["):
            if not value:
                continue  # flags cannot say "empty": the option keeps its default
            items = [str(v) for v in value]
            bad = [item for item in items if item.startswith("-") and " " not in item]
            if bad:
                raise RequestError(f"{f.name}: the value {bad[0]!r} starts with '-' and would read as a flag", f.name)
            flags += [flag, *items]
        elif isinstance(value, bool):
            flags.append(f"{flag}={'true' if value else 'false'}")
        else:
            flags.append(f"{flag}={value}")
    return flags
