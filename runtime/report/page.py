"""Gathering a data dir's posts and traces into the report page."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import TypeVar

from bus.records import Accepted, PostEvent, Trace
from runtime.engagement import AuthorRanks
from runtime.reer.prompts import SECTIONS
from runtime.report.svg import bars
from runtime.store import JsonlStore

T = TypeVar("T")
Scored = list[tuple[float, PostEvent]]
"""Original posts with their engagement score among all of their author's posts."""

DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
STOP_WORDS = (
    "i will the a an and or to of in on for with that this it its my their our your be is are as at by from about "
    "into then so not no more most what who how why when which them they we you he she"
)
STOP = frozenset(STOP_WORDS.split())
STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;font-size:.92em}
td,th{border-bottom:1px solid #eee;padding:.35em;vertical-align:top;text-align:left}
.num{text-align:right;white-space:nowrap}.chart .title{font-weight:600;font-size:14px}
.chart .axis{font-size:11px;fill:#555}
.plan dt{font-weight:600}.plan dd{margin:0 0 .4em 1em;overflow-wrap:anywhere}.muted{color:#777}
"""


def build(data_dir: Path) -> str:
    """The whole HTML page for `data_dir`."""
    accepted = _read(data_dir / "posts.jsonl", Accepted)
    traces = _read(data_dir / "traces.jsonl", Trace)
    originals = [a.post for a in accepted if a.post.kind == "original"]
    ranks = AuthorRanks()
    for post in originals:
        ranks.add(post.author, post.metrics)
    scored = [(ranks.score(p.author, p.metrics), p) for p in originals]
    parts = [
        f"<h1>What worked, and why</h1><p class=muted>{escape(str(data_dir))} · {len(accepted)} posts, "
        f"{len(originals)} original · {len(traces)} mined · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p>",
        _distribution(scored),
        _timing(scored),
        _top(scored),
        _strategies(traces),
        _scores(traces),
    ]
    return f"<!doctype html><html lang=en><meta charset=utf-8><title>reer-runtime report</title>" \
           f"<style>{STYLE}</style><body>{''.join(parts)}</body></html>\n"  # fmt: skip


def _read(path: Path, kind: type[T]) -> list[T]:
    return list(JsonlStore(path, kind).read()) if path.exists() else []


def _distribution(scored: Scored) -> str:
    counts = [0.0] * 10
    for score, _ in scored:
        counts[min(9, int(score * 10))] += 1
    labels = [f"{i / 10:.1f}" for i in range(10)]
    chart = bars("Posts by engagement score (0 = the author's weakest, 1 = best)", labels, [("posts", counts)])
    return f"<h2>Engagement</h2>{chart}"


def _timing(scored: Scored) -> str:
    by_hour: dict[int, list[float]] = {h: [] for h in range(24)}
    by_day: dict[int, list[float]] = {d: [] for d in range(7)}
    for score, post in scored:
        when = post.created_at.astimezone(UTC)
        if not post.day_only:
            by_hour[when.hour].append(score)
        by_day[when.weekday()].append(score)

    def means(groups: dict[int, list[float]]) -> list[float]:
        return [statistics.fmean(v) if v else 0.0 for v in groups.values()]

    hours = bars("Mean engagement by hour of day (UTC)", [f"{h:02d}" for h in range(24)], [("mean", means(by_hour))])
    if undated := sum(post.day_only for _, post in scored):
        hours += f"<p class=muted>{undated} post(s) known only to the day (X's content export) are not in it.</p>"
    days = bars("Mean engagement by day of week (UTC)", DAYS, [("mean", means(by_day))])
    return f"<h2>When to post</h2>{hours}{days}"


def _top(scored: Scored) -> str:
    best = sorted(scored, key=lambda sp: sp[0], reverse=True)[:10]
    rows = "".join(
        f"<tr><td>{escape(p.text)}</td><td class=num>{p.created_at:%Y-%m-%d}</td><td class=num>{p.metrics.likes}"
        f" / {p.metrics.reposts} / {p.metrics.replies}</td><td class=num>{s:.2f}</td></tr>"
        for s, p in best
    )
    return ("<h2>Top posts</h2><table><tr><th>post</th><th>date</th><th>likes / reposts / replies</th>"
            f"<th>score</th></tr>{rows}</table>")  # fmt: skip


def _strategies(traces: list[Trace]) -> str:
    if not traces:
        return "<h2>Strategies</h2><p class=muted>No traces yet: run <code>reer-runtime start</code>.</p>"
    words: dict[str, Counter[str]] = {name: Counter() for name in SECTIONS}
    for t in traces:
        for name, text in t.sections.items():
            if name in words:
                words[name].update(w for w in text.lower().replace(",", " ").replace(".", " ").split()
                                   if w not in STOP and len(w) > 2)  # fmt: skip
    summary = "".join(
        f"<dt>{escape(name)}</dt><dd>{escape(', '.join(w for w, _ in counter.most_common(8))) or '-'}</dd>"
        for name, counter in words.items()
    )
    best = sorted(traces, key=lambda t: t.engagement, reverse=True)[:5]
    plans = "".join(
        f"<h3>{escape(t.post.text[:120])}</h3><dl class=plan>"
        + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in (t.sections or {"Plan": t.plan}).items())
        + "</dl>"
        for t in best
    )
    return (f"<h2>Strategies</h2><p>Words the mined plans use most, by section, over {len(traces)} traces:</p>"
            f"<dl class=plan>{summary}</dl><h2>Plans of the best posts</h2>{plans}")  # fmt: skip


def _scores(traces: list[Trace]) -> str:
    if not traces:
        return ""
    shown = sorted(traces, key=lambda t: t.engagement, reverse=True)[:30]
    series = [
        ("no plan", [t.scores.no_plan for t in shown]),
        ("initial plan z0", [t.scores.initial for t in shown]),
        ("found plan z*", [t.scores.final for t in shown]),
    ]
    chart = bars("Clipped mean NLL of each post (lower: the plan explains it better)",
                 [str(i + 1) for i in range(len(shown))], series, " nats")  # fmt: skip
    means = " · ".join(f"{name} {statistics.fmean(v):.3f}" for name, v in series)
    return f"<h2>How well the plans explain the posts</h2>{chart}<p>Means over these posts: {means}.</p>"
