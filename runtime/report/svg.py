"""Small inline SVG charts: bars, and grouped bars. Text is escaped; sizes are in pixels."""

from __future__ import annotations

from html import escape

WIDTH, HEIGHT, PAD = 720, 260, 44
COLOURS = ("#4c78a8", "#f58518", "#54a24b")


def bars(
    title: str,
    labels: list[str],
    series: list[tuple[str, list[float]]],
    unit: str = "",
    counts: list[int] | None = None,
) -> str:
    """A bar chart of one or more series over `labels` (grouped side by side), with a legend.

    With `counts` (posts behind each label), each bar is topped with its count, and a label with no
    posts gets a grey "no posts" mark instead of a bar, so it is not mistaken for a value of 0.
    """
    top = max([v for _, values in series for v in values] + [1e-9])
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    slot = plot_w / max(1, len(labels))
    bar = slot * 0.8 / max(1, len(series))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f'<text x="{PAD}" y="20" class="title">{escape(title)}</text>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>',
        f'<text x="{PAD - 6}" y="{PAD + 4}" text-anchor="end" class="axis">{top:.3g}{escape(unit)}</text>',
        f'<text x="{PAD - 6}" y="{HEIGHT - PAD}" text-anchor="end" class="axis">0</text>',
    ]
    every = max(1, len(labels) // 12)
    for i, label in enumerate(labels):
        x0 = PAD + i * slot + slot * 0.1
        empty = counts is not None and counts[i] == 0
        if empty:
            out.append(
                f'<text x="{x0 + slot * 0.4:.1f}" y="{HEIGHT - PAD - 4}" text-anchor="middle" class="empty">'
                f"none<title>{escape(label)}: no posts</title></text>"
            )
        elif counts is not None:
            tallest = max(values[i] for _, values in series)
            y = HEIGHT - PAD - plot_h * (tallest / top if top else 0) - 4
            out.append(
                f'<text x="{x0 + slot * 0.4:.1f}" y="{y:.1f}" text-anchor="middle" class="count">{counts[i]}</text>'
            )
        for s, (name, values) in enumerate([] if empty else series):
            h = plot_h * (values[i] / top if top else 0)
            out.append(
                f'<rect x="{x0 + s * bar:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{COLOURS[s % len(COLOURS)]}"><title>{escape(name)} {escape(label)}: {values[i]:.3g}'
                f"{escape(unit)}</title></rect>"
            )
        if i % every == 0:
            out.append(
                f'<text x="{x0 + slot * 0.4:.1f}" y="{HEIGHT - PAD + 16}" text-anchor="middle" '
                f'class="axis">{escape(label)}</text>'
            )
    for s, (name, _) in enumerate(series if len(series) > 1 else []):
        x = WIDTH - PAD - 150
        out.append(
            f'<rect x="{x}" y="{8 + s * 16}" width="10" height="10" fill="{COLOURS[s % len(COLOURS)]}"/>'
            f'<text x="{x + 16}" y="{17 + s * 16}" class="axis">{escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
