"""install.py's work inside a WebUI: ask what is installed, install the plan through the WebUI's own pip.

Kept apart from install_plan (pure) because it has side effects; kept inside lib_alignment so tests can
call it with fakes. Imports nothing heavy: it runs before diffusers or peft exist in the environment.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import tempfile
from typing import Callable

from .install_plan import PACKAGES, Plan, pins_of_present, pip_arguments, plan_installs

_TAG = "[lib_alignment]"


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"  # importable but without metadata: present, version unknown


def present_versions(is_installed: Callable[[str], bool]) -> dict[str, str | None]:
    """Distribution name -> version for the packages we manage; None where the WebUI says it is missing."""
    return {p.name: (_version(p.name) if is_installed(p.module) else None) for p in PACKAGES}


def all_distributions() -> dict[str, str]:
    """Every installed distribution and its version, the first one on sys.path winning (as import does)."""
    versions: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name and name not in versions:
            versions[name] = dist.version
    return versions


def run(
    is_installed: Callable[[str], bool],
    run_pip: Callable[..., object],
    log: Callable[[str], None] = print,
) -> Plan:
    """Install what is missing; say what was done; say nothing when nothing was missing."""
    plan = plan_installs(present_versions(is_installed))
    for note in plan.notes:
        log(f"{_TAG} {note}")
    if plan.empty:
        return plan
    for item in plan.installs:
        log(f"{_TAG} {item.name} is missing: installing {item.requirement} ({item.why})")
    wanted = ", ".join(item.requirement for item in plan.installs)
    with tempfile.TemporaryDirectory(prefix="lib_alignment_") as folder:
        pins = os.path.join(folder, "present.txt")
        with open(pins, "w", encoding="utf-8") as handle:
            handle.write(pins_of_present(all_distributions(), exclude=[i.name for i in plan.installs]))
        try:
            run_pip(pip_arguments(plan, pins), f"lib_alignment requirements: {wanted}")
        except RuntimeError as exc:
            log(
                f"{_TAG} pip could not install {wanted} without changing a package this WebUI already has "
                f"(every present package was held at its version). Nothing was changed. pip said:\n{exc}"
            )
            raise SystemExit(1) from exc
    importlib.invalidate_caches()
    missing = [item.name for item in plan.installs if not is_installed(_module_of(item.name))]
    if missing:
        log(f"{_TAG} still missing: {', '.join(missing)} (does the WebUI run with --skip-install?)")
    else:
        log(f"{_TAG} installed {wanted}")
    return plan


def _module_of(name: str) -> str:
    return next(p.module for p in PACKAGES if p.name == name)
