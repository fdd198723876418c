"""The command line: help without heavy imports, and the `traces` listing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reer_runtime.cli._options import csv_mapping
from runtime.errors import UsageError
from runtime.records import HELD_OUT_GAIN
from tests.conftest import ROOT, RunDaemon
from tests.helpers import post_line


def test_help_explains_the_commands_without_importing_heavy_modules() -> None:
    probe = (
        "import sys, contextlib, io\n"
        "from reer_runtime.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "    main(['start', '--help'])\n"
        "names = ('mlx', 'mlx_lm', 'dspy', 'litellm', 'anyio', 'opentelemetry')\n"
        "heavy = sorted(m for m in names if m in sys.modules)\n"
        "print(heavy, '--exit-when-idle' in out.getvalue())\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[] True"


def test_traces_lists_filters_and_prints_json(tmp_path: Path, run_daemon: RunDaemon) -> None:
    posts = tmp_path / "posts.jsonl"
    posts.write_text("\n".join(post_line(i, author="a") for i in range(5)) + "\n")
    assert run_daemon("start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0.5").returncode == 0

    table = run_daemon("traces")
    assert table.returncode == 0
    meaning, header, *rows, footnote = table.stdout.splitlines()
    assert meaning.split() == ["held-out", "NLL", "per", "token,", "lower", "is", "better"] and len(rows) == 3
    assert header.split()[:4] == ["post", "engage", "gain", "no"] and meaning.index("NLL") == header.index("no plan")
    assert meaning.index("held-out") + len("held-out") == header.index("gain") + len("gain")
    assert footnote == f"held-out gain: {HELD_OUT_GAIN} (-: not measured)"

    top = run_daemon("traces", "--json", "--min-score", "1.0")
    records = [json.loads(line) for line in top.stdout.splitlines()]
    assert [r["engagement"] for r in records] == [1.0]

    assert len(run_daemon("traces", "--json", "--limit", "2").stdout.splitlines()) == 2

    trace = records[0]
    shown = run_daemon("traces", "show", f"x:{trace['post']['id']}")  # by post key
    assert shown.returncode == 0, shown.stderr
    assert trace["otel_trace_id"] in shown.stdout and trace["post"]["text"] in shown.stdout
    assert all(f"{name}: " in shown.stdout for name in trace["sections"])  # every section of the found plan
    assert shown.stdout.count("step ") == len(trace["steps"]) and f"z* {trace['scores']['final']:.3f}" in shown.stdout
    held = trace["held_out"]
    assert f"held-out gain {held['gain']:+.3f}: nats a token better than a generic plan" in shown.stdout
    assert f"({held['tokens']} of them; in-sample gain {held['in_sample_gain']:+.3f})" in shown.stdout
    every = [json.loads(line) for line in run_daemon("traces", "--json").stdout.splitlines()]
    assert [r.split()[2] for r in rows] == [f"{t['held_out']['gain']:+.3f}" for t in every]  # the gain column
    assert run_daemon("traces", "show", trace["trace_id"]).stdout == shown.stdout  # by trace id, the same
    missing = run_daemon("traces", "show", "no-such-post")
    assert missing.returncode == 1 and "no trace" in missing.stderr
    (tmp_path / "data" / "traces.jsonl").write_text("{}\n")
    broken = run_daemon("traces")
    assert broken.returncode == 1 and "traces.jsonl:1:" in broken.stderr


def test_validate_reports_every_problem_and_exits_one(tmp_path: Path, run_daemon: RunDaemon) -> None:
    posts = tmp_path / "posts.jsonl"
    posts.write_text(post_line(1) + "\n")
    assert run_daemon("start", "--input", str(posts), "--exit-when-idle").returncode == 0
    clean = run_daemon("validate", "--provider", "dummy://")
    assert clean.returncode == 0, clean.stdout
    data = tmp_path / "data"
    (data / "traces.jsonl").write_bytes(b'{"half": ')  # a torn record
    (data / "rejected.jsonl").write_text('{"source": 3}\n')  # a corrupt one
    (data / "config.toml").write_text("min_engagement = 7\n")
    broken = run_daemon("validate", "--provider", "dummy://")
    problems = [line for line in broken.stdout.splitlines() if line.startswith("PROBLEM")]
    assert broken.returncode == 1 and len(problems) == 3, broken.stdout
    assert any("torn last record" in p for p in problems)
    assert any("rejected.jsonl:1" in p for p in problems)
    assert any("min_engagement" in p for p in problems)


def test_start_help_lists_every_provider_scheme(run_daemon: RunDaemon) -> None:
    shown = run_daemon("start", "--help")
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    assert all(s in text for s in ("mlx://", "mlx:///FILE.gguf", "openai://", "dspy://", "fault://", "dummy://"))


def test_a_mistyped_variable_is_named_with_the_setting_it_may_mean(run_daemon: RunDaemon) -> None:
    done = run_daemon("start", "--exit-when-idle", stdin="", env={"REER_MIN_ENGAGMENT": "0.1"})
    assert done.returncode == 0, done.stderr
    assert "REER_MIN_ENGAGMENT is not a setting and is ignored (did you mean REER_MIN_ENGAGEMENT?)" in done.stderr


def test_csv_mappings_keep_commas_inside_values_and_may_be_repeated() -> None:
    assert csv_mapping(["text=body,time=date,time_format=%a, %b %d, %Y", "likes=hearts"]) == {
        "text": "body",
        "time": "date",
        "time_format": "%a, %b %d, %Y",
        "likes": "hearts",
    }
    with pytest.raises(UsageError, match="KEY one of text, time"):
        csv_mapping(["txet=body"])
