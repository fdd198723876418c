"""The X/Twitter Analytics "tweet activity" CSV export, unmodified (one file per month is normal)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime

from bus.records import Platform, PostEvent
from runtime.imports.common import RowError, count, make_post

HEADER = ("Tweet id", "Tweet permalink", "Tweet text", "time", "impressions")


def looks_like(head: str) -> bool:
    first = head.splitlines()[0] if head else ""
    return all(f'"{name}"' in first or name in first.split(",") for name in HEADER)


def rows(text: str) -> Iterator[tuple[int, str, PostEvent | str]]:
    """(row number, raw row, post or reason) for each row; the author comes from the permalink."""
    raw_lines = text.splitlines()
    reader = csv.DictReader(io.StringIO(text))
    for row in reader:
        number = reader.line_num
        raw = raw_lines[number - 1] if number - 1 < len(raw_lines) else ""
        try:
            yield number, raw, _post(row)
        except RowError as exc:
            yield number, raw, str(exc)


def _post(row: dict[str, str]) -> PostEvent:
    permalink = row.get("Tweet permalink") or ""
    parts = permalink.rstrip("/").split("/")
    author = parts[-3] if len(parts) >= 3 and parts[-2] == "status" else "me"
    try:
        created = datetime.strptime(row["time"], "%Y-%m-%d %H:%M %z")
    except (KeyError, TypeError, ValueError):
        raise RowError(f"invalid time: {row.get('time')!r} is not like 2016-12-23 18:50 +0000") from None
    if not (row.get("Tweet id") or "").strip():
        raise RowError("invalid event: the row has no Tweet id")
    return make_post(
        id=row["Tweet id"].strip(),
        text=row.get("Tweet text") or "",
        created_at=created,
        platform=Platform.X,
        author=author,
        likes=count(row.get("likes"), "likes"),
        reposts=count(row.get("retweets"), "retweets"),
        replies=count(row.get("replies"), "replies"),
        impressions=count(row.get("impressions"), "impressions"),
    )
