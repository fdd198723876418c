"""The REER search: find the plan `z` that minimises the clipped mean NLL of a post `y` given `x`."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Protocol

from bus.messages import GenerateCall, Generation, ScoreCall, TokenScores
from bus.records import Brief, Candidate, Mining, Scores, Step, Timings
from runtime.config import SearchSettings
from runtime.reer import prompts
from runtime.reer.plans import join_segments, leak_reason, overlap, split_segments


class Model(Protocol):
    """What the search needs from the models: the Limiter's client, or a provider in tests."""

    async def generate(self, call: GenerateCall) -> Generation: ...

    async def score(self, call: ScoreCall) -> TokenScores: ...


class NoPlanError(RuntimeError):
    """Every initial plan the generator wrote copied the post."""


def clipped_nll(logprobs: list[float], clip_min: float) -> float:
    """Mean negative log-likelihood with each token's log-probability clipped to [clip_min, 0]."""
    if not logprobs:
        return 0.0
    return -sum(min(0.0, max(clip_min, lp)) for lp in logprobs) / len(logprobs)


@dataclass
class _Clock:
    generate_s: float = 0.0
    score_s: float = 0.0
    generate_calls: int = 0
    score_calls: int = 0
    generators: set[str] = field(default_factory=set)
    scorers: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.perf_counter)


class Search:
    """One search for one post. `seed_key` makes the sampling reproducible for that post."""

    def __init__(self, model: Model, settings: SearchSettings, brief: Brief, post: str, seed_key: str) -> None:
        self.model = model
        self.settings = settings
        self.brief = brief
        self.post = post
        self._seed = int.from_bytes(hashlib.sha256(seed_key.encode()).digest()[:4], "big")
        self._calls = 0
        self._clock = _Clock()

    async def run(self) -> Mining:
        s = self.settings
        no_plan = await self.score(None)
        plan0, leaks = await self._initial_plan()
        initial = best = await self.score(plan0)
        segments = split_segments(plan0, s.min_segment_chars)
        steps: list[Step] = []
        for index in range(min(s.max_steps, len(segments))):
            if best < s.stop_thresh:
                break
            best_before = best
            candidates = []
            for _ in range(s.num_expansion):
                text = await self._rewrite(segments, index)
                trial = [*segments[:index], text, *segments[index + 1 :]]
                reason = self._leak(join_segments(trial)) if text else "empty rewrite"
                if reason:
                    leaks += reason != "empty rewrite"
                    candidates.append(Candidate(text=text, score=None, accepted=False, rejected_reason=reason))
                    continue
                score = await self.score(join_segments(trial))
                accepted = score < best
                candidates.append(Candidate(text=text, score=score, accepted=accepted))
                if accepted:
                    best, segments = score, trial
            steps.append(Step(segment=index, best_before=best_before, candidates=candidates))
        plan = join_segments(segments)
        c = self._clock
        return Mining(
            plan_initial=plan0,
            plan=plan,
            scores=Scores(no_plan=no_plan, initial=initial, final=best),
            overlap=overlap(plan, self.post),
            steps=steps,
            leak_rejections=leaks,
            timings=Timings(
                total_s=time.perf_counter() - c.started,
                generate_s=c.generate_s,
                score_s=c.score_s,
                generate_calls=c.generate_calls,
                score_calls=c.score_calls,
            ),
            generators=sorted(c.generators),
            scorers=sorted(c.scorers),
        )

    async def score(self, plan: str | None) -> float:
        """Clipped mean NLL of the post after the brief and `plan` (None: no plan)."""
        started = time.perf_counter()
        result = await self.model.score(
            ScoreCall(messages=prompts.task(self.brief.text), prefix=prompts.scored_prefix(plan), target=self.post)
        )
        self._clock.score_s += time.perf_counter() - started
        self._clock.score_calls += 1
        self._clock.scorers.add(result.provider)
        return clipped_nll(result.logprobs, self.settings.clip_min)

    async def _initial_plan(self) -> tuple[str, int]:
        leaks = 0
        reasons = []
        for _ in range(self.settings.init_attempts):
            text = await self._generate(
                GenerateCall(
                    messages=prompts.initial_plan(self.brief.text, self.post),
                    prefill=prompts.PLAN_PREFILL,
                    max_tokens=self.settings.plan_max_tokens,
                    temperature=self.settings.temperature,
                    top_p=self.settings.top_p,
                    seed=self._next_seed(),
                )
            )
            plan = (prompts.PLAN_PREFILL + text).strip()
            reason = self._leak(plan)
            if reason is None:
                return plan, leaks
            leaks += 1
            reasons.append(reason)
        raise NoPlanError(f"all {leaks} initial plans copied the post ({'; '.join(reasons)})")

    async def _rewrite(self, segments: list[str], index: int) -> str:
        text = await self._generate(
            GenerateCall(
                messages=prompts.rewrite_segment(self.brief.text, self.post, segments, index),
                max_tokens=self.settings.segment_max_tokens,
                temperature=self.settings.temperature,
                top_p=self.settings.top_p,
                stop=["\n\n"],
                seed=self._next_seed(),
            )
        )
        return text.strip()

    async def _generate(self, call: GenerateCall) -> str:
        started = time.perf_counter()
        result = await self.model.generate(call)
        self._clock.generate_s += time.perf_counter() - started
        self._clock.generate_calls += 1
        self._clock.generators.add(result.provider)
        return result.text

    def _leak(self, plan: str) -> str | None:
        return leak_reason(plan, self.post, self.settings.max_overlap, self.settings.max_copied_words)

    def _next_seed(self) -> int:
        self._calls += 1
        return self._seed + self._calls
