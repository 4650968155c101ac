"""The two helpers of the WebUI's `launch` module that install.py calls, for building the host stacks.

Same contract as A1111 v1.10.1 / Forge: is_installed(package) finds an importable module;
run_pip(command, desc=None, live=...) runs `python -m pip <command> --prefer-binary` and raises
RuntimeError when pip fails. tools/make_venv.sh puts this folder on PYTHONPATH to run install.py.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys


def is_installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except ModuleNotFoundError:
        return False


def run_pip(command: str, desc: str | None = None, live: bool = False) -> str:
    if desc is not None:
        print(f"Installing {desc}", flush=True)
    line = f'"{sys.executable}" -m pip {command} --prefer-binary'
    result = subprocess.run(line, shell=True, text=True, capture_output=not live)
    if result.returncode != 0:
        raise RuntimeError(
            f"Couldn't install {desc}.\nCommand: {line}\nError code: {result.returncode}\n"
            f"stdout: {result.stdout or ''}\nstderr: {result.stderr or ''}"
        )
    return result.stdout or ""
