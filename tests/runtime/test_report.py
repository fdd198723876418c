"""`reer-runtime report`: a self-contained page, opened in a real headless Chromium."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from html import escape, unescape
from pathlib import Path

import msgspec

from runtime.records import HELD_OUT_GAIN
from runtime.report.page import build
from tests.conftest import ROOT, RunDaemon
from tests.helpers import post_line
from tests.runtime.writer.test_writer import make_trace

ARTIFACTS = ROOT / "test-artifacts"
BROWSERS = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def figures(html: str, title: str) -> list[list[str]]:
    """The rows of the table of figures under the chart titled `title`: label, values, count."""
    chart = html[html.index(f"<figcaption>{escape(title)}</figcaption>") :]
    table = chart[chart.index("<table>") : chart.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", table)[1:]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]


def browser() -> str:
    found = next((b for b in map(shutil.which, BROWSERS) if b), None)
    assert found, "no Chromium found: scripts/setup.sh test installs Debian's chromium"
    return found


def test_the_report_renders_in_a_headless_browser(tmp_path: Path, run_daemon: RunDaemon) -> None:
    posts = tmp_path / "in.jsonl"
    evil = post_line(
        99,
        text="<script>document.title='owned'</script> & <b>bold</b>",
        metrics={"impressions": 500, "likes": 400, "reposts": 40, "replies": 4},
    )
    posts.write_text("".join(post_line(i) + "\n" for i in range(30)) + evil + "\n")
    assert run_daemon("start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0.7").returncode == 0
    out = tmp_path / "report"
    made = run_daemon("report", "--out", str(out), "--tz", "America/New_York")
    assert made.returncode == 0, made.stderr
    page = out / "report.html"
    assert made.stdout.strip() == str(page)
    html = page.read_text()
    # nothing to fetch when viewed: the charts' references are all to their own parts (#id)
    assert not re.search(r"""src\s*=|href\s*=\s*(?!["']?#)|@import|url\((?!#)""", html)
    assert "<script>" not in html and "&lt;script&gt;" in html  # post text is shown, never run

    profile = tmp_path / "profile"
    dom = subprocess.run(
        [browser(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "<title>reer-runtime report</title>" in dom  # the post's script did not rename the page
    for heading in ("Engagement", "When to post", "Top posts", "Strategies", "How well the plans explain the posts"):
        assert f"<h2>{heading}</h2>" in dom
    assert dom.count("<svg") == 10  # rates, months, hours, days, scores; each for a phone and a wide page
    assert "Posts by interaction rate (log scale)" in dom and "Median interaction rate by month" in dom
    hours = figures(dom, "Mean engagement by hour of day (America/New_York; posts above each bar)")
    assert sum(int(row[-1]) for row in hours) == 31  # each hour's count of posts: 31 originals in all
    assert "Angle" in dom and "found plan z*" in dom


def test_hours_without_posts_are_marked_and_headings_end_on_a_word(tmp_path: Path, run_daemon: RunDaemon) -> None:
    posts = tmp_path / "in.jsonl"
    long_text = "Backups you never restored are a rumour and " * 4 + "everyone learns it the day the disk dies"
    lines = [post_line(i, created_at=f"2026-03-0{1 + i}T09:00:00Z") for i in range(4)]  # all at 09:00 UTC
    lines.append(post_line(9, text=long_text, metrics={"impressions": 100, "likes": 90, "reposts": 9, "replies": 1}))
    posts.write_text("\n".join(lines) + "\n")
    assert run_daemon("start", "--input", str(posts), "--exit-when-idle").returncode == 0
    made = run_daemon("report", "--tz", "UTC")
    assert made.returncode == 0, made.stderr
    html = Path(made.stdout.strip()).read_text()
    hours = figures(html, "Mean engagement by hour of day (UTC; posts above each bar)")
    assert [row[0] for row in hours if row[-1] != "0"] == ["09"]  # only 09:00 holds posts
    assert all(row[1] == "-" for row in hours if row[-1] == "0")  # no posts is not a score of 0
    chart = html[html.index("Mean engagement by hour of day") : html.index("Mean engagement by day of week")]
    assert chart.count("<!-- no posts -->") == 2  # the hatched columns are in the legend, at both widths
    heading = re.search(r"<h3>(Backups.*?)</h3>", html)
    assert heading and heading.group(1).endswith(" …") and len(heading.group(1)) <= 120
    assert long_text.startswith(heading.group(1).removesuffix(" …"))  # cut between two words


def test_a_report_of_a_folder_with_no_data_says_so_and_creates_nothing(tmp_path: Path, run_daemon: RunDaemon) -> None:
    done = run_daemon("report")  # the data dir does not exist
    assert done.returncode == 1 and "no data in" in done.stderr
    assert not (tmp_path / "data").exists()
    wrong_zone = run_daemon("report", "--tz", "Mars/Olympus")
    assert wrong_zone.returncode == 1  # no data comes first; a zone is checked where there is data


MEASURE = """
const box = e => { const b = e.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; };
const charts = [...document.querySelectorAll("figure.chart svg")].filter(svg => svg.getBoundingClientRect().width);
const measured = document.createElement("pre");
measured.id = "measured";
measured.textContent = JSON.stringify({
  width: innerWidth,
  scroll: document.documentElement.scrollWidth,
  charts: charts.map(svg => ({
    title: svg.closest("figure").getAttribute("aria-label"),
    frame: box(svg),
    plot: box(svg.querySelector("g[id^=axes_] > g[id^=patch_]")),
    legend: [...svg.querySelectorAll("g[id^=legend_]")].map(box),
    texts: [...svg.querySelectorAll("g[id^=text_]")].map(e => ({box: box(e), legend: !!e.closest("g[id^=legend_]")})),
  })),
});
parent.document.body.append(measured);
"""
"""Run inside the report, framed at the width under test; its figures go to the framing page."""


def overlap(a: list[float], b: list[float]) -> float:
    """The area two boxes (left, top, right, bottom) share, in square pixels."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def inside(inner: list[float], outer: list[float], slack: float = 0.5) -> bool:
    return (
        inner[0] >= outer[0] - slack
        and inner[1] >= outer[1] - slack
        and inner[2] <= outer[2] + slack
        and (inner[3] <= outer[3] + slack)
    )


def test_the_charts_fit_a_phone_and_a_wide_screen(tmp_path: Path, run_daemon: RunDaemon) -> None:
    """Rendered in Chromium at 390 and 1280 px: no page wider than the screen, no text of a chart
    over another or out of its chart, no legend over the plot. Crowded on purpose: 24 hours with
    three-digit counts, 40 months, long labels, all three NLL series, a 9,000-character word."""
    lines = [
        post_line(i, created_at=f"{2023 + (i % 40) // 12}-{1 + (i % 40) % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00Z")
        for i in range(2600)
    ]
    lines += [post_line(5000 + i, metrics={"impressions": 0, "likes": i, "reposts": 0, "replies": 0}) for i in range(9)]
    loud = {"impressions": 0, "likes": 10_000, "reposts": 0, "replies": 0}
    lines.append(post_line(9000, text="Unbroken: " + "w" * 9000, metrics=loud))  # one word wider than any screen
    posts = tmp_path / "in.jsonl"
    posts.write_text("\n".join(lines) + "\n")
    quick = {"REER_SEARCH__MAX_STEPS": "1", "REER_WRITER__MIN_TRACES": "100000"}  # the charts need NLLs, not a compile
    mined = run_daemon("start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0.98", env=quick)
    assert mined.returncode == 0, mined.stderr
    made = run_daemon("report", "--tz", "UTC")
    assert made.returncode == 0, made.stderr
    page = Path(made.stdout.strip())
    measuring = page.read_text().replace("</body>", f"<script>{MEASURE}</script></body>")

    ARTIFACTS.mkdir(exist_ok=True)
    for width in (390, 1280):  # framed, as headless windows are at least 500 px wide
        probe = tmp_path / f"probe-{width}.html"
        frame = f'<iframe style="display:block;border:0;width:{width}px;height:5900px" srcdoc="{escape(measuring)}">'
        probe.write_text(f'<!doctype html><body style="margin:0;overflow:hidden">{frame}</iframe></body>')
        flags = [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={max(width, 500)},6000"]
        dom = subprocess.run(
            [browser(), *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120, check=True
        ).stdout
        found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
        assert found, dom[-2000:]
        measured = json.loads(unescape(found.group(1)))
        assert measured["width"] == width and measured["scroll"] <= width  # nothing scrolls sideways
        assert len(measured["charts"]) == 7  # each drawn once at a width: rates and interactions (2 each), 3 more
        for chart in measured["charts"]:
            texts = chart["texts"]
            assert len(texts) > 5, chart["title"]
            where = f"{chart['title']} at {width} px"
            assert chart["frame"][2] <= width and inside(chart["plot"], chart["frame"]), where
            for text in texts:
                assert inside(text["box"], chart["frame"]), (where, text)
            for a, b in itertools.combinations(texts, 2):
                assert overlap(a["box"], b["box"]) < 1.0, (where, a, b)
            for legend in chart["legend"]:
                assert inside(legend, chart["frame"]) and overlap(legend, chart["plot"]) == 0, where
                assert not [t for t in texts if not t["legend"] and overlap(t["box"], legend) > 0], where

        shot = ARTIFACTS / f"report-{width}px.png"
        shot.unlink(missing_ok=True)
        screenshot = [browser(), *flags, f"--screenshot={shot}", probe.as_uri()]
        subprocess.run(screenshot, capture_output=True, timeout=120, check=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_strategies_that_hold_are_ranked_by_their_held_out_gain(tmp_path: Path) -> None:
    gains = [0.05, -0.1, None, 0.3, 0.0]
    traces = [make_trace(i, f"Post {i}: restore drills, week {i}.", gain=g) for i, g in enumerate(gains)]
    (tmp_path / "traces.jsonl").write_bytes(b"".join(msgspec.json.encode(t) + b"\n" for t in traces))
    html = build(tmp_path)
    held = html[html.index("<h2>Strategies that hold</h2>") : html.index("<h2>Plans of the best posts</h2>")]
    assert f"Ranked by their held-out gain: {HELD_OUT_GAIN}. 2 of the 4 traces that measure it hold" in unescape(held)
    shown = re.findall(r"<h3>Post (\d):.*?</h3><p class=muted>held-out gain ([+-][\d.]+)</p>", held)
    assert shown == [("3", "+0.300"), ("0", "+0.050"), ("4", "+0.000"), ("1", "-0.100")]  # unmeasured (2) not ranked
