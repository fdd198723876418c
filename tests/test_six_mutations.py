"""`scripts/six_mutations.py` names the tests that catch each of its mutations: they must exist, or
the script reports a mutation as missed by tests that no longer run."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_the_six_mutations_name_is_collected() -> None:
    six = runpy.run_path(str(ROOT / "scripts" / "six_mutations.py"))["SIX"]
    named = [test for mutation in six for test in mutation.tests]
    assert len(six) == 6 and named
    for mutation in six:
        assert mutation.old in (ROOT / mutation.path).read_text(), f"{mutation.name}: the code it breaks has changed"
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *named],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert collected.returncode == 0, collected.stdout + collected.stderr
