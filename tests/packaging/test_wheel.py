"""The wheel is a product too: built from the sdist, installed into a fresh virtual environment,
and used there through its console script, away from this checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from runtime import __version__
from runtime.schemas import RECORDS
from tests.conftest import ROOT
from tests.helpers import post_line

pytestmark = pytest.mark.daemon


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [str(a) for a in args]
    return subprocess.run(argv, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fresh venv holding only the wheel (built from the sdist); the dependencies are reached
    through a path entry to this environment's site-packages, whose editable install of this
    checkout is never activated (path entries' own .pth files are not read). Also the wheel."""
    root = tmp_path_factory.mktemp("wheel")
    built = run(sys.executable, "-m", "build", "--outdir", root / "dist", ROOT, cwd=root)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (root / "dist").glob("*.whl")
    assert len(list((root / "dist").glob("*.tar.gz"))) == 1
    venv = root / "venv"
    assert run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=root).returncode == 0
    python = venv / "bin" / "python"
    installing = run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel, cwd=root)
    assert installing.returncode == 0, installing.stderr
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root).stdout.strip()
    (Path(purelib) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv, wheel


def test_the_wheel_carries_its_schemas_license_and_one_version(installed: tuple[Path, Path]) -> None:
    _, wheel = installed
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"reer_runtime-{__version__}.dist-info/METADATA").decode()
    assert {f"runtime/schemas/{name}.schema.json" for name in RECORDS} <= names
    assert f"reer_runtime-{__version__}.dist-info/licenses/LICENSE" in names
    assert f"Version: {__version__}\n" in metadata and "License-Expression: Apache-2.0" in metadata
    assert "Classifier: Programming Language :: Python :: 3.11" in metadata


def test_validate_and_a_dummy_mining_from_the_installed_wheel(installed: tuple[Path, Path], tmp_path: Path) -> None:
    venv, _ = installed
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "REER_", "PYTHON"))}
    where = run(venv / "bin" / "python", "-c", "import runtime; print(runtime.__file__)", cwd=tmp_path, env=env)
    assert where.stdout.startswith(str(venv)), where  # the wheel's code, not this checkout's
    version = run(venv / "bin" / "reer-runtime", "--version", cwd=tmp_path, env=env)
    assert version.stdout.strip() == f"reer-runtime {__version__}"

    (tmp_path / "posts.jsonl").write_text("".join(post_line(i) + "\n" for i in range(5)))
    data = tmp_path / "data"
    mine = ("mine", "posts.jsonl", "--provider", "dummy://", "--data-dir", data)
    mined = run(venv / "bin" / "reer-runtime", *mine, cwd=tmp_path, env=env)
    assert mined.returncode == 0, mined.stderr
    traces = [json.loads(line) for line in (data / "traces.jsonl").read_text().splitlines()]
    assert len(traces) >= 1 and all(t["plan"] for t in traces)

    checked = run(venv / "bin" / "reer-runtime", "validate", "--data-dir", data, cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    schemas = next(line for line in checked.stdout.splitlines() if "schemas in" in line)
    assert str(venv) in schemas  # checked against the schemas the wheel installed
