"""The Optimizer: compiles the writer program on the mined traces, and promotes it if it does better."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import anyio
import dspy
from opentelemetry import trace as otel_trace

from actors.base import Consumer
from actors.model_client import ModelClient, ThreadModels, run_beside
from bus.bus import Bus
from bus.messages import OPTIMIZE_REQUESTED, OptimizeRequested
from runtime.config import Settings
from runtime.errors import Refused, UsageError
from runtime.records import DeadLetter, Optimizer, Program, Trace
from runtime.store import JsonlStore
from runtime.writer.compile import compile_writer, evaluate, split
from runtime.writer.lm import limiter_lm
from runtime.writer.metric import WriterMetric
from runtime.writer.program import Writer, example
from runtime.writer.programs import Programs
from runtime.writer.spans import ModuleSpans
from runtime.writer.templates import Template, lookup

log = logging.getLogger(__name__)


class OptimizerActor(Consumer[OptimizeRequested]):
    """Handles `optimize` requests one at a time, each for one writing template.

    The most recent traces that teach the template (at most `writer.max_traces`) are split into training and validation
    sets; the chosen optimizer compiles a new program on them; the new program and the current one
    are both measured on the validation set. The new one is saved either way, and promoted (becomes
    the one the Generator uses for that template) only if it scores at least as well.
    """

    name = "optimizer"

    def __init__(
        self,
        bus: Bus,
        dead_letters: JsonlStore[DeadLetter],
        traces: JsonlStore[Trace],
        programs: Programs,
        settings: Settings,
    ) -> None:
        super().__init__(bus, OPTIMIZE_REQUESTED, dead_letters)
        self._traces = traces
        self._programs = programs
        self._settings = settings
        self.model = ModelClient(bus, self.name, dead_letters)

    async def run(self) -> None:
        await run_beside(self.model, super().run)

    async def handle(self, message: OptimizeRequested) -> None:
        settings = self._settings.writer
        optimizer: Optimizer = message.request.optimizer or settings.optimizer
        try:
            template = lookup(self._settings.writing_templates(), message.request.template)
        except UsageError as exc:
            raise Refused(str(exc)) from None
        traces = await anyio.to_thread.run_sync(list, self._traces.read())
        examples = [e for t in traces if (e := example(t, template)) is not None][-settings.max_traces :]
        if len(examples) < settings.min_traces:
            among = (
                f" of {len(traces)} (a template that reads {', '.join(template.inputs)} learns only from posts "
                "that carry the one text it reads, their context)"
                if template.inputs
                else ""
            )
            raise Refused(
                f"not compiling {template.name}: {len(examples)} traces{among} in the store, at least "
                f"{settings.min_traces} needed (writer.min_traces)"
            )
        trainset, valset = split(examples, settings.val_fraction)
        current = self._programs.current(template.name)
        version = max((r.version for r in self._programs.records()), default=0) + 1
        span = otel_trace.get_current_span()
        span.set_attributes(
            {
                "reer.template": template.name,
                "reer.optimizer": optimizer,
                "reer.program.version": version,
                "reer.traces": len(examples),
            }
        )
        log.info(
            "compiling %s program v%d with %s on %d traces (%d to validate)",
            template.name,
            version,
            optimizer,
            len(examples),
            len(valset),
        )
        models = ThreadModels(self.model)
        started = time.perf_counter()
        program, score, baseline = await anyio.to_thread.run_sync(
            self._compile, template, optimizer, trainset, valset, current, models
        )
        elapsed = time.perf_counter() - started
        promoted = score >= baseline
        self._programs.save(program, version)
        record = Program(
            version=version,
            optimizer=optimizer,
            score=score,
            baseline=baseline,
            promoted=promoted,
            train_trace_ids=[e.trace_id for e in trainset],
            val_trace_ids=[e.trace_id for e in valset],
            demo_trace_ids=demo_ids(program, trainset),
            model_calls=models.calls,
            compile_s=round(elapsed, 3),
            created_at=datetime.now(UTC),
            request_id=message.request_id,
            template=template.name,
        )
        await self._programs.index.append(record)
        span.set_attributes({"reer.program.score": score, "reer.program.promoted": promoted})
        log.info(
            "%s program v%d: validation score %.3f against %.3f for the current one; %s (%d model calls, %.0fs)",
            template.name,
            version,
            score,
            baseline,
            "promoted" if promoted else "kept, not promoted",
            models.calls,
            elapsed,
        )

    def _compile(
        self,
        template: Template,
        optimizer: Optimizer,
        trainset: list[dspy.Example],
        valset: list[dspy.Example],
        current: Program | None,
        models: ThreadModels,
    ) -> tuple[Writer, float, float]:
        lm = limiter_lm(
            models.generate,
            models=",".join(self._settings.generator),
            temperature=0.7,
            max_tokens=self._settings.writer.max_tokens,
        )
        metric = WriterMetric(models.score, self._settings.search.clip_min)
        with dspy.context(callbacks=[ModuleSpans()]):
            baseline = evaluate(self._programs.load(current, template), valset, metric, lm)
            program = compile_writer(Writer(template), optimizer, trainset, valset, metric, lm, self._settings.writer)
            return program, evaluate(program, valset, metric, lm), baseline


def demo_ids(program: Writer, trainset: list[dspy.Example]) -> list[str]:
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
