"""The `mlx://` provider on a tiny random model (fast), and the packaged model end to end (real)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import mlx.core as mx
import msgspec
import pytest
from mlx_lm import load

import runtime.providers.local  # noqa: F401  (loads OpenBLAS before mlx.core)
from runtime.config import SearchSettings
from runtime.errors import ProviderConfigError, ProviderError
from runtime.providers import open_provider
from runtime.providers.calls import ChatMessage, GenerateCall, ScoreCall
from runtime.providers.local import blas
from runtime.providers.local.convert import SOURCE_HASH_FILE, ensure_converted
from runtime.providers.local.provider import LocalProvider
from runtime.records import Mining
from runtime.reer.brief import derive_brief
from runtime.reer.search import Search
from runtime.writer.draft_gate import refusal
from tests.conftest import ROOT, RunDaemon
from tests.helpers import make_post, post_line
from tests.tiny_model import write_tiny_gguf

pytestmark = pytest.mark.anyio

CHAT = [ChatMessage("system", "You plan posts."), ChatMessage("user", "Brief: a short post for x.")]


@pytest.fixture
async def provider(tiny: Path) -> Iterator[LocalProvider]:  # type: ignore[misc]
    model = LocalProvider(f"mlx://{tiny}", str(tiny), "tiny")
    yield model
    await model.aclose()


def test_conversion_happens_once_per_source_file(tmp_path: Path) -> None:
    gguf, out = tmp_path / "m.gguf", tmp_path / "model"
    write_tiny_gguf(gguf)
    ensure_converted(gguf, out)
    config = json.loads((out / "config.json").read_text())
    assert config["rope_traditional"] is True and config["num_key_value_heads"] == 2
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    ensure_converted(gguf, out)
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp  # same source: nothing redone
    write_tiny_gguf(gguf, hidden=32)
    ensure_converted(gguf, out)
    assert json.loads((out / "config.json").read_text())["hidden_size"] == 32  # new source: converted again
    assert len((out / SOURCE_HASH_FILE).read_text().strip()) == 64


def reference_logprobs(folder: Path, context: list[int], target: list[int]) -> list[float]:
    """Log-softmax over the whole sequence in one plain forward pass, at the target positions."""
    model = load(str(folder))[0]
    logits = model(mx.array([context + target]))[0].astype(mx.float32)
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    start = len(context) - 1
    return [logprobs[start + i, t].item() for i, t in enumerate(target)]


def encoded(tokenizer: Any, call: ScoreCall) -> tuple[list[int], list[int]]:
    """The context and target tokens the provider scores for `call`."""
    turns = [{"role": m.role, "content": m.content} for m in call.messages]
    chat = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
    context = tokenizer.encode(chat + call.prefix, add_special_tokens=False)
    return context, tokenizer.encode(call.target, add_special_tokens=False)


async def test_scores_are_exact_with_and_without_prefix_reuse(tiny: Path, provider: LocalProvider) -> None:
    tokenizer = load(str(tiny))[1]
    calls = [
        ScoreCall(messages=CHAT, prefix="<think>\nI will open with the result.\n</think>\n", target="We shipped."),
        ScoreCall(messages=CHAT, prefix="<think>\nI will open with a question.\n</think>\n", target="We shipped."),
        ScoreCall(messages=CHAT, prefix="<think>\nI will open with a question.\n</think>\n", target="Signups doubled"),
    ]
    for call in calls:
        got = await provider.score(call)
        context, target = encoded(tokenizer, call)
        assert got.logprobs == pytest.approx(reference_logprobs(tiny, context, target), abs=1e-4)
    reused, computed = provider.cache_stats()
    assert reused > computed / 2  # the later calls recomputed only what differed


async def test_generation_from_the_prefix_cache_writes_what_a_full_prefill_writes(tiny: Path) -> None:
    """A post's calls share their chat and grow their prefill: with the cache they compute only what
    is new, and every seeded answer is the one the uncached model gives, alone or batched."""
    calls = [
        GenerateCall(messages=CHAT, prefill=prefill, max_tokens=12, temperature=0.8, top_p=0.85, seed=seed)
        for prefill in ("Angle: I will", "Angle: I will open.\nHook: I will", "Angle: I will open.\nHook: I will")
        for seed in (1, 2)
    ]
    plain = LocalProvider(f"mlx://{tiny}", str(tiny), "tiny", prefix_cache_mb=0)
    cached = LocalProvider(f"mlx://{tiny}", str(tiny), "tiny")
    expected = [(await plain.generate(call)).text for call in calls]
    one_by_one = [(await cached.generate(call)).text for call in calls]
    reused, computed = cached.generation_cache_stats()
    batched: dict[int, str] = {}
    async with anyio.create_task_group() as tg:
        for i, call in enumerate(calls):

            async def one(i: int = i, call: GenerateCall = call) -> None:
                batched[i] = (await cached.generate(call)).text

            tg.start_soon(one)
    await plain.aclose()
    await cached.aclose()
    assert one_by_one == expected and [batched[i] for i in range(len(calls))] == expected
    assert plain.generation_cache_stats() == (0, reused + computed)  # off: every prompt token prefilled
    assert reused > 4 * computed  # the chat was computed once, each new prefill's tokens once


async def test_a_post_mines_the_same_plans_and_scores_with_and_without_the_prefix_cache(tiny: Path) -> None:
    """The cache, and the batched rewrites it makes cheap, change the cost of a search, not its result."""
    post = "We shipped the new onboarding today. Signups doubled in a week and support tickets fell."
    brief = derive_brief(make_post(1, post))
    settings = SearchSettings(max_steps=2, section_max_tokens=16)
    results = []
    for options in ({"prefix_cache_mb": 0}, {}):
        model = LocalProvider(f"mlx://{tiny}", str(tiny), "tiny", **options)
        results.append(await Search(model, settings, brief, post, "x:1").run())
        await model.aclose()
    plain, cached = results
    assert len(plain.steps) == 2 and all(len(step.candidates) == 2 for step in plain.steps)
    assert (cached.plan_initial, cached.plan, cached.scores) == (plain.plan_initial, plain.plan, plain.scores)
    assert [c.text for step in cached.steps for c in step.candidates] == [
        c.text for step in plain.steps for c in step.candidates
    ]


async def test_generation_is_seeded_stops_and_batches(provider: LocalProvider) -> None:
    call = GenerateCall(messages=CHAT, max_tokens=24, temperature=0.9, top_p=0.9, seed=11)
    first, again = await provider.generate(call), await provider.generate(call)
    assert first.text == again.text and (first.output_tokens or 0) <= 24
    stopped = await provider.generate(GenerateCall(messages=CHAT, max_tokens=64, temperature=0, stop=["e"]))
    assert "e" not in stopped.text and stopped.finish_reason in ("stop", "length")
    results = []
    async with anyio.create_task_group() as tg:
        for seed in range(4):

            async def one(seed: int = seed) -> None:
                results.append(await provider.generate(GenerateCall(messages=CHAT, max_tokens=16, seed=seed)))

            tg.start_soon(one)
    assert len(results) == 4 and all((r.output_tokens or 0) > 0 for r in results)


async def test_a_failing_step_fails_the_calls_in_flight_and_later_ones(
    tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step that raises (a bug, not a request's fault) answers every waiting call with the error
    instead of leaving it waiting, and the provider then refuses calls."""
    from runtime.providers.local.numpy_engine import NumpyEngine

    def broken(self: NumpyEngine) -> None:
        raise RuntimeError("the step broke")

    monkeypatch.setattr(NumpyEngine, "step", broken)
    model = LocalProvider(f"mlx://{tiny}", str(tiny), "tiny")
    call = GenerateCall(messages=CHAT, max_tokens=8, seed=1)
    failures: list[str] = []
    with anyio.fail_after(120):  # without the failure handed on, the calls would wait forever
        async with anyio.create_task_group() as tg:
            for _ in range(3):

                async def one() -> None:
                    with pytest.raises(ProviderError) as caught:
                        await model.generate(call)
                    failures.append(str(caught.value))

                tg.start_soon(one)
    assert len(failures) == 3 and all("the step broke" in failure for failure in failures)
    with pytest.raises(ProviderError, match="the model thread has stopped"):
        await model.score(ScoreCall(messages=CHAT, prefix="", target="We shipped."))
    await model.aclose()


