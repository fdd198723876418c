"""Logging as the settings say: a file rotated by size, a level per component, JSON with the
fields passed in `extra=`, no empty trace ids, and each handled message's duration on request."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runtime.logs import setup_logging
from tests.conftest import RunDaemon


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put the root logger back as it was: these tests configure the process's logging."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_file_is_rotated_at_its_size_with_the_backups_kept(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "reer.log"
    setup_logging("text", "INFO", file=log_file, max_bytes=2048, backups=2)
    for i in range(200):
        logging.getLogger("reer.test").info("line %03d of a log that grows past its size", i)
    kept = sorted(p.name for p in log_file.parent.iterdir())
    assert kept == ["reer.log", "reer.log.1", "reer.log.2"]
    assert all(p.stat().st_size <= 2048 for p in log_file.parent.iterdir())
    assert "line 199" in log_file.read_text()


def test_a_level_per_component_over_the_global_one(tmp_path: Path) -> None:
    log_file = tmp_path / "reer.log"
    setup_logging("text", "WARNING", file=log_file, levels={"actors.miner": "DEBUG", "httpx": "ERROR"})
    logging.getLogger("actors.miner").debug("the miner's detail")
    logging.getLogger("actors.generator").info("the generator's news")
    logging.getLogger("httpx").warning("a request")
    text = log_file.read_text()
    assert "the miner's detail" in text and "the generator's news" not in text and "a request" not in text


def test_json_keeps_extra_fields_and_lines_outside_spans_carry_no_empty_ids(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:  # `spans`: a tracer provider whose spans have ids, whatever ran before
    log_file = tmp_path / "reer.log"
    setup_logging("json", "INFO", file=log_file)
    logging.getLogger("reer.test").info("outside", extra={"post": "x:1", "calls": 3})
    with otel_trace.get_tracer("test").start_as_current_span("inside") as span:
        logging.getLogger("reer.test").info("inside")
    outside, inside = (json.loads(line) for line in log_file.read_text().splitlines())
    assert outside["post"] == "x:1" and outside["calls"] == 3 and "trace_id" not in outside
    assert inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
    text_file = tmp_path / "text.log"
    setup_logging("text", "INFO", file=text_file)
    logging.getLogger("reer.test").info("plain")
    assert "[trace=" not in text_file.read_text() and "reer.test plain" in text_file.read_text()


def test_the_daemon_logs_to_its_file_with_each_messages_duration(tmp_path: Path, run_daemon: RunDaemon) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.toml").write_text(
        'log_format = "json"\n[logging]\nfile_enabled = true\nperformance_tracking = true\n'
        '[logging.levels]\n"actors.trace_writer" = "WARNING"\n'
    )
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps({"type": "post", **p}) + "\n" for p in _posts()))
    assert run_daemon("mine", str(posts)).returncode == 0
    records = [json.loads(line) for line in (data / "logs" / "reer.log").read_text().splitlines()]
    handled = [r for r in records if r["logger"] == "reer.performance"]
    assert handled and all(r["duration_ms"] >= 0 and r["actor"] and r["topic"] for r in handled)
    assert {r["actor"] for r in handled} >= {"miner", "trace-writer"}
    assert not [r for r in records if r["logger"] == "actors.trace_writer" and r["level"] == "info"]


def _posts() -> list[dict[str, object]]:
    import msgspec

    from tests.helpers import make_post

    return [
        {
            k: v
            for k, v in msgspec.to_builtins(make_post(i, f"Post {i}. Worth reading.", likes=5 * i)).items()
            if k != "type"
        }
        for i in range(4)
    ]
