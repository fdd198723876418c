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
from bus.records import DeadLetter, Optimizer, Program, Trace
from runtime.config import Settings
from runtime.errors import Refused
from runtime.store import JsonlStore
from runtime.writer.compile import compile_writer, evaluate, split
from runtime.writer.lm import limiter_lm
from runtime.writer.metric import WriterMetric
from runtime.writer.program import Writer, example
from runtime.writer.programs import Programs
from runtime.writer.spans import ModuleSpans

log = logging.getLogger(__name__)


class OptimizerActor(Consumer[OptimizeRequested]):
    """Handles `optimize` requests one at a time.

    The most recent traces (at most `writer.max_traces`) are split into training and validation
    sets; the chosen optimizer compiles a new program on them; the new program and the current one
    are both measured on the validation set. The new one is saved either way, and promoted (becomes
    the one the Generator uses) only if it scores at least as well.
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
        traces = (await anyio.to_thread.run_sync(list, self._traces.read()))[-settings.max_traces :]
        if len(traces) < settings.min_traces:
            raise Refused(
                f"not compiling: {len(traces)} traces in the store, at least {settings.min_traces} needed "
                "(writer.min_traces)"
            )
        trainset, valset = split([example(t) for t in traces], settings.val_fraction)
        current = self._programs.current()
        version = max((r.version for r in self._programs.records()), default=0) + 1
        span = otel_trace.get_current_span()
        span.set_attributes({"reer.optimizer": optimizer, "reer.program.version": version, "reer.traces": len(traces)})
        log.info(
            "compiling program v%d with %s on %d traces (%d to validate)", version, optimizer, len(traces), len(valset)
        )
        models = ThreadModels(self.model)
        started = time.perf_counter()
        program, score, baseline = await anyio.to_thread.run_sync(
            self._compile, optimizer, trainset, valset, current, models
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
        )
        await self._programs.index.append(record)
        span.set_attributes({"reer.program.score": score, "reer.program.promoted": promoted})
        log.info(
            "program v%d: validation score %.3f against %.3f for the current one; %s (%d model calls, %.0fs)",
            version,
            score,
            baseline,
            "promoted" if promoted else "kept, not promoted",
            models.calls,
            elapsed,
        )

    def _compile(
        self,
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
            baseline = evaluate(self._programs.load(current), valset, metric, lm)
            program = compile_writer(optimizer, trainset, valset, metric, lm, self._settings.writer)
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
