"""The pack's three command lines, as its users type them (models: `dummy://`), and what they rely on."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.conftest import RunDaemon
from tests.helpers import make_post
from tests.openai_server import FakeServer, serving
from tests.runtime.writer.test_writer import scripted_writer

POSTS = [make_post(i, f"Post number {i}. It says something worth reading, plainly.", likes=10 * i) for i in range(6)]


def write_pack_input(path: Path, *, wrapped: bool = False) -> None:
    """The pack's `input.json`: one JSON array of post objects (or an object with a `posts` array),
    pretty-printed, without the `"type"` field of our JSON Lines."""
    import msgspec

    posts = [{k: v for k, v in msgspec.to_builtins(p).items() if k != "type"} for p in POSTS]
    path.write_text(json.dumps({"posts": posts} if wrapped else posts, indent=2))


def test_mine_a_json_array_into_the_trace_store_named(tmp_path: Path, run_daemon: RunDaemon) -> None:
    write_pack_input(tmp_path / "input.json")
    mined = run_daemon(
        "mine", "input.json", "--provider", "dummy://", "--trace-store", "traces.jsonl", "--rate-limit", cwd=tmp_path
    )
    assert mined.returncode == 0, mined.stderr
    traces = [json.loads(line) for line in (tmp_path / "traces.jsonl").read_text().splitlines()]
    assert traces and not (tmp_path / "data" / "traces.jsonl").exists()  # the other stores stay in the data dir
    assert len((tmp_path / "data" / "posts.jsonl").read_text().splitlines()) == len(POSTS)
    listed = run_daemon("traces", "--json", env={"REER_TRACE_STORE": str(tmp_path / "traces.jsonl")})
    assert len(listed.stdout.splitlines()) == len(traces)
    write_pack_input(tmp_path / "wrapped.json", wrapped=True)  # {"posts": [...]}: the same posts again
    again = run_daemon("mine", str(tmp_path / "wrapped.json"), "--trace-store", str(tmp_path / "traces.jsonl"))
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("were already accepted") == 1 and "rejected " not in again.stderr  # one summary line
    rejected = (tmp_path / "data" / "rejected.jsonl").read_text().splitlines()
    assert len(rejected) == len(POSTS) and all("duplicate" in line for line in rejected)  # each row kept


def test_generate_with_the_topic_first_the_log_level_and_an_output_file(tmp_path: Path, run_daemon: RunDaemon) -> None:
    writer = scripted_writer(post="Our AI support bot answers in a minute. Humans still read every reply.")
    with serving(FakeServer(generator=writer)) as server:  # a model whose drafts pass the draft gate
        args = ("generate", "Write a social media post about AI", "--provider", server.uri(), "--log-level", "DEBUG")
        drafted = run_daemon(*args, "--output", "result.txt", "-n", "2", cwd=tmp_path)
        assert drafted.returncode == 0, drafted.stderr
        result = (tmp_path / "result.txt").read_text()
        assert result.count("=== draft ") == 2 and drafted.stdout == ""
        assert " DEBUG " in drafted.stderr
        quiet_args = ("--topic", "AI", "--n", "1", "--json", "-o", "out.jsonl", "-q", "--provider", server.uri())
        quiet = run_daemon("generate", *quiet_args, cwd=tmp_path)
        assert quiet.returncode == 0 and " INFO " not in quiet.stderr
    (record,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert record["request"]["topic"] == "AI"
    twice = run_daemon("generate", "AI", "--topic", "AI")
    assert twice.returncode == 2 and "give the topic once" in twice.stderr


def test_demo_mines_compiles_writes_and_reports(tmp_path: Path, run_daemon: RunDaemon) -> None:
    demo = run_daemon("demo", "--provider", "dummy://", "--optimize", "--log-level", "INFO")
    assert demo.returncode == 0, demo.stderr
    out = demo.stdout
    assert "mined 2 of the 8 example posts" in out and "the plan found for the best post (x:1003" in out
    assert "compiled program v1:" in out
    shown = re.search(r"\n(\d) of 3 drafts on 'why we test backups by restoring them'", out)
    assert shown, out  # the drafts that passed the draft gate are shown; refused tries are counted by reason
    assert out.count("\n--- ") == int(shown.group(1))
    report = Path(out.rsplit("the report: ", 1)[1].strip())
    assert (
        report == tmp_path / "data" / "report" / "report.html" and "<h1>What worked, and why</h1>" in report.read_text()
    )


def test_version_after_a_command_and_completion_that_installs(run_daemon: RunDaemon) -> None:
    assert run_daemon("traces", "--version").stdout.startswith("reer-runtime ")
    script = run_daemon("--print-completion", "bash")
    assert script.returncode == 0
    installed = subprocess.run(
        ["bash", "-c", f"{script.stdout}\ncomplete -p reer-runtime"], capture_output=True, text=True, check=False
    )
    assert installed.returncode == 0 and "reer-runtime" in installed.stdout
    assert all(command in script.stdout for command in ("mine", "demo", "generate", "templates"))
