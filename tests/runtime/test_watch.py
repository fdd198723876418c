"""`start --watch DIR`: each dropped file is read once, recorded, moved aside; a restart does not redo it."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import ROOT, RunDaemon
from tests.helpers import cli, daemon_env, validate_store
from tests.runtime.inputs.test_formats import ANALYTICS


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_files_are_read_once_moved_aside_and_not_redone_after_a_restart(tmp_path: Path, run_daemon: RunDaemon) -> None:
    inbox, data = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    for export in ANALYTICS:
        shutil.copy(export, inbox)
    (inbox / "notes.txt").write_text("date,body\n2020-01-01,hello\n")
    args = ("start", "--watch", str(inbox), "--exit-when-idle", "--min-engagement", "0")
    first = run_daemon(*args)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in (inbox / "done").iterdir()) == sorted(p.name for p in ANALYTICS)
    assert [p.name for p in (inbox / "failed").iterdir()] == ["notes.txt"]
    assert [p.name for p in inbox.iterdir() if p.is_file()] == []
    assert validate_store(data / "watched.jsonl", "watched") == 3
    failed = [json.loads(x) for x in (data / "watched.jsonl").read_text().splitlines() if '"error":"' in x]
    assert len(failed) == 1 and "cannot tell its format" in failed[0]["error"]
    posts, rejected = lines(data / "posts.jsonl"), lines(data / "rejected.jsonl")
    assert posts == 4 and rejected == 2  # one bad time, one post in both monthly files

    shutil.copy(ANALYTICS[0], inbox)  # the same export dropped again
    again = run_daemon(*args)
    assert again.returncode == 0, again.stderr
    assert "was read before (same content)" in again.stderr
    assert (lines(data / "posts.jsonl"), lines(data / "rejected.jsonl"), lines(data / "watched.jsonl")) == (4, 2, 3)
    assert len(list((inbox / "done").iterdir())) == 3  # kept beside the first copy, under a new name


def test_a_running_daemon_takes_a_file_dropped_later(tmp_path: Path) -> None:
    inbox, data = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    env = daemon_env()
    env |= {"REER_GENERATOR": "dummy://", "REER_SCORER": "dummy://"}
    daemon = subprocess.Popen(
        cli(str(data), "start", "--watch", str(inbox), "--min-engagement", "0"),
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        partial = inbox / ".export.csv.part"  # hidden while it is written, as a copy tool does
        shutil.copy(ANALYTICS[1], partial)
        partial.rename(inbox / "export.csv")
        deadline = time.monotonic() + 60
        while lines(data / "traces.jsonl") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # waiting for an outcome the test observes, with a deadline
        assert lines(data / "traces.jsonl") == 2
        assert (inbox / "done" / "export.csv").exists() and not (inbox / "export.csv").exists()
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, stderr
