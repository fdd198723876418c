"""Importers: X Analytics CSVs, the X archive, any CSV with a mapping (the shared FiveThirtyEight file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from runtime.config import CsvMapping
from runtime.errors import InputError
from runtime.inputs.sources import check, convert, detect
from runtime.records import PostEvent
from tests.conftest import RunDaemon
from tests.helpers import FIXTURES, daemon_env, post_line

ANALYTICS = sorted(FIXTURES.glob("tweet_activity_metrics_*.csv"))
CONTENT = FIXTURES / "account_analytics_content_2026-07-01_2026-07-31.csv"
ARCHIVE = FIXTURES / "x-archive"
OBAMA = FIXTURES / "BarackObama-first-200.csv"  # the shared FiveThirtyEight file's first rows, bytes as they are
OBAMA_MAP = CsvMapping(
    text="text",
    time="created_at",
    time_format="%m/%d/%y %H:%M",
    id="url",
    likes="favorites",
    reposts="retweets",
    replies="replies",
    author="user",
)


def posts_and_reasons(path: Path, fmt: Any, mapping: CsvMapping | None = None) -> tuple[list[PostEvent], list[str]]:
    lines = convert(path, fmt, mapping or CsvMapping())
    posts = [msgspec.json.decode(line.data, type=PostEvent) for line in lines if line.rejection is None]
    return posts, [str(line.rejection) for line in lines if line.rejection]


def test_the_x_analytics_export_is_read_unmodified() -> None:
    assert detect(ANALYTICS[0], CsvMapping()) == "x-analytics"
    posts, reasons = posts_and_reasons(ANALYTICS[0], "x-analytics")
    first = posts[0]
    assert first.id == "811111111111111111" and first.author == "tinyshipper"
    assert first.text.startswith("We shipped dark mode & a faster editor")  # &amp; unescaped
    assert (first.metrics.likes, first.metrics.reposts, first.metrics.replies, first.metrics.impressions) == (
        57,
        12,
        3,
        1938,
    )
    assert first.created_at.isoformat() == "2016-12-23T18:50:00+00:00"
    assert [p.kind for p in posts] == ["original", "repost", "reply"]
    assert reasons == ["invalid time: 'not a time' is not like 2016-12-23 18:50 +0000"]


def test_the_current_x_content_export_is_read_with_dates_known_to_the_day() -> None:
    assert detect(CONTENT, CsvMapping()) == "x-analytics"
    posts, reasons = posts_and_reasons(CONTENT, "x-analytics")
    first = posts[0]
    assert first.id == "1944000000000000001" and first.author == "tinyshipper"
    assert first.text.startswith("Backups you never restored are a rumour") and "&amp;" not in first.text
    assert (first.metrics.likes, first.metrics.reposts, first.metrics.replies, first.metrics.impressions) == (
        1234,
        96,
        41,
        12480,
    )  # ("1,234" with its thousands separator)
    assert first.created_at.isoformat() == "2026-07-14T00:00:00+00:00" and first.day_only
    assert [p.kind for p in posts] == ["original", "repost", "reply", "original"]
    assert reasons == ["invalid time: Date 'Jul 17' is not like 'Tue, Jul 14, 2026'"]
    legacy, _ = posts_and_reasons(ANALYTICS[0], "x-analytics")
    assert not any(p.day_only for p in legacy)


def test_the_x_archive_is_read_as_a_file_or_as_the_unpacked_folder() -> None:
    assert detect(ARCHIVE, CsvMapping()) == "x-archive" == detect(ARCHIVE / "data" / "tweets.js", CsvMapping())
    posts, reasons = posts_and_reasons(ARCHIVE, "x-archive")
    assert [p.kind for p in posts] == ["original", "repost", "reply"]
    assert posts[0].author == "tinyshipper" and posts[0].metrics.likes == 42 and posts[0].metrics.reposts == 7
    assert posts[0].text.endswith("Write it for humans: https://example.com/changelog")  # t.co expanded
    assert reasons == ["invalid time: 'yesterday' is not like Wed Oct 10 20:19:24 +0000 2018"]
    alone, _ = posts_and_reasons(ARCHIVE / "data" / "tweets.js", "x-archive")
    assert [p.key for p in alone] == [p.key for p in posts] and alone[0].author == "tinyshipper"


def test_any_csv_with_a_mapping_reads_the_shared_fivethirtyeight_file() -> None:
    assert check(OBAMA, "auto", OBAMA_MAP) == "csv"
    posts, reasons = posts_and_reasons(OBAMA, "csv", OBAMA_MAP)
    assert len(posts) == 200 and not reasons
    grateful = next(p for p in posts if p.id == "920061541986250758")
    assert grateful.author == "BarackObama" and grateful.metrics.likes == 641842 and grateful.metrics.reposts == 89916
    assert any(p.text.startswith("Michelle & I are praying") for p in posts)  # cp1252 and &amp; handled
    assert not any("&amp;" in p.text for p in posts)
    reposts = [p for p in posts if p.kind == "repost"]
    assert reposts and all(p.text.startswith("RT @") for p in reposts)


def test_formats_that_cannot_be_told_or_read_are_refused_with_the_reason(tmp_path: Path) -> None:
    unknown = tmp_path / "export.csv"
    unknown.write_text("date,body,hearts\n2020-01-01,hello,3\n")
    with pytest.raises(InputError, match="cannot tell its format"):
        detect(unknown, CsvMapping())
    with pytest.raises(InputError, match="no column 'created_at'"):
        check(unknown, "csv", CsvMapping(text="body"))
    mapped = CsvMapping(text="body", time="date", likes="hearts")
    posts, _ = posts_and_reasons(unknown, "csv", mapped)
    assert posts[0].text == "hello" and posts[0].metrics.likes == 3 and posts[0].id == "2"
    bad = tmp_path / "bad.csv"
    bad.write_text("date,body,hearts\n2020-01-01,hello,many\n2020-13-01,hi,1\n,,\n")
    _, reasons = posts_and_reasons(bad, "csv", mapped)
    assert reasons == [
        "invalid metric: hearts is 'many', not a number",
        "invalid time: '2020-13-01' does not match ISO 8601",
        "invalid time: '' does not match ISO 8601",
    ]


def test_the_daemon_imports_monthly_files_once_and_mines_only_originals(tmp_path: Path, run_daemon: RunDaemon) -> None:
    args = ["start", "--exit-when-idle", "--min-engagement", "0"]
    done = run_daemon(*args, *[a for f in ANALYTICS for a in ("--input", str(f))], "--input", str(ARCHIVE))
    assert done.returncode == 0, done.stderr
    data = tmp_path / "data"
    accepted = [json.loads(line) for line in (data / "posts.jsonl").read_text().splitlines()]
    rejected = [json.loads(line) for line in (data / "rejected.jsonl").read_text().splitlines()]
    keys = [a["post"]["id"] for a in accepted]
    assert len(keys) == len(set(keys)) == 7  # 3 + 1 new from the second month + 3 from the archive
    assert sorted(r["reason"].split(":")[0] for r in rejected) == ["duplicate", "invalid time", "invalid time"]
    assert next(r for r in rejected if r["reason"].startswith("duplicate"))["line"] == 2
    selected = {a["post"]["id"]: a["selected"] for a in accepted}
    kinds = {a["post"]["id"]: a["post"]["kind"] for a in accepted}
    assert all(selected[k] == (kinds[k] == "original") for k in keys)  # reposts and replies are not mined
    traces = (data / "traces.jsonl").read_text().splitlines()
    assert len(traces) == sum(selected.values()) == 3


def test_an_unreadable_source_stops_the_start_with_the_reason(tmp_path: Path, run_daemon: RunDaemon) -> None:
    unknown = tmp_path / "export.csv"
    unknown.write_text("date,body,hearts\n2020-01-01,hello,3\n")
    refused = run_daemon("start", "--input", str(unknown), "--exit-when-idle")
    assert refused.returncode == 2 and "cannot tell its format" in refused.stderr
    mapped = run_daemon(
        "start", "--input", str(unknown), "--exit-when-idle", "--csv", "text=body,time=date,likes=hearts"
    )
    assert mapped.returncode == 0, mapped.stderr
    assert json.loads((tmp_path / "data" / "posts.jsonl").read_text())["post"]["text"] == "hello"


def test_binary_and_empty_files_are_read_line_by_line_and_nothing_is_lost(
    tmp_path: Path, run_daemon: RunDaemon
) -> None:
    binary, empty, mixed = tmp_path / "photo.jpg", tmp_path / "empty.jsonl", tmp_path / "mixed.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    empty.write_bytes(b"")
    mixed.write_bytes(b"\xff\xfe garbage\n" + post_line(1).encode() + b"\n\x00\x01\x02\n")
    done = run_daemon("start", "--exit-when-idle", *[a for f in (binary, empty, mixed) for a in ("--input", str(f))])
    assert done.returncode == 0, done.stderr
    rejected = [json.loads(x) for x in (tmp_path / "data" / "rejected.jsonl").read_text().splitlines()]
    assert {r["source"] for r in rejected} == {str(binary), str(mixed)}
    assert all(r["reason"].split(":")[0] in ("not UTF-8", "invalid JSON") for r in rejected)
    accepted = (tmp_path / "data" / "posts.jsonl").read_text().splitlines()
    assert len(accepted) == 1  # the one valid line among the garbage


@pytest.mark.daemon
def test_the_tutorial_commands_work_as_a_user_types_them(tmp_path: Path) -> None:
    """README's tutorial: a shell glob of monthly exports, a folder of exports, the archive folder, the report."""
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    for export in [*ANALYTICS, CONTENT]:
        (downloads / export.name).write_bytes(export.read_bytes())
    bin_dir = Path(sys.executable).parent
    env = {
        **daemon_env(),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "REER_HOME": str(tmp_path / "reer"),
        "REER_GENERATOR": "dummy://",
        "REER_SCORER": "dummy://",
        "REER_SEARCH__MAX_STEPS": "1",
    }

    def user(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, shell=True, cwd=downloads, env=env, capture_output=True, text=True, check=False)

    def post_ids() -> list[str]:
        ledger = (tmp_path / "reer" / "posts.jsonl").read_text().splitlines()
        return [json.loads(line)["post"]["id"] for line in ledger]

    glob = user("reer-runtime start --input tweet_activity_metrics_*_en.csv --exit-when-idle")
    assert glob.returncode == 0, glob.stderr
    assert len(post_ids()) == 4  # 3 + 1 new from the second month
    folder = user("reer-runtime start --input . --exit-when-idle")  # the same two again, and the content export
    assert folder.returncode == 0, folder.stderr
    assert len(post_ids()) == 8 and len(set(post_ids())) == 8  # + 4: each post once
    archive = user(f"reer-runtime start --input {ARCHIVE} --exit-when-idle")
    assert archive.returncode == 0, archive.stderr
    assert len(post_ids()) == 11
    report = user("reer-runtime report")
    assert report.returncode == 0, report.stderr
    page = Path(report.stdout.strip().splitlines()[-1]).read_text()
    assert "2 post(s) known only to the day" in page  # the export's two originals
