"""The command line where a new user trips: closed pipes, a terminal as stdin, figures named for what
they mean, options named in their errors, a data dir that is not there, and no bookkeeping where it
means nothing."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, RunDaemon
from tests.helpers import cli, daemon_env, post_line
from tests.openai_server import FakeServer, serving
from tests.runtime.writer.test_writer import scripted_writer


def _env() -> dict[str, str]:
    env = daemon_env()
    return env | {"REER_GENERATOR": "dummy://", "REER_SCORER": "dummy://"}


@pytest.fixture
def mined(tmp_path: Path, run_daemon: RunDaemon) -> Path:
    """A data dir holding six traces mined with `dummy://`."""
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(post_line(i, author="a") + "\n" for i in range(6)))
    done = run_daemon("start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0")
    assert done.returncode == 0, done.stderr
    assert "NLL per token of the post, lower is better: " in done.stderr
    assert re.search(r"with no plan -> [\d.]+ with the initial plan -> [\d.]+ with the found plan", done.stderr)
    return tmp_path / "data"


def test_the_data_dir_option_is_taken_after_traces_show(mined: Path) -> None:
    shown = subprocess.run(
        [*cli(mined, "traces", "show", "x:3")[:3], "traces", "show", "x:3", "--data-dir", str(mined)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_env(),
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("trace ") and "post x:3 by a" in shown.stdout


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(mined: Path) -> None:
    (mined / "traces.jsonl").write_bytes((mined / "traces.jsonl").read_bytes() * 200)  # far more than a pipe holds
    lister = subprocess.Popen(
        cli(mined, "traces", "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=_env()
    )
    assert lister.stdout is not None and lister.stderr is not None
    assert lister.stdout.readline().startswith(b"{")  # `| head -1`
    lister.stdout.close()
    errors = lister.stderr.read().decode()
    assert lister.wait(timeout=60) == 0 and errors == ""


def test_a_terminal_as_stdin_is_told_how_to_end_the_input(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    daemon = subprocess.Popen(
        cli(tmp_path / "data", "start", "--exit-when-idle"),
        stdin=follower,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=_env(),
    )
    os.close(follower)
    assert daemon.stderr is not None
    first = daemon.stderr.readline().decode()  # said before anything is read
    os.write(leader, (post_line(1) + "\n").encode() + b"\x04")  # a post, then Ctrl-D
    rest = daemon.stderr.read().decode()
    assert daemon.wait(timeout=120) == 0, rest
    os.close(leader)
    assert "end with Ctrl-D" in first, first
    assert "done: 1 lines read, 1 posts accepted" in rest


def test_drafts_ranked_by_a_named_figure_and_no_ingest_bookkeeping(mined: Path, run_daemon: RunDaemon) -> None:
    posts = ["Shipping log 1: two restores tested today.", "Shipping log 2: the restore took 4 minutes, not 40."]
    with serving(FakeServer(generator=scripted_writer(posts=["(the start check's trial call)", *posts]))) as server:
        drafts = run_daemon("generate", "--topic", "shipping logs", "-n", "2", env={"REER_GENERATOR": server.uri()})
    assert drafts.returncode == 0, drafts.stderr
    headers = [line for line in drafts.stdout.splitlines() if line.startswith("=== draft")]
    assert len(headers) == 2
    label = r"likeness to your best post ([01]\.\d{2}), from 0 to 1, higher is better\)$"
    scores = [float(found.group(1)) for h in headers if (found := re.search(label, h))]
    assert len(scores) == 2, headers
    assert scores == sorted(scores, reverse=True), "drafts are shown best first"
    assert "done:" not in drafts.stderr and "lines read" not in drafts.stderr


def test_an_optimize_that_does_nothing_says_why_and_fails(tmp_path: Path, run_daemon: RunDaemon) -> None:
    posts = tmp_path / "posts.jsonl"
    posts.write_text(post_line(1) + "\n")
    assert run_daemon("start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0").returncode == 0
    refused = run_daemon("optimize")
    assert refused.returncode == 1, refused.stderr
    lines = [line for line in refused.stderr.splitlines() if "not done:" in line]
    assert len(lines) == 1 and "1 traces" in lines[0] and "at least 4 needed" in lines[0], refused.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["generate", "x", "-n", "0"], "argument --n/-n: 0 is out of range: at least 1 and at most 20"),
        (["generate", "x", "--thread-size", "two"], "argument --thread-size: 'two' is not a whole number"),
        (["traces", "--limit", "-1"], "argument --limit: -1 is out of range: at least 1"),
    ],
)
def test_a_bad_number_is_reported_with_its_option(args: list[str], expected: str, run_daemon: RunDaemon) -> None:
    refused = run_daemon(*args)
    assert refused.returncode == 2 and expected in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and "$." not in refused.stderr


@pytest.mark.parametrize("command", [["traces"], ["traces", "show", "x:1"], ["stats"]])
def test_reading_a_data_dir_that_does_not_exist_is_an_error(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "typo-dir"
    done = subprocess.run(cli(missing, *command), capture_output=True, text=True, cwd=ROOT, env=_env(), check=False)
    assert done.returncode == 2 and f"data dir {missing} does not exist" in done.stderr, done.stderr
    assert not missing.exists()


def test_validate_reports_a_data_dir_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "typo-dir"
    done = subprocess.run(
        cli(missing, "validate", "--provider", "dummy://"),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_env(),
        check=False,
    )
    assert done.returncode == 1 and f"PROBLEM  data dir {missing} does not exist" in done.stdout, done.stdout
    assert "no problems found" not in done.stdout


def test_validate_counts_one_record_in_the_singular(tmp_path: Path, run_daemon: RunDaemon) -> None:
    posts = tmp_path / "posts.jsonl"
    posts.write_text(post_line(1) + "\n")
    assert run_daemon("start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0").returncode == 0
    checked = run_daemon("validate", "--provider", "dummy://")
    assert "ok       traces.jsonl: 1 record\n" in checked.stdout and "1 records" not in checked.stdout, checked.stdout
