"""The judge: a second scorer that takes no part in the search scores the plans it found."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import reer_runtime
from runtime.providers import open_provider
from runtime.providers.calls import ScoreCall
from runtime.reer import prompts
from runtime.reer.search import clipped_nll
from tests.helpers import make_post, run_cli

JUDGE = "dummy://?order=3"  # another model than the scorer, dummy:// (order 5)


def test_the_judge_scores_each_found_plan_on_every_token_and_nothing_else(tmp_path: Path) -> None:
    posts = [make_post(i, author="solo", likes=i) for i in range(3)]
    with reer_runtime.Client(tmp_path, provider="dummy://", judge=JUDGE, min_engagement=0.0) as rt:
        before = rt.stats().models  # the process's figures: other tests in this process may have called it
        traces = rt.mine(posts).traces
        models = rt.stats().models
    assert len(traces) == 3
    calls = {k: v.calls - (before[k].calls if k in before else 0) for k, v in models.items() if "ngram-3" in k}
    # the judge's only calls: four scores a trace (no plan, z0, z*, the generic plan), no generation
    assert calls == {"dummy/ngram-3 score": 12}
    judge = open_provider(JUDGE, tmp_path)
    for t in traces:
        assert t.judge is not None and t.judge.model == JUDGE

        def nll(plan: str | None, t: reer_runtime.Trace = t) -> float:
            call = ScoreCall(
                messages=prompts.task(t.brief.text), prefix=prompts.scored_prefix(plan), target=t.post.text
            )
            return clipped_nll(anyio.run(judge.score, call).logprobs, -2.0)

        assert t.judge.final == pytest.approx(nll(t.plan)) and t.judge.initial == pytest.approx(nll(t.plan_initial))
        assert t.judge.no_plan == pytest.approx(nll(None))
        assert t.judge.generic == pytest.approx(nll(prompts.GENERIC_PLAN))
        assert t.judge.gain == pytest.approx(t.judge.generic - t.judge.final)
        assert t.judge.final != pytest.approx(t.scores.final)  # another model's figures
    first = traces[0]
    shown = run_cli(tmp_path, "traces", "show", first.trace_id)
    assert (
        first.judge and f"judge {JUDGE}: gain {first.judge.gain:+.3f} nats a token over a generic plan" in shown.stdout
    )


def test_a_judge_that_fails_leaves_the_trace_without_its_figures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    failing = "fault://?base=dummy://&fatal=1"  # every call refused with a 400
    with reer_runtime.Client(tmp_path, provider="dummy://", judge=failing, min_engagement=0.0) as rt:
        (trace,) = rt.mine([make_post(1, author="solo")]).traces
    assert trace.judge is None and trace.held_out is not None
    assert "the judge could not score x:1" in caplog.text and "kept without the judge's figures" in caplog.text
