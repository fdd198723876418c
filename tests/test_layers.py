"""The packages' layers (docs/architecture.md): `runtime` at the bottom, then `bus`, `actors`, and
`reer_runtime` at the top; each imports only those below it. import-linter checks the contract in
pyproject.toml, here and on a copy with one import that goes up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("runtime", "bus", "actors", "reer_runtime")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the packages under `root`, with the contract in `root`'s pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_each_package_imports_only_the_ones_below_it() -> None:
    checked = lint_imports(ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 kept, 0 broken" in checked.stdout


def test_an_import_that_goes_up_breaks_the_contract(tmp_path: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    records = tmp_path / "runtime" / "records.py"
    records.write_text(records.read_text() + "\nfrom bus.messages import Envelope  # up a layer\n")
    broken = lint_imports(tmp_path)
    assert broken.returncode == 1, broken.stdout
    assert "0 kept, 1 broken" in broken.stdout and "runtime.records -> bus.messages" in broken.stdout