async def test_the_event_loop_keeps_running_during_a_long_call(provider: LocalProvider) -> None:
    ticks = 0
    done = anyio.Event()

    async def heartbeat() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat)
        await provider.generate(GenerateCall(messages=CHAT, max_tokens=200, temperature=0.8, seed=1))
        done.set()
    assert ticks > 20  # other tasks ran while the model worked on its own thread


async def test_a_single_gguf_file_is_converted_once_and_scores_as_its_folder(tiny: Path, tmp_path: Path) -> None:
    gguf = tmp_path / "models-by-lm-studio" / "tiny.gguf"
    gguf.parent.mkdir()
    write_tiny_gguf(gguf)
    call = ScoreCall(messages=CHAT, prefix="", target="Signups doubled in a week.")
    from_file = open_provider(f"mlx://{gguf}", tmp_path / "data")
    assert (tmp_path / "data" / "models" / "tiny" / "config.json").is_file()  # converted into the data dir
    from_folder = open_provider(f"local://{tiny}", tmp_path / "data")  # local:// names the same provider as mlx://
    try:
        assert isinstance(from_folder, LocalProvider)
        assert (await from_file.score(call)).logprobs == pytest.approx((await from_folder.score(call)).logprobs)
    finally:
        await from_file.aclose()
        await from_folder.aclose()
    with pytest.raises(ProviderConfigError, match="no such GGUF file"):
        open_provider(f"mlx://{tmp_path}/missing.gguf", tmp_path)
    (tmp_path / "broken.gguf").write_bytes(b"not a gguf at all")
    with pytest.raises(ProviderConfigError, match="cannot convert"):
        open_provider(f"mlx://{tmp_path}/broken.gguf", tmp_path)


