"""The Generator: writes candidate drafts for a brief with the newest promoted writer program."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
from opentelemetry import trace as otel_trace

from actors.base import Consumer
from actors.model_client import ModelClient, ThreadModels, run_beside
from bus.bus import Bus
from bus.messages import GENERATE_REQUESTED, GenerateRequested
from runtime.config import Settings
from runtime.errors import Refused, UsageError
from runtime.records import DeadLetter, Draft, Program, Trace
from runtime.store import JsonlStore
from runtime.writer.adapter import adapter_for
from runtime.writer.drafting import Drafting, ranked, write_drafts
from runtime.writer.lm import limiter_lm
from runtime.writer.metric import WriterMetric
from runtime.writer.program import WriterProgram
from runtime.writer.programs import Programs
from runtime.writer.templates import Template, checked

log = logging.getLogger(__name__)


class GeneratorActor(Consumer[GenerateRequested]):
    """For each `generate` request, writes `n` drafts within the platform's limits, scores and stores them.

    The program is the newest promoted one of the request's template, looked up for every request,
    so a compile that finishes while the daemon runs is used from the next request on. The writing
    step is bounded by the platform's limit, and a draft that still breaks a limit is kept (with the
    reason) and written again, up to `writer.max_tries` times. Drafts are scored by the writer's metric against the
    author's best mined post (the highest-engagement trace); with no traces yet there is nothing to
    score against, and the score is left out with that reason.
    """

    name = "generator"

    def __init__(
        self,
        bus: Bus,
        dead_letters: JsonlStore[DeadLetter],
        drafts: JsonlStore[Draft],
        traces: JsonlStore[Trace],
        programs: Programs,
        settings: Settings,
        show: Callable[[Draft], None] | None = None,
    ) -> None:
        super().__init__(bus, GENERATE_REQUESTED, dead_letters)
        self._drafts = drafts
        self._traces = traces
        self._programs = programs
        self._settings = settings
        self._show = show
        self._loaded: dict[str, tuple[int, WriterProgram]] = {}
        self.model = ModelClient(bus, self.name, dead_letters)

    async def run(self) -> None:
        await run_beside(self.model, super().run)

    def _program(self, template: Template, asked: int | None) -> tuple[Program | None, WriterProgram]:
        record = self._programs.chosen(template.name, asked)
        version = record.version if record else 0
        loaded = self._loaded.get(template.name)
        if loaded is None or loaded[0] != version or loaded[1].template != template:
            loaded = self._loaded[template.name] = (version, self._programs.load(record, template))
            log.info("writing %s with program v%d", template.name, version)
        return record, loaded[1]

    async def handle(self, message: GenerateRequested) -> None:
        request = message.request
        try:
            template = checked(self._settings.writing_templates(), request)
        except UsageError as exc:
            raise Refused(str(exc)) from None
        record, program = await anyio.to_thread.run_sync(self._program, template, request.program)
        best = await anyio.to_thread.run_sync(
            lambda: max(self._traces.read(), key=lambda t: t.engagement, default=None)
        )
        writer = self._settings.writer
        models = ThreadModels(self.model, writer.max_calls_per_request)
        chain = ",".join(self._settings.generator)
        lm = limiter_lm(
            models.generate,
            models=chain,
            temperature=writer.temperature,
            top_p=writer.top_p,
            frequency_penalty=writer.frequency_penalty,
            max_tokens=writer.max_tokens,
        )
        metric = WriterMetric(models.score, self._settings.search.clip_min)
        span = otel_trace.get_current_span()
        span.set_attributes(
            {
                "reer.template": template.name,
                "reer.program.version": record.version if record else 0,
                "reer.drafts": request.n,
            }
        )
        adapter = adapter_for(self._settings.generator, writer.adapter)
        job = Drafting(message.request_id, request, program, record, lm, adapter, metric, best, writer)
        drafts = await anyio.to_thread.run_sync(write_drafts, job)
        await self._drafts.append_many(drafts)
        kept = ranked(d for d in drafts if d.rejected_reason is None)
        for draft in kept:
            if self._show is not None:
                self._show(draft)
        if len(kept) < request.n:
            tries = "; ".join(f"{d.draft_id}: {d.rejected_reason}" for d in drafts if d.rejected_reason) or "none"
            capped = f"; stopped at writer.max_calls_per_request ({models.calls} model calls)" if models.capped else ""
            log.warning(
                "wrote %d of the %d drafts asked for within the %s limits and through the draft gate, in %d tries "
                "(at most %d per draft; writer.max_tries)%s; the tries refused: %s (all kept in %s)",
                len(kept),
                request.n,
                request.platform.value,
                len(drafts),
                writer.max_tries,
                capped,
                tries,
                self._drafts.path,
            )
