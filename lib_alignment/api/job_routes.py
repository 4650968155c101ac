"""HTTP API of training jobs, under /alignment/v1 (the WebUI's API auth applies when set).

    POST /jobs               {"method", "dataset" (a path, or "@rank_refine") or "reward" and "prompts",
                              "name", "options": {trainer options in snake_case, e.g. max_train_steps},
                              "preset": "cpu"|"6gb"|"8gb"|"12gb"|"24gb" (optional), "model" (default:
                              the loaded checkpoint), "skip_bad_rows", "unload_webui_model"} → the job
    GET  /jobs               → {"jobs": [...]}, newest first
    GET  /jobs/{id}          → state, step, total, progress, eta_seconds, figures (last loss, reward
                              accuracy...), outputs (lora, metadata, preview, checkpoint), samples
                              (?log=N adds the last N lines of the trainer's log)
    POST /jobs/{id}/cancel   → the job (state "cancelling", then "cancelled" with a usable LoRA);
                              ?force=true ends the process at once
    POST /jobs/{id}/resume   {"options": {...}} (optional, non-structural) → the job
    POST /jobs/check         {"method", "dataset", "options"} → the dataset's validation report

States: queued, running, cancelling, finished, cancelled, error, interrupted. Errors: 400 a bad
field or option (detail names it), 422 a dataset with problems (detail.report lists every one,
as lib_alignment.training.data's ValidationReport.to_dict()), 404 unknown job, 409 another job
runs / the name is taken / nothing to cancel or resume.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, HTTPException, Query

from ..jobs import DatasetError, JobBusy, JobConflict, JobNotFound, JobRequest, RequestError, runner_for


def _error(error: Exception) -> HTTPException:
    if isinstance(error, DatasetError):
        return HTTPException(
            422,
            detail={
                "message": "the dataset has problems; nothing was started",
                "report": error.report.to_dict(),
                "text": error.report.format_text(),
            },
        )
    if isinstance(error, RequestError):
        return HTTPException(400, detail={"message": str(error), "field": error.field})
    if isinstance(error, JobNotFound):
        return HTTPException(404, detail={"message": str(error)})
    if isinstance(error, JobBusy):
        return HTTPException(409, detail={"message": str(error), "active_job": error.active})
    if isinstance(error, JobConflict):
        return HTTPException(409, detail={"message": str(error)})
    raise error


def _job(runner: Any, job_id: str, log: int = 0) -> dict[str, Any]:
    body = runner.status(job_id).to_dict()
    if log:
        body["log"] = runner.log(job_id, lines=log)
    return body


def jobs_router(ctx: Any) -> APIRouter:
    router = APIRouter()

    def runner() -> Any:
        return runner_for(ctx)

    @router.post("/jobs")
    def create_job(body: dict = Body(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI idiom
        try:
            status = runner().start(JobRequest.from_body(body))
        except (RequestError, DatasetError, JobBusy, JobConflict) as error:
            raise _error(error) from None
        return status.to_dict()

    @router.post("/jobs/check")
    def check_dataset(body: dict = Body(...)) -> dict[str, Any]:  # noqa: B008
        method = str(body.get("method", "")).lower()
        report = runner().check_dataset(str(body.get("dataset", "")), method, body.get("options") or {})
        return {"ok": not report.blocking, "report": report.to_dict(), "text": report.format_text()}

    @router.get("/jobs")
    def list_jobs() -> dict[str, Any]:
        return {"jobs": [status.to_dict() for status in runner().list()]}

    @router.get("/jobs/{job_id}")
    def get_job(job_id: str, log: int = Query(0, ge=0, le=1000)) -> dict[str, Any]:
        try:
            return _job(runner(), job_id, log)
        except JobNotFound as error:
            raise _error(error) from None

    @router.post("/jobs/{job_id}/cancel")
    def cancel_job(job_id: str, force: bool = False) -> dict[str, Any]:
        try:
            return runner().cancel(job_id, force=force).to_dict()
        except (JobNotFound, JobConflict) as error:
            raise _error(error) from None

    @router.post("/jobs/{job_id}/resume")
    def resume_job(job_id: str, body: dict = Body(default={})) -> dict[str, Any]:  # noqa: B008
        options = body.get("options") if isinstance(body, dict) else None
        if options is not None and not isinstance(options, dict):
            raise _error(RequestError("options: must be an object", "options"))
        try:
            return runner().resume(job_id, options).to_dict()
        except (JobNotFound, JobConflict, JobBusy, RequestError) as error:
            raise _error(error) from None

    return router
