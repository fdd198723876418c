"""Writing the drafts of one request: each within the platform's limits and through the draft gate,
tried again up to `writer.max_tries` times, and scored by the writer's metric against the best mined
post.

Runs in a worker thread: the LM and the metric's scorer wait on the event loop for each model call.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import dspy
from opentelemetry import trace as otel_trace

from runtime.config import WriterSettings
from runtime.errors import CallCapReached, caused_by
from runtime.records import Draft, GenerateEvent, Program, Trace
from runtime.writer.draft_gate import refusal
from runtime.writer.limits import features, fit
from runtime.writer.lm import providers_used
from runtime.writer.metric import WriterMetric
from runtime.writer.program import WriterProgram, render_brief
from runtime.writer.spans import ModuleSpans

NO_REFERENCE = "no mined post to compare with yet (mine your posts with `reer-runtime start` first)"


@dataclass(frozen=True)
class Drafting:
    """What the drafts of one request are written with."""

    request_id: str
    request: GenerateEvent
    program: WriterProgram
    record: Program | None
    """The program's record; None for the uncompiled program (version 0)."""
    lm: dspy.LM
    adapter: dspy.Adapter
    """How the program's prompts are laid out for this model (`writer.adapter`)."""
    metric: WriterMetric
    best: Trace | None
    """The author's best mined post, the reference the drafts are scored against."""
    settings: WriterSettings


def write_drafts(job: Drafting) -> list[Draft]:
    """`request.n` drafts, each followed by the tries refused before it (all kept, with the reason);
    fewer if the request's model calls run out (`CallCapReached`, raised if none was written)."""
    drafts: list[Draft] = []
    try:
        for index in range(job.request.n):
            for attempt in range(1, job.settings.max_tries + 1):
                drafts.append(write_draft(job, index, attempt))
                if drafts[-1].rejected_reason is None:
                    break
    except CallCapReached:  # the request's calls are spent: what was written stands
        if not drafts:
            raise
    return drafts


def ranked(drafts: Iterable[Draft]) -> list[Draft]:
    """Drafts best first: those kept before the tries refused, each by its score (likeness to the
    author's best post), unscored ones after the scored; otherwise in the order written."""
    return sorted(drafts, key=lambda d: (d.rejected_reason is None, -1.0 if d.score is None else d.score), reverse=True)


def write_draft(job: Drafting, index: int, attempt: int) -> Draft:
    """Try `attempt` of draft `index`: written, fitted to the platform's limits, passed through the
    draft gate, and scored."""
    request = job.request
    brief = render_brief(request)
    # about 3 characters a token: room for the limit and a little more, cut at a sentence by `fit`
    bound = min(job.settings.max_tokens, request.platform.max_chars * request.thread_size // 3 + 16)
    # each try a rollout of its own: DSPy's cache never answers it with another draft's text
    rollout = zlib.crc32(f"{job.request_id}-{index}-{attempt}".encode())
    used: set[str] = set()
    token = providers_used.set(used)
    try:
        with dspy.context(lm=job.lm.copy(rollout_id=rollout), adapter=job.adapter, callbacks=[ModuleSpans()]):
            prediction = job.program(brief=brief, max_post_tokens=bound, **request.texts)
        plan, text, failure = str(prediction.plan), str(prediction.post), None
    except Exception as exc:  # a model that breaks DSPy's answer format
        if capped := caused_by(exc, CallCapReached):
            raise capped from exc
        plan, text, failure = "", "", f"the model's answer could not be read: {str(exc).splitlines()[0][:300]}"
    finally:
        providers_used.reset(token)
    fitted = fit(text, request.platform, request.thread_size)
    rejected = failure or fitted.rejected or refusal("\n".join(fitted.parts), request.topic)
    score: float | None
    missing = None
    if rejected:
        score, parts = 0.0, {"limits": 0.0}
    elif job.best is None:
        score, parts, missing = None, {"limits": 1.0}, NO_REFERENCE
    else:
        measured = job.metric.measure(brief, plan, text, request.platform, request.thread_size, job.best.post.text)
        score, parts = measured.score, measured.parts
    return Draft(
        draft_id=f"{job.request_id}-{index + 1}" + (f".{attempt}" if attempt > 1 else ""),
        request_id=job.request_id,
        request=request,
        parts=fitted.parts,
        features=features(fitted.parts),
        plan=plan,
        program_version=job.record.version if job.record else 0,
        provider=sorted(used),
        trace_ids=job.record.demo_trace_ids if job.record else [],
        score=score,
        score_parts=parts,
        score_missing=missing,
        attempt=attempt,
        repaired=fitted.repaired,
        rejected_reason=rejected,
        otel_trace_id=format(otel_trace.get_current_span().get_span_context().trace_id, "032x"),
        created_at=datetime.now(UTC),
    )
