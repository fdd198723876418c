"""The Optimizer: compiles the writer program on the mined traces, and promotes it if it does better."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import anyio
from opentelemetry import trace as otel_trace

from actors.base import Consumer
from actors.model_client import ModelClient, ThreadModels, run_beside
from bus.bus import Bus
from bus.messages import OPTIMIZE_REQUESTED, OptimizeRequested
from runtime.config import Settings
from runtime.errors import Refused, UsageError
from runtime.records import DeadLetter, Optimizer, Program, Trace
from runtime.store import JsonlStore
from runtime.writer.adapter import adapter_for
from runtime.writer.compile import compile_and_measure, demo_trace_ids, training_examples
from runtime.writer.lm import limiter_lm
from runtime.writer.metric import WriterMetric
from runtime.writer.programs import Programs
from runtime.writer.templates import lookup

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
        chosen = training_examples(traces, template, settings)
        examples = chosen.examples
        current = self._programs.current(template.name)
        version = max((r.version for r in self._programs.records()), default=0) + 1
        span = otel_trace.get_current_span()
        span.set_attributes(
            {
                "reer.template": template.name,
                "reer.optimizer": optimizer,
                "reer.program.version": version,
                "reer.traces": len(examples),
                "reer.traces.left_out": chosen.left_out,
            }
        )
        log.info("compiling %s program v%d with %s on %s", template.name, version, optimizer, chosen)
        models = ThreadModels(self.model, settings.max_calls_per_request)
        lm = limiter_lm(
            models.generate,
            models=",".join(self._settings.generator),
            temperature=settings.temperature,
            top_p=settings.top_p,
            frequency_penalty=settings.frequency_penalty,
            max_tokens=settings.max_tokens,
        )
        metric = WriterMetric(models.score, self._settings.search.clip_min)
        adapter = adapter_for(self._settings.generator, settings.adapter)
        started = time.perf_counter()
        baseline = await anyio.to_thread.run_sync(self._programs.load, current, template)
        with models.within_cap(f"compiling {template.name} with {optimizer} on {len(examples)} traces"):
            done = await anyio.to_thread.run_sync(
                compile_and_measure, template, optimizer, examples, baseline, metric, lm, adapter, settings
            )
        elapsed = time.perf_counter() - started
        score, promoted = done.score, done.promoted
        self._programs.save(done.program, version)
        record = Program(
            version=version,
            optimizer=optimizer,
            score=score,
            baseline=done.baseline,
            promoted=promoted,
            train_trace_ids=[e.trace_id for e in done.trainset],
            val_trace_ids=[e.trace_id for e in done.valset],
            demo_trace_ids=demo_trace_ids(done.program, done.trainset),
            model_calls=models.calls,
            compile_s=round(elapsed, 3),
            created_at=datetime.now(UTC),
            request_id=message.request_id,
            template=template.name,
            left_out=chosen.left_out,
        )
        await self._programs.index.append(record)
        span.set_attributes({"reer.program.score": score, "reer.program.promoted": promoted})
        log.info(
            "%s program v%d: validation score %.3f against %.3f for the current one; %s (%d model calls, %.0fs)",
            template.name,
            version,
            score,
            done.baseline,
            "promoted" if promoted else "kept, not promoted",
            models.calls,
            elapsed,
        )
