"""The REER search: find the plan `z` that minimises the clipped mean NLL of a post `y` given `x`."""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from runtime.config import SearchSettings
from runtime.errors import NoPlanError, ProviderError, first_error
from runtime.providers.calls import ChatMessage, GenerateCall, Generation, ScoreCall, TokenScores
from runtime.records import Brief, Candidate, HeldOut, Mining, Scores, Step, Timings
from runtime.reer import prompts
from runtime.reer.plans import content_overlap, leak_reason, overlap, render_plan


class Model(Protocol):
    """What the search needs from the models: the Limiter's client, or a provider in tests."""

    async def generate(self, call: GenerateCall) -> Generation: ...

    async def score(self, call: ScoreCall) -> TokenScores: ...


def clipped_nll(logprobs: list[float], clip_min: float) -> float:
    """Mean negative log-likelihood with each token's log-probability clipped to [clip_min, 0].

    No log-probabilities is no score: it raises `ValueError` rather than return 0, the best score
    there is, which would make a scorer that answered nothing pick the winning plan."""
    if not logprobs:
        raise ValueError("the scorer returned no log-probabilities: nothing to score")
    return -sum(min(0.0, max(clip_min, lp)) for lp in logprobs) / len(logprobs)


def post_seed(seed_key: str) -> int:
    """The seed of a post's search: its sampling, and which of its tokens are held out."""
    return int.from_bytes(hashlib.sha256(seed_key.encode()).digest()[:4], "big")


def held_out_positions(n: int, share: float, seed: int) -> frozenset[int]:
    """A seeded random `share` of the positions `0..n-1`, the tokens the search never sees; at least
    one is left for the search, and none is held out of a single token or with a share of 0."""
    k = min(n - 1, round(n * share))
    return frozenset(random.Random(f"held out {seed}").sample(range(n), k)) if k > 0 else frozenset()


def clip_share(logprobs: list[float], clip_min: float) -> float:
    """Share of the tokens whose log-probability is at or below the clip floor."""
    return sum(lp <= clip_min for lp in logprobs) / len(logprobs) if logprobs else 0.0