def test_unusable_models_fail_at_start_with_advice(tmp_path: Path) -> None:
    with pytest.raises(ProviderConfigError, match="max_batch must be a whole number of at least 1, not '0'"):
        open_provider("mlx://smollm2-135m?max_batch=0", tmp_path)
    with pytest.raises(ProviderConfigError, match="prefix_cache_mb must be a whole number of at least 0, not 'lots'"):
        open_provider("mlx://smollm2-135m?prefix_cache_mb=lots", tmp_path)
    with pytest.raises(ProviderConfigError, match=r"unknown option\(s\) batch; known: prefix_cache_mb, max_batch"):
        open_provider("mlx://smollm2-135m?batch=4", tmp_path)
    with pytest.raises(ProviderConfigError, match="is not an mlx-lm model folder"):
        open_provider(f"mlx://{tmp_path}", tmp_path)
    with pytest.raises(ProviderConfigError, match="expected mlx://smollm2-135m"):
        open_provider("mlx://not-a-repo", tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ProviderConfigError, match="cannot load the model"):
        open_provider(f"mlx://{tmp_path}", tmp_path)


X86_LINUX = sys.platform == "linux" and os.uname().machine == "x86_64"
AVX512 = frozenset(blas.NEEDS["SKYLAKEX"])


def host_class() -> str:
    """Which branch of the BLAS choice this host takes: its name is part of the test's id."""
    if sys.platform != "linux":
        return "not Linux"
    if not X86_LINUX:
        return "arm64 Linux"
    return "AVX-512" if blas.cpu_features() >= AVX512 else "no AVX-512"


