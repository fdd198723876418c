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
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def browser() -> str:
    found = next((b for b in map(shutil.which, BROWSERS) if b), None)
    assert found, "no Chromium found: scripts/setup.sh test installs Debian's chromium"
    return found


def test_the_report_renders_in_a_headless_browser(tmp_path: Path, run_daemon: RunDaemon) -> None:
    posts = tmp_path / "in.jsonl"
    evil = post_line(99, text="<script>document.title='owned'</script> & <b>bold</b>", metrics={
        "impressions": 500, "likes": 400, "reposts": 40, "replies": 4})  # fmt: skip
    posts.write_text("".join(post_line(i) + "\n" for i in range(30)) + evil + "\n")
    assert run_daemon("start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0.7").returncode == 0
    out = tmp_path / "report"
    made = run_daemon("report", "--out", str(out))
    assert made.returncode == 0, made.stderr
    page = out / "report.html"
    assert made.stdout.strip() == str(page)
    html = page.read_text()
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", html)  # nothing to fetch when viewed
    assert "<script>" not in html and "&lt;script&gt;" in html  # post text is shown, never run

    profile = tmp_path / "profile"
    dom = subprocess.run(
        [browser(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert "<title>reer-runtime report</title>" in dom  # the post's script did not rename the page
    for heading in ("Engagement", "When to post", "Top posts", "Strategies", "How well the plans explain the posts"):
        assert f"<h2>{heading}</h2>" in dom
    assert dom.count("<svg") == 4 and dom.count("<rect") > 20
    assert "Angle" in dom and "found plan z*" in dom

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    subprocess.run(
        [browser(), *FLAGS, f"--user-data-dir={profile}", "--window-size=1000,2400", f"--screenshot={shot}",
         page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1000, 2400)
    assert len(data) > 50_000  # charts, tables and text, not a blank page
