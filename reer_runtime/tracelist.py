"""`reer-runtime traces`: the mined traces as a table or as JSON lines, or one trace in full."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import msgspec

from runtime.errors import ReerError
from runtime.records import HELD_OUT_GAIN, Judged, Trace
from runtime.store import JsonlStore
from runtime.terminal import printable


def query(
    traces: Iterable[Trace],
    *,
    min_score: float = 0.0,
    platform: str | None = None,
    author: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
) -> list[Trace]:
    """The traces whose post's engagement score is at least `min_score`, on `platform`, by `author`,
    published in [`since`, `until`): the newest `limit` of them, in the order mined."""
    found = [
        t
        for t in traces
        if t.engagement >= min_score
        and (platform is None or t.post.platform.value == platform)
        and (author is None or t.post.author == author)
        and (since is None or t.post.created_at >= since)
        and (until is None or t.post.created_at < until)
    ]
    if limit is not None:
        found = found[-limit:] if limit > 0 else []
    return found


def print_traces(store: Path, *, min_score: float, limit: int | None, as_json: bool) -> int:
    """Print the traces of `store` whose engagement is at least `min_score`, the newest `limit` of them."""
    traces = query(JsonlStore(store, Trace).read(), min_score=min_score, limit=limit)
    out = sys.stdout
    if as_json:
        for t in traces:
            out.write(msgspec.json.encode(t).decode() + "\n")
        return 0
    if not traces:
        print(f"no traces in {store} match", file=sys.stderr)
        return 0
    out.write(f"{'':<24} {'':>6} {'held-out':>8} NLL per token, lower is better\n")
    out.write(
        f"{'post':<24} {'engage':>6} {'gain':>8} {'no plan':>7} {'z0':>6} {'z*':>6} {'overlap':>7}  found plan z*\n"
    )
    for t in traces:
        first = printable(t.plan.splitlines()[0] if t.plan else "")
        gain = f"{t.held_out.gain:+8.3f}" if t.held_out else f"{'-':>8}"
        out.write(
            f"{printable(t.post.key)[:24]:<24} {t.engagement:6.2f} {gain} {t.scores.no_plan:7.3f} "
            f"{t.scores.initial:6.3f} {t.scores.final:6.3f} {t.overlap:7.0%}  {first[:60]}\n"
        )
    out.write(f"held-out gain: {HELD_OUT_GAIN} (-: not measured)\n")
    return 0


def show_trace(store: Path, wanted: str) -> int:
    """Print one trace in full: the post, its brief, the plans, every step's candidates, the scores.

    `wanted` is a trace id, a post key (`x:1003`) or a post id; 1 if no trace matches."""
    traces = JsonlStore(store, Trace).read()
    found = [t for t in traces if wanted in (t.trace_id, t.post.key, t.post.id)]
    if not found:
        raise ReerError(
            f"no trace in {store} has the id, post key or post id {printable(wanted)!r} (see `reer-runtime traces`)"
        )
    t = found[-1]
    post, s, m = t.post, t.scores, t.post.metrics
    sections = [f"{name}: {text}" for name, text in t.sections.items()] or [t.plan]
    out = [
        f"trace {t.trace_id}  (OpenTelemetry trace {t.otel_trace_id})",
        f"post {post.key} by {post.author}, {post.created_at:%Y-%m-%d %H:%M %Z}, engagement {t.engagement:.2f}: "
        f"{m.likes} likes, {m.reposts} reposts, {m.replies} replies, {m.impressions or 'no'} impressions",
        *_block(post.text),
        "brief",
        *_block(t.brief.text),
        "found plan z*",
        *(line for section in sections for line in _block(section)),
        "initial plan z0",
        *_block(t.plan_initial),
        f"scores (clipped mean NLL of the post, lower is better): no plan {s.no_plan:.3f}, "
        f"z0 {s.initial:.3f}, z* {s.final:.3f}; overlap with the post {t.overlap:.1%}",
        held_out_line(t),
        *([judge_line(t.judge)] if t.judge else []),
    ]
    for number, step in enumerate(t.steps, start=1):
        out.append(f"step {number}: {step.section or 'plan'} (best before: {step.best_before:.3f})")
        for c in step.candidates:
            verdict = "accepted" if c.accepted else (c.rejected_reason or "not better")
            out += [f"  {'  -  ' if c.score is None else f'{c.score:.3f}'} {verdict}", *_block(c.text, "      ")]
    g = t.timings
    out.append(
        f"took {g.total_s:.1f} s: {g.generate_calls} generations ({g.generate_s:.1f} s) by "
        f"{', '.join(t.generators)}; {g.score_calls} scores ({g.score_s:.1f} s) by {', '.join(t.scorers)}"
    )
    print(printable("\n".join(out), newlines=True))
    return 0


def held_out_line(t: Trace) -> str:
    """What the found plan is worth, in a sentence: its held-out gain and the NLLs behind it."""
    h = t.held_out
    if h is None:
        return "held-out gain: not measured (mined before it was recorded, or with search.held_out = 0)"
    return (
        f"held-out gain {h.gain:+.3f}: {HELD_OUT_GAIN} ({h.tokens} of them; in-sample gain {h.in_sample_gain:+.3f}); "
        f"their NLL: no plan {h.no_plan:.3f}, z0 {h.initial:.3f}, z* {h.final:.3f}, generic plan {h.generic:.3f}"
    )


def judge_line(j: Judged) -> str:
    """The judge's second opinion, in a sentence."""
    return (
        f"judge {j.model}: gain {j.gain:+.3f} nats a token over a generic plan, on every token; its NLL: "
        f"no plan {j.no_plan:.3f}, z0 {j.initial:.3f}, z* {j.final:.3f}, generic plan {j.generic:.3f}"
    )


def _block(text: str, indent: str = "    ") -> list[str]:
    """`text` wrapped at 100 columns and indented, line by line."""
    return [textwrap.fill(line, 100, initial_indent=indent, subsequent_indent=indent) for line in text.splitlines()]