@pytest.mark.parametrize(
    ("cpu", "branch"),
    [
        pytest.param("host", host_class(), id=f"host, {host_class()}"),
        pytest.param(
            "emulated Haswell",
            "no AVX-512",
            id="emulated Haswell, no AVX-512",
            marks=pytest.mark.skipif(not X86_LINUX, reason="emulates an x86-64 CPU (QEMU user mode, Linux)"),
        ),
    ],
)
def test_validate_reports_the_blas_and_engine_in_use(
    tiny: Path, run_daemon: RunDaemon, cpu: str, branch: str, tmp_path: Path
) -> None:
    """Which OpenBLAS is taken depends on the CPU: cmeel-openblas's SKYLAKEX build needs AVX-512.
    Both x86-64 branches run on every x86-64 Linux host: the host's own, and a Haswell (AVX2, no
    AVX-512) under QEMU, where cmeel's library must be passed over with a note and the system's taken.
    The branch the host takes is in the test's id."""
    emulator: tuple[str, ...] = ()
    if cpu == "emulated Haswell":
        qemu = shutil.which("qemu-x86_64")
        assert qemu, "QEMU's user-mode emulator is missing: scripts/setup.sh test installs Debian's qemu-user"
        emulator = (qemu, "-cpu", "Haswell")
    (tmp_path / "data").mkdir()  # run_daemon's data dir: validate reports a missing one as a problem
    result = run_daemon("validate", "--provider", f"mlx://{tiny}", emulator=emulator, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if f"mlx://{tiny}" in x and "GFLOP/s" in x)
    assert line.startswith("ok ")
    notes = [x for x in result.stdout.splitlines() if "BLAS not taken" in x]
    assert all(x.startswith("note ") for x in notes)
    found = dict(blas.candidates())
    cmeel_first = (os.cpu_count() or 1) <= 4  # its build is capped at 4 threads: blas.pick
    taken, not_taken = {  # what the line says of the library taken; what each "not taken" note names
        "not Linux": (["BLAS platform default"], []),
        "no AVX-512": (["OpenBLAS (system)", "thread(s) on"], [["cmeel-openblas", "AVX512F"]]),
        "AVX-512": ([f"OpenBLAS ({'cmeel-openblas' if cmeel_first else 'system'})", "thread(s) on"], []),
        "arm64 Linux": (["OpenBLAS (system)", "thread(s) on"], [[s] for s in found if s != "system"]),
    }[branch]
    assert all(text in line for text in taken), line
    assert len(notes) == len(not_taken), notes
    assert all(all(t in n for t in ts) for n, ts in zip(notes, not_taken, strict=True)), notes
    check = next(x for x in result.stdout.splitlines() if f"mlx://{tiny} as generator:" in x)
    expected_engine = "engine numpy" if mx.default_device() == mx.cpu else "engine mlx-lm (the model runs on a GPU)"
    assert expected_engine in check


