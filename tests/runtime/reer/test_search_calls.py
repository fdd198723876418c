"""The REER search's calls and bookkeeping, against a scripted model: what each call asks for, which
rewrites are refused and why, when refinement stops, and what the trace's timings count."""

from __future__ import annotations

import itertools
import time
from types import SimpleNamespace

import pytest

from reer_runtime.testing import MockProvider
from runtime.config import SearchSettings
from runtime.errors import ServerFailed
from runtime.providers.calls import GenerateCall, ScoreCall
from runtime.records import Mining
from runtime.reer import prompts
from runtime.reer import search as search_module
from runtime.reer.brief import derive_brief
from runtime.reer.plans import content_overlap, render_plan
from runtime.reer.search import Search, clip_share, held_out_positions, post_seed
from tests.helpers import make_post

pytestmark = pytest.mark.anyio

POST = make_post(1, "Backups you have never restored are not backups. Test yours this week, before you need them.")
BRIEF = derive_brief(POST)
SECTIONS = list(prompts.SECTIONS)


def scorer(no_plan: float, plan: float) -> MockProvider:
    """A model that writes " say one thing." and scores ten tokens with a clipped mean NLL of
    `no_plan` without a plan, `plan` with any plan."""

    def score(call: ScoreCall) -> list[float]:
        return [-(no_plan if call.prefix == prompts.scored_prefix(None) else plan)] * 10

    return MockProvider(generate=lambda call: " say one thing.", score=score)


async def run(model: MockProvider, settings: SearchSettings) -> Mining:
    return await Search(model, settings, BRIEF, POST.text, POST.key).run()


def generated(model: MockProvider) -> list[GenerateCall]:
    return [c for c in model.calls if isinstance(c, GenerateCall)]


async def test_each_call_asks_for_one_section_with_the_settings_and_a_seed_of_its_own() -> None:
    model = scorer(no_plan=1.5, plan=1.0)  # every plan scores the same: no rewrite beats it
    settings = SearchSettings(
        max_steps=2, num_expansion=2, temperature=0.6, top_p=0.7, section_max_tokens=40, held_out=0
    )
    result = await run(model, settings)
    calls = generated(model)
    assert len(calls) == 5 + 2 * 2  # the five sections, then two rewrites of each of two sections
    seed = post_seed(POST.key)
    assert [c.seed for c in calls] == [seed + n for n in range(1, 10)]  # drawn in order, each its own
    for c in calls:
        assert (c.max_tokens, c.temperature, c.top_p, c.stop) == (40, 0.6, 0.7, ["\n"])
    written: dict[str, str] = {}
    for name, call in zip(SECTIONS, calls[:5], strict=True):  # each section written after those before it
        assert call.messages == prompts.initial_plan(BRIEF.text, POST.text)
        assert call.prefill == (render_plan(written) + "\n" if written else "") + f"{name}: I will"
        written[name] = "I will say one thing."
    assert result.plan_initial == render_plan(written)
    for name, call in zip([SECTIONS[0]] * 2 + [SECTIONS[1]] * 2, calls[5:], strict=True):
        assert call.messages == prompts.rewrite_section(BRIEF.text, POST.text, result.plan_initial, name)
        assert call.prefill == f"{name}: I will"
    # a rewrite that only ties the plan is not taken
    assert [c.accepted for s in result.steps for c in s.candidates] == [False] * 4
    assert result.plan == result.plan_initial and result.scores.final == 1.0


