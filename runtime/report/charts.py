"""The report's bar charts, drawn with matplotlib into inline SVG when the report is written.

Each chart is drawn twice: for a phone (360 px wide) and for a wide page (900 px). The page's CSS
shows the one that fits and scales it to its column. The text is drawn as paths in matplotlib's own
DejaVu Sans, so every browser shows the layout that matplotlib measured: constrained layout keeps the
ticks, axis labels and legend inside the figure and apart, and x labels are thinned to fit. Under
each chart, its figures as a table, for exact values and for screen readers.
"""

from __future__ import annotations

import io
import math
import re
from html import escape

from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

WIDTHS = {"narrow": 360, "wide": 900}
"""Pixels; the page shows `narrow` below 720 px."""
HEIGHT = 240
COLOURS = ("#4c78a8", "#f58518", "#54a24b")
FONT_PX = 10
CHAR_PX = 0.62 * FONT_PX  # the mean advance of a DejaVu Sans character at FONT_PX


def bars(
    title: str,
    labels: list[str],
    series: list[tuple[str, list[float]]],
    y_label: str,
    counts: list[int] | None = None,
) -> str:
    """A figure: `title`, one or more `series` as bars grouped over `labels`, its figures as a table.

    With `counts` (posts behind each label), each bar is topped with its count, and a label with no
    posts is a hatched "no posts" column instead of a bar, so it is not mistaken for a value of 0.
    """
    drawn = "".join(
        f'<div class="{name}">{_svg(labels, series, y_label, counts, width)}</div>' for name, width in WIDTHS.items()
    )
    return (
        f'<figure class="chart" role="group" aria-label="{escape(title)}"><figcaption>{escape(title)}</figcaption>'
        f"{drawn}{_table(labels, series, counts)}</figure>"
    )


def _svg(
    labels: list[str], series: list[tuple[str, list[float]]], y_label: str, counts: list[int] | None, width: int
) -> str:
    # a Figure of its own, not pyplot's: no global state, no GUI backend
    with rc_context({"font.family": "DejaVu Sans", "font.size": FONT_PX, "svg.fonttype": "path"}):
        fig = Figure(figsize=(width / 72, HEIGHT / 72), dpi=72, layout="constrained")
        ax = fig.subplots()
        x = range(len(labels))
        bar = 0.8 / max(1, len(series))
        empty = [counts is not None and counts[i] == 0 for i in x]
        top = max([v for _, values in series for v in values] + [0.0])
        for s, (name, values) in enumerate(series):
            offsets = [i - 0.4 + bar * (s + 0.5) for i in x if not empty[i]]
            shown = [values[i] for i in x if not empty[i]]
            drawn = ax.bar(offsets, shown, bar, label=name, color=COLOURS[s % len(COLOURS)], zorder=2)
            if counts is not None and s == 0:  # the count of posts on each bar, as large as its slot allows
                size = min(8.0, _slot(labels, width) * 0.9 / (0.62 * len(str(max(counts)))))
                shown_counts = [str(c) for c, e in zip(counts, empty, strict=True) if not e]
                ax.bar_label(drawn, shown_counts, fontsize=size, padding=2)
        if any(empty):
            gaps = [i for i in x if empty[i]]
            heights = [top or 1.0] * len(gaps)
            ax.bar(gaps, heights, 0.8, color="#f4f4f4", edgecolor="#bbb", hatch="///", label="no posts")
        ax.set_xticks(list(x), labels)
        every = _thinning(labels, width)
        for i, tick in enumerate(ax.xaxis.get_major_ticks()):
            tick.label1.set_visible(i % every == 0)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.margins(y=0.15 if counts is not None else 0.05)
        ax.set_ylim(bottom=0)
        whole = all(v == int(v) for _, values in series for v in values)  # counts get whole-number ticks
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4 if width < 600 else 6, integer=whole))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_ylabel(y_label)
        ax.grid(axis="y", color="#e5e5e5", zorder=0)
        ax.spines[["top", "right"]].set_visible(False)
        if len(series) > 1 or any(empty):
            handles = len(series) + any(empty)
            text = sum(len(name) for name, _ in series) + (8 if any(empty) else 0)
            fits = text * CHAR_PX + handles * 40 < width - 20
            fig.legend(loc="outside upper center", ncols=handles if fits else 1, frameon=False)
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata={"Date": None})
    svg = out.getvalue()
    svg = svg[svg.index("<svg") :]  # no XML prologue or doctype inside HTML
    return re.sub(r'<svg([^>]*?) width="[\d.]+pt" height="[\d.]+pt"', r"<svg\1", svg, count=1)


def _slot(labels: list[str], width: int) -> float:
    """The pixels of plot width each label has: the figure's width less the y axis, shared out."""
    return (width - 70) / max(1, len(labels))


def _thinning(labels: list[str], width: int) -> int:
    """Show every n-th x label, n the smallest that leaves each shown label its width and a gap."""
    needed = max(map(len, labels), default=1) * CHAR_PX + 6
    return max(1, math.ceil(needed / _slot(labels, width)))


def _table(labels: list[str], series: list[tuple[str, list[float]]], counts: list[int] | None) -> str:
    head = "".join(f"<th>{escape(name)}</th>" for name, _ in series) + ("<th>posts</th>" if counts else "")
    rows = "".join(
        f"<tr><td>{escape(label)}</td>"
        + "".join(
            "<td class=num>-</td>" if counts and not counts[i] else f"<td class=num>{values[i]:.3g}</td>"
            for _, values in series
        )
        + (f"<td class=num>{counts[i]}</td>" if counts else "")
        + "</tr>"
        for i, label in enumerate(labels)
    )
    return f"<details><summary>the figures</summary><table><tr><th></th>{head}</tr>{rows}</table></details>"