def test_the_packaged_model_mines_two_posts_by_default(tmp_path: Path, run_daemon: RunDaemon) -> None:
    posts = tmp_path / "posts.jsonl"
    posts.write_text("\n".join(post_line(i, author="solo") for i in range(4)) + "\n")
    small_search = {  # the real model, a shorter search: CI has two cores
        "REER_GENERATOR": "mlx://smollm2-135m",
        "REER_SCORER": "mlx://smollm2-135m",
        "REER_SEARCH__MAX_STEPS": "1",
        "REER_SEARCH__SECTION_MAX_TOKENS": "48",
    }
    result = run_daemon(
        "start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0.6", env=small_search, timeout=1200
    )
    assert result.returncode == 0, result.stderr
    assert "small demonstration model" in result.stderr
    traces = [json.loads(line) for line in (tmp_path / "data" / "traces.jsonl").read_text().splitlines()]
    assert len(traces) == 2
    for t in traces:
        assert t["generators"] == ["mlx://smollm2-135m"] and t["scorers"] == ["mlx://smollm2-135m"]
        assert t["scores"]["final"] <= t["scores"]["initial"] and t["plan"]
    assert (tmp_path / "data" / "models" / "smollm2-135m" / "config.json").is_file()
    assert os.stat(tmp_path / "data").st_mode & 0o777 == 0o700

    # the writer compiles on the two traces with the plain layout, and its drafts pass the draft gate
    # two traces whatever their held-out gain (the 135M model's is near 0): what is tested is the compile
    small_compile = small_search | {"REER_WRITER__MIN_TRACES": "2", "REER_WRITER__MAX_DEMOS": "1"}
    small_compile |= {"REER_WRITER__MIN_GAIN": "-100"}
    # about a third of this model's tries pass the gate (docs/benchmarks.md): six tries a draft make
    # a draft that never gets through rare (under 1 in 8), and four drafts that all miss rarer still
    small_compile |= {"REER_WRITER__MAX_TRIES": "6"}
    compiled = run_daemon("optimize", "--optimizer", "bootstrap", env=small_compile, timeout=1200)
    assert compiled.returncode == 0, compiled.stderr
    index = tmp_path / "data" / "programs" / "index.jsonl"
    (program,) = [json.loads(line) for line in index.read_text().splitlines()]
    assert program["version"] == 1 and program["model_calls"] > 0
    shown = 0
    for topic in ("why we test backups by restoring them", "what shipping every Friday taught our team"):
        drafted = run_daemon("generate", topic, "-n", "2", "--json", env=small_compile, timeout=1200)
        assert drafted.returncode == 0, drafted.stderr
        printed = [json.loads(line) for line in drafted.stdout.splitlines()]
        shown += len(printed)
        for d in printed:
            assert all(0 < len(part) <= 280 and refusal(part, topic) is None for part in d["parts"]), d
            assert d["provider"] == ["mlx://smollm2-135m"] and d["score"] is not None
            assert d["program_version"] == (1 if program["promoted"] else 0)
    assert shown > 0, "no draft of four got through the gate in six tries each"


async def test_the_scorer_keeps_each_posts_prefix_while_others_are_scored(tiny: Path, provider: LocalProvider) -> None:
    """Posts mined side by side interleave their score calls: a post's next candidate still starts
    from its own cached prefix, and scores what a plain forward pass scores."""
    tokenizer = load(str(tiny))[1]
    other_chat = [ChatMessage("system", "You plan posts."), ChatMessage("user", "Brief: a thread for linkedin.")]
    post_a = "We shipped the new onboarding today."
    first = ScoreCall(messages=CHAT, prefix="<think>\nI will open with the result and the numbers.\n", target=post_a)
    other = ScoreCall(messages=other_chat, prefix="<think>\nI will ask a question.\n", target="Signups doubled.")
    second = ScoreCall(messages=CHAT, prefix="<think>\nI will open with the result, then a story.\n", target=post_a)

    await provider.score(first)
    await provider.score(other)
    reused_before, _ = provider.cache_stats()
    got = await provider.score(second)
    reused = provider.cache_stats()[0] - reused_before
    (context_1, _), (context_2, target) = encoded(tokenizer, first), encoded(tokenizer, second)
    shared = next(i for i, (x, y) in enumerate(zip(context_1, context_2, strict=False)) if x != y)
    assert reused == shared  # everything the two plans share, although another post came between
    assert got.logprobs == pytest.approx(reference_logprobs(tiny, context_2, target), abs=1e-4)


async def test_posts_mined_side_by_side_get_the_plans_they_get_alone(tiny: Path) -> None:
    """Batching several posts' sections into the same decode steps, and their scoring through one
    prefix cache, changes the cost of mining, not what is mined: the seeds are per post."""
    texts = [
        "We shipped the new onboarding today. Signups doubled in a week and support tickets fell.",
        "Backups you have never restored are not backups. Test yours this week, then tell me how it went.",
        "I answered every support email myself for a year. Best product research I ever did.",
    ]
    posts = [make_post(i, text) for i, text in enumerate(texts)]
    settings = SearchSettings(max_steps=2, section_max_tokens=16)

    def search(model: LocalProvider, post_index: int) -> Search:
        post = posts[post_index]
        return Search(model, settings, derive_brief(post), post.text, post.key)

    alone = []
    for i in range(len(posts)):
        model = LocalProvider(f"mlx://{tiny}", str(tiny), "tiny")
        alone.append(await search(model, i).run())
        await model.aclose()
    shared = LocalProvider(f"mlx://{tiny}", str(tiny), "tiny")
    together: dict[int, Mining] = {}
    async with anyio.create_task_group() as tg:
        for i in range(len(posts)):

            async def mine(i: int = i) -> None:
                together[i] = await search(shared, i).run()

            tg.start_soon(mine)
    await shared.aclose()
    for i, expected in enumerate(alone):
        got = together[i]
        assert (got.plan_initial, got.plan) == (expected.plan_initial, expected.plan)
        drafts = [[c.text for s in mined.steps for c in s.candidates] for mined in (got, expected)]
        assert drafts[0] == drafts[1]
        assert msgspec.structs.asdict(got.scores) == pytest.approx(msgspec.structs.asdict(expected.scores), abs=1e-5)


