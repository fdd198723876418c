"""Ids, texts and file names from outside never reach a log line or a terminal raw: a newline
cannot forge a log line, and ANSI or OSC escapes cannot colour, retitle or clear a terminal."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from runtime.logs import logging_config
from runtime.terminal import printable
from tests.conftest import RunDaemon
from tests.helpers import post_line

FORGED = "1\n2026-12-06 00:00:00,000 ERROR   reer forged line"
ESCAPES = "\x1b[2J\x1b]0;owned\x07\u202eevil"


def test_printable_escapes_control_characters_and_keeps_the_rest() -> None:
    assert printable(FORGED) == FORGED.replace("\n", "\\n")
    assert printable(ESCAPES) == "\\x1b[2J\\x1b]0;owned\\x07\\u202eevil"
    assert printable("a\nb\tc", newlines=True) == "a\nb\\tc"
    assert printable("café 🙂 ok") == "café 🙂 ok"


def test_a_log_line_in_text_format_cannot_be_forged() -> None:
    formatter = logging_config("text")["formatters"]["text"]  # the daemon's own text formatter
    text = formatter.pop("()")(**formatter)
    record = logging.LogRecord(
        "reer.test", logging.WARNING, __file__, 1, "refused post %s: %s", (FORGED, ESCAPES), None
    )
    record.context = ""
    (line,) = text.format(record).splitlines()
    assert "\\n2026-12-06" in line and "\x1b" not in line and "\\x1b]0;owned" in line


def test_the_traces_table_and_a_trace_shown_in_full_escape_what_the_posts_hold(
    tmp_path: Path, run_daemon: RunDaemon
) -> None:
    posts = tmp_path / "in.jsonl"
    posts.write_text(post_line(1, id=f"id{ESCAPES}", text=f"A post {ESCAPES} with escapes in it") + "\n")
    done = run_daemon("start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stderr
    (trace,) = [json.loads(line) for line in (tmp_path / "data" / "traces.jsonl").read_text().splitlines()]
    assert trace["post"]["id"] == f"id{ESCAPES}"  # the store keeps the data as it came
    table, full = run_daemon("traces"), run_daemon("traces", "show", trace["trace_id"])
    for shown in (table, full):
        assert shown.returncode == 0, shown.stderr
        assert "\x1b" not in shown.stdout + shown.stderr and "\u202e" not in shown.stdout
        assert "\\x1b" in shown.stdout
