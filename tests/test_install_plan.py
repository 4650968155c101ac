"""install.py's choices, resolved against the hosts' pins and the stacks CI builds.

The environments come from constraints/: each host stack's lock (the `pip list` of the stack
tools/make_venv.sh built) less what our install.py added there; its versions are checked against the
WebUI's pins first, so a stale lock cannot make these tests pass on numbers the host does not have.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import itertools
import os
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from lib_alignment.install_plan import PACKAGES, normalize, pins_of_present, pip_arguments, plan_installs

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints"
PIN_FILES = {"a1111": "a1111-v1.10.1.txt", "forge": "forge.txt", "current": "current.txt"}
MANAGED = [p.name for p in PACKAGES]
CONDITIONED = {normalize(name) for p in PACKAGES for c in p.choices for name in c.when}


def read_pins(stack: str) -> tuple[dict[str, Requirement], set[str]]:
    """The stack's constraint lines by name, and the names marked '# install.py' (what install.py adds)."""
    pins, picks = {}, set()
    for raw in (CONSTRAINTS / PIN_FILES[stack]).read_text(encoding="utf-8").splitlines():
        text, _, comment = raw.partition("#")
        if text.strip():
            requirement = Requirement(text.strip())
            pins[normalize(requirement.name)] = requirement
            if comment.strip() == "install.py":
                picks.add(normalize(requirement.name))
    return pins, picks


def read_lock(stack: str) -> dict[str, str]:
    lines = (CONSTRAINTS / "locks" / f"{stack}.txt").read_text(encoding="utf-8").splitlines()
    return {normalize(line.split("==")[0]): line.split("==")[1] for line in lines if "==" in line}


def host_environment(stack: str) -> dict[str, str]:
    """The stack as the WebUI leaves it, before our install.py ran."""
    pins, picks = read_pins(stack)
    lock = read_lock(stack)
    for name, requirement in pins.items():
        if name in lock:
            assert requirement.specifier.contains(Version(lock[name])), f"lock {stack}: {name} {lock[name]}"
    return {name: version for name, version in lock.items() if name not in picks}


def chosen(plan) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {item.name: item.spec for item in plan.installs}


def test_a1111_gets_the_marked_diffusers_and_peft_and_nothing_the_webui_pins():
    pins, picks = read_pins("a1111")
    plan = plan_installs(host_environment("a1111"))
    assert chosen(plan) == {name: str(pins[name].specifier) for name in picks}
    assert chosen(plan) == {"diffusers": "==0.30.3", "peft": "==0.12.0"}
    assert plan.notes == []


def test_forge_already_has_everything():
    plan = plan_installs(host_environment("forge"))
    assert plan.empty and plan.notes == []


def test_a1111_installed_today_gets_a_diffusers_that_imports_with_its_newer_hub():
    # huggingface-hub is unpinned in A1111; a fresh install resolves it to the newest 0.x, which lacks
    # cached_download. diffusers 0.31.0 with peft 0.12.0 passed our generation and export tests there.
    env = host_environment("a1111") | {"huggingface-hub": "0.36.2"}
    assert chosen(plan_installs(env)) == {"diffusers": "==0.31.0", "peft": "==0.12.0"}


def test_current_releases_get_specs_that_admit_what_that_stack_runs():
    lock = read_lock("current")
    plan = plan_installs({k: v for k, v in lock.items() if k not in ("diffusers", "peft")})
    assert set(chosen(plan)) == {"diffusers", "peft"}
    for item in plan.installs:
        assert Requirement(item.requirement).specifier.contains(Version(lock[item.name])), item


@pytest.mark.parametrize("stack", ["a1111", "forge", "current"])
def test_a_partial_environment_gets_exactly_its_missing_packages(stack):
    full = read_lock(stack)
    alone = chosen(plan_installs({k: v for k, v in full.items() if k not in ("diffusers", "peft")}))
    for missing in itertools.chain(itertools.combinations(MANAGED, 1), itertools.combinations(MANAGED, 2)):
        plan = plan_installs({k: v for k, v in full.items() if k not in missing})
        assert set(chosen(plan)) == set(missing), missing
        if not set(missing) & CONDITIONED:  # each is chosen from what is present, not from the other
            for name in {"diffusers", "peft"} & set(missing):
                assert chosen(plan)[name] == alone[name]


def test_present_packages_are_never_touched_whatever_their_version():
    env = host_environment("a1111") | {"diffusers": "0.20.0", "peft": "not-a-version"}
    plan = plan_installs(env)
    assert plan.empty
    assert len(plan.notes) == 1 and "diffusers 0.20.0" in plan.notes[0] and "left as it is" in plan.notes[0]


def test_a_missing_or_unparsable_dependency_leaves_the_choice_to_pip():
    plan = plan_installs({"huggingface-hub": "garbage", "transformers": "4.30.2", "accelerate": "0.21.0"})
    assert chosen(plan)["diffusers"] == ">=0.30.3"  # every tested diffusers needs a known hub
    assert chosen(plan)["peft"] == "==0.12.0"  # peft's choice does not look at the hub
    empty = plan_installs({})
    assert chosen(empty) == {p.name: p.fallback for p in PACKAGES}


