"""Hostile and awkward sources: huge CSV cells, and input that can be read only once (pipes, FIFOs, `<(...)`)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.conftest import ROOT, RunDaemon
from tests.helpers import cli, daemon_env, post_line, run_cli

CSV_MAP = "text=body,time=date,likes=hearts"


def stored(data: Path, name: str) -> list[dict[str, object]]:
    path = data / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_csv_cell_over_the_csv_modules_limit_is_one_rejected_row(tmp_path: Path, run_daemon: RunDaemon) -> None:
    """Python's csv refuses fields over 131,072 characters by default: one such cell must not stop the file."""
    huge = tmp_path / "export.csv"
    huge.write_text(f'date,body,hearts\n2020-01-01,"{"word " * 40_000}",3\n2020-01-02,a short one,4\n')
    done = run_daemon("start", "--input", str(huge), "--exit-when-idle", "--csv", CSV_MAP)
    assert done.returncode == 0, done.stderr
    data = tmp_path / "data"
    assert [a["post"]["text"] for a in stored(data, "posts.jsonl")] == ["a short one"]  # type: ignore[index]
    (rejected,) = stored(data, "rejected.jsonl")
    assert str(rejected["reason"]).startswith("too long: the text has 199999 characters"), rejected


def start_reading(data: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`reer-runtime start --input SOURCE --exit-when-idle ARGS` in bash, where SOURCE may be `<(...)`."""
    env = daemon_env() | {"REER_GENERATOR": "dummy://", "REER_SCORER": "dummy://"}
    command = cli(data, "start", "--input", source, "--exit-when-idle", "--min-engagement", "0", *args)
    shell = ["bash", "-c", " ".join(c if c == source else shlex.quote(c) for c in command)]
    return subprocess.run(shell, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_a_process_substitution_is_read_once_whatever_its_format(tmp_path: Path) -> None:
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(post_line(i) + "\n" for i in range(40)))  # more than one 4 KiB head
    csv = tmp_path / "export.csv"
    csv.write_text("date,body,hearts\n2020-01-01,first post,3\n2020-01-02,second post,4\n")
    for source, args, expected in ((posts, (), 40), (csv, ("--csv", CSV_MAP), 2)):
        data = tmp_path / f"data-{source.suffix[1:]}"
        done = start_reading(data, f"<(cat {source})", *args)
        assert done.returncode == 0, done.stderr
        assert len(stored(data, "posts.jsonl")) == expected, done.stderr


def test_a_named_fifo_and_stdin_are_read_with_their_format_told_from_the_first_line(tmp_path: Path) -> None:
    csv_text = "date,body,hearts\n2020-01-01,first post,3\n2020-01-02,second post,4\n"
    fifo = tmp_path / "inbox.fifo"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "w") as pipe:  # opens once the daemon opens the other end
            pipe.write(csv_text)

    writer = threading.Thread(target=write)
    writer.start()
    data = tmp_path / "fifo"
    done = start_reading(data, str(fifo), "--csv", CSV_MAP)
    writer.join(timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(a["post"]["text"] for a in stored(data, "posts.jsonl")) == ["first post", "second post"]  # type: ignore[index]

    piped = run_cli(tmp_path / "stdin", "start", "--input", "-", "--exit-when-idle", "--csv", CSV_MAP, stdin=csv_text)
    assert piped.returncode == 0, piped.stderr
    assert len(stored(tmp_path / "stdin", "posts.jsonl")) == 2, piped.stderr


def test_a_source_unreadable_as_a_whole_fails_the_run_and_a_link_loop_is_named(
    tmp_path: Path, run_daemon: RunDaemon
) -> None:
    truncated = tmp_path / "tweets.js"
    truncated.write_text('window.YTD.tweets.part0 = [ { "tweet" : { "id_str" : "1", "full_text" : "cut here')
    good = tmp_path / "posts.jsonl"
    good.write_text(post_line(1) + "\n")
    done = run_daemon("start", "--input", str(truncated), "--input", str(good), "--exit-when-idle")
    assert done.returncode == 1, done.stderr
    assert f"cannot read {truncated}" in done.stderr and "1 input source(s) could not be read" in done.stderr
    assert len(stored(tmp_path / "data", "posts.jsonl")) == 1  # the readable one was read all the same

    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    refused = run_daemon("start", "--input", str(loop), "--exit-when-idle")
    assert refused.returncode == 2 and "Too many levels of symbolic links" in refused.stderr, refused.stderr


def test_dates_at_the_ends_of_the_calendar_are_refused_and_the_report_still_draws(
    tmp_path: Path, run_daemon: RunDaemon
) -> None:
    odd = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1969-07-20T20:17:00Z"]
    posts = tmp_path / "in.jsonl"
    posts.write_text("".join(post_line(i, created_at=when) + "\n" for i, when in enumerate(odd)) + post_line(9) + "\n")
    done = run_daemon("start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0")
    assert done.returncode == 0, done.stderr
    data = tmp_path / "data"
    assert [str(r["reason"]).split(":")[0] for r in stored(data, "rejected.jsonl")] == ["invalid time"] * 3
    assert len(stored(data, "posts.jsonl")) == 1

    from datetime import datetime

    import msgspec

    from runtime.report.page import _local  # a post stored before such dates were refused
    from tests.helpers import make_post

    early = msgspec.structs.replace(make_post(1), created_at=datetime.fromisoformat(odd[0]))
    assert _local(early, ZoneInfo("America/Los_Angeles")).year == 1
    report = run_daemon("report", "--tz", "Pacific/Kiritimati")
    assert report.returncode == 0, report.stderr


def test_a_provider_failure_in_the_parallel_rewrites_fails_the_post_and_is_not_a_dead_letter(
    tmp_path: Path, run_daemon: RunDaemon
) -> None:
    posts = tmp_path / "in.jsonl"
    posts.write_text("".join(post_line(i) + "\n" for i in range(12)))
    faulty = {"REER_GENERATOR": "fault://?base=dummy://&fatal=0.15&seed=3"}
    done = run_daemon("start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0", env=faulty)
    assert done.returncode == 0, done.stderr
    data = tmp_path / "data"
    assert stored(data, "dead-letters.jsonl") == []
    mined = {f"{t['post']['platform']}:{t['post']['id']}" for t in stored(data, "traces.jsonl")}  # type: ignore[index]
    failed = {f"{f['post']['platform']}:{f['post']['id']}" for f in stored(data, "failed.jsonl")}  # type: ignore[index]
    assert failed and mined | failed == {f"x:{i}" for i in range(12)} and not mined & failed
