"""A NATS broker that goes away for 30 s mid-run: the coordinator and the worker wait for it, say
so, and go on; every post is mined exactly once, and nobody restarts anything."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.helpers import cli, daemon_env, post_line
from tests.nats_server import free_port, nats_server
from tests.runtime.test_cluster import PROVIDER, wait_for

pytestmark = pytest.mark.daemon
POSTS = 20
OUTAGE_S = 30


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_a_30_second_broker_outage_loses_nothing_and_stops_nobody(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(post_line(i, author="k") + "\n" for i in range(POSTS)))
    port, store = free_port(), tmp_path / "jetstream"
    env = daemon_env() | {"REER_BUS__ACK_WAIT_S": "3", "REER_BUS__NAMESPACE": "outage"}
    data = tmp_path / "coordinator"
    with nats_server(store, port) as url:
        bus = ["--bus", url]
        worker = subprocess.Popen(
            cli(tmp_path / "w", "worker", *bus, "--provider", PROVIDER, "--concurrency", "1", "--exit-when-idle"),
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        args = ["start", *bus, "--no-miners", "--provider", PROVIDER, "--min-engagement", "0", "--exit-when-idle"]
        coordinator = subprocess.Popen(
            cli(data, *args, "--input", str(source)),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: len(lines(data / "traces.jsonl")) >= 2, "the first traces")
    time.sleep(OUTAGE_S)  # the broker is down: the outage under test, not a wait for something
    assert coordinator.poll() is None and worker.poll() is None  # both still up, waiting
    with nats_server(store, port):
        _, coordinator_err = coordinator.communicate(timeout=300)
        _, worker_err = worker.communicate(timeout=120)
    assert coordinator.returncode == 0, coordinator_err[-3000:]
    assert worker.returncode == 0, worker_err[-3000:]
    keys = [f"{t['post']['platform']}:{t['post']['id']}" for t in lines(data / "traces.jsonl")]  # type: ignore[index]
    assert sorted(keys) == sorted(f"x:{i}" for i in range(POSTS))  # every post, each once
    assert lines(data / "dead-letters.jsonl") == [] and lines(data / "failed.jsonl") == []
    assert "the NATS broker is away" in coordinator_err and "the NATS broker is back after" in coordinator_err
