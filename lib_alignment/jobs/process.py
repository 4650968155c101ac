"""Starting the trainer as its own process and telling, later, whether it still runs.

A job outlives the WebUI process that started it (its own session / process
group, output to a log file), so a restarted WebUI finds it by pid. A pid alone
can be reused after the process ends; on Linux the process's start time from
/proc identifies it, elsewhere the pid check is all there is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def process_token(pid: int) -> str | None:
    """Something that tells this process apart from a later one with the same pid (Linux: its start time)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ")"
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _windows_alive(pid: int) -> bool:  # pragma: no cover - Windows only
    import ctypes

    process_query_limited_information = 0x1000
    still_active = 259
    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(process_query_limited_information, False, pid)
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return False
        return code.value == still_active
    finally:
        kernel32.CloseHandle(handle)


def pid_alive(pid: int | None, token: str | None = None) -> bool:
    """True if process `pid` runs and, where a token was recorded, is the same process."""
    if not pid or pid <= 0:
        return False
    if sys.platform == "win32":  # pragma: no cover
        return _windows_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            state = stat.read_text(encoding="ascii", errors="replace")
        except OSError:
            return False
        if state[state.rfind(")") + 2 :].startswith("Z"):  # a zombie has ended
            return False
    if token is not None:
        current = process_token(pid)
        if current is not None and current != token:
            return False
    return True


def spawn(argv: Sequence[str], cwd: Path, env: Mapping[str, str], log_path: Path) -> subprocess.Popen:
    """Start argv detached from the caller's terminal signals, stdout and stderr appended to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if sys.platform == "win32":  # pragma: no cover
        kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    else:
        kwargs["start_new_session"] = True  # Ctrl-C in the WebUI's terminal does not reach the job
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            cwd=str(cwd),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            **kwargs,
        )


def terminate(pid: int, kill: bool = False) -> None:
    """SIGTERM (the trainer saves and stops) or SIGKILL; on Windows both end the process at once."""
    if sys.platform == "win32":  # pragma: no cover
        subprocess.run(["taskkill", "/PID", str(pid), "/T", "/F"], capture_output=True, check=False)
        return
    try:
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