def test_requirements_txt_lower_bounds_are_the_plans_minimums():
    bounds = {}
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            bounds[normalize(requirement.name)] = str(requirement.specifier)
    for package in PACKAGES:
        assert bounds.get(package.name) == package.fallback, package.name


def test_pins_hold_every_present_distribution_except_what_is_installed():
    text = pins_of_present(
        {"Pillow": "9.5.0", "pillow": "10.0.0", "torch": "2.13.0+cpu", "odd_pkg": "2022.1", "bad": "x y", "peft": "0.1"},
        exclude=["PEFT"],
    )
    assert text.splitlines() == ["odd-pkg==2022.1", "pillow==9.5.0", "torch==2.13.0+cpu"]


def test_pip_arguments_survive_the_shell_run_pip_uses():
    plan = plan_installs({})
    args = shlex.split(pip_arguments(plan, "/tmp/a folder/present.txt"))
    assert args[0] == "install" and args[-2:] == ["-c", "/tmp/a folder/present.txt"]
    assert args[1:-2] == [item.requirement for item in plan.installs]


# install.py itself, run the way the WebUI runs it, against the fake `launch` in tests/fake_webui.


def _simulate(monkeypatch, launch, env: dict[str, str]) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    """Make `launch` and importlib.metadata see `env`; return the pip calls install.py makes."""
    launch.installed = {p.module: env.get(p.name) for p in PACKAGES}
    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: env.get(normalize(name)) or real_version(name))
    calls = []

    def run_pip(command, desc=None, live=False):  # type: ignore[no-untyped-def]
        path = shlex.split(command)[-1]
        calls.append((command, desc, Path(path).read_text(encoding="utf-8")))
        for package in PACKAGES:  # what pip would have done
            if f'"{package.name}' in command:
                launch.installed[package.module] = "new"
        return ""

    monkeypatch.setattr(launch, "run_pip", run_pip)
    return calls


def test_install_py_installs_the_plan_in_one_pip_call_holding_everything_present(fake_webui, monkeypatch, capsys):
    import launch

    calls = _simulate(monkeypatch, launch, host_environment("a1111"))
    runpy.run_path(str(ROOT / "install.py"), run_name="__main__")
    assert len(calls) == 1
    command, desc, pins = calls[0]
    args = shlex.split(command)
    assert args[:3] == ["install", "diffusers==0.30.3", "peft==0.12.0"] and args[3] == "-c"
    assert not os.path.exists(args[4])  # the pin file is temporary
    held = dict(line.split("==") for line in pins.splitlines())
    assert held["torch"] == importlib.metadata.distribution("torch").version
    assert "diffusers" not in held and "peft" not in held
    out = capsys.readouterr().out
    assert "installing diffusers==0.30.3" in out and "installed diffusers==0.30.3, peft==0.12.0" in out
    assert "diffusers==0.30.3" in desc


def test_install_py_is_silent_and_idle_when_everything_is_there(fake_webui, monkeypatch, capsys):
    import launch

    calls = _simulate(monkeypatch, launch, host_environment("forge"))
    runpy.run_path(str(ROOT / "install.py"), run_name="__main__")
    assert calls == []
    assert capsys.readouterr().out == ""


def test_install_py_says_nothing_changed_when_pip_refuses(fake_webui, monkeypatch, capsys):
    import launch

    _simulate(monkeypatch, launch, host_environment("a1111"))

    def refuse(command, desc=None, live=False):  # type: ignore[no-untyped-def]
        raise RuntimeError("Couldn't install ... ResolutionImpossible")

    monkeypatch.setattr(launch, "run_pip", refuse)
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(ROOT / "install.py"), run_name="__main__")
    assert stop.value.code == 1
    out = capsys.readouterr().out
    assert "Nothing was changed" in out and "ResolutionImpossible" in out


def test_install_py_runs_in_a_fresh_interpreter_without_importing_heavy_packages():
    # The WebUI runs install.py as a script with its root on PYTHONPATH, before diffusers may exist.
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__'); "
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests" / "fake_webui"))
    result = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "install.py")],
        cwd=ROOT / "tests", env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    loaded = set(eval(result.stdout.strip().splitlines()[-1]))  # noqa: S307 - our own print
    assert "lib_alignment" in loaded
    assert not loaded & {"torch", "diffusers", "peft", "transformers", "gradio", "numpy", "PIL"}


SHARED_PINS = ROOT.parent / "shared" / "host-pins"


@pytest.mark.skipif(not SHARED_PINS.is_dir(), reason="../shared/host-pins is not beside the checkout")
@pytest.mark.parametrize("stack", ["a1111", "forge"])
def test_constraints_carry_every_host_pin_unchanged(stack):
    ours, _ = read_pins(stack)
    theirs = (SHARED_PINS / PIN_FILES[stack]).read_text(encoding="utf-8").splitlines()
    pins = [Requirement(line.partition("#")[0]) for line in theirs if line.partition("#")[0].strip()]
    assert pins
    for requirement in pins:
        assert str(ours[normalize(requirement.name)].specifier) == str(requirement.specifier), requirement
