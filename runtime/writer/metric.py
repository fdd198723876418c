"""The writer's metric, used to compile programs and to rank drafts.

A draft that breaks the platform's limits, or that the draft gate refuses (for the topic of the
example it answers), scores 0: a compile never learns from a draft that could not be posted.
Otherwise the score is the mean of two parts in [0, 1]: `closeness`, the cosine similarity of
character 3-gram counts between the draft and a high-performing post of the author (the held-out
reference), and `reer`, how well the draft's plan explains that reference post to the scorer:
`exp(-clipped mean NLL)` of the post after the brief and the plan, the REER score of the mining
step turned into a mean per-token probability.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dspy

from runtime.providers.calls import ScoreCall, TokenScores
from runtime.records import Platform
from runtime.reer import prompts
from runtime.reer.search import clipped_nll
from runtime.writer.draft_gate import refusal
from runtime.writer.limits import fit


@dataclass(frozen=True)
class Measured:
    score: float
    parts: dict[str, float]
    feedback: str


def closeness(draft: str, reference: str) -> float:
    """Cosine similarity of the character 3-gram counts of two texts (case-folded)."""
    a, b = _grams(draft), _grams(reference)
    dot = sum(count * b[gram] for gram, count in a.items())
    norm = math.sqrt(sum(v * v for v in a.values()) * sum(v * v for v in b.values()))
    return dot / norm if norm else 0.0


def _grams(text: str) -> Counter[str]:
    folded = " ".join(text.lower().split())
    return Counter(folded[i : i + 3] for i in range(len(folded) - 2))


class WriterMetric:
    """Scores (brief, plan, draft) against a reference post; `score` calls the scorer (through the Limiter).

    Called as a DSPy metric, it returns a float, or with `feedback=True` (for GEPA) a
    `dspy.Prediction(score=, feedback=)` whose text says what each part found.
    """

    def __init__(self, score: Callable[[ScoreCall], TokenScores], clip_min: float, *, feedback: bool = False) -> None:
        self.score_call = score
        self.clip_min = clip_min
        self.feedback = feedback

    def measure(
        self, brief: str, plan: str, draft: str, platform: Platform, thread_size: int, reference: str, topic: str = ""
    ) -> Measured:
        """The draft's score against `reference`; `topic` (none: any) is what the draft gate checks it names."""
        fitted = fit(draft, platform, thread_size)
        if fitted.rejected:
            return Measured(0.0, {"limits": 0.0}, f"The draft breaks the platform's limits: {fitted.rejected}.")
        if refused := refusal("\n".join(fitted.parts), topic):
            return Measured(0.0, {"gate": 0.0}, f"The draft could not be posted: {refused}.")
        close = closeness("\n".join(fitted.parts), reference)
        call = ScoreCall(messages=prompts.task(brief), prefix=prompts.scored_prefix(plan), target=reference)
        nll = clipped_nll(self.score_call(call).logprobs, self.clip_min)
        reer = math.exp(-nll)
        feedback = (
            f"Within the {platform.value} limits. Closeness to the author's high-performing post: {close:.2f} "
            f"(character 3-grams). The plan explains that post at {nll:.3f} nats per token (lower is better; "
            f"a plan that names the post's angle, hook and structure explains it better)."
        )
        return Measured((close + reer) / 2, {"limits": 1.0, "closeness": close, "reer": reer}, feedback)

    def __call__(
        self, example: dspy.Example, prediction: dspy.Prediction, trace: Any = None, *args: Any, **kwargs: Any
    ) -> float | dspy.Prediction:
        measured = self.measure(
            example.brief,
            str(prediction.get("plan", "")),
            str(prediction.get("post", "")),
            Platform(example.platform),
            int(example.get("thread_size", 1)),
            example.post,
            str(example.get("topic", "")),
        )
        if self.feedback:
            return dspy.Prediction(score=measured.score, feedback=measured.feedback)
        return measured.score