@dataclass
class _Tally:
    """What one search spent: model time and calls by role, and which providers answered."""

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
        self._seed = post_seed(seed_key)
        self._calls = 0
        self._tally = _Tally()
        self._clip_shares: dict[str | None, float] = {}
        self._held_out: dict[str | None, tuple[int, float]] = {}
        """Each plan scored: the count of held-out tokens and their clipped mean NLL."""

    async def run(self) -> Mining:
        s = self.settings
        no_plan = await self.score(None)
        sections, leaks = await self._initial_plan()
        plan0 = render_plan(sections)
        initial = best = await self.score(plan0)
        steps: list[Step] = []
        for name in list(sections)[: s.max_steps]:
            if best < s.stop_thresh:
                break
            # `num_expansion` rewrites drawn independently from the same plan, the best one kept if it
            # scores lower than the plan: as the authors' code expands a node (not a hill-climb). They
            # are drawn at once, so a local model decodes them in one batch.
            best_before = best
            asked = prompts.rewrite_section(self.brief.text, self.post, render_plan(sections), name)
            tried: list[tuple[str, float | None, str | None]] = []
            for text in await self._sections(asked, name, s.num_expansion):
                trial = render_plan({**sections, name: text})
                reason = self._leak(trial) if text != prompts.PLAN_PREFILL else "empty rewrite"
                leaks += reason is not None and reason != "empty rewrite"
                tried.append((text, None if reason else await self.score(trial), reason))
            scored = [(score, i) for i, (_, score, _) in enumerate(tried) if score is not None]
            chosen = min(scored)[1] if scored and min(scored)[0] < best_before else None
            if chosen is not None:
                best, sections = min(scored)[0], {**sections, name: tried[chosen][0]}
            candidates = [
                Candidate(text=text, score=score, accepted=i == chosen, rejected_reason=reason)
                for i, (text, score, reason) in enumerate(tried)
            ]
            steps.append(Step(section=name, best_before=best_before, candidates=candidates))
        plan = render_plan(sections)
        held_out = await self._judge_held_out(plan0, plan, best) if None in self._held_out else None
        c = self._tally
        return Mining(
            plan_initial=plan0,
            plan=plan,
            sections=sections,
            scores=Scores(no_plan=no_plan, initial=initial, final=best, clip_share=self._clip_shares[plan]),
            overlap=overlap(plan, self.post),
            content_overlap=content_overlap(plan, self.post),
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
            held_out=held_out,
        )

    async def _judge_held_out(self, plan0: str, plan: str, final: float) -> HeldOut | None:
        """The plans on the tokens the search never saw, against the generic plan (one more score);
        None if a fallback scorer cut the post into a single token somewhere."""
        generic_in_sample = await self.score(prompts.GENERIC_PLAN)
        held = [self._held_out.get(k) for k in (None, plan0, plan, prompts.GENERIC_PLAN)]
        if None in held:
            return None
        (tokens, no_plan), (_, initial), (_, found), (_, generic) = held  # type: ignore[misc]
        return HeldOut(
            tokens=tokens,
            no_plan=no_plan,
            initial=initial,
            final=found,
            generic=generic,
            gain=generic - found,
            in_sample_gain=generic_in_sample - final,
        )

    async def score(self, plan: str | None) -> float:
        """Clipped mean NLL of the post's searched tokens after the brief and `plan` (None: no plan);
        that of its held-out tokens (`search.held_out`) is kept aside for the trace."""
        started = time.perf_counter()
        result = await self.model.score(
            ScoreCall(messages=prompts.task(self.brief.text), prefix=prompts.scored_prefix(plan), target=self.post)
        )
        self._tally.score_s += time.perf_counter() - started
        self._tally.score_calls += 1
        self._tally.scorers.add(result.provider)
        logprobs, clip = result.logprobs, self.settings.clip_min
        held = held_out_positions(len(logprobs), self.settings.held_out, self._seed)
        if held:
            self._held_out[plan] = (len(held), clipped_nll([logprobs[i] for i in sorted(held)], clip))
        self._clip_shares[plan] = clip_share(logprobs, clip)
        return clipped_nll([lp for i, lp in enumerate(logprobs) if i not in held], clip)

    async def _initial_plan(self) -> tuple[dict[str, str], int]:
        """Write the plan one section at a time, each prefilled with its name and ended at the line's end.

        A section that makes the plan a copy of the post is drawn again, `init_attempts` times at most.
        """
        messages = prompts.initial_plan(self.brief.text, self.post)
        sections: dict[str, str] = {}
        leaks = 0
        for name in prompts.SECTIONS:
            reasons = []
            for _ in range(self.settings.init_attempts):
                done = render_plan(sections) + "\n" if sections else ""
                text = await self._section(messages, done, name)
                reason = self._leak(render_plan({**sections, name: text}))
                if reason is None:
                    sections[name] = text
                    break
                leaks += 1
                reasons.append(reason)
            else:
                raise NoPlanError(f"all {leaks} tries at the {name} section copied the post ({'; '.join(reasons)})")
        return sections, leaks

    async def _section(self, messages: list[ChatMessage], done: str, name: str) -> str:
        """One section's text: the answer is prefilled with the sections `done` and `Name: I will`."""
        return await self._draw(self._section_call(messages, done, name))

    async def _sections(self, messages: list[ChatMessage], name: str, n: int) -> list[str]:
        """`n` independent drafts of one section, asked for at once; their seeds are drawn in order
        first, so the texts are the ones asking one after the other would give."""
        calls = [self._section_call(messages, "", name) for _ in range(n)]
        texts = [""] * n
        try:
            async with anyio.create_task_group() as tg:
                for i, call in enumerate(calls):

                    async def draw(i: int = i, call: GenerateCall = call) -> None:
                        texts[i] = await self._draw(call)

                    tg.start_soon(draw)
        except* ProviderError as group:  # one failed call fails the post as a single call would
            raise first_error(group) from None
        return texts

    def _section_call(self, messages: list[ChatMessage], done: str, name: str) -> GenerateCall:
        return GenerateCall(
            messages=messages,
            prefill=f"{done}{name}: {prompts.PLAN_PREFILL}",
            max_tokens=self.settings.section_max_tokens,
            temperature=self.settings.temperature,
            top_p=self.settings.top_p,
            stop=["\n"],
            seed=self._next_seed(),
        )

    async def _draw(self, call: GenerateCall) -> str:
        return " ".join(f"{prompts.PLAN_PREFILL}{await self._generate(call)}".split())

    async def _generate(self, call: GenerateCall) -> str:
        started = time.perf_counter()
        result = await self.model.generate(call)
        self._tally.generate_s += time.perf_counter() - started
        self._tally.generate_calls += 1
        self._tally.generators.add(result.provider)
        return result.text

    def _leak(self, plan: str) -> str | None:
        s = self.settings
        return leak_reason(plan, self.post, s.max_overlap, s.max_copied_words, s.max_content_overlap)

    def _next_seed(self) -> int:
        self._calls += 1
        return self._seed + self._calls
