"""A second opinion on the plans a search found: a judge, a scorer that took no part in the search,
scores the post under no plan, `z0`, `z*` and the generic plan, on every token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from runtime.providers.calls import ScoreCall, TokenScores
from runtime.records import Judged, Mining
from runtime.reer import prompts
from runtime.reer.search import clipped_nll


async def judge(
    score: Callable[[ScoreCall], Awaitable[TokenScores]], brief: str, post: str, found: Mining, clip_min: float
) -> Judged:
    """The judge's clipped mean NLL of `post` under each plan of `found`, and the found plan's gain
    over the generic plan; `score` is the judge's chain (raises `ProviderError` as a call does)."""
    plans = {"no_plan": None, "initial": found.plan_initial, "final": found.plan, "generic": prompts.GENERIC_PLAN}
    nll: dict[str, float] = {}
    model = ""
    for kind, plan in plans.items():
        call = ScoreCall(messages=prompts.task(brief), prefix=prompts.scored_prefix(plan), target=post)
        result = await score(call)
        nll[kind], model = clipped_nll(result.logprobs, clip_min), result.provider
    return Judged(model=model, **nll, gain=nll["generic"] - nll["final"])
