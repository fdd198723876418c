"""Shared fixtures: the anyio backend, posts, and running the real daemon as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from reer_runtime.testing import capture_spans
from runtime.ledger import Stores
from runtime.telemetry import process_telemetry
from tests.helpers import daemon_env

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


RunDaemon = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(autouse=True)
def fresh_dspy_cache() -> None:
    """Each test starts with an empty DSPy cache, in memory only: no answer cached by another test
    (whose request ids, and so rollouts, may be the same) and nothing written to the home folder."""
    import dspy

    dspy.configure_cache(enable_disk_cache=False)


ALLOWED_SKIPS = Path(__file__).with_name("allowed-skips.txt")


def _allowed(nodeid: str) -> bool:
    """Whether `tests/allowed-skips.txt` lets the test `nodeid` be skipped."""
    for line in ALLOWED_SKIPS.read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry and (nodeid == entry or (entry.endswith("*") and nodeid.startswith(entry[:-1]))):
            return True
    return False


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test fails the run unless `tests/allowed-skips.txt` lists it: a skip is not a pass."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = [report.nodeid for report in getattr(reporter, "stats", {}).get("skipped", [])]
    if unlisted := [nodeid for nodeid in skipped if not _allowed(nodeid)]:
        print(f"\n{len(unlisted)} skipped test(s) not in {ALLOWED_SKIPS.name}: {', '.join(unlisted)}", file=sys.stderr)
        if exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that ask for `run_daemon` start the daemon as a subprocess: mark them `daemon`."""
    for item in items:
        if "run_daemon" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.daemon)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An mlx-lm folder converted from a tiny random GGUF (mlx is imported only by tests that use it)."""
    import runtime.providers.local  # noqa: F401  (loads OpenBLAS before mlx.core)
    from runtime.providers.local.convert import ensure_converted
    from tests.tiny_model import write_tiny_gguf

    root = tmp_path_factory.mktemp("tiny")
    write_tiny_gguf(root / "tiny.gguf")
    return ensure_converted(root / "tiny.gguf", root / "model")


@pytest.fixture
def run_daemon(tmp_path: Path) -> RunDaemon:
    """Run `reer-runtime ARGS` as a real subprocess with the data dir in tmp_path; with `emulator`
    (e.g. `qemu-x86_64 -cpu Haswell`), on the CPU that it emulates."""

    def run(
        *args: str,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 300,
        emulator: tuple[str, ...] = (),
        cwd: Path = ROOT,
    ) -> subprocess.CompletedProcess[str]:
        full_env = daemon_env()
        full_env.update({"REER_GENERATOR": "dummy://", "REER_SCORER": "dummy://"})  # fast unless asked
        full_env.update(env or {})
        return subprocess.run(
            [*emulator, sys.executable, "-m", "reer_runtime", "--data-dir", str(tmp_path / "data"), *args],
            check=False,
            input=stdin,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            cwd=cwd,
        )

    return run


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The spans finished during the test (`reer_runtime.testing.capture_spans`)."""
    with capture_spans() as exporter:
        yield exporter


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    """The in-process reader of every metric the runtime records (cumulative, shared by tests)."""
    return process_telemetry().stats_reader


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real NATS JetStream server for the session; each test takes a namespace of its own."""
    from tests.nats_server import nats_server

    with nats_server(tmp_path_factory.mktemp("nats")) as url:
        yield url


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A bus namespace no other test uses."""
    import re
    import uuid

    return re.sub(r"[^A-Za-z0-9]", "_", request.node.name)[:40] + "_" + uuid.uuid4().hex[:6]


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    """The stores of a data dir in tmp_path, open."""
    opened = Stores.at(tmp_path)
    for store in opened.all():
        store.open()
    yield opened
