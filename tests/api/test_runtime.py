"""The Python API runs the daemon's pipeline: the same traces as `reer-runtime start`, one
OpenTelemetry trace per post, nothing lost on cancellation, fallbacks past a dead provider."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import reer_runtime
from runtime.writer.draft_gate import refusal
from tests.conftest import ROOT, RunDaemon
from tests.helpers import make_post, post_line

pytestmark = pytest.mark.anyio


def write_posts(path: Path, count: int) -> Path:
    path.write_text("".join(post_line(i) + "\n" for i in range(count)))
    return path


async def test_mining_through_the_api_gives_what_the_daemon_gives(
    tmp_path: Path, run_daemon: RunDaemon, spans: InMemorySpanExporter
) -> None:
    posts = write_posts(tmp_path / "posts.jsonl", 12)
    done = run_daemon("start", "--input", str(posts), "--exit-when-idle")
    assert done.returncode == 0, done.stderr
    by_daemon = {
        f"x:{t['post']['id']}": t
        for t in map(json.loads, (tmp_path / "data" / "traces.jsonl").read_text().splitlines())
    }

    async with reer_runtime.Runtime(tmp_path / "api", provider="dummy://") as rt:
        mined = await rt.mine(posts)
    assert len(mined.traces) == len(by_daemon) > 0 and not mined.failures and not mined.rejected
    assert mined.not_selected == 12 - len(mined.traces)
    for trace in mined.traces:
        theirs = by_daemon[trace.post.key]
        assert trace.plan == theirs["plan"]
        assert trace.scores.final == pytest.approx(theirs["scores"]["final"], abs=1e-9)
        assert trace.scores.no_plan == pytest.approx(theirs["scores"]["no_plan"], abs=1e-9)

    # one OpenTelemetry trace per post: its ingest, mining, model calls and write share one trace id
    ids = {t.post.key: t.otel_trace_id for t in mined.traces}
    assert len(set(ids.values())) == len(ids)
    finished = spans.get_finished_spans()
    for key, trace_id in ids.items():
        own = [s for s in finished if format(s.context.trace_id, "032x") == trace_id]
        names = {s.name for s in own}
        assert {"ingest post", "process posts.observed", "process results"} <= names, names
        assert any(s.name.startswith("chat ") for s in own) and any(s.name.startswith("text_completion") for s in own)
        keys = {(s.attributes or {}).get("reer.post.key") for s in own}
        assert keys - {None} == {key}
    # and the daemon's traces are one per post too
    assert len({t["otel_trace_id"] for t in by_daemon.values()}) == len(by_daemon)


async def test_a_cancelled_call_loses_nothing_and_the_next_open_finishes_it_once(tmp_path: Path) -> None:
    slow = "fault://?base=dummy://&delay=0.05"
    posts = [make_post(i, author="solo", likes=i) for i in range(8)]
    data = tmp_path / "data"
    accepted = data / "posts.jsonl"
    async with anyio.create_task_group() as tg:

        async def cancel_once_accepted() -> None:
            # polls the ledger file for the condition (no event reaches a test); the mining takes seconds
            while not accepted.exists() or len(accepted.read_bytes().splitlines()) < len(posts):  # noqa: ASYNC110
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()

        tg.start_soon(cancel_once_accepted)
        async with reer_runtime.Runtime(data, provider=slow, min_engagement=0.5) as rt:
            await rt.mine(posts)
            pytest.fail("mine() returned before it was cancelled")
    traces = data / "traces.jsonl"
    before = len(traces.read_bytes().splitlines()) if traces.exists() else 0

    async with reer_runtime.Runtime(data, provider="dummy://", min_engagement=0.5) as rt:
        await rt.wait_idle()
        stored = await rt.traces()
    keys = [t.post.key for t in stored]
    assert before < len(keys) == len(set(keys)) == 4  # the four posts above the threshold, once each


async def test_a_fallback_chain_with_a_dead_first_provider_starts_and_mines_on_the_next(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = "openai://127.0.0.1:9/nothing-listens-here"
    async with reer_runtime.Runtime(tmp_path, generator=[dead, "dummy://"], scorer="dummy://") as rt:
        mined = await rt.mine([make_post(1, author="solo")])
    assert [t.generators for t in mined.traces] == [["dummy://"]]
    assert any("left out, starting on the next provider" in r.message and dead in r.message for r in caplog.records)

    with pytest.raises(reer_runtime.errors.ProviderConfigError, match="cannot reach"):
        async with reer_runtime.Runtime(tmp_path / "alone", generator=dead, scorer="dummy://"):
            pass


async def test_bad_input_raises_the_command_lines_errors(tmp_path: Path) -> None:
    async with reer_runtime.Runtime(tmp_path, provider="dummy://") as rt:
        with pytest.raises(reer_runtime.UsageError, match="no such input file"):
            await rt.mine(tmp_path / "missing.jsonl")
        with pytest.raises(reer_runtime.UsageError, match=r"generate: Expected `int` >= 1"):
            await rt.generate("backups", n=0)
        with pytest.raises(reer_runtime.Refused, match="at least 4 needed"):
            await rt.optimize()
        mined = await rt.mine([{"id": "1", "text": "no date"}, make_post(2)])
        assert [r.reason.split(":")[0] for r in mined.rejected] == ["invalid event"] and len(mined.traces) == 1
        with pytest.raises(reer_runtime.UsageError, match="already accepted"):
            await rt.mine_post("again", post_id="2")
    with pytest.raises(reer_runtime.errors.ConfigError, match="min_engagement"):
        async with reer_runtime.Runtime(tmp_path / "bad", provider="dummy://", min_engagement=7):
            pass
    with pytest.raises(reer_runtime.UsageError, match="not open"):
        await rt.traces()


def test_the_blocking_client_drafts_compiles_and_reports(tmp_path: Path) -> None:
    with reer_runtime.Client(tmp_path, provider="dummy://", min_engagement=0.0) as rt:
        mined = rt.mine([make_post(i, author="solo", likes=i) for i in range(6)])
        assert len(mined.traces) == 6
        program = rt.optimize("bootstrap")
        assert program.version == 1 and len(program.train_trace_ids) + len(program.val_trace_ids) == 6
        topic = "why we test backups by restoring them"
        drafts = rt.generate(topic, n=2)  # every try, best first: dummy:// often misses the topic
        assert {d.request.topic for d in drafts} == {topic} and {d.draft_id[-1] for d in drafts} >= {"1", "2"}
        kept = [d for d in drafts if d.rejected_reason is None]
        assert drafts[: len(kept)] == kept and all(refusal("\n".join(d.parts), topic) is None for d in kept)
        assert rt.complete("Say hello").provider == "dummy://"
        assert len(rt.score("Signups doubled.", prompt="Brief: a post").logprobs) > 0
        stats = rt.stats()
    assert stats.store.total_traces == 6 and stats.store.programs == 1 and stats.store.drafts >= 2
    assert stats.posts_mined >= 6 and stats.success_rate is not None and stats.models
    # a daemon on the same data dir sees the same stores
    assert len((tmp_path / "traces.jsonl").read_text().splitlines()) == 6


def test_python_dash_m_runs_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reer_runtime", "--version"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0 and done.stdout.startswith("reer-runtime ")


def test_the_example_script_runs_and_mypy_strict_accepts_it(tmp_path: Path) -> None:
    script = ROOT / "examples" / "api_quickstart.py"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, check=False, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "2 posts mined" in done.stdout
    lines = done.stdout.splitlines()
    tries = [line.split(":")[0].split()[-1] for line in lines if line.startswith(("draft ", "refused "))]
    assert {t.split(".")[0].rsplit("-", 1)[1] for t in tries} == {"1", "2"}  # two drafts, each kept or refused
    # as a user's mypy sees an installed library: its own modules' errors are not the script's
    # (the project's mypy checks those, with the pydantic plugin); the API's types are still used
    typed = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--follow-imports=silent", str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert typed.returncode == 0, typed.stdout


def test_dspys_cache_answers_a_repeated_compile_and_its_hits_show_in_stats(tmp_path: Path) -> None:
    with reer_runtime.Client(tmp_path, provider="dummy://", min_engagement=0.0) as rt:
        rt.mine([make_post(i, author="solo", likes=i) for i in range(6)])
        first = rt.optimize("bootstrap")
        hits = rt.stats().writer_cache_hits
        second = rt.optimize("bootstrap")  # the same traces, the same demos: the same writer calls
        assert rt.stats().writer_cache_hits > hits
        drafts = rt.generate("restore tests", n=2)
    assert second.model_calls < first.model_calls
    assert len({"\n".join(d.parts) for d in drafts}) == len(drafts)  # each try its own rollout, never a cached copy
    assert any((tmp_path / "dspy-cache").iterdir())


def test_a_script_that_opens_the_packaged_model_twice_exits_cleanly(tmp_path: Path) -> None:
    """A thread that ran MLX work must clear its MLX state before it ends, or the process aborts at
    exit ("terminate called without an active exception", status 134) after its work is done. The
    client's event loop runs on a thread of its own: no MLX work may happen there."""
    script = tmp_path / "twice.py"
    script.write_text(
        "import sys\nfrom reer_runtime import Client\n"
        "for _ in range(2):\n"
        "    with Client(sys.argv[1], provider='mlx://smollm2-135m') as rt:\n"
        "        print('opened', flush=True)\n"
        "print('closed', flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "data")], capture_output=True, text=True, check=False, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["opened", "opened", "closed"]
