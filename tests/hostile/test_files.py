"""Links, half-written files and loose modes: nothing outside the data dir is written through a
link, nothing is read from a link in the watched folder, and a file still being written waits."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, RunDaemon
from tests.helpers import cli, daemon_env, post_line, run_cli

PRECIOUS = b"a file outside the data dir, with no newline at its end"


def outside(tmp_path: Path) -> Path:
    target = tmp_path / "precious.txt"
    target.write_bytes(PRECIOUS)
    return target


def test_a_link_at_a_store_is_refused_and_the_file_it_points_to_is_untouched(
    tmp_path: Path, run_daemon: RunDaemon
) -> None:
    posts = tmp_path / "in.jsonl"
    posts.write_text("not json\n" + post_line(1) + "\n")
    for store in ("rejected.jsonl", "failed.jsonl", "posts.jsonl"):
        data = tmp_path / "data"
        data.mkdir(exist_ok=True)
        target = outside(tmp_path)
        (data / store).unlink(missing_ok=True)
        (data / store).symlink_to(target)
        done = run_daemon("start", "--input", str(posts), "--exit-when-idle")
        assert done.returncode != 0 and f"{data / store} is a symbolic link" in done.stderr, done.stderr
        assert target.read_bytes() == PRECIOUS, store  # neither appended to, nor cut at its "torn" tail
        (data / store).unlink()


def test_the_report_replaces_a_link_at_its_path_instead_of_writing_through_it(
    tmp_path: Path, run_daemon: RunDaemon
) -> None:
    posts = tmp_path / "in.jsonl"
    posts.write_text("".join(post_line(i) + "\n" for i in range(6)))
    assert run_daemon("start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0").returncode == 0
    page = tmp_path / "data" / "report" / "report.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    target = outside(tmp_path)
    page.symlink_to(target)
    done = run_daemon("report")
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == PRECIOUS
    assert not page.is_symlink() and "<html" in page.read_text()
    assert stat.S_IMODE(page.stat().st_mode) == 0o600


def test_a_link_or_fifo_dropped_in_the_watched_folder_is_moved_aside_unread(
    tmp_path: Path, run_daemon: RunDaemon
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    secret = tmp_path / "secret.jsonl"
    secret.write_text(post_line(7, text="a secret line that must not be read") + "\n")
    (inbox / "posts.jsonl").symlink_to(secret)
    os.mkfifo(inbox / "pipe.jsonl")  # reading it would block the watcher for good
    done = run_daemon("start", "--watch", str(inbox), "--exit-when-idle", env={"REER_WATCH_SETTLE_S": "0"})
    assert done.returncode == 0, done.stderr
    data = tmp_path / "data"
    assert not (data / "posts.jsonl").exists() or "secret" not in (data / "posts.jsonl").read_text()
    assert sorted(p.name for p in (inbox / "failed").iterdir()) == ["pipe.jsonl", "posts.jsonl"]
    watched = [json.loads(x) for x in (data / "watched.jsonl").read_text().splitlines()]
    assert sorted(w["error"].split(":")[0] for w in watched) == ["a symbolic link", "not a regular file"]


def test_a_file_whose_writer_pauses_is_taken_only_once_it_has_settled(tmp_path: Path) -> None:
    inbox, data = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    env = daemon_env() | {"REER_GENERATOR": "dummy://", "REER_SCORER": "dummy://", "REER_WATCH_SETTLE_S": "4"}
    daemon = subprocess.Popen(
        cli(data, "start", "--watch", str(inbox), "--min-engagement", "0"),
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        with open(inbox / "posts.jsonl", "w") as file:
            file.write("".join(post_line(i) + "\n" for i in range(3)))
            file.flush()
            time.sleep(2.5)  # the writer's own pause, longer than a poll (1 s): the case under test
            file.write("".join(post_line(i) + "\n" for i in range(3, 6)))
        deadline = time.monotonic() + 60
        while not (inbox / "done" / "posts.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.2)  # waiting for an outcome the test observes, with a deadline
        accepted = (data / "posts.jsonl").read_text().splitlines()
        assert len(accepted) == 6  # both halves, read once the file held still
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, stderr


def test_stores_are_private_whatever_the_umask_and_a_shared_data_dir_is_warned_of(tmp_path: Path) -> None:
    posts = tmp_path / "in.jsonl"
    posts.write_text("not json\n" + post_line(1) + "\n")
    fresh, shared = tmp_path / "fresh", tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    for data in (fresh, shared):
        done = run_cli(data, "start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0", umask=0)
        assert done.returncode == 0, done.stderr
        stores = [p for p in data.iterdir() if p.is_file()]
        assert {"posts.jsonl", "rejected.jsonl", "traces.jsonl"} <= {p.name for p in stores}
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in stores} == {p.name: 0o600 for p in stores}
        warned = "readable by others (mode 755)" in done.stderr
        assert warned == (data == shared), done.stderr
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700


def test_repair_sets_a_corrupt_middle_line_aside_and_the_store_reads_again(
    tmp_path: Path, run_daemon: RunDaemon
) -> None:
    posts = tmp_path / "in.jsonl"
    posts.write_text("".join(post_line(i) + "\n" for i in range(4)))
    assert run_daemon("start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0").returncode == 0
    traces = tmp_path / "data" / "traces.jsonl"
    lines = traces.read_bytes().splitlines(keepends=True)
    traces.write_bytes(lines[0] + b'{"not": "a trace"}\n' + b"".join(lines[1:]))
    broken = run_daemon("traces")
    assert broken.returncode != 0 and "traces.jsonl:2" in broken.stderr, broken.stderr
    repaired = run_daemon("repair")
    assert repaired.returncode == 0 and "1 corrupt line(s) moved to traces.jsonl.corrupt" in repaired.stderr
    assert traces.read_bytes() == b"".join(lines)  # every record kept, in order
    assert (traces.parent / "traces.jsonl.corrupt").read_bytes() == b'{"not": "a trace"}\n'
    shown = run_daemon("traces")
    assert shown.returncode == 0 and len(shown.stdout.splitlines()) == 2 + len(lines) + 1  # headers, rows, note


def test_the_model_folder_is_never_written_through_a_link(tmp_path: Path) -> None:
    import runtime.providers.local  # noqa: F401  (loads OpenBLAS before mlx.core)
    from runtime.errors import StoreError
    from runtime.providers.local.convert import ensure_converted
    from tests.tiny_model import write_tiny_gguf

    gguf = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    (data / "models").symlink_to(elsewhere)  # the models folder is a link
    with pytest.raises(StoreError, match="models is a symbolic link"):
        ensure_converted(gguf, data / "models" / "tiny")
    (data / "models").unlink()
    (data / "models").mkdir()
    (data / "models" / "tiny").symlink_to(elsewhere)  # the model's own folder is a link
    with pytest.raises(StoreError, match="tiny is a symbolic link"):
        ensure_converted(gguf, data / "models" / "tiny")
    assert list(elsewhere.iterdir()) == []
    (data / "models" / "tiny").unlink()
    (data / "models").rmdir()
    converted = ensure_converted(gguf, data / "models" / "model")  # and a plain folder converts, made 0700
    assert (converted / "config.json").is_file() and stat.S_IMODE((data / "models").stat().st_mode) == 0o700
