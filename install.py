"""Run by A1111 / Forge at start-up, with the WebUI's root on PYTHONPATH: add what lib_alignment lacks.

Installs only missing packages, through the WebUI's own launch.run_pip, at versions that work with what
the WebUI pinned; never changes a package that is present. The logic is lib_alignment/install_plan.py.
"""

from __future__ import annotations

import os
import sys

import launch  # the WebUI's

_HERE = os.path.dirname(os.path.abspath(__file__))

sys.path.insert(0, _HERE)
try:
    from lib_alignment import installer
finally:
    sys.path.remove(_HERE)

installer.run(launch.is_installed, launch.run_pip)
