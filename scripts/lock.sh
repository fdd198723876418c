#!/usr/bin/env bash
# Upgrade the lock files in requirements/ to the newest versions pyproject.toml allows, then set up
# from them and run the whole test suite: an upgrade is committed only when this passes.
#   scripts/lock.sh                    everything to its newest allowed version
#   scripts/lock.sh --upgrade-package NAME   one package (repeatable), the rest kept
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || scripts/setup.sh test
.venv/bin/python -m pip install --quiet uv
upgrade=("$@")
[ ${#upgrade[@]} -gt 0 ] || upgrade=(--upgrade)
compile() { .venv/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
    --custom-compile-command scripts/lock.sh --quiet "${upgrade[@]}" "$@"; }
compile -o requirements/run.txt
compile --extra test -c requirements/run.txt -o requirements/test.txt
scripts/setup.sh test && .venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy && .venv/bin/pytest
git --no-pager diff --stat requirements/
