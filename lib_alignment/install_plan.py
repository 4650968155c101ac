"""Decide what install.py adds to a WebUI's Python environment, without touching it.

A WebUI pins its own packages (A1111 v1.10.1: transformers 4.30.2, Pillow 9.5.0, ...); an extension that
upgrades one of them breaks the WebUI. So the plan installs only packages that are missing, and for the
two that the WebUIs do not agree on (diffusers, peft) it picks a release known to work with the versions
already present: pip's metadata alone would allow diffusers 0.30.3 with huggingface-hub 0.26+, which
cannot import it. Every other version choice is left to pip, constrained to the present versions.

Pure logic (no pip, no WebUI, no import of the packages themselves) so that tests can resolve it against
the hosts' pin lists in constraints/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

try:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version
except ImportError:  # a bare environment: pip always carries a copy
    from pip._vendor.packaging.specifiers import InvalidSpecifier, SpecifierSet  # type: ignore[no-redef]
    from pip._vendor.packaging.version import InvalidVersion, Version  # type: ignore[no-redef]


def normalize(name: str) -> str:
    """PEP 503 name, so 'Pillow', 'pillow' and 'huggingface_hub' match their pins."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Choice:
    """Install `name + spec` when every present package named in `when` satisfies its specifier."""

    spec: str
    when: Mapping[str, str]
    why: str


@dataclass(frozen=True)
class Package:
    """A package lib_alignment imports, as install.py sees it."""

    name: str  # distribution name, for pip and importlib.metadata
    module: str  # import name, for launch.is_installed
    minimum: str  # lower bound; also requirements.txt's
    choices: tuple[Choice, ...] = ()

    @property
    def fallback(self) -> str:
        return f">={self.minimum}"


_A1111 = "tested in the A1111 v1.10.1 stack (transformers 4.30.2, huggingface-hub < 0.26)"
_FORGE = "tested in the Forge stack (transformers 4.46.1)"
_CURRENT = "tested in the current-releases stack"

# Order matters twice: packages are planned in this order, and for each the first choice whose
# conditions hold wins. gradio and torch are absent on purpose: the WebUI owns them. pyarrow comes last:
# neither WebUI ships it and parquet data (Pick-a-Pic's shards) needs it; pyarrow 26+ refuses numpy 1.x.
PACKAGES: tuple[Package, ...] = (
    Package(
        "diffusers",
        "diffusers",
        "0.30.3",
        (
            Choice(">=0.42.1", {"huggingface-hub": ">=1.32", "safetensors": ">=0.8"}, _CURRENT),
            # diffusers <= 0.30 imports huggingface_hub.cached_download, removed in huggingface-hub 0.26.
            Choice("==0.30.3", {"huggingface-hub": ">=0.23.2,<0.26", "transformers": "<4.46"}, _A1111),
            # Also passed our generation and export tests with A1111's pins and huggingface-hub 0.36.
            Choice("==0.31.0", {"huggingface-hub": ">=0.23.2,<1"}, _FORGE),
        ),
    ),
    Package(
        "peft",
        "peft",
        "0.12.0",
        (
            Choice(">=0.21.2", {"transformers": ">=5", "huggingface-hub": ">=0.25"}, _CURRENT),
            Choice("==0.12.0", {"transformers": "<4.46", "accelerate": ">=0.21"}, _A1111),
            Choice("==0.13.2", {"transformers": ">=4.46,<5", "accelerate": ">=0.21"}, _FORGE),
        ),
    ),
    Package("transformers", "transformers", "4.30.2"),
    Package("accelerate", "accelerate", "0.21.0"),
    Package("safetensors", "safetensors", "0.4.2"),
    Package("huggingface-hub", "huggingface_hub", "0.23.2"),
    Package("numpy", "numpy", "1.26"),
    Package("pillow", "PIL", "9.5"),
    Package("tqdm", "tqdm", "4.64"),
    Package("pyarrow", "pyarrow", "14", (Choice("<26", {"numpy": "<2"}, "pyarrow 26+ refuses to import with numpy 1.x (A1111 and Forge pin numpy 1.26)"),)),
)


@dataclass(frozen=True)
class Install:
    """One package to install and why this version."""

    name: str
    spec: str
    why: str

    @property
    def requirement(self) -> str:
        return f"{self.name}{self.spec}"


@dataclass
class Plan:
    installs: list[Install] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # present packages older than we test with

    @property
    def empty(self) -> bool:
        return not self.installs


def _satisfies(version: str | None, spec: str) -> bool:
    if version is None:
        return False
    try:
        return SpecifierSet(spec).contains(Version(version), prereleases=True)
    except (InvalidVersion, InvalidSpecifier):
        return False  # an unparsable version proves nothing: fall through to pip's own choice


def _choose(package: Package, present: Mapping[str, str | None]) -> Install:
    for choice in package.choices:
        if all(_satisfies(present.get(normalize(dep)), spec) for dep, spec in choice.when.items()):
            return Install(package.name, choice.spec, choice.why)
    return Install(package.name, package.fallback, "no tested release matches this environment: pip picks one")


def plan_installs(present: Mapping[str, str | None]) -> Plan:
    """What to install given `present`: distribution name -> installed version, or None when missing.

    A name absent from the mapping counts as missing. A present package is never in the plan, whatever
    its version; one older than our minimum only earns a note.
    """
    versions = {normalize(name): version for name, version in present.items()}
    plan = Plan()
    for package in PACKAGES:
        version = versions.get(package.name)
        if version is None:
            plan.installs.append(_choose(package, versions))
        elif _satisfies(version, "<" + package.minimum):
            plan.notes.append(
                f"{package.name} {version} is older than the {package.minimum} lib_alignment is tested with; "
                "left as it is"
            )
    return plan


def pins_of_present(versions: Mapping[str, str], exclude: Iterable[str] = ()) -> str:
    """A pip constraints file that holds every present distribution at its version.

    Passed with the install command, it makes pip fail rather than up- or downgrade anything present.
    Distributions with versions pip cannot parse are left out (pip cannot pin them either).
    """
    skip = {normalize(name) for name in exclude}
    pins: dict[str, str] = {}
    for name, version in versions.items():
        key = normalize(name)
        if key in skip or key in pins:
            continue
        try:
            Version(version)
        except InvalidVersion:
            continue
        pins[key] = version
    lines = [f"{name}=={pins[name]}" for name in sorted(pins)]
    return "\n".join(lines) + "\n"


def pip_arguments(plan: Plan, constraints_path: str) -> str:
    """The part of a pip command after 'pip ', as launch.run_pip takes it (it runs through a shell)."""
    requirements = " ".join(f'"{item.requirement}"' for item in plan.installs)
    return f'install {requirements} -c "{constraints_path}"'
