"""Fixtures for the real-host suite: one started WebUI per kit and pytest session.

Without a built kit the tests skip with the reason. ALIGNMENT_REQUIRE_REAL_HOST=a1111[,forge] (set by
.ci/run when the kits are beside the checkout) turns that skip into a failure, so CI cannot pass
without having run them.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import API_PASSWORD, API_USER, KITS, OTHER_PASSWORD, OTHER_USER, LORA_PREFIX, RealHost, install_extension, installed_versions, kit_dir


def _required(kind: str) -> bool:
    return kind in {k.strip() for k in os.environ.get("ALIGNMENT_REQUIRE_REAL_HOST", "").split(",")}


def _kit_or_skip(kind: str) -> Path:
    folder = kit_dir(kind)
    problem = None
    if folder is None:
        problem = f"{KITS[kind].env_var} is not set (build ../shared/hosts/{kind}/build.sh DIR and point it at DIR)"
    elif not (folder / "start.sh").is_file() or not (folder / "webui").is_dir():
        problem = f"{folder} is not a built {kind} host kit (no start.sh or webui/)"
    if problem is None:
        return folder  # type: ignore[return-value]
    if _required(kind):
        pytest.fail(f"real {kind} host required by ALIGNMENT_REQUIRE_REAL_HOST but {problem}")
    pytest.skip(problem)


def _stop_trainers(alignment_dir: Path) -> None:
    """Trainer processes outlive the WebUI on purpose (own session); end the ones this session left."""
    import json

    for job in (alignment_dir / "jobs").glob("*/job.json"):
        for attempt in json.loads(job.read_text()).get("attempts", []):
            pid = attempt.get("pid")
            if pid and attempt.get("exit_code") is None:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError, ValueError):
                    pass


def _forget_earlier_runs(host: RealHost) -> None:
    """A kit reused between local runs keeps what the last run made; CI's kit is always fresh."""
    import shutil

    for path in host.lora_dir.glob(f"{LORA_PREFIX}*"):
        path.unlink()
    shutil.rmtree(host.alignment_dir, ignore_errors=True)


def _started(kind: str, extra_args: str) -> Iterator[RealHost]:
    folder = _kit_or_skip(kind)
    host = RealHost(KITS[kind], folder, extra_args=extra_args)
    _forget_earlier_runs(host)
    host.versions_before = installed_versions(host.python)  # type: ignore[attr-defined]
    install_extension(host.webui)
    try:
        host.first_start_seconds = host.start()  # type: ignore[attr-defined]
        yield host
    finally:
        host.stop()
        _stop_trainers(host.alignment_dir)


@pytest.fixture(scope="session")
def a1111_host() -> Iterator[RealHost]:
    """A1111 v1.10.1 with the extension, DEBUG logging (unmatched LoRA keys show) and --api-auth."""
    yield from _started("a1111", f"--loglevel DEBUG --api-auth {API_USER}:{API_PASSWORD},{OTHER_USER}:{OTHER_PASSWORD}")


@pytest.fixture(scope="session")
def forge_host() -> Iterator[RealHost]:
    """Forge with the extension and --api-auth."""
    yield from _started("forge", f"--api-auth {API_USER}:{API_PASSWORD}")
