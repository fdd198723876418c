"""Metrics after a run match what happened; `stats` and the Prometheus endpoint show them."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from reer_runtime.daemon import open_chains, serve
from reer_runtime.stats import snapshot
from runtime.config import load_settings
from runtime.records import Trace
from runtime.store import JsonlStore
from tests.conftest import ROOT, RunDaemon
from tests.helpers import cli, post_line

pytestmark = pytest.mark.anyio


def delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """`after - before` for every number in two snapshots (the global meter outlives each test)."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        if isinstance(value, dict):
            out[key] = delta(value, before.get(key) or {})  # absent, or None before the first value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = value - (before.get(key) or 0)
    return out


async def test_counts_after_a_run_match_what_happened(tmp_path: Path, metric_reader: InMemoryMetricReader) -> None:
    lines = [post_line(i, author="m") for i in range(20)]
    lines[5:5] = ["{broken", '{"type": "post"}', json.dumps({"type": "optimize"})]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    settings = load_settings(
        tmp_path / "data",
        generator=["dummy://"],
        scorer=["dummy://"],
        min_engagement=0.7,
        writer={"min_traces": 1000},  # the optimize request is read, and compiles nothing
    )
    before = snapshot(metric_reader)

    code = await serve(settings, open_chains(settings), [str(source)], exit_when_idle=True, stats_reader=metric_reader)

    assert code == 0
    got = delta(snapshot(metric_reader), before)
    traces = list(JsonlStore(tmp_path / "data" / "traces.jsonl", Trace).read())
    assert got["events"]["read"] == 23
    assert got["events"]["accepted"] == got["events"]["read"] - got["events"]["rejected"] == 21  # 20 posts, 1 request
    assert {reason: n for reason, n in got["events"]["rejected_by_reason"].items() if n} == {
        "invalid JSON": 1,
        "invalid event": 1,
    }
    assert got["posts"]["mined"] == len(traces) > 0
    assert got["posts"]["mined"] + got["posts"]["skipped"] == 20 and got["posts"]["failed"] == 0
    calls = got["providers"]
    assert calls["dummy/ngram-5 chat"]["calls"] == sum(t.timings.generate_calls for t in traces)
    assert calls["dummy/ngram-5 score"]["calls"] == sum(t.timings.score_calls for t in traces)
    assert got["retries"] == got["fallbacks"] == 0

    data = metric_reader.get_metrics_data()
    assert data is not None
    names = {m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics}
    assert {"messaging.process.duration", "gen_ai.client.token.usage", "reer.bus.queue.depth"} <= names
    written = json.loads((tmp_path / "data" / "stats.json").read_text())
    assert written["events"]["accepted"] >= 20  # the snapshot written at exit


def test_stats_summarises_the_last_run(tmp_path: Path, run_daemon: RunDaemon) -> None:
    nothing = run_daemon("stats")  # no data dir yet, said plainly
    assert nothing.returncode == 2 and "does not exist" in nothing.stderr
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join([post_line(i, author="s") for i in range(6)] + ["nope"]) + "\n")
    assert run_daemon("start", "--input", str(source), "--exit-when-idle", "--min-engagement", "0.5").returncode == 0
    text = run_daemon("stats").stdout
    assert "events:   7 read, 6 accepted, 1 rejected" in text
    assert "posts:    3 mined, 0 failed, 3 not selected; success rate 100%" in text
    assert "model:    dummy/ngram-5 chat:" in text and "rejected: 1 x invalid JSON" in text
    figures = json.loads(run_daemon("stats", "--json").stdout)
    assert figures["posts"]["mined"] == 3 and figures["held_out"]["measured"] == 3
    traces = [json.loads(line) for line in (tmp_path / "data" / "traces.jsonl").read_text().splitlines()]
    holding = sum(t["held_out"]["gain"] > 0 for t in traces)
    assert figures["held_out"]["holding"] == holding
    assert f"plans:    {holding} of 3 traces hold ({holding / 3:.0%}): their held-out gain" in text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.daemon
def test_prometheus_endpoint_on_loopback(tmp_path: Path) -> None:
    port = free_port()
    daemon = subprocess.Popen(
        cli(str(tmp_path), "start", "--provider", "dummy://", "--metrics-port", str(port)),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert daemon.stdin is not None and daemon.stderr is not None
    daemon.stdin.write(post_line(1, author="p") + "\n")
    daemon.stdin.flush()
    for line in daemon.stderr:  # the single post is its author's best: mined
        if "mined x:1" in line:
            break
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    daemon.send_signal(signal.SIGTERM)
    daemon.communicate(timeout=60)
    assert daemon.returncode == 0
    assert "reer_events_accepted_total{" in body or "reer_events_accepted_total " in body
    assert "gen_ai_client_operation_duration_seconds_bucket" in body


def test_a_plan_that_makes_the_post_less_likely_is_recorded_with_its_sign(metric_reader: InMemoryMetricReader) -> None:
    from runtime import metrics

    def sums() -> dict[str, float]:
        data = metric_reader.get_metrics_data()
        found: dict[str, float] = {"better": 0.0, "worse": 0.0}
        for r in data.resource_metrics if data else []:
            for s in r.scope_metrics:
                for m in s.metrics:
                    if m.name == "reer.mining.score_improvement":
                        for point in getattr(m.data, "data_points", []):
                            found[str((point.attributes or {})["reer.score.direction"])] += point.sum
        return found

    before = sums()
    metrics.record_improvement(2.0, 1.25)  # the plan lowered the NLL by 0.75
    metrics.record_improvement(1.0, 1.5)  # and here raised it by 0.5: a histogram would drop -0.5
    after = sums()
    assert after["better"] - before["better"] == pytest.approx(0.75)
    assert after["worse"] - before["worse"] == pytest.approx(0.5)
