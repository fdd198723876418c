"""Kills at random moments lose nothing and duplicate nothing; one daemon per data dir."""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, RunDaemon
from tests.helpers import cli, daemon_env, post_line
from tests.otlp_receiver import http_receiver

POSTS = 30
BAD = ["{not json", '{"type": "post", "id": "7"}']

pytestmark = pytest.mark.daemon  # every test here starts `reer-runtime` as a subprocess


def daemon(data: Path, source: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli(
            str(data),
            "start",
            "--input",
            str(source),
            "--provider",
            "dummy://",
            "--min-engagement",
            "0",
            "--exit-when-idle",
            *extra,
        ),
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


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
        [sys.executable, "-m", "reer_runtime", "--data-dir", str(data), "start", "--provider", "dummy://"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert first.stderr is not None and first.stdin is not None
    for line in first.stderr:  # it took the lock before it logged its start
        if "started: data dir" in line:
            break
    second = subprocess.run(
        cli(str(data), "start", "--provider", "dummy://", "--exit-when-idle"),
        input="",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=60)
    assert second.returncode == 2
    assert f"another reer-runtime daemon (pid {first.pid}) is using {data}" in second.stderr
    readers = subprocess.run(
        [sys.executable, "-m", "reer_runtime", "--data-dir", str(data), "traces"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert readers.returncode == 0


def test_faulty_providers_are_retried_and_failed_posts_can_be_mined_later(
    tmp_path: Path, run_daemon: RunDaemon
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(post_line(i, author="f") for i in range(8)) + "\n")
    flaky = "fault://?base=dummy://&error=0.2&rate_limit=0.1&retry_after=0.01&hang=0.05&malformed=0.05&seed=5"
    # 40% of attempts fail; with 20 retries a call fails for good with odds 0.4**21 (about 4e-9), so
    # the run's hundred calls all succeed (with 8 retries, about 1 run in 35 lost a post).
    env = {
        "REER_GENERATOR": flaky,
        "REER_SCORER": flaky,
        "REER_LIMITS__DEFAULT__TIMEOUT_S": "1",
        "REER_LIMITS__DEFAULT__MAX_RETRIES": "20",
        "REER_LIMITS__DEFAULT__CIRCUIT_FAILURES": "50",
    }
    done = run_daemon("start", "--input", str(source), "--exit-when-idle", "--min-engagement", "0.5", env=env)
    assert done.returncode == 0, done.stderr
    data = tmp_path / "data"
    assert len((data / "traces.jsonl").read_text().splitlines()) == 4  # every selected post, despite the faults
    stats = json.loads(run_daemon("stats", "--json").stdout)
    assert stats["retries"] > 0 and stats["posts"]["failed"] == 0

    more = tmp_path / "more.jsonl"
    more.write_text("\n".join(post_line(i, author="g") for i in range(100, 104)) + "\n")
    broken = {"REER_SCORER": "fault://?base=dummy://&fatal=1"}
    failing = run_daemon("start", "--input", str(more), "--exit-when-idle", "--min-engagement", "0.5", env=broken)
    assert failing.returncode == 0, failing.stderr
    failures = [json.loads(x) for x in (data / "failed.jsonl").read_text().splitlines()]
    assert len(failures) == 2 and all("injected: 400 bad request" in f["reason"] for f in failures)
    assert run_daemon("start", "--exit-when-idle", stdin="").returncode == 0
    assert len((data / "traces.jsonl").read_text().splitlines()) == 4  # failed posts wait for a retry

    retried = run_daemon("retry-failed")
    assert retried.returncode == 0, retried.stderr
    assert "resuming 2 selected posts" in retried.stderr
    assert len((data / "traces.jsonl").read_text().splitlines()) == 6


def call_times_under_demand(tmp_path: Path, limit_env: dict[str, str], posts: int, seconds: float) -> list[float]:
    """Run the daemon on `posts` posts of one author for `seconds`, then SIGTERM; the start time of
    every model call, from the CLIENT spans a real OTLP receiver got."""
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(post_line(i, author="r") for i in range(posts)) + "\n")
    with http_receiver() as receiver:
        env = daemon_env()
        env |= {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "REER_SHUTDOWN_GRACE_S": "0",
            "REER_MINER_CONCURRENCY": "8",
            **limit_env,
        }
        daemon = subprocess.Popen(
            cli(
                str(tmp_path / "data"),
                "start",
                "--input",
                str(source),
                "--provider",
                "dummy://",
                "--min-engagement",
                "0.5",
            ),
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
        )
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.wait(timeout=seconds)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
        return sorted(s.start_ns / 1e9 for s in receiver.spans if s.kind == "CLIENT")


def test_no_minute_holds_more_calls_than_the_limit_under_ten_times_the_demand(tmp_path: Path) -> None:
    limit = 30  # calls per minute to the one provider both roles use
    # 20 selected posts want about 20 x 17 calls: over ten times what 75 s at 30 a minute allow;
    # the run must outlast a whole minute for windows to mean anything
    starts = call_times_under_demand(tmp_path, {"REER_LIMITS__DEFAULT__PER_MINUTE": str(limit)}, 40, 75)
    assert limit <= len(starts) <= limit * 75 / 60 + 1
    for i, first in enumerate(starts):
        in_window = bisect.bisect_left(starts, first + 60) - i
        assert in_window <= limit, f"{in_window} calls in the minute from call {i}"


def test_an_hourly_limit_spaces_calls_so_no_hour_holds_more_than_the_limit(tmp_path: Path) -> None:
    per_hour = 720  # one call every 5 s: 720 calls fit in any hour, and a burst of them never comes first
    # 5 selected posts want about 85 calls; the limit allows 7 in 30 s
    starts = call_times_under_demand(tmp_path, {"REER_LIMITS__DEFAULT__PER_HOUR": str(per_hour)}, 10, 30)
    spacing = 3600 / per_hour
    assert 5 <= len(starts) <= 30 / spacing + 1
    # calls at least 3600/N s apart: no window of 3600 s can hold more than N of them
    assert min(b - a for a, b in itertools.pairwise(starts)) >= spacing * 0.99


def test_an_open_circuit_shows_in_stats_and_validate(tmp_path: Path, run_daemon: RunDaemon) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(post_line(i, author="c") for i in range(4)) + "\n")
    env = {
        "REER_GENERATOR": "fault://?base=dummy://&fatal=1,dummy://",
        "REER_LIMITS__DEFAULT__CIRCUIT_FAILURES": "2",
        "REER_LIMITS__DEFAULT__CIRCUIT_RESET_S": "600",
    }
    done = run_daemon("start", "--input", str(source), "--exit-when-idle", "--min-engagement", "0.5", env=env)
    assert done.returncode == 0, done.stderr
    assert "circuit for fault://?base=dummy://&fatal=1: closed -> open" in done.stderr
    assert len((tmp_path / "data" / "traces.jsonl").read_text().splitlines()) == 2  # the fallback mined them
    assert "circuit:  fault://?base=dummy://&fatal=1: open" in run_daemon("stats").stdout
    checked = run_daemon("validate", "--provider", "dummy://")
    assert checked.returncode == 1 and "circuit open at the last snapshot" in checked.stdout


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `folder` for the test (needs root, as in CI)."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root on Linux (CI runs as root)")
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_stops_with_one_message_and_a_restart_loses_nothing(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(post_line(i, author="full") for i in range(POSTS)) + "\n")
    with small_disk(tmp_path / "disk", "96k") as disk:
        data = disk / "data"
        env = {**os.environ, "REER_BATCH_MAX_LINES": "5", "REER_SEARCH__MAX_STEPS": "2"}
        first = daemon(data, source, env=env)
        _, stderr = first.communicate()
        assert first.returncode == 4, stderr
        assert "Traceback" not in stderr
        errors = [line for line in stderr.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and "cannot write" in errors[0] and "No space left on device" in errors[0]
        assert "Free space on that disk" in errors[0] and str(data) in errors[0]
        mined_before = len((data / "traces.jsonl").read_text().splitlines())
        assert 0 < mined_before < POSTS  # it stopped part-way
        assert all(line.endswith(b"}") for f in data.glob("*.jsonl") for line in f.read_bytes().splitlines())

        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)  # the user frees space
        second = daemon(data, source, env=env)
        _, stderr = second.communicate()
        assert second.returncode == 0, stderr
        ids = [json.loads(line)["post"]["id"] for line in (data / "posts.jsonl").read_text().splitlines()]
        traced = [json.loads(line)["post"]["id"] for line in (data / "traces.jsonl").read_text().splitlines()]
        assert sorted(ids, key=int) == sorted(traced, key=int) == [str(i) for i in range(POSTS)]  # each once
