"""A skipped test fails the run unless `tests/allowed-skips.txt` lists it, with why."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
TESTS = Path(__file__).parent


@pytest.mark.parametrize("workers", [[], ["--numprocesses=2"]], ids=["one process", "two workers"])
def test_an_unlisted_skip_fails_the_run_and_a_listed_one_does_not(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(TESTS.parent))  # the copied conftest imports `tests.helpers`
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    (pytester.path / "allowed-skips.txt").write_text("test_listed.py::test_*  # a reason\n")
    pytester.makepyfile(
        test_listed="import pytest\ndef test_a() -> None:\n    pytest.skip('listed')\n",
        test_unlisted="import pytest\ndef test_b() -> None:\n    pytest.skip('not listed')\n",
    )
    listed = pytester.runpytest_subprocess(*workers, "test_listed.py")
    assert listed.ret == 0
    unlisted = pytester.runpytest_subprocess(*workers, "test_listed.py", "test_unlisted.py")
    assert unlisted.ret == 1 and "test_unlisted.py::test_b" in unlisted.stderr.str()
