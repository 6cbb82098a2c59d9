#!/usr/bin/env bash
# .venv-pynq: Python 3.10 (the PYNQ 3.0.1 image's) with requirements-pynq.txt and bamboo
# (no dependencies: the runtime needs numpy only). tests/pynq_board runs the board
# runtime through it. pynqmetadata 0.1.2 does not import on Python 3.11 (a dataclass
# default 3.11 refuses), so only 3.10 will do; without one the venv is not made and
# those tests skip, saying so.
set -euo pipefail
venv=${1:-.venv-pynq}
python=${PYNQ_PYTHON:-}
if [ -z "$python" ]; then
    for candidate in python3.10 "$(pyenv root 2>/dev/null)"/versions/3.10*/bin/python3.10; do
        if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
            python=$candidate
            break
        fi
    done
fi
if [ -z "$python" ]; then
    echo "setup: no Python 3.10 found (set PYNQ_PYTHON=); tests/pynq_board will skip" >&2
    exit 0
fi
test -x "$venv/bin/python" || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -r requirements-pynq.txt
"$venv/bin/python" -m pip install -q --no-deps -e .
touch "$venv/.setup-stamp"
echo "setup: done ($venv, $("$venv/bin/python" -c 'import pynq; print("pynq", pynq.__version__)'))"
