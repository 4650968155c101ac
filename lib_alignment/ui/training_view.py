"""Pure helpers of the training tab: job labels, progress and table HTML, option parsing, previews.

Nothing here imports gradio, so it is tested directly and shared by every host.
"""

from __future__ import annotations

import csv
import html
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ..jobs.runner import JOB_ID, JobStatus

METHOD_TITLES = {"dpo": "DPO", "ipo": "IPO", "dpo_hinge": "DPO (hinge)", "kto": "KTO", "mapo": "MaPO", "orpo": "ORPO", "listwise": "Listwise", "ddpo": "DDPO"}
METHOD_HINTS = {
    "dpo": "Diffusion-DPO: pairs of images, one preferred (Pick-a-Pic or Rank & Refine pairs).",
    "kto": "Diffusion-KTO: single images marked liked or disliked (or pairs, split).",
    "ipo": "IPO: DPO's pairs with a squared loss that stops at a target margin (harder to over-optimise).",
    "dpo_hinge": "DPO with a hinge loss: pairs ranked by a margin of 1 stop contributing.",
    "mapo": "MaPO: pairs like DPO, without a reference model (less memory).",
    "orpo": "ORPO: pairs without a reference model; fits the preferred image plus an odds-ratio term.",
    "listwise": "Listwise: whole rankings (caption, image_1…image_m best first) or pairs, a Plackett–Luce likelihood over DPO's rewards.",
    "ddpo": "DDPO: reinforcement learning on a reward computed on the model's own samples.",
}
STATE_TITLES = {
    "queued": "Queued",
    "running": "Running",
    "cancelling": "Cancelling",
    "finished": "Finished",
    "cancelled": "Cancelled",
    "error": "Failed",
    "interrupted": "Interrupted",
}
STATE_COLORS = {
    "running": "#2563eb",
    "cancelling": "#d97706",
    "finished": "#16a34a",
    "cancelled": "#6b7280",
    "error": "#dc2626",
    "interrupted": "#d97706",
    "queued": "#6b7280",
}


def method_title(method: str) -> str:
    return METHOD_TITLES.get(method, method.upper())


def method_from_title(title: str) -> str:
    for key, value in METHOD_TITLES.items():
        if value == title:
            return key
    return title.lower()


def job_label(status: JobStatus) -> str:
    """Dropdown label; ends with the job id, which `job_id_of` reads back."""
    return (
        f"{status.name} · {method_title(status.method)} · {STATE_TITLES.get(status.state, status.state)} · {status.id}"
    )


def job_id_of(label: str | None) -> str | None:
    if not label:
        return None
    match = re.search(r"(\d{8}-\d{6}-[0-9a-f]{6})\s*$", str(label))
    return match.group(1) if match and JOB_ID.match(match.group(1)) else None


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def speed(seconds_per_step: float | None) -> str:
    if not seconds_per_step:
        return "–"
    if seconds_per_step < 1:
        return f"{1 / seconds_per_step:.2f} steps/s"
    return f"{seconds_per_step:.2f} s/step"