async def test_the_trace_counts_the_calls_and_the_time_spent_in_each_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = itertools.count()
    monkeypatch.setattr(search_module, "time", SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    model = scorer(no_plan=1.5, plan=1.0)
    result = await run(model, SearchSettings(max_steps=2, num_expansion=2, held_out=0))
    timings = result.timings
    # each call reads the clock before and after it: one tick each
    assert (timings.generate_calls, timings.generate_s) == (9, 9.0)
    assert (timings.score_calls, timings.score_s) == (6, 6.0)  # no plan, the plan, four rewrites
    assert len(model.calls) == 15  # and no other call: nothing is judged with nothing held out


async def test_the_total_time_is_the_searchs_own() -> None:
    started = time.perf_counter()
    result = await run(scorer(no_plan=1.5, plan=1.0), SearchSettings(max_steps=1))
    assert result.timings.generate_s + result.timings.score_s <= result.timings.total_s
    assert result.timings.total_s <= time.perf_counter() - started


async def test_rewrites_that_copy_the_post_or_say_nothing_are_refused_unscored() -> None:
    seed = post_seed(POST.key)

    def generate(call: GenerateCall) -> str:
        if call.seed is not None and call.seed > seed + 5:  # a rewrite: two copies, then an empty one
            return "" if (call.seed - seed) % 3 == 2 else " " + POST.text
        return " say one thing."

    model = MockProvider(generate=generate, score=lambda call: [-1.0] * 10)
    result = await run(model, SearchSettings(max_steps=2, num_expansion=3, held_out=0))
    for step in result.steps:
        *copies, empty = step.candidates
        for copy in copies:
            assert copy.score is None and not copy.accepted and (copy.rejected_reason or "").startswith("copies ")
        assert (empty.score, empty.accepted, empty.rejected_reason) == (None, False, "empty rewrite")
    assert result.leak_rejections == 4  # the copies; an empty rewrite is not a leak
    assert result.timings.score_calls == 2  # no plan and the plan: nothing refused was scored


async def test_refinement_goes_on_at_the_threshold_and_stops_below_it() -> None:
    at = await run(scorer(no_plan=1.0, plan=0.25), SearchSettings(stop_thresh=0.25, max_steps=2))
    assert len(at.steps) == 2  # not below: the sections are refined
    below = await run(scorer(no_plan=1.0, plan=0.24), SearchSettings(stop_thresh=0.25, max_steps=2))
    assert below.steps == []


async def test_a_rewrite_that_scores_lower_is_taken_and_the_clip_share_is_the_final_plans() -> None:
    def score(call: ScoreCall) -> list[float]:
        better = "say it better" in call.prefix
        return [-1.0] * 8 + [-3.0] * 2 if better else [-1.5] * 10  # clipped at -2: NLL 1.2 against 1.5

    def generate(call: GenerateCall) -> str:
        rewrite = call.messages != prompts.initial_plan(BRIEF.text, POST.text)
        return " say it better." if rewrite else " say one thing."

    result = await run(MockProvider(generate=generate, score=score), SearchSettings(max_steps=1, held_out=0))
    assert [c.accepted for c in result.steps[0].candidates] == [True, False]
    assert result.sections[SECTIONS[0]] == "I will say it better."
    assert result.scores.final == pytest.approx(1.2) and result.scores.clip_share == pytest.approx(0.2)


async def test_a_failed_rewrite_fails_the_search_with_its_own_error() -> None:
    def generate(call: GenerateCall) -> str:
        if call.messages != prompts.initial_plan(BRIEF.text, POST.text):  # the first rewrite
            raise ServerFailed("503 busy")
        return " say one thing."

    with pytest.raises(ServerFailed, match=r"^503 busy$"):
        await run(MockProvider(generate=generate, score=lambda call: [-1.0] * 10), SearchSettings(max_steps=1))


def test_the_clip_share_counts_the_tokens_at_or_below_the_floor() -> None:
    assert clip_share([-1.0, -2.0, -3.0, -0.5], -2.0) == 0.5
    assert clip_share([], -2.0) == 0.0


def test_a_posts_seed_is_stable_across_versions() -> None:
    """Traces mined before and after a release sample the same plans for the same post."""
    assert post_seed("x:1") == 192446584 and post_seed("") == 3820012610
    assert len(held_out_positions(4, 0.25, 7)) == 1  # one token can be held out


async def test_the_trace_measures_how_much_of_the_posts_content_the_plan_names() -> None:
    model = MockProvider(generate=lambda call: " say why backups matter.", score=lambda call: [-1.0] * 10)
    result = await run(model, SearchSettings(max_steps=0))
    assert result.content_overlap == content_overlap(result.plan, POST.text) > 0
