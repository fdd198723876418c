"""Progress: plain log lines when stderr is not a terminal, a bar when it is (a real pseudo-terminal)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import anyio
import pytest

from actors.ingestor import IngestCounts, Ingestor
from actors.trace_writer import TraceWriter
from reer_runtime.progress import Progress
from tests.conftest import ROOT, RunDaemon
from tests.helpers import cli, daemon_env, post_line

LINE = re.compile(
    r"progress: (\d+) lines read, (\d+) accepted, (\d+) rejected; (\d+) of (\d+) mined \((\d+) failed\), "
    r"[\d.]+ posts/min, (about \d+s left|nothing queued|time left not known yet)"
)


def write_posts(path: Path) -> None:
    path.write_text("".join(post_line(i) + "\n" for i in range(60)) + "not json\n")


def test_progress_is_logged_as_plain_lines_off_a_terminal(tmp_path: Path, run_daemon: RunDaemon) -> None:
    posts = tmp_path / "in.jsonl"
    write_posts(posts)
    env = {"REER_PROGRESS_INTERVAL_S": "0.05"}
    done = run_daemon("start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0.5", env=env)
    assert done.returncode == 0, done.stderr
    seen = [tuple(map(int, m.groups()[:6])) for m in LINE.finditer(done.stderr)]
    assert seen, done.stderr[-2000:]
    mined = [s[3] for s in seen]
    assert mined == sorted(mined) and all(s[3] <= s[4] for s in seen)  # never more mined than queued
    assert "\r" not in done.stderr  # no bar drawn into a log


@pytest.mark.daemon
def test_a_terminal_gets_a_progress_bar(tmp_path: Path) -> None:
    posts = tmp_path / "in.jsonl"
    write_posts(posts)
    env = daemon_env()
    env |= {"REER_GENERATOR": "dummy://", "REER_SCORER": "dummy://", "COLUMNS": "120"}
    leader, follower = pty.openpty()
    daemon = subprocess.Popen(
        cli(str(tmp_path / "data"), "start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0.5"),
        stderr=follower,
        stdout=subprocess.DEVNULL,
        cwd=ROOT,
        env=env,
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the daemon
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert daemon.wait(timeout=60) == 0
    text = output.decode(errors="replace")
    assert re.search(r"mining: +\d+%\|", text) and ("post/s" in text or "s/post" in text), text[-2000:]
    assert "rejected" in text and "done: 61 lines read" in text  # log lines still print, above the bar


@pytest.mark.anyio
async def test_the_bar_shows_the_final_counts_when_it_closes(capsys: pytest.CaptureFixture[str]) -> None:
    ingestor = SimpleNamespace(counts=IngestCounts(lines=10, accepted=10, selected=10))
    writer = SimpleNamespace(mined=8, failed=0)
    progress = Progress(cast(Ingestor, ingestor), cast(TraceWriter, writer), 1.0, terminal=True)
    async with anyio.create_task_group() as tg:
        tg.start_soon(progress.run)
        await anyio.wait_all_tasks_blocked()
        writer.mined = 10  # the last posts are mined, then the run ends before the bar's next tick
        tg.cancel_scope.cancel()
    last = capsys.readouterr().err.rsplit("\r", 1)[-1]
    assert re.search(r"mining: 100%\|.*\| 10/10 ", last), last
