"""The "Alignment Training" tab: DPO / KTO / MaPO / DDPO LoRA jobs on the loaded checkpoint.

Left: a new job (method, dataset or reward and prompts, the dataset's
validation report, a memory preset or advanced settings, the name). Right:
the selected job (progress bar with speed and ETA, loss/reward plot, sample
images, log tail, cancel/resume, before/after grid, a blind A/B comparison) and every past job. The
jobs themselves live in lib_alignment.jobs: a separate trainer process whose
events file the tab polls every two seconds, so a page reload or a closed
browser loses nothing.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import gradio as gr

from ..jobs import RANK_REFINE, DatasetError, JobBusy, JobConflict, JobNotFound, JobRequest, RequestError, runner_for
from ..jobs.datasets import data_methods, stage_upload
from ..jobs.plot import render_health
from ..jobs.presets import DATA_ONLY, PRESETS, detect_preset, gpu_memory_gb, preset_options, preset_start
from . import ab_compare_view
from . import preferences_filters as pref_view
from . import training_view as view
from .compat import file_path, poll
from .context import AppContext
from .training_options import option_label, option_value, start_numbers

TITLE = "Alignment Training"
ELEM_ID = "alignment_training"
POLL_SECONDS = 2.0

SOURCE_PATH = "A file or folder"
SOURCE_UPLOAD = "Upload"
SOURCE_REFINE = "My Rank & Refine rankings"
SOURCE_PREFS = "My preferences"  # the preference store: gallery likes, curation, Rank & Refine, imports

#: Options shown under "Advanced settings" (the ones that exist in the installed trainer).
ADVANCED = (
    "beta",
    "rank",
    "lora_alpha",
    "batch_size",
    "gradient_accumulation_steps",
    "resolution",
    "mixed_precision",
    "gradient_checkpointing",
    "optimizer",
    "cache_latents",
    "device",
    "lr_scheduler",
    "lr_warmup_steps",
    "train_text_encoder",
    "tie_policy",
    "checkpoint_every",
    "sample_every",
    "sample_prompts",
    "sample_seeds",
    "sample_steps",
    "seed",
    "save_precision",
)
#: Left empty, these are chosen by the job (every tenth of the run).
AUTO = ("checkpoint_every", "sample_every")
#: Shown in their own places, not among the advanced settings.
ELSEWHERE = (
    "method",
    "model",
    "data",
    "name",
    "output_dir",
    "run_dir",
    "resume",
    "stop_file",
    "events_stdout",
    "progress_bar",
    "max_train_steps",
    "learning_rate",
    "skip_bad_rows",
    "reward",
    "prompts",
)


def _id(name: str) -> str:
    return f"{ELEM_ID}_{name}"


def _fields() -> dict[str, dataclasses.Field]:
    from ..training.config import TrainConfig

    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def _method_specific(fields: dict[str, dataclasses.Field], methods: tuple[str, ...]) -> dict[str, list[str]]:
    """Options that belong to one method: named after it (kto_*, mapo_*) or in its option group (ddpo)."""
    out: dict[str, list[str]] = {m: [] for m in methods}
    for name, f in fields.items():
        if name in ELSEWHERE:
            continue
        for method in methods:
            if name.startswith(method + "_") or f.metadata.get("group") == method:
                out[method].append(name)
                break
    return out


def _component(name: str, f: dataclasses.Field, default: Any) -> Any:
    """A gradio input for one trainer option, built from its type, choices and help."""
    from ..training.config import field_kind

    kind = field_kind(f)
    help_text = f.metadata.get("help", "")
    label = option_label(name)
    elem_id = _id("opt_" + name)
    if kind == "bool":
        return gr.Checkbox(label=label, value=bool(default), info=help_text, elem_id=elem_id)
    if "choices" in f.metadata:
        return gr.Dropdown(
            label=label, choices=list(f.metadata["choices"]), value=default, info=help_text, elem_id=elem_id
        )
    if kind.startswith("list["):
        text = "\n".join(str(v) for v in default or [])
        return gr.Textbox(label=label, value=text, lines=2, info=help_text + " (one per line)", elem_id=elem_id)
    if kind in ("int", "float") and name not in AUTO:
        return gr.Number(
            label=label, value=default, precision=0 if kind == "int" else None, info=help_text, elem_id=elem_id
        )
    placeholder = "auto: every tenth of the run" if name in AUTO else ("default" if default is None else "")
    return gr.Textbox(
        label=label,
        value="" if default is None or name in AUTO else str(default),
        placeholder=placeholder,
        info=help_text,
        elem_id=elem_id,
    )


def _components_in_rows(
    names: list[str], fields: dict[str, Any], values: dict[str, Any], into: dict[str, Any], per_row: int = 2
) -> None:
    """Option inputs two to a row (the list is long)."""
    for start in range(0, len(names), per_row):
        with gr.Row():
            for name in names[start : start + per_row]:
                into[name] = _component(name, fields[name], values.get(name))


def _option_value(name: str, f: dataclasses.Field, value: Any) -> tuple[bool, Any]:
    """(send it?, value) for a component's value: empty optional/auto text means "let the trainer/job decide";
    an empty or invalid number elsewhere is refused with the field's label."""
    from ..training.config import field_kind

    return option_value(name, f, value, field_kind(f), optional_blank=name in AUTO)