def _figure(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    return f"{value:.4g}"


def progress_html(status: JobStatus | None) -> str:
    """The progress bar with state, step, speed, ETA and the current phase."""
    if status is None:
        return "<div class='alignment-job-progress' data-state='none'><p>No training job yet: set one up on the left and press Start.</p></div>"
    color = STATE_COLORS.get(status.state, "#6b7280")
    percent = round(100 * status.fraction, 1)
    total = status.total if status.total is not None else "?"
    parts = [f"step {status.step} / {total}"]
    if status.active:
        parts += [speed(status.seconds_per_step), f"ETA {duration(status.eta_seconds)}"]
    figures = status.figures
    for key, title in (("loss", "loss"), ("reward_mean", "reward"), ("reward_accuracy", "reward acc.")):
        if key in figures:
            parts.append(f"{title} {_figure(figures[key])}")
    phase = status.phase if status.active and status.phase and status.phase != "training" else ""
    message = ""
    if status.message and status.state in ("error", "interrupted"):
        message = f"<pre style='white-space:pre-wrap;margin:6px 0 0 0;font-size:0.85em'>{html.escape(status.message[-2000:])}</pre>"
    outputs = ""
    verdict = verdict_html(getattr(status, "health", None) or {})
    if status.state in ("cancelled", "finished", "error") and not status.active and status.step == 0 and not status.outputs.get("lora"):
        outputs = "<div class='alignment-no-lora' style='margin-top:4px;font-size:0.9em'>No LoRA written: the job ended before its first training step.</div>"
    if status.outputs.get("lora"):
        outputs = f"<div style='margin-top:4px;font-size:0.9em'>LoRA: <code>{html.escape(Path(status.outputs['lora']).name)}</code> — use <code>&lt;lora:{html.escape(status.name)}:1&gt;</code> in a prompt</div>"
    return (
        f"<div class='alignment-job-progress' data-state='{status.state}' data-step='{status.step}' data-total='{total}' data-job='{status.id}'>"
        f"<div style='display:flex;justify-content:space-between;gap:8px;flex-wrap:wrap'>"
        f"<b>{html.escape(status.name)} <span style='color:{color}'>{STATE_TITLES.get(status.state, status.state)}</span></b>"
        f"<span>{' · '.join(html.escape(p) for p in parts)}</span></div>"
        f"<div style='height:14px;border-radius:7px;background:rgba(127,127,127,0.2);overflow:hidden;margin-top:6px'>"
        f"<div class='alignment-job-bar' style='height:100%;width:{percent}%;background:{color};transition:width 0.5s'></div></div>"
        + (f"<div style='margin-top:4px;font-size:0.9em;opacity:0.8'>{html.escape(phase)}…</div>" if phase else "")
        + verdict
        + outputs
        + message
        + "</div>"
    )


VERDICT_COLORS = {"learning": "#16a34a", "not_learning": "#d97706", "over_optimising": "#dc2626", "unstable": "#dc2626", "early": "#6b7280"}


def verdict_html(health: dict[str, Any]) -> str:
    """The trainer's verdict (learning / not learning yet / over-optimising / unstable) with its numbers and advice."""
    if not health or not health.get("state"):
        return ""
    state = str(health["state"])
    color = VERDICT_COLORS.get(state, "#6b7280")
    title = html.escape(str(health.get("title") or state))
    reason = html.escape(str(health.get("reason") or ""))
    advice = html.escape(str(health.get("advice") or ""))
    return (
        f"<div class='alignment-job-verdict' data-verdict='{html.escape(state)}' style='margin-top:6px;padding:4px 8px;"
        f"border-left:4px solid {color};font-size:0.9em'><b style='color:{color}'>{title}</b>"
        f" <span style='opacity:0.7'>(step {html.escape(str(health.get('step', '')))})</span>: {reason}"
        + (f"<div><i>What to change:</i> {advice}</div>" if advice else "")
        + (f"<div><i>β:</i> {html.escape(str(health['guidance']))}</div>" if health.get("guidance") else "")
        + "</div>"
    )


def jobs_table_html(statuses: Sequence[JobStatus]) -> str:
    """Past and current jobs with their figures and outputs."""
    if not statuses:
        return "<p>No jobs yet.</p>"
    rows = []
    for status in statuses:
        figures = status.figures
        reward = next((figures[k] for k in ("reward_mean", "reward_accuracy") if k in figures), None)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(status.created)) if status.created else ""
        lora = "✓" if status.outputs.get("lora") else ""
        rows.append(
            "<tr>"
            f"<td title='job {status.id}'>{html.escape(status.name)}</td><td>{method_title(status.method)}</td>"
            f"<td>{STATE_TITLES.get(status.state, status.state)}</td>"
            f"<td>{status.step} / {status.total if status.total is not None else '?'}</td>"
            f"<td>{_figure(figures.get('loss'))}</td><td>{_figure(reward)}</td>"
            f"<td>{lora}</td><td>{html.escape(when)}</td>"
            "</tr>"
        )
    head = "".join(
        f"<th style='text-align:left;padding-right:8px'>{h}</th>"
        for h in ("Name", "Method", "State", "Steps", "Loss", "Reward", "LoRA", "Started")
    )  # the job id is in the Job list and in each name's tooltip: eight narrow columns fit a 1400 px page
    return (
        "<div class='alignment-jobs-scroll'><table class='alignment-jobs-table' style='width:100%;font-size:0.9em'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def lora_cards(statuses: Sequence[JobStatus], size: int = 160) -> list[tuple[Image.Image, str]]:
    """(preview thumbnail, caption) of each LoRA the jobs wrote that is still in the Lora folder."""
    cards = []
    seen = set()
    for status in statuses:
        lora = status.outputs.get("lora")
        if not lora or lora in seen or not Path(lora).is_file():
            continue
        seen.add(lora)
        preview = status.outputs.get("preview")
        if preview and Path(preview).is_file():
            with Image.open(preview) as image:
                thumb = image.convert("RGB")
                thumb.thumbnail((size, size))
        else:
            thumb = Image.new("RGB", (size, size), (200, 200, 200))
        cards.append((thumb, f"{Path(lora).stem} — <lora:{Path(lora).stem}:1>"))
    return cards


def lora_cards_html(statuses: Sequence[JobStatus], size: int = 128) -> str:
    """The LoRAs the jobs wrote as small cards (preview inlined as a data URI: no file serving needed)."""
    import base64
    import io

    cards = []
    for thumb, caption in lora_cards(statuses, size):
        buffer = io.BytesIO()
        thumb.save(buffer, format="PNG")
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        name, tag = caption.split(" — ", 1)
        cards.append(
            f"<div class='alignment-lora-card' style='width:{size + 16}px;padding:6px;border:1px solid rgba(127,127,127,0.3);"
            f"border-radius:8px;text-align:center'><img src='data:image/png;base64,{data}' alt='{html.escape(name)}' "
            f"style='width:{size}px;height:{size}px;object-fit:contain'><div style='font-weight:bold;overflow-wrap:anywhere'>"
            f"{html.escape(name)}</div><code style='font-size:0.75em;overflow-wrap:anywhere'>{html.escape(tag)}</code></div>"
        )
    if not cards:
        return "<p>No trained LoRAs yet.</p>"
    return f"<div style='display:flex;flex-wrap:wrap;gap:8px'>{''.join(cards)}</div>"


def lora_signature(statuses: Sequence[JobStatus]) -> tuple:
    out = []
    for status in statuses:
        lora = status.outputs.get("lora")
        if lora:
            try:
                out.append((lora, Path(lora).stat().st_mtime_ns))
            except OSError:
                continue
    return tuple(out)


def parse_option_lines(text: str) -> dict[str, Any]:
    """ "option = value" lines (the trainer's option names; JSON values, else text) for "Other options"."""
    options: dict[str, Any] = {}
    for number, raw in enumerate((text or "").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ValueError(f"other options, line {number}: write `option = value` (got {line!r})")
        key, value = (part.strip() for part in line.split("=", 1))
        if not key:
            raise ValueError(f"other options, line {number}: the option name is missing")
        try:
            options[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = value
    return options


def default_compare_prompts(record: dict[str, Any], limit: int = 2) -> list[str]:
    """Prompts for the before/after grid: the job's sample prompts, DDPO prompts, or its data's first captions."""
    config = record.get("config", {})
    prompts = [p for p in config.get("sample_prompts") or [] if p]
    if not prompts:
        prompts = [p for p in config.get("prompts") or [] if p and Path(p).suffix != ".txt"]
    if prompts:
        return prompts[:limit]
    data = config.get("data")
    if data and Path(data).is_file() and Path(data).suffix.lower() in (".csv", ".tsv"):
        try:
            with Path(data).open(encoding="utf-8-sig", newline="") as handle:
                reader = csv.DictReader(handle, delimiter="\t" if data.endswith(".tsv") else ",")
                for row in reader:
                    caption = (row.get("caption") or row.get("prompt") or "").strip()
                    if caption and caption not in prompts:
                        prompts.append(caption)
                    if len(prompts) >= limit:
                        break
        except (OSError, csv.Error, UnicodeDecodeError):
            pass
    return prompts


def parse_seeds(text: str) -> list[int]:
    seeds = []
    for part in re.split(r"[,\s]+", text or ""):
        if part:
            try:
                seeds.append(int(part))
            except ValueError:
                raise ValueError(f"seeds: {part!r} is not a whole number") from None
    if not seeds:
        raise ValueError("seeds: give at least one seed, e.g. 1, 2, 3, 4")
    return seeds


def time_estimate(statuses: Sequence[JobStatus], steps: Any, method: str, model: str) -> str:
    """How long `steps` steps should take here, from the speed earlier jobs measured on this machine
    (same method and model first, then the same model); says so when nothing was measured yet."""
    try:
        count = int(steps)
    except (TypeError, ValueError):
        return ""
    if count < 1:
        return ""
    measured = [s for s in statuses if s.seconds_per_step and s.step > 0]
    same = [s for s in measured if s.method == method and s.model == model] or [s for s in measured if s.model == model]
    if not same:
        return (
            "Time: not measured on this machine yet; the first job shows its speed and ETA after a few steps "
            "(for scale: 500 steps of the tiny model took about 45 min on a busy 2-core CPU)."
        )
    latest = max(same, key=lambda s: s.created)
    seconds = count * float(latest.seconds_per_step or 0)
    return (
        f"Estimated time: about {duration(seconds)} for {count} steps "
        f"({speed(latest.seconds_per_step)} in job {html.escape(latest.name)}, {method_title(latest.method)})."
    )


def memory_warning(
    gpu: tuple[float, float] | None, host_model_on_gpu: bool, job_active: bool, in_webui: bool, unloaded: bool = False
) -> str:
    """A warning when training and the host's own model compete for GPU memory (nothing without a GPU)."""
    if gpu is None or not job_active:
        return ""
    free, total = gpu
    who = "the WebUI's model" if in_webui else "the app's model"
    if unloaded:
        return f"The WebUI's model is unloaded while the job trains ({free:.1f} of {total:.1f} GB GPU memory free); it is loaded back when the job ends."
    if host_model_on_gpu:
        return (
            f"⚠️ The training job and {who} share the GPU ({free:.1f} of {total:.1f} GB free). Generating images while it "
            "trains can run out of GPU memory and slows both down"
            + ("; tick “Unload the WebUI's model while training” next time, or unload it now." if in_webui else ".")
        )
    return ""
