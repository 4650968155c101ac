#!/usr/bin/env bash
# Run the test suite: bash tools/test.sh [PYTHON] [pytest arguments...]
#
# PYTHON is the interpreter of the stack to test (default: .venv/bin/python, else python3), e.g.
#   bash tools/test.sh .venvs/a1111/bin/python
#   bash tools/test.sh .venv/bin/python tests/test_install_plan.py -x
# Runs from the repository root so `lib_alignment` imports from the checkout. Exit code is pytest's
# (5 means no test ran).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [[ $# -gt 0 && $1 != -* && ( ( -f $1 && -x $1 ) || $1 == python* ) ]]; then
    PY=$1
    shift
elif [[ -n ${PYTHON:-} ]]; then
    PY=$PYTHON
elif [[ -x $ROOT/.venv/bin/python ]]; then
    PY=$ROOT/.venv/bin/python
else
    PY=python3
fi
[[ $PY == */* ]] && PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")

cd "$ROOT"
exec "$PY" -m pytest -q -p no:cacheprovider --durations=10 "$@"
