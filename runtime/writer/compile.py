"""Compiling the writer on mined traces with one of DSPy's optimizers, and measuring a program.

Both run in a worker thread: every model call inside goes to the Limiter through the LM and the
metric's scorer, which wait on the event loop.
"""

from __future__ import annotations

import logging
import random
import statistics

import dspy

from runtime.config import WriterSettings
from runtime.records import Optimizer
from runtime.writer.metric import WriterMetric
from runtime.writer.program import Writer

log = logging.getLogger(__name__)


def split(
    examples: list[dspy.Example], val_fraction: float, seed: int = 0
) -> tuple[list[dspy.Example], list[dspy.Example]]:
    """Training and validation examples, shuffled reproducibly; at least one of each."""
    shuffled = sorted(examples, key=lambda e: e.trace_id)
    random.Random(seed).shuffle(shuffled)
    cut = min(len(shuffled) - 1, max(1, round(len(shuffled) * val_fraction)))
    return shuffled[cut:], shuffled[:cut]


def evaluate(program: Writer, valset: list[dspy.Example], metric: WriterMetric, lm: dspy.LM) -> float:
    """The mean metric over `valset`; an example the program fails on (an unparsable answer) scores 0."""
    scores = []
    with dspy.context(lm=lm):
        for example in valset:
            try:
                prediction = program(**example.inputs())
            except Exception as exc:  # DSPy raises many kinds when a small model breaks format
                log.info("validation example %s failed: %s", example.trace_id, str(exc).splitlines()[0][:200])
                scores.append(0.0)
                continue
            scores.append(float(metric(example, prediction)))
    return statistics.fmean(scores) if scores else 0.0


def compile_writer(
    student: Writer,
    optimizer: Optimizer,
    trainset: list[dspy.Example],
    valset: list[dspy.Example],
    metric: WriterMetric,
    lm: dspy.LM,
    settings: WriterSettings,
) -> Writer:
    """`student`, a new `Writer`, compiled on `trainset` (MIPROv2 and GEPA also search on `valset`)."""
    with dspy.context(lm=lm):
        if optimizer == "bootstrap":
            bootstrap = dspy.BootstrapFewShot(
                metric=metric, max_bootstrapped_demos=settings.max_demos, max_labeled_demos=settings.max_demos
            )
            return bootstrap.compile(student, trainset=trainset)  # type: ignore[no-any-return]
        if optimizer == "mipro":
            mipro = dspy.MIPROv2(
                metric=metric,
                auto=None,
                num_candidates=settings.mipro_candidates,
                max_bootstrapped_demos=settings.max_demos,
                max_labeled_demos=settings.max_demos,
                num_threads=1,
                verbose=False,
            )
            return mipro.compile(  # type: ignore[no-any-return]
                student, trainset=trainset, valset=valset, num_trials=settings.mipro_trials, minibatch=False
            )
        gepa = dspy.GEPA(
            metric=WriterMetric(metric.score_call, metric.clip_min, feedback=True),
            reflection_lm=lm,
            max_metric_calls=settings.gepa_max_metric_calls,
            num_threads=1,
        )
        return gepa.compile(student, trainset=trainset, valset=valset)  # type: ignore[no-any-return]
