"""`reer-runtime start` as a real subprocess: store, rejected lines, and the exported spans."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import msgspec
import pytest

from runtime.records import Trace
from tests.conftest import ROOT, RunDaemon
from tests.helpers import cli, daemon_env, post_line, validate_store
from tests.otlp_receiver import ReceivedSpan, grpc_receiver, http_receiver

BAD_LINES = ["this is not json", '{"type": "post", "id": "x"}', post_line(999, platform="myspace")]

# The spans one mined post causes, across every actor.
SPANS_OF_A_MINED_POST = {
    "ingest post",
    "send posts.observed",
    "process posts.observed",
    "send provider.requests",
    "process provider.requests",
    "chat ngram-5",
    "text_completion ngram-5",
    "send provider.replies.miner",
    "process provider.replies.miner",
    "send results",
    "process results",
}

pytestmark = pytest.mark.daemon  # every test here starts `reer-runtime` as a subprocess


def traces_of(data: Path) -> list[Trace]:
    lines = (data / "traces.jsonl").read_bytes().splitlines()
    return [msgspec.json.decode(line, type=Trace) for line in lines]


def test_fifty_posts_mined_end_to_end_with_one_trace_per_post(tmp_path: Path, run_daemon: RunDaemon) -> None:
    data = tmp_path / "data"
    posts = tmp_path / "posts.jsonl"
    lines = [post_line(i) for i in range(50)]
    posts.write_text("\n".join(lines[:20] + BAD_LINES + lines[20:]) + "\n")

    with http_receiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
        done = run_daemon("start", "--input", str(posts), "--exit-when-idle", env=env)
        assert done.returncode == 0, done.stderr
        spans = list(receiver.spans)
        sums = dict(receiver.sums)

    assert data.stat().st_mode & 0o777 == 0o700
    traces = traces_of(data)
    assert validate_store(data / "traces.jsonl", "trace") == len(traces) >= 5
    assert len({t.post.key for t in traces}) == len(traces)
    assert all(t.engagement >= 0.8 and t.scores.final <= t.scores.initial for t in traces)
    assert all(t.scores.clip_share is not None and 0.2 < t.scores.clip_share < 0.8 for t in traces)
    assert "clip floor" not in done.stderr
    assert validate_store(data / "posts.jsonl", "accepted") == 50
    assert validate_store(data / "rejected.jsonl", "rejected") == 3
    rejected = [json.loads(line) for line in (data / "rejected.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejected] == [21, 22, 23]
    assert rejected[2]["reason"].startswith("invalid event: Invalid enum value 'myspace'")

    assert sums["reer.events.read"] == 53 and sums["reer.events.accepted"] == 50  # metrics over OTLP too
    assert sums["reer.events.rejected"] == 3 and sums["reer.posts"] == 50

    assert {s.service for s in spans} == {"reer-runtime"}
    by_trace: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    assert len([s for s in spans if s.name == "ingest post"]) == 50  # one trace per accepted post
    for t in traces:
        mine = by_trace[t.otel_trace_id]
        assert {s.name for s in mine} >= SPANS_OF_A_MINED_POST
        ids = {s.span_id for s in mine}
        roots = [s for s in mine if not s.parent_id]
        assert [r.name for r in roots] == ["ingest post"]
        assert all(s.parent_id in ids for s in mine if s.parent_id)  # all one tree, nothing orphaned
        assert roots[0].attributes["reer.post.key"] == t.post.key
        client = next(s for s in mine if s.name == "chat ngram-5")
        assert client.kind == "CLIENT" and client.attributes["gen_ai.provider.name"] == "dummy"
        assert client.attributes["gen_ai.usage.output_tokens"] > 0
        consumer = next(s for s in mine if s.name == "process posts.observed")
        assert consumer.kind == "CONSUMER" and consumer.attributes["messaging.consumer.group.name"] == "miner"
        scored = sum(c.score is not None for step in t.steps for c in step.candidates)
        # no plan, z0, each scored candidate, and the generic plan of the held-out gain
        assert len([s for s in mine if s.name == "text_completion ngram-5"]) == 2 + scored + 1

    again = run_daemon("start", "--input", str(posts), "--exit-when-idle")
    assert again.returncode == 0, again.stderr
    assert len(traces_of(data)) == len(traces)  # a post seen again is not mined twice
    reasons = [json.loads(line)["reason"] for line in (data / "rejected.jsonl").read_text().splitlines()]
    assert sum(r.startswith("duplicate: post x:") for r in reasons) == 50


def test_a_run_whose_scores_sit_at_the_clip_floor_warns_once(tmp_path: Path, run_daemon: RunDaemon) -> None:
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(post_line(i) + "\n" for i in range(30)))
    # a floor of -0.3 nats: nearly every byte of a post is less likely than that to the n-gram model
    env = {"REER_SEARCH__CLIP_MIN": "-0.3", "REER_SEARCH__MAX_STEPS": "1"}
    done = run_daemon("start", "--input", str(posts), "--exit-when-idle", env=env)
    assert done.returncode == 0, done.stderr
    traces = traces_of(tmp_path / "data")
    assert len(traces) > 3 and all(t.scores.clip_share is not None and t.scores.clip_share > 0.8 for t in traces)
    assert done.stderr.count("of the mined posts' tokens score at the clip floor (search.clip_min=-0.3)") == 1


def test_stdin_input_and_grpc_export(tmp_path: Path, run_daemon: RunDaemon) -> None:
    lines = "\n".join(post_line(i, author="solo") for i in range(6))
    with grpc_receiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        done = run_daemon("start", "--exit-when-idle", "--min-engagement", "0.9", stdin=lines, env=env)
        assert done.returncode == 0, done.stderr
        names = {s.name for s in receiver.spans}
    traces = traces_of(tmp_path / "data")
    assert len(traces) == 1 and traces[0].engagement == 1.0
    assert names >= SPANS_OF_A_MINED_POST


def test_sigterm_drains_the_work_in_flight_and_exits_zero(tmp_path: Path) -> None:
    data = tmp_path / "data"
    daemon = subprocess.Popen(
        cli(str(data), "start", "--min-engagement", "0", "--provider", "dummy://"),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert daemon.stdin is not None and daemon.stderr is not None
    daemon.stdin.write("\n".join(post_line(i, author="a") for i in range(3)) + "\n")
    daemon.stdin.flush()
    for line in daemon.stderr:  # the daemon is idle once it has logged the third trace
        if "mined x:" in line and len(traces_of(data)) == 3:
            break
    daemon.send_signal(signal.SIGTERM)
    _, rest = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, rest
    assert "SIGTERM: no more input" in rest
    assert len(traces_of(data)) == 3


def test_bad_usage_exits_two_with_a_clear_message(tmp_path: Path, run_daemon: RunDaemon) -> None:
    missing = run_daemon("start", "--input", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "no such input file" in missing.stderr
    provider = run_daemon("start", "--provider", "gpt://4", "--exit-when-idle", stdin="")
    assert provider.returncode == 2 and "unknown provider 'gpt://4'" in provider.stderr
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "config.toml").write_text("min_engagement = 3\n")
    config = run_daemon("start", "--exit-when-idle", stdin="")
    assert config.returncode == 2 and "min_engagement: Input should be less than or equal to 1" in config.stderr
    assert "Traceback" not in missing.stderr + provider.stderr + config.stderr


def hung_daemon(tmp_path: Path, grace: str) -> subprocess.Popen[str]:
    """A daemon whose model never answers, with one selected post in flight."""
    env = daemon_env()
    env |= {"REER_SHUTDOWN_GRACE_S": grace, "REER_LIMITS__DEFAULT__TIMEOUT_S": "600"}
    source = tmp_path / "one.jsonl"
    source.write_text(post_line(1) + "\n")
    daemon = subprocess.Popen(
        cli(str(tmp_path / "data"), "start", "--input", str(source), "--provider", "fault://?base=dummy://&hang=1"),
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert daemon.stderr is not None
    for line in daemon.stderr:
        if "running until SIGINT or SIGTERM" in line:
            break
    return daemon


def test_sigterm_waits_at_most_the_grace_period_then_exits_zero(tmp_path: Path) -> None:
    daemon = hung_daemon(tmp_path, grace="0.5")
    daemon.send_signal(signal.SIGTERM)
    _, rest = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, rest
    assert "grace period of 0.5s over with" in rest
    assert len((tmp_path / "data" / "posts.jsonl").read_text().splitlines()) == 1  # accepted work kept


def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    daemon = hung_daemon(tmp_path, grace="600")
    assert daemon.stderr is not None
    daemon.send_signal(signal.SIGTERM)
    for line in daemon.stderr:
        if "SIGTERM: no more input" in line:
            break
    daemon.send_signal(signal.SIGINT)
    _, rest = daemon.communicate(timeout=60)
    assert daemon.returncode == 130 and "second SIGINT: exiting now" in rest
