"""Check a built host stack: the WebUI's versions survived our installs and every pin holds.

    python tools/check_stack.py --pins constraints/forge.txt --before host-freeze.txt --after freeze.txt

--before is `pip list --format=freeze` after the WebUI's own packages went in, --after the same at the
end. Exit 1, listing every problem, when a version present before changed, a pinned package is at
another version, a package the WebUI pins and we import is missing, or a line marked "# install.py"
(what our install.py should have added) is not installed.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

# Packages we import whose pinned versions are the point of the host stacks.
IMPORTED = {
    "gradio", "fastapi", "httpx", "transformers", "accelerate", "safetensors", "numpy", "pillow",
    "diffusers", "peft", "huggingface-hub", "pydantic", "torch", "tqdm",
}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_freeze(path: Path) -> dict[str, str]:
    versions = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "==" in line:
            name, version = line.strip().split("==", 1)
            versions[normalize(name)] = version
    return versions


def read_pins(path: Path) -> list[tuple[Requirement, bool, int]]:
    pins = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text, _, comment = raw.partition("#")
        if text.strip():
            pins.append((Requirement(text.strip()), comment.strip() == "install.py", number))
    return pins


def problems(pins_file: Path, before: dict[str, str], after: dict[str, str]) -> list[str]:
    found = []
    for name, version in sorted(before.items()):
        if after.get(name) != version:
            found.append(f"{name} was {version} before our installs, now {after.get(name, 'missing')}")
    for requirement, by_install_py, number in read_pins(pins_file):
        name = normalize(requirement.name)
        where = f"{pins_file.name}:{number} ({requirement})"
        installed = after.get(name)
        if installed is None:
            if by_install_py:
                found.append(f"{where}: install.py should have installed {name}; it is missing")
            elif name in IMPORTED:
                found.append(f"{where}: the WebUI has {name} and we import it, but it is not installed")
        elif not requirement.specifier.contains(Version(installed), prereleases=True):
            found.append(f"{where}: {name} is {installed}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pins", type=Path, required=True)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    args = parser.parse_args()
    before, after = read_freeze(args.before), read_freeze(args.after)
    found = problems(args.pins, before, after)
    for line in found:
        print(f"check_stack: {line}", file=sys.stderr)
    if not found:
        print(f"check_stack: {len(read_pins(args.pins))} pins hold; all {len(before)} WebUI versions unchanged")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
