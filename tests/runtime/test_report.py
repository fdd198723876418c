"""`reer-runtime report`: a self-contained page, opened in a real headless Chromium."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

from tests.conftest import ROOT, RunDaemon
from tests.helpers import post_line

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
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", html)  # nothing to fetch when viewed
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
    assert dom.count("<svg") == 5 and dom.count("<rect") > 20  # rates, months, hours, days, scores
    assert "Posts by interaction rate (log scale)" in dom and "Median interaction rate by month" in dom
    assert "Mean engagement by hour of day (America/New_York; posts above each bar)" in dom
    hours = re.search(r"Mean engagement by hour of day.*?</svg>", dom, re.S)
    assert hours  # each bar is topped by its count of posts: 31 originals in all
    assert sum(int(n) for n in re.findall(r'class="count">(\d+)<', hours.group(0))) == 31
    assert "Angle" in dom and "found plan z*" in dom

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    subprocess.run(
        [
            browser(),
            *FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1000,2400",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1000, 2400)
    assert len(data) > 50_000  # charts, tables and text, not a blank page


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
    hours = re.search(r"Mean engagement by hour of day.*?</svg>", html, re.S)
    assert hours and hours.group(0).count('class="empty"') == 23  # only 09:00 holds posts
    heading = re.search(r"<h3>(Backups.*?)</h3>", html)
    assert heading and heading.group(1).endswith(" …") and len(heading.group(1)) <= 120
    assert long_text.startswith(heading.group(1).removesuffix(" …"))  # cut between two words


def test_a_report_of_a_folder_with_no_data_says_so_and_creates_nothing(tmp_path: Path, run_daemon: RunDaemon) -> None:
    done = run_daemon("report")  # the data dir does not exist
    assert done.returncode == 1 and "no data in" in done.stderr
    assert not (tmp_path / "data").exists()
    wrong_zone = run_daemon("report", "--tz", "Mars/Olympus")
    assert wrong_zone.returncode == 1  # no data comes first; a zone is checked where there is data
