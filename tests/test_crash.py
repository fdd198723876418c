"""Kills at random moments lose nothing and duplicate nothing; one daemon per data dir."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.helpers import post_line

POSTS = 30
BAD = ["{not json", '{"type": "post", "id": "7"}']


def daemon(data: Path, source: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "--data-dir", str(data), "start", "--input", str(source),
         "--provider", "dummy://", "--min-engagement", "0", "--exit-when-idle", *extra],
        stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip


def test_kill_9_at_random_points_then_restart_mines_every_post_exactly_once(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join([post_line(i, author="k") for i in range(POSTS)] + BAD) + "\n")
    data = tmp_path / "data"
    rng = random.Random(2026)
    kills = 0
    for _ in range(4):
        run = daemon(data, source)
        assert run.stderr is not None
        stop_after = rng.randint(1, 12)  # log lines: somewhere in reading, mining or writing
        for seen, _line in enumerate(run.stderr, start=1):
            if seen >= stop_after:
                run.send_signal(signal.SIGKILL)
                kills += 1
                break
        run.wait(timeout=120)
        run.stderr.close()
    final = daemon(data, source)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    assert kills >= 1

    traces = [json.loads(x) for x in (data / "traces.jsonl").read_text().splitlines()]
    keys = [f"{t['post']['platform']}:{t['post']['id']}" for t in traces]
    assert sorted(keys) == sorted(f"x:{i}" for i in range(POSTS))  # all mined, none twice
    ledger = [json.loads(x) for x in (data / "posts.jsonl").read_text().splitlines()]
    assert len(ledger) == POSTS  # accepted once each, however often the input was read again
    reasons = {
        json.loads(x)["raw"]: json.loads(x)["reason"] for x in (data / "rejected.jsonl").read_text().splitlines()
    }
    assert reasons[BAD[0]].startswith("invalid JSON") and "missing required field" in reasons[BAD[1]]


def test_a_second_daemon_on_the_same_data_dir_refuses_to_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "--data-dir", str(data), "start", "--provider", "dummy://"],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert first.stderr is not None and first.stdin is not None
    for line in first.stderr:  # it took the lock before it logged its start
        if "started: data dir" in line:
            break
    second = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "--data-dir", str(data), "start", "--provider", "dummy://",
         "--exit-when-idle"],
        input="", capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=60)
    assert second.returncode == 2
    assert f"another reer-runtime daemon (pid {first.pid}) is using {data}" in second.stderr
    readers = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "--data-dir", str(data), "traces"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert readers.returncode == 0