def build(ctx: AppContext) -> None:
    """Create the tab's components inside the current gradio context."""
    runner = runner_for(ctx)
    fields = _fields()
    from ..training.config import METHODS, TrainConfig

    methods = tuple(METHODS)
    data_method_set = set(data_methods())
    specific = _method_specific(fields, methods)
    defaults = TrainConfig()
    gpu = gpu_memory_gb()
    detected = detect_preset(gpu[1] if gpu else None)
    preset_labels = {p.label: p.key for p in PRESETS}
    detected_label = next(p.label for p in PRESETS if p.key == detected)
    statuses = runner.list()
    initial = next((s for s in statuses if s.active), statuses[0] if statuses else None)
    host = runner.host

    try:
        from ..training.ddpo.rewards import NAMES as reward_names
    except ImportError:  # a trainer without DDPO
        reward_names = ()
    reward_choices = [n for n in reward_names if ":" not in n]

    model_text = _model_text(ctx)
    gr.Markdown(
        "Train a LoRA of the loaded checkpoint on your preferences. It trains in its own process, so generating "
        f"goes on meanwhile; the finished LoRA lands in `{ctx.lora_dir}` with its preview. **Model:** {model_text}",
        elem_id=_id("intro"),
    )
    with gr.Row():
        # ------------------------------------------------------------------ a new job
        with gr.Column(scale=2, min_width=360):
            method = gr.Radio(
                label="Method",
                choices=[view.method_title(m) for m in methods],
                value=view.method_title(methods[0]),
                elem_id=_id("method"),
            )
            method_hint = gr.Markdown(view.METHOD_HINTS.get(methods[0], ""), elem_id=_id("method_hint"))
            with gr.Column(visible=methods[0] in data_method_set) as data_box:
                source = gr.Radio(
                    label="Dataset",
                    choices=[SOURCE_PATH, SOURCE_UPLOAD, SOURCE_REFINE, SOURCE_PREFS],
                    value=SOURCE_PATH,
                    elem_id=_id("source"),
                )
                dataset_path = gr.Textbox(
                    label="Dataset path",
                    placeholder="pairs.csv, a parquet file, a dataset folder or a Pick-a-Pic folder of parquet shards (relative paths: the extension's output folder)",
                    elem_id=_id("dataset"),
                )
                upload = gr.File(
                    label="Upload a dataset: a .zip of the folder with its images, or a .csv/.tsv/.parquet",
                    file_types=[".zip", ".csv", ".tsv", ".parquet"],
                    visible=False,
                    elem_id=_id("upload"),
                )
                prefs = pref_view.build_filters(ctx)
                skip_bad_rows = gr.Checkbox(
                    label="Skip bad rows (train on the rest)", value=False, elem_id=_id("skip_bad_rows")
                )
                check = gr.Button("Check dataset", elem_id=_id("check"))
            with gr.Column(visible=methods[0] not in data_method_set) as reward_box:
                reward = gr.Dropdown(
                    label="Reward",
                    choices=reward_choices,
                    value=reward_choices[0] if reward_choices else None,
                    allow_custom_value=True,
                    info=fields["reward"].metadata.get("help", "") if "reward" in fields else "",
                    elem_id=_id("reward"),
                )
                prompts = gr.Textbox(
                    label="Prompts (one per line; prompt files and templates such as 'a(n) [animal]' work too)",
                    lines=3,
                    elem_id=_id("prompts"),
                )
            report = gr.Textbox(
                label="Dataset check",
                lines=6,
                max_lines=20,
                interactive=False,
                visible=methods[0] in data_method_set,
                elem_id=_id("report"),
            )
            preset = gr.Dropdown(
                label="Memory preset",
                choices=list(preset_labels),
                value=detected_label,
                info=f"{'Detected ' + format(gpu[1], '.0f') + ' GB of GPU memory' if gpu else 'No GPU found'}; the preset sets batch size, resolution, precision, checkpointing, optimizer and rank (see Advanced settings).",
                elem_id=_id("preset"),
            )
            with gr.Row():
                first = preset_start(detected)
                steps = gr.Number(
                    label="Training steps", value=first.get("max_train_steps", 500), precision=0, elem_id=_id("steps")
                )
                learning_rate = gr.Number(
                    label="Learning rate",
                    value=first.get("learning_rate", defaults.learning_rate),
                    elem_id=_id("learning_rate"),
                )
            estimate = gr.Markdown(
                view.time_estimate(statuses, steps.value, methods[0], _safe(ctx.model_source) or ""),
                elem_id=_id("estimate"),
            )
            advanced: dict[str, Any] = {}
            method_boxes: dict[str, Any] = {}
            with gr.Accordion("Advanced settings", open=False, elem_id=_id("advanced")):
                start_values = {**{n: getattr(defaults, n) for n in fields}, **preset_options(detected, set(fields))}
                _components_in_rows([n for n in ADVANCED if n in fields], fields, start_values, advanced)
                for m in methods:
                    if specific[m]:
                        with gr.Column(visible=m == methods[0]) as box:
                            gr.Markdown(f"**{view.method_title(m)} options**")
                            _components_in_rows(specific[m], fields, start_values, advanced)
                        method_boxes[m] = box
                other = gr.Textbox(
                    label="Other options (one `option = value` per line, any `train` flag in snake_case)",
                    lines=2,
                    elem_id=_id("other"),
                )
            name = gr.Textbox(
                label="Output name",
                placeholder="my-preference-lora (the LoRA file name; <lora:NAME:1> in prompts)",
                elem_id=_id("name"),
            )
            unload = gr.Checkbox(
                label="Unload the WebUI's model while training (frees GPU memory; txt2img cannot generate until it is loaded back when the job ends)",
                value=False,
                visible=ctx.in_webui,
                elem_id=_id("unload"),
            )
            start = gr.Button("Start training", variant="primary", elem_id=_id("start"))
            start_message = gr.Markdown(elem_id=_id("start_message"))

        # ------------------------------------------------------------------ the jobs
        with gr.Column(scale=3, min_width=420):
            with gr.Row():
                job = gr.Dropdown(
                    label="Job",
                    scale=4,
                    choices=[view.job_label(s) for s in statuses],
                    value=view.job_label(initial) if initial else None,
                    elem_id=_id("job"),
                )
                refresh = gr.Button("Refresh", size="sm", scale=0, min_width=90, elem_id=_id("refresh"))
            progress = gr.HTML(view.progress_html(initial), elem_id=_id("progress"))
            warning = gr.Markdown(elem_id=_id("memory_warning"))
            with gr.Row():
                cancel = gr.Button("Cancel", elem_id=_id("cancel"), interactive=bool(initial and initial.active))
                resume = gr.Button("Resume", elem_id=_id("resume"), interactive=bool(initial and initial.resumable))
                reload_model = gr.Button(
                    "Load the WebUI's model back", visible=ctx.in_webui, elem_id=_id("reload_model")
                )
            action_message = gr.Markdown(elem_id=_id("action_message"))
            plot = gr.Image(label="Training health: loss, accuracy, margin, drift", type="pil", interactive=False, height=270, elem_id=_id("plot"))
            samples = gr.Gallery(label="Samples (newest first)", columns=8, height=220, elem_id=_id("samples"))
            log = gr.Textbox(
                label="Log", lines=8, max_lines=8, interactive=False, elem_id=_id("log"), elem_classes=["alignment-log"]
            )
            with gr.Accordion("Before / after", open=False, elem_id=_id("compare_box")):
                with gr.Row():
                    compare_prompts = gr.Textbox(
                        label="Prompts (one per line)", lines=2, elem_id=_id("compare_prompts")
                    )
                    compare_seeds = gr.Textbox(label="Seeds", value="1, 2, 3, 4", elem_id=_id("compare_seeds"))
                    compare_weight = gr.Slider(
                        label="LoRA weight", minimum=-2, maximum=2, step=0.05, value=1.0, elem_id=_id("compare_weight")
                    )
                compare = gr.Button("Make the before/after grid", elem_id=_id("compare"))
                compare_message = gr.Markdown(elem_id=_id("compare_message"))
                grid = gr.Image(  # no label badge: it would cover the grid's own title
                    label="Before / after", show_label=False, type="pil", interactive=False, elem_id=_id("grid")
                )
            ab_compare_view.build(ctx)
            with gr.Accordion("All jobs", open=True):
                table = gr.HTML(view.jobs_table_html(statuses), elem_id=_id("jobs"))
            with gr.Accordion("Trained LoRAs", open=True):
                loras = gr.HTML(view.lora_cards_html(statuses), elem_id=_id("loras"))
            seen = gr.State({})

    advanced_names = list(advanced)
    advanced_components = [advanced[n] for n in advanced_names]

    # ------------------------------------------------------------------ new-job events
    def on_method(title: str) -> list[Any]:
        m = view.method_from_title(title)
        updates = [
            view.METHOD_HINTS.get(m, ""),
            gr.update(visible=m in data_method_set),
            gr.update(visible=m not in data_method_set),
            gr.update(visible=m in data_method_set, value=""),  # a report is about one method's reading of the data
        ]
        updates += [gr.update(visible=key == m) for key in method_boxes]
        return updates

    method.change(
        on_method, inputs=[method], outputs=[method_hint, data_box, reward_box, report, *method_boxes.values()]
    )

    def on_estimate(title: str, step_count: Any) -> str:
        """The time the chosen steps should take, from the speed of earlier jobs here."""
        return view.time_estimate(runner.list(), step_count, view.method_from_title(title), _safe(ctx.model_source) or "")

    steps.change(on_estimate, inputs=[method, steps], outputs=[estimate], show_progress="hidden")
    method.change(on_estimate, inputs=[method, steps], outputs=[estimate], show_progress="hidden")

    def on_source(choice: str) -> list[Any]:
        return [
            gr.update(visible=choice not in (SOURCE_REFINE, SOURCE_PREFS)),
            gr.update(visible=choice == SOURCE_UPLOAD),
            gr.update(visible=choice != SOURCE_UPLOAD),  # an upload is checked as it arrives
            "",  # the old source's report does not describe the new one
            gr.update(visible=choice == SOURCE_PREFS),
        ]

    source.change(on_source, inputs=[source], outputs=[dataset_path, upload, check, report, prefs.box])

    def on_prefs_counts(title: str, choice: str, *filters: Any) -> Any:
        """The counts My preferences gives the chosen method (pairs, labels or rankings), before Start."""
        if choice != SOURCE_PREFS:
            return gr.update()
        return pref_view.counts_text(ctx, view.method_from_title(title), *filters)

    counts_event = {"fn": on_prefs_counts, "inputs": [method, source, *prefs.inputs], "outputs": [prefs.counts]}
    for trigger in (source.change, method.change, prefs.sources.change, prefs.refresh.click):
        trigger(**counts_event)
    for box in (prefs.checkpoint, prefs.prompt, prefs.since, prefs.until):
        box.submit(**counts_event)
        box.blur(**counts_event)

    def dataset_value(choice: str, path: str, *filters: Any) -> str:
        if choice == SOURCE_PREFS:
            return pref_view.spec(*filters)
        return RANK_REFINE if choice == SOURCE_REFINE else (path or "").strip()

    def on_check(
        title: str, choice: str, path: str, f_sources: Any, f_checkpoint: str, f_prompt: str, f_since: str, f_until: str,
        skip: bool, *values: Any,
    ) -> str:
        filters = (f_sources, f_checkpoint, f_prompt, f_since, f_until)
        m = view.method_from_title(title)
        options: dict[str, Any] = {"skip_bad_rows": bool(skip)}
        try:
            for key, value in zip(advanced_names, values):
                if key in ("tie_policy", "min_per_class"):
                    send, converted = _option_value(key, fields[key], value)
                    if send:
                        options[key] = converted
            return runner.check_dataset(dataset_value(choice, path, *filters), m, options).format_text()
        except (RequestError, ValueError, OSError) as error:  # a message in the box, not a traceback in the console
            return f"Not checked: {error}"

    check.click(
        on_check, inputs=[method, source, dataset_path, *prefs.inputs, skip_bad_rows, *advanced_components], outputs=[report]
    )

    def on_upload(value: Any, title: str, skip: bool) -> list[Any]:
        path = file_path(value)
        if not path:
            return [gr.update(), ""]
        try:
            staged = stage_upload(path, runner.root)
            report_text = runner.check_dataset(
                str(staged), view.method_from_title(title), {"skip_bad_rows": bool(skip)}
            ).format_text()
        except DatasetError as error:
            return [gr.update(), error.report.format_text()]
        except (ValueError, OSError) as error:
            return [gr.update(), f"Not checked: {error}"]
        return [str(staged), report_text]

    upload.upload(on_upload, inputs=[upload, method, skip_bad_rows], outputs=[dataset_path, report])

    def on_preset(label: str) -> list[Any]:
        key = preset_labels.get(label)
        options = preset_options(key, set(fields))
        start_with = preset_start(key)
        updates = [gr.update(value=options[n]) if n in options else gr.update() for n in advanced_names]
        return [
            *updates,
            gr.update(value=start_with["max_train_steps"]) if "max_train_steps" in start_with else gr.update(),
            gr.update(value=start_with["learning_rate"]) if "learning_rate" in start_with else gr.update(),
        ]

    preset.change(on_preset, inputs=[preset], outputs=[*advanced_components, steps, learning_rate])

    # The job this tab started last: a poll answer that left before Start's answer came back carries the old
    # job's label and would put the page back on it; the page follows the new job until the user picks one.
    started: dict[str, Any] = {"job": None, "at": 0.0}

    def on_start(
        title: str,
        choice: str,
        path: str,
        f_sources: Any,
        f_checkpoint: str,
        f_prompt: str,
        f_since: str,
        f_until: str,
        skip: bool,
        reward_value: str,
        prompt_text: str,
        preset_label: str,
        step_count: Any,
        lr: Any,
        other_text: str,
        output_name: str,
        unload_model: bool,
        *values: Any,
    ) -> list[Any]:
        m = view.method_from_title(title)
        try:
            options: dict[str, Any] = start_numbers(step_count, lr)
            relevant = (set(ADVANCED) | set(specific.get(m, []))) - (set() if m in data_method_set else set(DATA_ONLY))
            for key, value in zip(advanced_names, values):
                if key in relevant:
                    send, converted = _option_value(key, fields[key], value)
                    if send:
                        options[key] = converted
            options.update(view.parse_option_lines(other_text))
            request = JobRequest(
                method=m,
                name=(output_name or "").strip(),
                dataset=dataset_value(choice, path, f_sources, f_checkpoint, f_prompt, f_since, f_until) if m in data_method_set else "",
                reward=(reward_value or None) if m not in data_method_set else None,
                prompts=(prompt_text or None) if m not in data_method_set else None,
                options=options,
                preset=None,  # the preset's values are already in the advanced settings the user saw
                skip_bad_rows=bool(skip) if m in data_method_set else None,
                unload_webui_model=bool(unload_model),
            )
            if not request.name:
                raise RequestError("name: give the LoRA a name", "name")
            status = runner.start(request)
            started.update(job=status.id, at=time.time())
        except DatasetError as error:
            return [
                "**Not started:** the dataset has problems (see the report).",
                error.report.format_text(),
                gr.update(),
            ]
        except (RequestError, JobBusy, JobConflict, ValueError) as error:
            return [f"**Not started:** {error}", gr.update(), gr.update()]
        dataset_record = _record(runner, status.id).get("dataset", {})
        checked = dataset_record.get("report")
        label = view.job_label(status)
        trains_on = f" {dataset_record['summary']}." if dataset_record.get("summary") else ""  # My preferences' counts
        return [
            f"Started **{status.name}** ({status.id}).{trains_on}",
            checked or gr.update(),
            gr.update(choices=[view.job_label(s) for s in runner.list()], value=label),
        ]

    start.click(
        on_start,
        inputs=[
            method,
            source,
            dataset_path,
            *prefs.inputs,
            skip_bad_rows,
            reward,
            prompts,
            preset,
            steps,
            learning_rate,
            other,
            name,
            unload,
            *advanced_components,
        ],
        outputs=[start_message, report, job],
    )

    # ------------------------------------------------------------------ watching jobs
    detail_outputs = [
        job, progress, warning, cancel, resume, plot, samples, log, table, loras, compare_prompts,
        action_message, compare_message, grid, seen,
    ]  # fmt: skip

    def render(label: str | None, state: dict[str, Any] | None, force: bool = False) -> list[Any]:
        """Everything on the right, sending only what changed since this page last saw it."""
        state = dict(state or {})
        all_statuses = runner.list()
        by_id = {s.id: s for s in all_statuses}
        job_id = view.job_id_of(label)
        if started["job"] in by_id and job_id != started["job"] and state.get("chosen_at", 0.0) < started["at"]:
            job_id = started["job"]
        if job_id not in by_id:
            active = next((s for s in all_statuses if s.active), None)
            job_id = (active or (all_statuses[0] if all_statuses else None)).id if all_statuses else None
        status = by_id.get(job_id) if job_id else None
        labels = [view.job_label(s) for s in all_statuses]
        current = view.job_label(status) if status else None
        out: list[Any] = []
        if force or labels != state.get("labels") or current != label:
            out.append(gr.update(choices=labels, value=current))
            state["labels"] = labels
        else:
            out.append(gr.update())
        key = (
            job_id,
            status.version if status else None,
            status.step if status else None,
            status.state if status else None,
        )
        changed = force or key != state.get("job_key")
        state["job_key"] = key
        out.append(view.progress_html(status) if changed else gr.update())
        active = next((s for s in all_statuses if s.active), None)
        record = _record(runner, active.id) if active else {}
        out.append(
            view.memory_warning(
                gpu_memory_gb() if active else None,
                _safe(host.model_on_gpu),
                active is not None,
                ctx.in_webui,
                bool(record.get("unloaded_webui_model")),
            )
        )
        if changed:
            out.append(
                gr.update(
                    interactive=bool(status and status.active),
                    value="Force stop" if status and status.state == "cancelling" else "Cancel",
                )
            )
            out.append(gr.update(interactive=bool(status and status.resumable)))
            out.append(_plot(runner, status))
            out.append(_sample_images(status))
        else:
            out += [gr.update()] * 4
        log_text = runner.log(job_id, 30) if job_id else ""
        out.append(log_text if force or log_text != state.get("log") else gr.update())
        state["log"] = log_text
        table_key = tuple((s.id, s.state, s.step) for s in all_statuses)
        out.append(view.jobs_table_html(all_statuses) if force or table_key != state.get("table") else gr.update())
        state["table"] = list(table_key)
        lora_key = view.lora_signature(all_statuses)
        out.append(view.lora_cards_html(all_statuses) if force or list(lora_key) != state.get("loras") else gr.update())
        state["loras"] = [list(k) for k in lora_key]
        job_switched = force or job_id != state.get("compare_job")
        if job_switched:
            out.append("\n".join(view.default_compare_prompts(_record(runner, job_id))) if job_id else "")
            state["compare_job"] = job_id
        else:
            out.append(gr.update())
        # a message about the job ("Cancelling…", "Resumed") holds until its state moves on
        settled = changed and not (status is not None and status.state == "cancelling")
        out.append("" if settled else gr.update())
        # another job's before/after grid does not stay under this one
        out += ["", None] if job_switched and state.get("grid_job") not in (None, job_id) else [gr.update(), gr.update()]
        if job_switched:
            state["grid_job"] = job_id
        out.append(state)
        return out

    def on_tick(label: str | None, state: dict[str, Any] | None) -> list[Any]:
        return render(label, state)

    def on_select(label: str | None, state: dict[str, Any] | None) -> list[Any]:
        return render(label, {**(state or {}), "job_key": None, "compare_job": None, "chosen_at": time.time()})

    def on_refresh(label: str | None, state: dict[str, Any] | None) -> list[Any]:
        _safe(host.refresh_loras)
        return render(label, state, force=True)

    poll(POLL_SECONDS, on_tick, inputs=[job, seen], outputs=detail_outputs)
    job.input(
        on_select, inputs=[job, seen], outputs=detail_outputs
    )  # the user's choice; the poll's updates do not fire it
    refresh.click(on_refresh, inputs=[job, seen], outputs=detail_outputs)

    def on_cancel(label: str | None) -> str:
        job_id = view.job_id_of(label)
        if not job_id:
            return "Select a job first."
        try:
            status = runner.status(job_id)
            force = status.state == "cancelling"
            runner.cancel(job_id, force=force)
        except (JobNotFound, JobConflict) as error:
            return str(error)
        if force:
            return "Stopped the trainer process at once; resume continues from its last checkpoint."
        return "Cancelling: the trainer saves a checkpoint and the LoRA so far after the current step."

    cancel.click(on_cancel, inputs=[job], outputs=[action_message])

    def on_resume(label: str | None) -> str:
        job_id = view.job_id_of(label)
        if not job_id:
            return "Select a job first."
        try:
            status = runner.resume(job_id)
        except (JobNotFound, JobConflict, JobBusy, RequestError) as error:
            return f"**Not resumed:** {error}"
        return f"Resumed **{status.name}**."

    resume.click(on_resume, inputs=[job], outputs=[action_message])

    def on_reload_model() -> str:
        if host.reload_model is None:
            return ""
        try:
            host.reload_model()
        except Exception as error:  # noqa: BLE001 - report, do not crash the page
            return f"Could not load the model back: {error}"
        return "The WebUI's model is loaded again."

    reload_model.click(on_reload_model, inputs=[], outputs=[action_message])

    def on_compare(label: str | None, prompt_text: str, seed_text: str, weight: float) -> list[Any]:
        from ..jobs.compare import before_after_images, grid_image, save_grid

        job_id = view.job_id_of(label)
        if not job_id:
            return ["Select a job first.", gr.update()]
        try:
            status = runner.status(job_id)
            lora = status.outputs.get("lora")
            if not lora or not Path(lora).is_file():
                return [
                    f"Job {status.name} has no LoRA file yet (it is {view.STATE_TITLES.get(status.state, status.state).lower()}).",
                    gr.update(),
                ]
            seeds = view.parse_seeds(seed_text)
            prompt_list = [p for p in (prompt_text or "").splitlines() if p.strip()]
            before, after = before_after_images(
                ctx.backend(), Path(lora), Path(lora).stem, prompt_list, seeds, ctx.in_webui, weight=float(weight)
            )
            image = grid_image(
                before,
                after,
                prompt_list,
                seeds,
                title=f"{status.name}: without and with <lora:{Path(lora).stem}:{float(weight):g}>",
            )
            path = save_grid(image, runner.folder(job_id) / "compare")
        except (ValueError, OSError, RuntimeError, JobNotFound) as error:
            return [f"**No grid:** {error}", gr.update()]
        return [f"Saved `{path}`.", image]

    compare.click(
        on_compare, inputs=[job, compare_prompts, compare_seeds, compare_weight], outputs=[compare_message, grid]
    )


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except Exception:  # noqa: BLE001 - host probes must not break the page
        return None


