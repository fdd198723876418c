"""Gathering a data dir's posts and traces into the report page."""

from __future__ import annotations

import math
import statistics
import textwrap
from collections import Counter, defaultdict
from datetime import UTC, datetime, tzinfo
from html import escape
from pathlib import Path
from typing import TypeVar

from runtime.engagement import AuthorRanks, interaction_rate
from runtime.records import HELD_OUT_GAIN, Accepted, PostEvent, Trace
from runtime.reer.prompts import SECTIONS
from runtime.report.charts import bars
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
td,th{border-bottom:1px solid #eee;padding:.35em;vertical-align:top;text-align:left}td{overflow-wrap:anywhere}
.num{text-align:right;white-space:nowrap}
.chart{margin:1.2em 0}.chart figcaption{font-weight:600}.chart svg{display:block;width:100%;height:auto}
.chart .wide{display:none}@media (min-width:720px){.chart .narrow{display:none}.chart .wide{display:block}}
.chart details{font-size:.85em;color:#555}.chart table{width:auto}
.plan dt{font-weight:600}.plan dd{margin:0 0 .4em 1em;overflow-wrap:anywhere}.muted{color:#777}
"""


def build(data_dir: Path, tz: tzinfo = UTC, traces_path: Path | None = None) -> str:
    """The whole HTML page for `data_dir` (its trace store at `traces_path` if elsewhere), with times
    shown in the zone `tz`."""
    accepted = _read(data_dir / "posts.jsonl", Accepted)
    traces = _read(traces_path or data_dir / "traces.jsonl", Trace)
    originals = [a.post for a in accepted if a.post.kind == "original"]
    ranks = AuthorRanks()
    for post in originals:
        ranks.add(post.author, post.metrics)
    scored = [(ranks.score(p.author, p.metrics), p) for p in originals]
    parts = [
        f"<h1>What worked, and why</h1><p class=muted>{escape(str(data_dir))} · {len(accepted)} posts, "
        f"{len(originals)} original · {len(traces)} mined · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p>",
        _distribution(originals, tz),
        _timing(scored, tz),
        _top(scored),
        _strategies(traces),
        _scores(traces),
    ]
    return (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>reer-runtime report</title>"
        f"<style>{STYLE}</style><body>{''.join(parts)}</body></html>\n"
    )


def _read(path: Path, kind: type[T]) -> list[T]:
    return list(JsonlStore(path, kind).read()) if path.exists() else []


def _distribution(posts: list[PostEvent], tz: tzinfo) -> str:
    """How the raw interaction rates spread (on a log scale), and how they move month by month."""
    parts = ["<h2>Engagement</h2>"]
    for has_impressions, name, fmt in [(True, "interaction rate", "{:.2g}%"), (False, "interactions", "{:.3g}")]:
        scale = 100 if has_impressions else 1
        chosen = [p for p in posts if bool(p.metrics.impressions) == has_impressions]
        values = [interaction_rate(p.metrics) * scale for p in chosen]
        if not values:
            continue
        labels, counts = _log_bins(values, fmt)
        what = (
            "The interaction rate is (likes + reposts + replies) / impressions"
            if has_impressions
            else ("Interactions are likes + reposts + replies")
        )
        parts.append(bars(f"Posts by {name} (log scale)", labels, [("posts", [float(c) for c in counts])], "posts"))
        parts.append(f"<p class=muted>{what}; each bar counts the posts from its label up to the next one's.</p>")
        monthly: dict[str, list[float]] = defaultdict(list)
        for post, value in zip(chosen, values, strict=True):
            monthly[f"{_local(post, tz):%Y-%m}"].append(value)
        months = sorted(monthly)
        parts.append(
            bars(
                f"Median {name} by month ({_zone(tz)}; posts above each bar)",
                months,
                [("median", [statistics.median(monthly[m]) for m in months])],
                "median, %" if has_impressions else "median",
                [len(monthly[m]) for m in months],
            )
        )
    return "".join(parts)


def _log_bins(values: list[float], fmt: str, per_decade: int = 4) -> tuple[list[str], list[int]]:
    """Counts of `values` in bins equally wide on a log scale (`per_decade` a decade), with a first
    bin for zeros when there are any; each bin is labelled by its lower edge."""
    positive = [math.floor(math.log10(v) * per_decade) for v in values if v > 0]
    low, high = (min(positive), max(positive)) if positive else (0, -1)
    counts = Counter(positive)
    labels = [fmt.format(10 ** (k / per_decade)) for k in range(low, high + 1)]
    numbers = [counts[k] for k in range(low, high + 1)]
    if zeros := sum(v <= 0 for v in values):
        labels, numbers = [fmt.format(0), *labels], [zeros, *numbers]
    return labels, numbers


def _local(post: PostEvent, tz: tzinfo) -> datetime:
    """When the post was published, in `tz`; a post known only to the day keeps its day, and so does
    one whose local time would fall outside the calendar (stored before such dates were refused)."""
    if post.day_only:
        return post.created_at
    try:
        return post.created_at.astimezone(tz)
    except OverflowError:
        return post.created_at


def _zone(tz: tzinfo) -> str:
    return str(getattr(tz, "key", None) or datetime.now(tz).tzname() or tz)


def _timing(scored: Scored, tz: tzinfo) -> str:
    by_hour: dict[int, list[float]] = {h: [] for h in range(24)}
    by_day: dict[int, list[float]] = {d: [] for d in range(7)}
    for score, post in scored:
        when = _local(post, tz)
        if not post.day_only:
            by_hour[when.hour].append(score)
        by_day[when.weekday()].append(score)

    def chart(title: str, labels: list[str], groups: dict[int, list[float]]) -> str:
        means = [statistics.fmean(v) if v else 0.0 for v in groups.values()]
        return bars(
            f"{title} ({_zone(tz)}; posts above each bar)",
            labels,
            [("mean engagement score", means)],
            "mean score",
            counts=[len(v) for v in groups.values()],
        )

    hours = chart("Mean engagement by hour of day", [f"{h:02d}" for h in range(24)], by_hour)
    if undated := sum(post.day_only for _, post in scored):
        hours += f"<p class=muted>{undated} post(s) known only to the day (X's content export) are not in it.</p>"
    days = chart("Mean engagement by day of week", DAYS, by_day)
    return f"<h2>When to post</h2>{hours}{days}"


def _top(scored: Scored) -> str:
    best = sorted(scored, key=lambda sp: sp[0], reverse=True)[:10]
    rows = "".join(
        f"<tr><td>{escape(p.text)}</td><td class=num>{p.created_at:%Y-%m-%d}</td><td class=num>{p.metrics.likes}"
        f" / {p.metrics.reposts} / {p.metrics.replies}</td><td class=num>{s:.2f}</td></tr>"
        for s, p in best
    )
    return (
        "<h2>Top posts</h2><table><tr><th>post</th><th>date</th><th>likes / reposts / replies</th>"
        f"<th>score</th></tr>{rows}</table>"
    )


def _strategies(traces: list[Trace]) -> str:
    if not traces:
        return "<h2>Strategies</h2><p class=muted>No traces yet: run <code>reer-runtime start</code>.</p>"
    words: dict[str, Counter[str]] = {name: Counter() for name in SECTIONS}
    for t in traces:
        for name, text in t.sections.items():
            if name in words:
                words[name].update(
                    w for w in text.lower().replace(",", " ").replace(".", " ").split() if w not in STOP and len(w) > 2
                )
    summary = "".join(
        f"<dt>{escape(name)}</dt><dd>{escape(', '.join(w for w, _ in counter.most_common(8))) or '-'}</dd>"
        for name, counter in words.items()
    )
    best = sorted(traces, key=lambda t: t.engagement, reverse=True)[:5]
    judged = [t for t in traces if t.held_out is not None]
    holding = sorted(judged, key=lambda t: t.held_out.gain if t.held_out else 0.0, reverse=True)[:5]
    held = (
        f"<h2>Strategies that hold</h2><p>Ranked by their held-out gain: {HELD_OUT_GAIN}. "
        f"{sum(t.held_out.gain > 0 for t in judged if t.held_out)} of the {len(judged)} traces that measure it "
        "hold (a gain above 0); near 0, a plan explains its post no better than a generic one.</p>"
        + "".join(_plan(t, f"held-out gain {t.held_out.gain:+.3f}" if t.held_out else "") for t in holding)
        if judged
        else ""
    )
    return (
        f"<h2>Strategies</h2><p>Words the mined plans use most, by section, over {len(traces)} traces:</p>"
        f"<dl class=plan>{summary}</dl>{held}<h2>Plans of the best posts</h2>"
        + "".join(_plan(t, f"engagement {t.engagement:.2f}") for t in best)
    )


def _plan(t: Trace, figure: str) -> str:
    """A post (shortened), a figure about it, and its found plan by section."""
    return (
        f"<h3>{escape(textwrap.shorten(t.post.text, 120, placeholder=' …'))}</h3><p class=muted>{escape(figure)}</p>"
        "<dl class=plan>"
        + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in (t.sections or {"Plan": t.plan}).items())
        + "</dl>"
    )


def _scores(traces: list[Trace]) -> str:
    if not traces:
        return ""
    shown = sorted(traces, key=lambda t: t.engagement, reverse=True)[:30]
    series = [
        ("no plan", [t.scores.no_plan for t in shown]),
        ("initial plan z0", [t.scores.initial for t in shown]),
        ("found plan z*", [t.scores.final for t in shown]),
    ]
    chart = bars(
        "Clipped mean NLL of each post, best posts first (lower: the plan explains it better)",
        [str(i + 1) for i in range(len(shown))],
        series,
        "nats a token",
    )
    means = " · ".join(f"{name} {statistics.fmean(v):.3f}" for name, v in series)
    return f"<h2>How well the plans explain the posts</h2>{chart}<p>Means over these posts: {means}.</p>"
