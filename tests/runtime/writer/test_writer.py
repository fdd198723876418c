"""The writer: platform limits, the metric, the DSPy program over the Limiter, the Optimizer and Generator."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import anyio
import dspy
import msgspec
import pytest
from dspy.utils import DummyLM
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from actors.generator import GeneratorActor
from actors.limiter import Limiter
from actors.optimizer import OptimizerActor
from bus.bus import Bus
from bus.messages import GENERATE_REQUESTED, OPTIMIZE_REQUESTED, GenerateRequested, OptimizeRequested
from reer_runtime.testing import MockProvider
from runtime.config import Settings
from runtime.providers import Provider
from runtime.providers.calls import GenerateCall, Generation, Role
from runtime.providers.dummy import DummyProvider
from runtime.records import (
    DeadLetter,
    Draft,
    GenerateEvent,
    HeldOut,
    OptimizeEvent,
    Platform,
    Program,
    Scores,
    Timings,
    Trace,
)
from runtime.reer.brief import derive_brief
from runtime.store import JsonlStore
from runtime.writer.adapter import PLAN_OPENING
from runtime.writer.compile import demo_trace_ids, split
from runtime.writer.draft_gate import refusal
from runtime.writer.limits import Fitted, features, fit
from runtime.writer.lm import limiter_lm
from runtime.writer.metric import WriterMetric, closeness
from runtime.writer.program import WriterProgram, example, mined_topic, render_brief
from runtime.writer.programs import Programs
from tests.conftest import ROOT, RunDaemon
from tests.helpers import daemon_env, make_post, post_line, validate_store
from tests.openai_server import FakeServer, serving

pytestmark = pytest.mark.anyio

PLAN = "Angle: I will show why restores matter.\nHook: I will open with a lost file.\nStructure: I will tell then ask."
POST = "Backups you never restored are only hopes. Test a restore this week. What did yours teach you?"


def scripted_writer(post: str = POST, posts: list[str] | None = None) -> MockProvider:
    """A provider that answers a request for a plan (prefilled with the chat adapter's plan marker or
    the plain adapter's opening) with `PLAN`, and others with `posts` in turn (the last one from then
    on); it scores with the real `dummy://` model."""
    queue = list(posts or [post])

    def generate(call: GenerateCall) -> Generation:
        if "[[ ## plan ## ]]" in call.prefill or call.prefill == PLAN_OPENING:
            text = PLAN.removeprefix(call.prefill)
        else:
            text = queue.pop(0) if len(queue) > 1 else queue[0]
        return Generation(text=text, input_tokens=10, output_tokens=len(text), finish_reason="stop")

    return MockProvider(generate, uri="dummy://scripted")


def generated(provider: MockProvider) -> list[GenerateCall]:
    """The generate calls a provider was sent, in order."""
    return [c for c in provider.calls if isinstance(c, GenerateCall)]


def sync_generate(provider: MockProvider) -> object:
    return lambda call: anyio.from_thread.run(provider.generate, call)


# --- platform limits ---------------------------------------------------------------------------


def test_limits_are_enforced_repaired_or_refused_with_a_reason() -> None:
    assert fit("A short post.", Platform.X, 1).parts == ["A short post."]
    long_post = "This sentence is forty characters long. " * 8
    cut = fit(long_post, Platform.X, 1)
    assert cut.rejected is None and cut.parts == [("This sentence is forty characters long. " * 7).strip()]
    assert cut.repaired == "cut after the last whole sentence within 280 characters (319 -> 279)"
    one_sentence = "word " * 80
    refused = fit(one_sentence, Platform.X, 1)
    assert refused.rejected == f"over the x limit: {len(one_sentence.strip())} characters (at most 280)"
    assert fit(long_post, Platform.LINKEDIN, 1) == Fitted([long_post.strip()])  # 3,000 there: as it is
    sentence = "This sentence is forty characters long."
    for size in (2, 3, 8):  # a thread has exactly the posts asked for, cut at sentence ends, as even as can be
        split_thread = fit(long_post, Platform.X, size)
        assert split_thread.rejected is None and len(split_thread.parts) == size
        counts = [p.count(sentence) for p in split_thread.parts]
        assert sum(counts) == 8 and max(counts) - min(counts) <= 1 and all(len(p) <= 280 for p in split_thread.parts)
        assert split_thread.repaired == f"re-cut at sentence ends into {size} posts (1 written)"
    assert fit(long_post, Platform.X, 9).rejected == "a thread of 8 sentences, 9 posts asked for"
    thread = fit("1/ First post.\n---\n2/ Second post.\n---\n3/ Third.", Platform.BLUESKY, 2)
    assert thread.parts == ["First post.", "Second post. Third."] and thread.rejected is None
    kept = fit("1/ First post. Two.\n---\n2/ Second post.", Platform.BLUESKY, 2)
    assert kept == Fitted(["First post. Two.", "Second post."])  # the right size: the writer's cut stays
    assert fit("One.\n---\nTwo.", Platform.X, 1).parts == ["One.\n\nTwo."]
    assert fit("   ", Platform.X, 1).rejected == "empty draft"
    over = fit(f"{'word ' * 60}.\n---\nShort.", Platform.X, 2)
    assert over.rejected == "over the x limit: 301 characters (at most 280)"
    counted = features(["Ship it #buildinpublic @friend https://example.com", "Two words"])
    assert (counted.hashtags, counted.mentions, counted.links, counted.words) == (1, 1, 1, 7)


# --- the metric --------------------------------------------------------------------------------


def scorer() -> WriterMetric:
    model = DummyProvider()
    return WriterMetric(lambda call: anyio.run(model.score, call), clip_min=-2.0)


def test_the_metric_refuses_broken_limits_and_rewards_plans_that_explain_the_post() -> None:
    metric = scorer()
    brief = "Write a short post for x (at most 280 characters)."
    too_long = metric.measure(brief, PLAN, "x" * 300, Platform.X, 1, POST)
    assert too_long.score == 0.0 and "breaks the platform's limits" in too_long.feedback
    explaining = metric.measure(brief, f"I will say: {POST}", POST, Platform.X, 1, POST)
    unrelated = metric.measure(brief, "I will talk about the weather in spring.", POST, Platform.X, 1, POST)
    assert explaining.parts["reer"] > unrelated.parts["reer"]  # the scorer finds the post likelier
    assert explaining.parts["closeness"] == pytest.approx(1.0)
    assert explaining.score == pytest.approx((explaining.parts["closeness"] + explaining.parts["reer"]) / 2)
    assert closeness("abc def", "xyz uvw") == 0.0
    gold = dspy.Example(brief=brief, post=POST, platform="x").with_inputs("brief")
    graded = WriterMetric(metric.score_call, -2.0, feedback=True)(gold, dspy.Prediction(plan=PLAN, post=POST))
    assert isinstance(graded, dspy.Prediction) and "nats per token" in graded.feedback and graded.score > 0


def test_the_metric_gives_nothing_for_a_draft_the_gate_refuses_for_the_examples_topic() -> None:
    metric = WriterMetric(scorer().score_call, -2.0, feedback=True)
    gold = dspy.Example(brief="Write a short post for x.", topic="restores", post=POST, platform="x")
    on_topic = "Restores are the only backup test that counts. Try one today."
    graded = metric(gold, dspy.Prediction(plan=PLAN, post=on_topic))
    assert isinstance(graded, dspy.Prediction) and graded.score > 0
    for junk, reason in [
        ("Pricing pages should show one plan and one price.", "no word of the topic"),
        ("[[ ## post ## ]] Restores matter.", "prompt markup"),
    ]:
        refused = metric(gold, dspy.Prediction(plan=PLAN, post=junk))
        assert isinstance(refused, dspy.Prediction) and refused.score == 0.0
        assert "could not be posted" in refused.feedback and reason in refused.feedback
    # an example without a topic (a template's own) is held to every check but the topic's
    untopical = dspy.Example(brief="Write a short post for x.", post=POST, platform="x")
    assert metric(untopical, dspy.Prediction(plan=PLAN, post="Pricing pages should show one price.")).score > 0  # type: ignore[union-attr]


# --- the program over the Limiter's bridge -----------------------------------------------------


async def test_the_program_plans_then_writes_with_field_prefills_and_the_brief() -> None:
    provider = scripted_writer()
    lm = limiter_lm(sync_generate(provider), temperature=0.5, top_p=0.8, frequency_penalty=0.3, max_tokens=64)  # type: ignore[arg-type]
    request = GenerateEvent(topic="restore tests", audience="indie devs", thread_size=2, call_to_action="reply")

    def run() -> dspy.Prediction:
        with dspy.context(lm=lm):
            return WriterProgram()(brief=render_brief(request))

    prediction = await anyio.to_thread.run_sync(run)
    assert prediction.plan == PLAN and prediction.post == POST
    plan_call, write_call = generated(provider)
    assert plan_call.prefill == "[[ ## plan ## ]]\n" and write_call.prefill == "[[ ## post ## ]]\n"
    assert "[[ ## completed ## ]]" in plan_call.stop and plan_call.max_tokens == 64
    assert (plan_call.temperature, plan_call.top_p, plan_call.frequency_penalty) == (0.5, 0.8, 0.3)
    brief = plan_call.messages[-1].content
    assert "Topic: restore tests." in brief and "a thread of 2 posts, each at most 280" in brief
    assert "Audience: indie devs." in brief and "Call to action: reply." in brief
    assert PLAN in write_call.messages[-1].content  # the writer step sees the plan


def test_the_program_runs_on_dspys_dummy_lm() -> None:
    lm = DummyLM([{"plan": PLAN}, {"post": POST}])
    with dspy.context(lm=lm):
        prediction = WriterProgram()(brief="Write a short post for x.")
    assert (prediction.plan, prediction.post) == (PLAN, POST)


def make_trace(i: int, post: str, plan: str = PLAN, context: str = "", gain: float | None = None) -> Trace:
    """A trace of post `i`; with `gain`, its held-out gain over the generic plan (else not measured)."""
    source = msgspec.structs.replace(make_post(i, post), context=context)
    held = None
    if gain is not None:
        held = HeldOut(
            tokens=10, no_plan=1.5, initial=1.4, final=1.3, generic=1.3 + gain, gain=gain, in_sample_gain=gain
        )
    return Trace(
        trace_id=f"t{i}",
        post=source,
        engagement=1.0 - i / 100,
        brief=derive_brief(source),
        otel_trace_id="0" * 32,
        mined_at=datetime.now(UTC),
        plan_initial=plan,
        plan=plan,
        scores=Scores(no_plan=1.5, initial=1.4, final=1.3),
        overlap=0.0,
        steps=[],
        leak_rejections=0,
        generators=["dummy://"],
        scorers=["dummy://"],
        timings=Timings(total_s=1, generate_s=1, score_s=0, generate_calls=1, score_calls=1),
        held_out=held,
    )


POSTS = [
    "Shipped dark mode after three weekends. Thank you, testers!",
    "Removing the free tier cut signups but doubled paid conversions. Would you?",
    "Backups you never restored are hopes. Test one this week.",
    "We answer every support email within a day. It is our best marketing.",
    "Pricing page rewrite: one plan, one price, fewer questions.",
    "Our changelog is the most read page after pricing. Write it for humans.",
]


def test_a_mined_example_names_its_topic_from_the_posts_words_as_a_users_brief_does() -> None:
    post = "We've answered every support email within a day, every day: https://example.com/support-log 24/7"
    given = example(make_trace(1, post))
    assert given is not None
    mined = derive_brief(make_trace(1, post).post).text
    # first five distinct content words, in order; no link, number or contraction tail ("ve")
    assert given.brief == f"{mined} Topic: answered, every, support, email, within."
    assert mined_topic("https://example.com/a-b-c and the 42 of it") == ""
    bare = example(make_trace(2, "On it. https://t.co/x"))  # a post of function words and a link: no topic
    assert bare is not None and bare.brief == derive_brief(make_post(2, "On it. https://t.co/x")).text
    assert bare.topic == "" and given.topic == "answered, every, support, email, within"


async def test_a_program_compiled_with_bootstrap_saves_and_loads_with_plain_dspy(tmp_path: Path) -> None:
    traces = [make_trace(i, text) for i, text in enumerate(POSTS)]
    trainset, valset = split([example(t) for t in traces], 0.25)
    assert len(valset) == 2 and {e.trace_id for e in trainset + valset} == {t.trace_id for t in traces}
    provider = scripted_writer()
    lm = limiter_lm(sync_generate(provider))  # type: ignore[arg-type]
    metric = WriterMetric(lambda call: anyio.from_thread.run(provider.score, call), -2.0)

    def compile_it() -> WriterProgram:
        from runtime.writer.compile import compile_writer

        with dspy.context(lm=lm):
            return compile_writer(
                WriterProgram(), "bootstrap", trainset, valset, metric, lm, Settings(data_dir=tmp_path).writer
            )

    program = await anyio.to_thread.run_sync(compile_it)
    demos = program.plan.demos
    assert demos and all(d.brief in {e.brief for e in trainset} for d in demos)
    demos_from = demo_trace_ids(program, trainset)
    assert demos_from and set(demos_from) <= {e.trace_id for e in trainset}
    programs = Programs(tmp_path / "programs")
    programs.save(program, 1)
    loaded = WriterProgram()
    loaded.load(str(tmp_path / "programs" / "v1.json"))  # plain DSPy, no custom state
    assert [(d["brief"], d["plan"]) for d in loaded.plan.demos] == [(d.brief, d.plan) for d in demos]
    assert not list((tmp_path / "programs").glob(".*partial*"))


# --- the actors on a real bus and Limiter ------------------------------------------------------


async def run_actors(
    tmp_path: Path,
    provider: Provider,
    messages: Sequence[object],
    traces: int = len(POSTS),
    refusals: int = 0,
    contexts: Sequence[str] = (),
    gains: Sequence[float | None] = (),
    cap: int | None = None,
) -> tuple[list[Draft], list[Program]]:
    """Run the Limiter, Optimizer and Generator on `messages`, over the first `traces` of POSTS (the
    first ones with `contexts`, the texts their posts answer, and `gains`, their held-out gains),
    each request with at most `cap` model calls; the drafts and programs made."""
    writer = {"min_traces": 4, "max_demos": 2, "max_calls_per_request": cap}
    settings = Settings(data_dir=tmp_path, writer=writer)
    dead = JsonlStore(tmp_path / "dead.jsonl", DeadLetter)
    store = JsonlStore(tmp_path / "traces.jsonl", Trace)
    drafts = JsonlStore(tmp_path / "drafts.jsonl", Draft)
    programs = Programs(tmp_path / "programs")
    for opened in (dead, store, drafts, programs.index):
        opened.open()
    given = [*contexts, *[""] * traces]
    measured = [*gains, *[None] * traces]
    await store.append_many(
        [make_trace(i, text, context=given[i], gain=measured[i]) for i, text in enumerate(POSTS[:traces])]
    )
    bus = Bus()
    chains: dict[Role, list[Provider]] = {"generator": [provider], "scorer": [provider]}
    actors: list[Limiter | OptimizerActor | GeneratorActor] = [
        Limiter(bus, dead, chains, {}),
        OptimizerActor(bus, dead, store, programs, settings),
        GeneratorActor(bus, dead, drafts, store, programs, settings),
    ]
    async with anyio.create_task_group() as tg:
        for actor in actors:
            tg.start_soon(actor.run)
        for message in messages:
            if isinstance(message, GenerateRequested):
                await bus.publish(GENERATE_REQUESTED, message)
            else:
                assert isinstance(message, OptimizeRequested)
                await bus.publish(OPTIMIZE_REQUESTED, message)
            await bus.wait_idle()
        await bus.aclose()
    refused = [d for d in dead.read() if d.error.startswith(("Refused: ", "CallCapReached: "))]
    assert len(refused) == len(list(dead.read())) == refusals
    return list(drafts.read()), programs.records()


def demo_sensitive_writer(with_demos: str, without: str) -> MockProvider:
    """Plans with `PLAN`; writes `with_demos` when the prompt holds demonstrations (turns before the
    last user one), else `without`: a compiled program then writes differently from the uncompiled one."""

    def generate(call: GenerateCall) -> str:
        if "[[ ## plan ## ]]" in call.prefill or call.prefill == PLAN_OPENING:
            return PLAN.removeprefix(call.prefill)
        return with_demos if len(call.messages) > 2 else without

    return MockProvider(generate, uri="dummy://scripted")


CLOSE = " ".join(POSTS)  # shares words and 3-grams with every mined post
FAR = "Zq xv kj."


@pytest.mark.parametrize(("with_demos", "without", "promoted"), [(CLOSE, FAR, True), (FAR, CLOSE, False)])
async def test_a_compile_is_promoted_only_when_it_beats_the_current_program(
    tmp_path: Path, with_demos: str, without: str, promoted: bool
) -> None:
    optimize = OptimizeRequested(request=OptimizeEvent(optimizer="bootstrap"))
    writer = demo_sensitive_writer(with_demos[:280], without)
    _, (program,) = await run_actors(tmp_path, writer, [optimize])
    assert program.promoted is promoted
    assert (program.score > program.baseline) is promoted


async def test_optimize_then_generate_uses_the_promoted_program_without_a_restart(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    ask = GenerateRequested(request_id="r1", request=GenerateEvent(topic="restore tests", n=2))
    again = GenerateRequested(request_id="r2", request=GenerateEvent(topic="restores", platform=Platform.BLUESKY, n=1))
    optimize = OptimizeRequested(request=OptimizeEvent(optimizer="bootstrap"))
    drafts, programs = await run_actors(tmp_path, scripted_writer(), [ask, optimize, again])
    (program,) = programs
    assert program.version == 1 and program.promoted == (program.score >= program.baseline)
    assert program.model_calls > 0 and set(program.demo_trace_ids) <= set(program.train_trace_ids)
    assert [d.program_version for d in drafts] == [0, 0, 1 if program.promoted else 0]
    assert [d.draft_id for d in drafts] == ["r1-1", "r1-2", "r2-1"]
    for draft in drafts:
        assert draft.parts == [POST] and draft.plan == PLAN and draft.rejected_reason is None
        assert draft.provider == ["dummy://scripted"] and draft.score is not None and 0 < draft.score <= 1
        assert set(draft.score_parts) == {"limits", "closeness", "reer"}
    # each score is the writer's metric against the mined post of highest engagement (POSTS[0])
    model = scripted_writer()
    metric = WriterMetric(lambda call: anyio.from_thread.run(model.score, call), -2.0)
    for draft in drafts:
        request = draft.request

        def measure(best: str, request: GenerateEvent = request, plan: str = draft.plan) -> float:
            brief = render_brief(request)
            return metric.measure(brief, plan, POST, request.platform, request.thread_size, best).score

        assert draft.score == pytest.approx(await anyio.to_thread.run_sync(measure, POSTS[0]))
        assert draft.score != pytest.approx(await anyio.to_thread.run_sync(measure, POSTS[-1]))
    assert drafts[2].trace_ids == program.demo_trace_ids
    # the DSPy modules and the model calls are spans in the trace of the request that caused them
    finished = spans.get_finished_spans()
    (process,) = [
        s for s in finished if s.name == "process generate.requested" and dict(s.attributes or {})["reer.drafts"] == 1
    ]
    in_trace = [s for s in finished if s.context.trace_id == process.context.trace_id]
    assert {"dspy WriterProgram", "dspy Predict(plan)", "dspy Predict(post)"} <= {s.name for s in in_trace}
    assert sum(s.name.startswith("chat ") for s in in_trace) == 2  # plan and write, through the Limiter
    assert any(s.name.startswith("text_completion ") for s in in_trace)  # the metric's scorer call


async def test_a_draft_over_the_limit_is_kept_with_the_reason_and_written_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ask = GenerateRequested(request_id="r1", request=GenerateEvent(topic="restore tests", n=1))
    writer = scripted_writer(post="word " * 80)
    drafts, _ = await run_actors(tmp_path, writer, [ask])
    assert [d.draft_id for d in drafts] == ["r1-1", "r1-1.2", "r1-1.3"] and [d.attempt for d in drafts] == [1, 2, 3]
    assert all(d.rejected_reason == "over the x limit: 399 characters (at most 280)" for d in drafts)
    assert all(d.score == 0.0 for d in drafts)
    assert "wrote 0 of the 1 drafts asked for within the x limits and through the draft gate, in 3 tries" in caplog.text
    assert "r1-1.3: over the x limit: 399 characters" in caplog.text
    # each writing step was bounded by the platform's limit: 280 characters, about 3 a token
    assert {c.max_tokens for c in generated(writer) if c.prefill != PLAN_OPENING} == {280 // 3 + 16}


async def test_tries_stop_at_the_first_draft_within_the_limits(tmp_path: Path) -> None:
    ask = GenerateRequested(request_id="r1", request=GenerateEvent(topic="restore tests", n=2))
    writer = scripted_writer(posts=["word " * 80, POST, POST])  # the first try is too long
    drafts, _ = await run_actors(tmp_path, writer, [ask])
    assert [(d.draft_id, d.rejected_reason is None) for d in drafts] == [
        ("r1-1", False),
        ("r1-1.2", True),
        ("r1-2", True),
    ]


async def test_a_score_that_cannot_be_measured_is_absent_with_the_reason(tmp_path: Path) -> None:
    ask = GenerateRequested(request_id="r1", request=GenerateEvent(topic="restore tests", n=1))
    (draft,), _ = await run_actors(tmp_path, scripted_writer(), [ask], traces=0)
    assert draft.rejected_reason is None and draft.score is None
    assert draft.score_missing is not None and "no mined post to compare with" in draft.score_missing


async def test_a_program_that_was_not_promoted_is_used_only_when_asked_for_by_version(tmp_path: Path) -> None:
    programs = Programs(tmp_path / "programs")
    programs.index.open()
    for version, promoted in ((1, True), (2, False)):
        programs.save(WriterProgram(), version)
        await programs.index.append(
            Program(
                version=version,
                optimizer="bootstrap",
                score=0.1 * version,
                baseline=0.5,
                promoted=promoted,
                train_trace_ids=[],
                val_trace_ids=[],
                demo_trace_ids=[f"t{version}"],
                model_calls=0,
                compile_s=0,
                created_at=datetime.now(UTC),
            )
        )
    programs.index.close()
    ask = GenerateRequested(request_id="r", request=GenerateEvent(topic="x", n=1))
    asked = [GenerateRequested(request_id=f"v{v}", request=GenerateEvent(topic="x", n=1, program=v)) for v in (2, 0, 7)]
    drafts, _ = await run_actors(tmp_path, scripted_writer(), [ask, *asked], refusals=1)
    assert [(d.request_id, d.program_version, d.trace_ids) for d in drafts] == [
        ("r", 1, ["t1"]),  # by default, the newest promoted program
        ("v2", 2, ["t2"]),  # asked for by its version, though it was not promoted
        ("v0", 0, []),  # the uncompiled one
    ]
    (refused,) = JsonlStore(tmp_path / "dead.jsonl", DeadLetter).read()  # v7: no such program
    assert "no program v7 of template content_generation" in refused.error


async def test_traces_whose_plans_do_not_hold_are_left_out_of_a_compile_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    optimize = OptimizeRequested(request=OptimizeEvent(optimizer="bootstrap"))
    gains = [-0.2, 0.0, 0.1, 0.3, None, 0.05]  # t0 and t1 are at or below writer.min_gain (0); t4 is not measured
    caplog.set_level("INFO")
    _, (program,) = await run_actors(tmp_path, scripted_writer(), [optimize], gains=gains)
    used = set(program.train_trace_ids) | set(program.val_trace_ids)
    assert used == {"t2", "t3", "t4", "t5"} and program.left_out == 2
    assert "on 4 traces (2 left out: a held-out gain at or below writer.min_gain = 0)" in caplog.text
    gains = [-0.2, 0.0, 0.1, 0.3, -1.0, 0.05]
    _, programs = await run_actors(tmp_path / "fewer", scripted_writer(), [optimize], gains=gains, refusals=1)
    assert programs == [] and (
        "not compiling content_generation: 3 traces in the store (3 more left out: a held-out gain at or below "
        "writer.min_gain = 0), at least 4 needed" in caplog.text
    )


async def test_a_request_stops_at_its_cap_of_model_calls_and_a_capped_compile_is_not_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = scripted_writer()
    ask = GenerateRequested(request_id="r1", request=GenerateEvent(topic="restore tests", n=5))
    optimize = OptimizeRequested(request_id="o1", request=OptimizeEvent(optimizer="bootstrap"))
    nothing = GenerateRequested(request_id="r2", request=GenerateEvent(topic="restore tests"))
    drafts, programs = await run_actors(tmp_path, writer, [ask], cap=7)
    assert len(writer.calls) == 7  # a plan, a post and a score a draft: two drafts, and a plan
    assert [d.draft_id for d in drafts] == ["r1-1", "r1-2"] and all(d.rejected_reason is None for d in drafts)
    assert "writer.max_tries); stopped at writer.max_calls_per_request (7 model calls); the tries refused: none" in (
        caplog.text
    )
    _, programs = await run_actors(tmp_path / "compile", writer, [optimize, nothing], cap=1, refusals=2)
    assert programs == []
    assert "compiling content_generation with bootstrap on 6 traces needs more than the 1 model calls" in caplog.text
    assert "the request needs more than the 1 model calls of writer.max_calls_per_request" in caplog.text


async def test_too_few_traces_compile_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    optimize = OptimizeRequested(request=OptimizeEvent())
    _, programs = await run_actors(tmp_path, scripted_writer(), [optimize], traces=3, refusals=1)
    assert (
        programs == [] and "not compiling content_generation: 3 traces in the store, at least 4 needed" in caplog.text
    )
    assert "Traceback" not in caplog.text  # a refusal is a warning with its reason, kept as a dead letter


# --- the whole loop, as a user runs it --------------------------------------------------------


def test_mine_optimize_generate_as_subprocesses_with_valid_records(tmp_path: Path, run_daemon: RunDaemon) -> None:
    posts = tmp_path / "in.jsonl"
    request = {"type": "generate", "topic": "restore tests", "platform": "bluesky", "n": 1}
    posts.write_text("".join(post_line(i) + "\n" for i in range(24)) + json.dumps(request) + "\n")
    data = tmp_path / "data"
    with serving(FakeServer(generator=scripted_writer())) as server:
        env = {"REER_GENERATOR": server.uri(), "REER_SCORER": "dummy://"}
        mined = run_daemon("start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0.5", env=env)
        assert mined.returncode == 0, mined.stderr
        assert mined.stdout.count("=== draft") == 1  # the generate event in the input, with program v0
        optimized = run_daemon("optimize", "--optimizer", "bootstrap", env=env)
        assert optimized.returncode == 0, optimized.stderr
        assert "compiling content_generation program v1 with bootstrap" in optimized.stderr
        drafted = run_daemon("generate", "--topic", "restores", "-n", "2", "--thread-size", "2", "--json", env=env)
        assert drafted.returncode == 0, drafted.stderr
    printed = [json.loads(line) for line in drafted.stdout.splitlines()]  # one record a line, nothing else
    halves = ["Backups you never restored are only hopes.", "Test a restore this week. What did yours teach you?"]
    assert len(printed) == 2 and all(d["parts"] == halves and d["score"] is not None for d in printed)
    assert validate_store(data / "traces.jsonl", "trace") >= 4
    assert validate_store(data / "posts.jsonl", "accepted") == 24
    assert validate_store(data / "programs" / "index.jsonl", "program") == 1
    assert validate_store(data / "drafts.jsonl", "candidate") == 3
    program = json.loads((data / "programs" / "index.jsonl").read_text())
    drafts = [json.loads(line) for line in (data / "drafts.jsonl").read_text().splitlines()]
    assert drafts[0]["request"]["platform"] == "bluesky" and drafts[0]["program_version"] == 0
    expected = program["version"] if program["promoted"] else 0
    assert [d["program_version"] for d in drafts[1:]] == [expected, expected]
    assert [d["parts"] for d in drafts] == [[POST], halves, halves]
    assert all(d["rejected_reason"] is None for d in drafts)
    loaded = WriterProgram()
    loaded.load(str(data / "programs" / "v1.json"))  # plain DSPy reads what the Optimizer saved
    assert len(loaded.plan.demos) == len(json.loads((data / "programs" / "v1.json").read_text())["plan"]["demos"])


def test_generate_explains_bad_arguments(run_daemon: RunDaemon) -> None:
    done = run_daemon("generate", "--topic", "x", "--n", "50")
    assert done.returncode == 2 and "argument --n/-n: 50 is out of range: at least 1 and at most 20" in done.stderr


def test_a_request_for_drafts_cut_short_by_a_kill_is_handled_at_the_next_start(
    tmp_path: Path, run_daemon: RunDaemon
) -> None:
    data = tmp_path / "data"
    env = daemon_env()
    env |= {"REER_GENERATOR": "fault://?base=dummy://&hang=1", "REER_SCORER": "dummy://"}  # every call hangs
    daemon = subprocess.Popen(
        [sys.executable, "-m", "reer_runtime", "--data-dir", str(data), "generate", "--topic", "backups", "--n", "2"],
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        cwd=ROOT,
        env=env,
    )
    journal = data / "requests.jsonl"
    deadline = time.monotonic() + 60
    while not (journal.exists() and journal.read_text().endswith("\n")) and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for the journaled request, with a deadline
    daemon.kill()
    daemon.wait(timeout=30)
    (request,) = [json.loads(line) for line in journal.read_text().splitlines()]
    assert not (data / "drafts.jsonl").exists() or not (data / "drafts.jsonl").read_text()

    resumed = run_daemon("start", "--exit-when-idle", stdin="")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming 1 requests accepted before the last stop" in resumed.stderr
    written = (data / "drafts.jsonl").read_text().splitlines()
    drafts = [json.loads(line) for line in written]  # each draft, after any tries the draft gate refused
    assert {d["draft_id"].split(".")[0] for d in drafts} == {f"{request['request_id']}-{i}" for i in (1, 2)}
    assert validate_store(journal, "request") == 1
    again = run_daemon("start", "--exit-when-idle", stdin="")
    assert "resuming" not in again.stderr and (data / "drafts.jsonl").read_text().splitlines() == written


def test_a_compile_cut_short_by_a_kill_is_done_at_the_next_start_and_a_refused_one_is_not(
    tmp_path: Path, run_daemon: RunDaemon
) -> None:
    data = tmp_path / "data"
    refused = run_daemon("optimize")  # an empty data dir: refused, kept with the reason
    assert refused.returncode == 1 and "not done: not compiling content_generation: 0 traces" in refused.stderr
    posts = tmp_path / "in.jsonl"
    posts.write_text("".join(post_line(i) + "\n" for i in range(8)))
    with serving(FakeServer(generator=scripted_writer())) as server:
        env = {"REER_GENERATOR": server.uri(), "REER_SCORER": "dummy://"}
        mined = run_daemon("start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0", env=env)
        assert mined.returncode == 0, mined.stderr
        hung = daemon_env()
        hung |= {"REER_GENERATOR": "fault://?base=dummy://&hang=1", "REER_SCORER": "dummy://"}  # every call hangs
        daemon = subprocess.Popen(
            [sys.executable, "-m", "reer_runtime", "--data-dir", str(data), "optimize", "--optimizer", "bootstrap"],
            stderr=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            cwd=ROOT,
            env=hung,
        )
        journal = data / "requests.jsonl"
        deadline = time.monotonic() + 60
        while len(journal.read_text().splitlines()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for the second journaled request, with a deadline
        daemon.kill()
        daemon.wait(timeout=30)
        first, second = [json.loads(line) for line in journal.read_text().splitlines()]
        assert first["request"]["type"] == second["request"]["type"] == "optimize"
        assert not (data / "programs" / "index.jsonl").read_text()  # the kill came before any program

        resumed = run_daemon("start", "--exit-when-idle", stdin="", env=env)
        assert resumed.returncode == 0, resumed.stderr
        assert "resuming 1 requests accepted before the last stop" in resumed.stderr  # the refused one is settled
        (program,) = [json.loads(line) for line in (data / "programs" / "index.jsonl").read_text().splitlines()]
        assert program["request_id"] == second["request_id"] and program["optimizer"] == "bootstrap"
        again = run_daemon("start", "--exit-when-idle", stdin="", env=env)
    assert "resuming" not in again.stderr and validate_store(journal, "request") == 2


def test_generate_prints_only_drafts_through_the_limits_and_the_gate_and_says_why_others_failed(
    tmp_path: Path, run_daemon: RunDaemon
) -> None:
    posts = tmp_path / "in.jsonl"
    posts.write_text("".join(post_line(i) + "\n" for i in range(12)))
    assert run_daemon("start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0.5").returncode == 0
    tries = ["word " * 80, "Quokkas!\nQuokkas!", POST, f"{POST} [insert link]", POST]
    scripted = scripted_writer(posts=["(the start check's trial call)", *tries])
    with serving(FakeServer(generator=scripted)) as server:
        env = {"REER_GENERATOR": server.uri(), "REER_SCORER": "dummy://"}
        drafted = run_daemon("generate", "--topic", "restore tests", "-n", "3", "--json", env=env)
    assert drafted.returncode == 0, drafted.stderr
    printed = [json.loads(line) for line in drafted.stdout.splitlines()]
    stored = [json.loads(line) for line in (tmp_path / "data" / "drafts.jsonl").read_text().splitlines()]
    assert [(d["draft_id"].split("-")[-1], d["rejected_reason"]) for d in stored] == [
        ("1", "over the x limit: 399 characters (at most 280)"),
        ("1.2", "a line repeated 2 times: 'quokkas!'"),
        ("1.3", None),
        ("2", "a placeholder left to fill: '[insert link]'"),
        ("2.2", None),
        ("3", None),
    ]
    assert len(printed) == 3 and all(d["parts"] == [POST] and isinstance(d["score"], float) for d in printed)
    assert all(refusal(d["parts"][0], "restore tests") is None for d in printed)