def _record(runner: Any, job_id: str | None) -> dict[str, Any]:
    if not job_id:
        return {}
    try:
        return runner.record(job_id)
    except JobNotFound:
        return {}


def _model_text(ctx: AppContext) -> str:
    try:
        source = ctx.model_source()
    except Exception as error:  # noqa: BLE001 - e.g. no checkpoint loaded in the WebUI
        return f"none ({error})"
    shown = Path(source).name if ("/" in source or "\\" in source) else source
    return f"`{shown}`"


def _plot(runner: Any, status: Any) -> Any:
    if status is None:
        return None
    """Loss, then every health curve the run has (held-out accuracy, margin, drift, gradient norm...)."""
    summary = runner.summary(status.id)
    names = ["loss", *summary.health_keys()]
    reward_key = summary.reward_key()
    if reward_key and reward_key not in names:
        names.insert(1, reward_key)
    return render_health(summary.series, names, total=status.total)


def _sample_images(status: Any, limit: int = 8) -> list[Any]:
    """The newest preview images, newest first, with their step as caption."""
    if status is None:
        return []
    from PIL import Image

    out = []
    for path in reversed(status.samples[-limit:]):
        try:
            with Image.open(path) as image:
                image.load()
                out.append((image.copy(), Path(path).stem))
        except OSError:
            continue
    return out