def test_posts_are_mined_together_by_default_and_the_decode_batch_is_shown(
    tiny: Path, tmp_path: Path, run_daemon: RunDaemon
) -> None:
    """The Miner takes as many posts at once as the engine batches (32 requests, 2 a post), so the
    decode steps hold several posts' sections; the progress lines and `stats` say how many."""
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(post_line(i) + "\n" for i in range(8)))
    env = {
        "REER_GENERATOR": f"mlx://{tiny}",
        "REER_SCORER": f"mlx://{tiny}",
        "REER_PROGRESS_INTERVAL_S": "0.1",
        "REER_SEARCH__MAX_STEPS": "2",
        "REER_SEARCH__SECTION_MAX_TOKENS": "24",
    }
    result = run_daemon("start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len((tmp_path / "data" / "traces.jsonl").read_text().splitlines()) == 8
    batch = json.loads((tmp_path / "data" / "stats.json").read_text())["decode_batch"]
    assert batch["mean"] > 4  # one post alone never has more than 2 requests in flight
    shown = [float(x) for x in re.findall(r"; decode batch (\d+\.\d)", result.stderr)]
    assert shown and max(shown) > 4, result.stderr[-2000:]
    stats = run_daemon("stats")
    assert re.search(r"decoding: \d+ steps of the local model, [\d.]+ requests a step", stats.stdout)
    assert re.search(r"engine: +add [\d.]+s, step [\d.]+s", stats.stdout), stats.stdout


TEARDOWN = """
import sys, anyio
import runtime.providers.local
from runtime.providers.calls import ChatMessage, GenerateCall, ScoreCall
from runtime.providers.local.provider import LocalProvider

async def main() -> None:
    model = LocalProvider("mlx://" + sys.argv[1], sys.argv[1], "tiny")
    async with anyio.create_task_group() as tg:
        for seed in range(4):
            tg.start_soon(model.generate, GenerateCall(messages=[ChatMessage("user", "hi")], max_tokens=8, seed=seed))
    await model.score(ScoreCall(messages=[ChatMessage("user", "hi")], prefix="", target="ok then"))
    await model.aclose()

anyio.run(main)
"""


def test_a_process_that_ran_the_model_exits_cleanly(tiny: Path) -> None:
    """The daemon's exit code must say how its work went: a process that used the model exits 0."""
    command = [sys.executable, "-c", TEARDOWN, str(tiny)]
    done = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.anyio
async def test_the_model_thread_destroys_its_streams_when_closed(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLX aborts a process at exit now and then (1 run in 12 here) unless the thread that made
    the streams destroys them: shown by who calls `mx.clear_streams`, not by chance."""
    callers: list[str] = []
    clear = mx.clear_streams

    def recorded() -> None:
        callers.append(threading.current_thread().name)
        clear()

    monkeypatch.setattr(mx, "clear_streams", recorded)
    model = LocalProvider(f"mlx://{tiny}", str(tiny), "tiny")
    await model.generate(GenerateCall(messages=[ChatMessage("user", "hi")], max_tokens=4, seed=0))
    assert callers == []
    await model.aclose()
    assert callers == ["mlx tiny"]  # the model thread, named for the model
