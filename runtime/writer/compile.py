"""Compiling the writer on mined traces with one of DSPy's optimizers, and measuring a program.

Both run in a worker thread: every model call inside goes to the Limiter through the LM and the
metric's scorer, which wait on the event loop.
"""

from __future__ import annotations

import logging
import random
import statistics
from dataclasses import dataclass

import dspy

from runtime.config import WriterSettings
from runtime.errors import Refused
from runtime.records import Optimizer, Trace
from runtime.writer.metric import WriterMetric
from runtime.writer.program import WriterProgram, example
from runtime.writer.spans import ModuleSpans
from runtime.writer.templates import Template

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Examples:
    """The training examples of a template, and how many traces were left out for their gain."""

    examples: list[dspy.Example]
    left_out: int
    min_gain: float

    def __str__(self) -> str:
        below = f" ({self.left_out} left out: {_LEFT_OUT.format(self.min_gain)})" if self.left_out else ""
        return f"{len(self.examples)} traces{below}"


def training_examples(traces: list[Trace], template: Template, settings: WriterSettings) -> Examples:
    """The most recent traces that teach `template` (at most `writer.max_traces`) as examples,
    leaving out those whose held-out gain is at or below `writer.min_gain`; `Refused`, saying why,
    when there are fewer than `writer.min_traces`."""
    holding = [t for t in traces if t.held_out is None or t.held_out.gain > settings.min_gain]
    left_out = len(traces) - len(holding)
    found = [e for t in holding if (e := example(t, template)) is not None][-settings.max_traces :]
    if len(found) < settings.min_traces:
        among = (
            f" of {len(holding)} (a template that reads {', '.join(template.inputs)} learns only from posts "
            "that carry the one text it reads, their context)"
            if template.inputs
            else ""
        )
        below = f" ({left_out} more left out: {_LEFT_OUT.format(settings.min_gain)})" if left_out else ""
        raise Refused(
            f"not compiling {template.name}: {len(found)} traces{among} in the store{below}, at least "
            f"{settings.min_traces} needed (writer.min_traces)"
        )
    return Examples(found, left_out, settings.min_gain)


_LEFT_OUT = "a held-out gain at or below writer.min_gain = {:g}"
"""Why a trace is not compiled on."""


def split(
    examples: list[dspy.Example], val_fraction: float, seed: int = 0
) -> tuple[list[dspy.Example], list[dspy.Example]]:
    """Training and validation examples, shuffled reproducibly; at least one of each."""
    shuffled = sorted(examples, key=lambda e: e.trace_id)
    random.Random(seed).shuffle(shuffled)
    cut = min(len(shuffled) - 1, max(1, round(len(shuffled) * val_fraction)))
    return shuffled[cut:], shuffled[:cut]


def evaluate(program: WriterProgram, valset: list[dspy.Example], metric: WriterMetric) -> float:
    """The mean metric over `valset`, with the LM and adapter of the caller's `dspy.context`; an
    example the program fails on (an unparsable answer) scores 0."""
    scores = []
    for given in valset:
        try:
            prediction = program(**given.inputs())
        except Exception as exc:  # DSPy raises many kinds when a small model breaks format
            log.info("validation example %s failed: %s", given.trace_id, str(exc).splitlines()[0][:200])
            scores.append(0.0)
            continue
        scores.append(float(metric(given, prediction)))
    return statistics.fmean(scores) if scores else 0.0


def compile_writer(
    student: WriterProgram,
    optimizer: Optimizer,
    trainset: list[dspy.Example],
    valset: list[dspy.Example],
    metric: WriterMetric,
    lm: dspy.LM,
    settings: WriterSettings,
) -> WriterProgram:
    """`student`, a new `WriterProgram`, compiled on `trainset` (MIPROv2 and GEPA also search on `valset`),
    with the LM and adapter of the caller's `dspy.context`; `lm` is also GEPA's reflection model."""
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


@dataclass(frozen=True)
class Compiled:
    """A new program and how it and the current one did on the validation set."""

    program: WriterProgram
    score: float
    baseline: float
    trainset: list[dspy.Example]
    valset: list[dspy.Example]

    @property
    def promoted(self) -> bool:
        """Whether the new program replaces the current one: it scores at least as well."""
        return self.score >= self.baseline


def demo_trace_ids(program: WriterProgram, trainset: list[dspy.Example]) -> list[str]:
    """The traces behind the program's demonstrations: a labelled demo carries its trace id; a
    bootstrapped one (the program's own answer to a training brief) maps to the traces of that brief."""
    by_brief: dict[str, set[str]] = {}
    for e in trainset:
        by_brief.setdefault(e.brief, set()).add(e.trace_id)
    found: set[str] = set()
    for _, predictor in program.named_predictors():
        for demo in predictor.demos:
            found |= {demo["trace_id"]} if demo.get("trace_id") else by_brief.get(demo.get("brief", ""), set())
    return sorted(found)


def compile_and_measure(
    template: Template,
    optimizer: Optimizer,
    examples: list[dspy.Example],
    current: WriterProgram,
    metric: WriterMetric,
    lm: dspy.LM,
    adapter: dspy.Adapter,
    settings: WriterSettings,
) -> Compiled:
    """A new program for `template`, compiled by `optimizer` on a training share of `examples`, and
    it and `current` measured on the rest (`writer.val_fraction`); `adapter` lays out the prompts."""
    trainset, valset = split(examples, settings.val_fraction)
    with dspy.context(lm=lm, adapter=adapter, callbacks=[ModuleSpans()]):
        baseline = evaluate(current, valset, metric)
        program = compile_writer(WriterProgram(template), optimizer, trainset, valset, metric, lm, settings)
        return Compiled(program, evaluate(program, valset, metric), baseline, trainset, valset)
