#!/usr/bin/env bash
# Build (or top up) the Python environment of one test stack:
#
#   bash tools/make_venv.sh STACK DIR        STACK: current | a1111 | forge
#
# current: torch 2.13.0 (CPU) and the newest releases requirements.txt admits.
# a1111 / forge: the packages the WebUI itself installs that we import, at its pins
#   (constraints/a1111-v1.10.1.txt, constraints/forge.txt); then our install.py runs as the WebUI
#   would run it and adds what is missing; then the test tools. Fails if any step changed a version
#   the WebUI had, or if a pinned package ended up at another version.
#
# torch goes in first and is held by a constraint in every later pip call, so nothing can pull
# another torch (and GBs of CUDA wheels). A torch already in DIR (say a CUDA build) is kept.
# TORCH_FROM=VENV hard-links torch (and what it brought) from another environment of the same Python
# instead of installing it again (.ci/run does this for its three stacks).
# PYTHON picks the interpreter (default python3.11). DIR/freeze.txt records what was installed;
# with RECORD_LOCK=1 it is also copied to constraints/locks/STACK.txt.
# Packages go in without byte-compiling (--no-compile): Python compiles what is imported, on import,
# which on 2 cores is minutes cheaper than compiling all of torch, transformers and gradio.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: bash tools/make_venv.sh current|a1111|forge DIR" >&2
    exit 2
fi
STACK=$1
DIR=$2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
C=$ROOT/constraints

case $STACK in
    current) PINS=$C/current.txt ;;
    a1111)
        PINS=$C/a1111-v1.10.1.txt
        # What A1111 v1.10.1 itself installs that our code or tests import.
        HOST_PACKAGES=(gradio fastapi httpx transformers accelerate safetensors numpy Pillow huggingface-hub tqdm)
        ;;
    forge)
        PINS=$C/forge.txt
        HOST_PACKAGES=(gradio gradio_rangeslider fastapi pydantic httpx transformers accelerate safetensors
            numpy Pillow huggingface-hub tqdm diffusers peft)
        ;;
    *)
        echo "make_venv.sh: unknown stack '$STACK' (current, a1111 or forge)" >&2
        exit 2
        ;;
esac

start=$SECONDS
say() { echo "[make_venv $STACK +$((SECONDS - start))s] $*"; }
# pip warns about every entry of a find-links/index folder it cannot use; that is noise here.
pip_install() { "$VPY" -m pip install --disable-pip-version-check --progress-bar off --no-compile -q "$@" 2> >(grep -v "is ignored: it is neither" >&2); }

if [[ ! -x $DIR/bin/python ]]; then
    PY=${PYTHON:-python3.11}
    command -v "$PY" >/dev/null || PY=python3
    say "creating $DIR with $("$PY" --version)"
    "$PY" -m venv "$DIR"
fi
VPY=$DIR/bin/python
mkdir -p "$DIR/stack"

site_of() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
if ! "$VPY" -c "import torch" 2>/dev/null; then
    if [[ -n ${TORCH_FROM:-} ]]; then
        say "linking torch from $TORCH_FROM"
        from=$(site_of "$TORCH_FROM/bin/python")
        to=$(site_of "$VPY")
        for entry in "$from"/*; do
            [[ -e $to/$(basename "$entry") ]] || cp -al "$entry" "$to/" || cp -a "$entry" "$to/"
        done
    else
        say "installing torch 2.13.0"
        pip_install torch==2.13.0
    fi
fi
TORCH_PIN=$DIR/stack/torch-pin.txt
echo "torch==$("$VPY" -c 'import importlib.metadata as m; print(m.version("torch"))')" >"$TORCH_PIN"
say "holding $(cat "$TORCH_PIN")"

freeze() { "$VPY" -m pip list --disable-pip-version-check --format=freeze 2>/dev/null; }

if [[ $STACK == current ]]; then
    say "installing requirements.txt and requirements-test.txt (newest releases)"
    pip_install -c "$TORCH_PIN" -c "$PINS" -r "$ROOT/requirements.txt" -r "$ROOT/requirements-test.txt"
else
    say "installing what the WebUI brings: ${HOST_PACKAGES[*]}"
    pip_install -c "$TORCH_PIN" -c "$PINS" "${HOST_PACKAGES[@]}"
    freeze >"$DIR/stack/host.txt"

    say "running install.py as the WebUI does"
    (cd "$ROOT" && PYTHONPATH="$ROOT/tools/webui_launch" "$VPY" install.py)
    freeze >"$DIR/stack/after-install-py.txt"

    say "installing the rest of requirements.txt and requirements-test.txt, holding every present version"
    pip_install -c "$TORCH_PIN" -c "$PINS" -c "$DIR/stack/after-install-py.txt" \
        -r "$ROOT/requirements.txt" -r "$ROOT/requirements-test.txt"
fi

freeze >"$DIR/freeze.txt"
if [[ $STACK != current ]]; then
    say "checking the WebUI's versions are untouched and the pins hold"
    "$VPY" "$ROOT/tools/check_stack.py" --pins "$PINS" --before "$DIR/stack/host.txt" --after "$DIR/freeze.txt"
fi
if [[ ${RECORD_LOCK:-0} == 1 ]]; then
    mkdir -p "$C/locks"
    cp "$DIR/freeze.txt" "$C/locks/$STACK.txt"
fi
say "done: $(grep -iE '^(torch|diffusers|peft|transformers|accelerate|gradio|huggingface.hub|numpy)==' "$DIR/freeze.txt" | tr '\n' ' ')"
