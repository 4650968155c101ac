"""Training jobs for the "Alignment Training" tab and the /alignment/v1/jobs API.

The trainer runs as its own process (`python -m lib_alignment train ...` with
the host's Python), so the WebUI stays responsive and a crash in training
cannot take it down; progress comes from the trainer's events file. See
runner.py for the job folder and the states.

    runner = runner_for(ctx)                      # one per host context
    status = runner.start(JobRequest(method="dpo", name="my-lora", dataset="pairs.csv",
                                     preset="8gb", options={"max_train_steps": 500}))
    runner.status(status.id).step; runner.cancel(status.id); runner.resume(status.id)
"""

from __future__ import annotations

from .datasets import RANK_REFINE, DatasetError
from .request import JobRequest, RequestError
from .runner import ACTIVE, ENDED, RESUMABLE, JobBusy, JobConflict, JobNotFound, JobRunner, JobStatus, runner_for

__all__ = [
    "ACTIVE",
    "ENDED",
    "RANK_REFINE",
    "RESUMABLE",
    "DatasetError",
    "JobBusy",
    "JobConflict",
    "JobNotFound",
    "JobRequest",
    "JobRunner",
    "JobStatus",
    "RequestError",
    "runner_for",
]
