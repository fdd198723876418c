"""Tasks, run in the project's own .venv (`scripts/setup.sh test` makes it): `.venv/bin/nox -s NAME`.

lint, types, quick (the tests that start no daemon), tests (all, as CI), benchmarks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nox

BIN = Path(sys.executable).parent  # .venv/bin, where the locked tools are


def tool(name: str) -> str:
    return str(BIN / name)


nox.options.default_venv_backend = "none"  # the locked .venv, never a fresh one
nox.options.sessions = ["lint", "types", "quick"]


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, the formatting, spelling and the import layers."""
    session.run(tool("ruff"), "check", ".")
    session.run(tool("ruff"), "format", "--check", ".")
    session.run(tool("codespell"))
    session.run(tool("lint-imports"))


@nox.session
def types(session: nox.Session) -> None:
    """mypy, strict, over the code, the tests and the benchmarks."""
    session.run(tool("mypy"))


@nox.session
def quick(session: nox.Session) -> None:
    """The tests that start no `reer-runtime` subprocess (about 4 minutes on 2 cores)."""
    session.run(tool("pytest"), "-m", "not daemon", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Every test, as `.ci/run` runs them."""
    session.run(tool("pytest"), *session.posargs)


@nox.session
def benchmarks(session: nox.Session) -> None:
    """One benchmark by name (`nox -s benchmarks -- mlx_speed`); results go to benchmarks/results/."""
    if not session.posargs:
        session.error("name a benchmark: nox -s benchmarks -- NAME (see benchmarks/)")
    session.run(sys.executable, "-m", f"benchmarks.{session.posargs[0]}", *session.posargs[1:])
