"""The writer's prompt layouts: plain text for small local models, chosen by provider or by the
config; the optimizers compile through it; DSPy's chat format stays for models that follow it."""

from __future__ import annotations

from pathlib import Path

import anyio
import dspy
import pytest

from reer_runtime.testing import MockProvider
from runtime.config import Settings
from runtime.providers.calls import GenerateCall
from runtime.records import Optimizer
from runtime.writer.adapter import PLAN_OPENING, PlainAdapter, adapter_for
from runtime.writer.compile import Compiled, compile_and_measure
from runtime.writer.lm import limiter_lm
from runtime.writer.metric import WriterMetric
from runtime.writer.program import WriterProgram, example
from runtime.writer.templates import SHIPPED
from tests.runtime.writer.test_writer import PLAN, POST, POSTS, make_trace, scripted_writer, sync_generate

pytestmark = pytest.mark.anyio

MARKUP = ("[[", "]]", "##", "`brief`", "`plan`", "`post`", "completed")


@pytest.mark.parametrize(
    ("chain", "choice", "expected"),
    [
        (["mlx://smollm2-135m"], "auto", PlainAdapter),
        (["dummy://"], "auto", PlainAdapter),
        (["openai://127.0.0.1:8080/v1"], "auto", dspy.ChatAdapter),
        (["dspy://openai/gpt-4o-mini", "openai://127.0.0.1:8080/v1"], "auto", dspy.ChatAdapter),
        (["openai://127.0.0.1:8080/v1", "mlx://smollm2-135m"], "auto", PlainAdapter),  # a fallback reaches it
        (["openai://127.0.0.1:8080/v1"], "plain", PlainAdapter),
        (["mlx://smollm2-135m"], "chat", dspy.ChatAdapter),
        (["mlx://smollm2-135m"], "json", dspy.JSONAdapter),
    ],
)
def test_the_adapter_follows_the_generators_unless_the_config_names_one(
    chain: list[str], choice: str, expected: type
) -> None:
    settings = Settings(data_dir=Path("."), generator=chain, writer={"adapter": choice})
    assert type(adapter_for(settings.generator, settings.writer.adapter)) is expected


def generated(provider: MockProvider) -> list[GenerateCall]:
    return [c for c in provider.calls if isinstance(c, GenerateCall)]


async def test_the_plain_layout_shows_no_field_syntax_and_opens_the_plan_as_mined_plans_open() -> None:
    provider = scripted_writer()
    lm = limiter_lm(sync_generate(provider), max_tokens=300)  # type: ignore[arg-type]
    brief = "Write a short post for x as a post at most 280 characters. Topic: restore tests."

    def run() -> dspy.Prediction:
        with dspy.context(lm=lm, adapter=PlainAdapter()):
            return WriterProgram()(brief=brief)

    prediction = await anyio.to_thread.run_sync(run)
    assert (prediction.plan, prediction.post) == (PLAN, POST)
    plan_call, write_call = generated(provider)
    for call in (plan_call, write_call):
        shown = "\n".join(m.content for m in call.messages)
        assert not [mark for mark in MARKUP if mark in shown], shown
        assert [m.role for m in call.messages] == ["system", "user"]
    assert plan_call.prefill == PLAN_OPENING == "Angle: I will"
    assert plan_call.messages[-1].content.startswith(f"Brief: {brief}\n\nWrite the plan (one line per section: Angle:")
    assert plan_call.max_tokens == 160 and {"\n\n", "\nBrief:"} <= set(plan_call.stop)  # a plan is one block
    assert write_call.prefill == "" and write_call.messages[-1].content == (
        f"Brief: {brief}\n\nPlan:\n{PLAN}\n\nWrite the post (the text to publish, nothing else). "
        "Answer with the post only."
    )
    assert {"\nBrief:", "\nPlan:"} <= set(write_call.stop) and "\n\n" not in write_call.stop


def test_an_answer_that_names_its_field_is_read_without_the_label() -> None:
    signature = WriterProgram().write.signature
    assert PlainAdapter().parse(signature, "Post: Restore one backup today.") == {"post": "Restore one backup today."}
    assert PlainAdapter().parse(signature, "  Postmortems first.  ") == {"post": "Postmortems first."}


def compile_on_dummy(tmp_path: Path, optimizer: Optimizer) -> tuple[MockProvider, dspy.LM, Compiled]:
    """A compile by `optimizer` on `dummy://` (its plans and posts are its own n-gram text), through
    the plain layout; every call is kept in the provider's `calls`."""
    provider = MockProvider(uri="dummy://")  # the real dummy model answers every call
    examples = [example(make_trace(i, text)) for i, text in enumerate(POSTS)]
    settings = Settings(data_dir=tmp_path, writer={"max_demos": 2, "mipro_candidates": 2, "mipro_trials": 2})
    lm = limiter_lm(lambda call: anyio.from_thread.run(provider.generate, call), max_tokens=48, cache=False)
    metric = WriterMetric(lambda call: anyio.from_thread.run(provider.score, call), -2.0)
    done = compile_and_measure(
        SHIPPED[0], optimizer, examples, WriterProgram(), metric, lm, PlainAdapter(), settings.writer
    )
    assert 0 <= done.baseline <= 1 and 0 <= done.score <= 1
    return provider, lm, done


async def test_bootstrap_compiles_through_the_plain_layout_and_its_demos_are_plain_past_turns(
    tmp_path: Path,
) -> None:
    provider, lm, done = await anyio.to_thread.run_sync(compile_on_dummy, tmp_path, "bootstrap")
    program = done.program
    assert program.plan.demos, "BootstrapFewShot gives labelled demonstrations at the least"
    provider.calls.clear()

    def draft() -> dspy.Prediction:  # the plan step only: the dummy model's unseeded post may be empty
        with dspy.context(lm=lm, adapter=PlainAdapter()):
            return program.plan(brief=done.valset[0].brief)

    await anyio.to_thread.run_sync(draft)
    plan_call = generated(provider)[0]
    assert [m.role for m in plan_call.messages] == ["system", *["user", "assistant"] * len(program.plan.demos), "user"]
    shown = "\n".join(m.content for m in plan_call.messages)
    assert not [mark for mark in MARKUP if mark in shown], shown
    first = program.plan.demos[0]
    assert plan_call.messages[1].content.startswith(f"Brief: {first['brief']}")
    assert plan_call.messages[2].content == str(first["plan"]).strip()


async def test_mipro_proposes_instructions_through_the_plain_layout(tmp_path: Path) -> None:
    provider, _, done = await anyio.to_thread.run_sync(compile_on_dummy, tmp_path, "mipro")
    asks = [c.messages[-1].content for c in generated(provider)]
    proposals = [
        a
        for a in asks
        if a.endswith(
            "Write the proposed instruction (Propose an instruction that will be "
            "used to prompt a Language Model to perform this task.). Answer with "
            "the proposed instruction only."
        )
    ]
    assert len(proposals) >= 2  # one a predictor and candidate at the least
    assert not [a for a in proposals if "[[ ##" in a]
    assert done.valset and done.trainset
