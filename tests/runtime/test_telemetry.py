"""The standard OpenTelemetry variables, obeyed by the real daemon and checked at a real OTLP receiver."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import RunDaemon
from tests.helpers import post_line
from tests.openai_server import FakeServer, serving
from tests.otlp_receiver import http_receiver


def write_posts(tmp_path: Path, *extra: str) -> Path:
    posts = tmp_path / "in.jsonl"
    posts.write_text("".join(post_line(i, author="otel") + "\n" for i in range(4)) + "".join(x + "\n" for x in extra))
    return posts


def test_disabled_sdk_and_none_exporters_send_nothing(tmp_path: Path, run_daemon: RunDaemon) -> None:
    posts = write_posts(tmp_path)
    with http_receiver() as receiver:
        endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
        disabled = run_daemon(
            "start", "--input", str(posts), "--exit-when-idle", env={**endpoint, "OTEL_SDK_DISABLED": "true"}
        )
        nowhere = {f"OTEL_{signal}_EXPORTER": "none" for signal in ("TRACES", "METRICS", "LOGS")}
        none = run_daemon("start", "--input", str(posts), "--exit-when-idle", env={**endpoint, **nowhere})
        sent = list(receiver.raw)
    assert disabled.returncode == 0 and none.returncode == 0, disabled.stderr + none.stderr
    assert sent == [] and "Failed to export" not in disabled.stderr + none.stderr
    traces = [json.loads(line) for line in (tmp_path / "data" / "traces.jsonl").read_text().splitlines()]
    assert traces and all(int(t["otel_trace_id"], 16) == 0 for t in traces)  # the disabled SDK records no span
    bad = run_daemon("start", "--input", str(posts), "--exit-when-idle", env={"OTEL_TRACES_EXPORTER": "jaeger"})
    assert bad.returncode == 2 and "OTEL_TRACES_EXPORTER='jaeger'" in bad.stderr


def test_console_exporters_write_to_stderr_not_stdout(tmp_path: Path, run_daemon: RunDaemon) -> None:
    done = run_daemon(
        "start", "--input", str(write_posts(tmp_path)), "--exit-when-idle", env={"OTEL_TRACES_EXPORTER": "console"}
    )
    assert done.returncode == 0, done.stderr
    assert '"name": "ingest post"' in done.stderr and "ingest post" not in done.stdout


def test_exported_data_follows_the_conventions(tmp_path: Path, run_daemon: RunDaemon) -> None:
    posts = write_posts(tmp_path, json.dumps({"type": "optimize"}))  # refused: too few traces
    with http_receiver() as receiver, serving(FakeServer()) as server:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_RESOURCE_ATTRIBUTES": "service.name=my-writer,deployment.environment.name=test",
            "REER_GENERATOR": server.uri(),
        }
        done = run_daemon("start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0", env=env)
        assert done.returncode == 0, done.stderr
        spans, points, logs, services = (
            list(receiver.spans),
            dict(receiver.points),
            list(receiver.logs),
            set(receiver.services),
        )
    assert services == {"my-writer"} and {s.service for s in spans} == {"my-writer"}

    chat = next(s for s in spans if s.name == "chat fake-model")
    assert chat.attributes["gen_ai.operation.name"] == "chat" and chat.attributes["server.address"] == "127.0.0.1"
    assert chat.attributes["server.port"] == server.port and chat.attributes["gen_ai.response.model"] == "fake-model"
    score = next(s for s in spans if s.name == "text_completion ngram-5")
    assert score.attributes["gen_ai.operation.name"] == "text_completion"
    assert score.attributes["reer.operation"] == "score" and "server.address" not in score.attributes

    processed = points["messaging.process.duration"]
    assert all(p["messaging.system"] == "reer" and p["messaging.operation.name"] == "process" for p in processed)
    refused = [p for p in processed if p.get("error.type")]
    assert [p["error.type"] for p in refused] == ["Refused"] and refused[0]["messaging.destination.name"]

    traces = [json.loads(line) for line in (tmp_path / "data" / "traces.jsonl").read_text().splitlines()]
    mined = [entry for entry in logs if str(entry["body"]).startswith("mined ")]
    assert {entry["trace_id"] for entry in mined} == {t["otel_trace_id"] for t in traces}  # logs joined to traces
