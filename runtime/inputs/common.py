"""What every importer shares: a post from a row's fields, normalised, as an input line."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Iterator
from datetime import datetime

import msgspec

from runtime.inputs.lines import Line
from runtime.records import Metrics, Platform, PostEvent, PostKind, Rejection


class RowError(ValueError):
    """A row that cannot become a post; `rejection` is the reason kept with it."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.rejection = Rejection(kind, detail)


def csv_rows(text: str) -> csv.DictReader[str]:
    """The rows of a whole CSV `text`. A cell may be as long as the text: a huge cell is a post's
    text, for admission to refuse with its reason, not an error that stops the file."""
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    return csv.DictReader(io.StringIO(text))


def kind_of(text: str, in_reply_to: bool = False) -> PostKind:
    """`repost` for `RT @...`, `reply` for an answer (or a text that opens with a mention), else `original`."""
    if text.startswith("RT @"):
        return "repost"
    if in_reply_to or text.startswith("@"):
        return "reply"
    return "original"


def count(value: str | int | float | None, name: str) -> int:
    """A metric such as `1938.0`, `1,938` or `-` (none) as a count."""
    if value is None or value in ("", "-"):
        return 0
    try:
        number = float(str(value).replace(",", ""))
    except ValueError:
        raise RowError("invalid metric", f"{name} is {value!r}, not a number") from None
    if number < 0 or number != int(number):
        raise RowError("invalid metric", f"{name} is {value!r}, not a count")
    return int(number)


def make_post(
    *,
    id: str,
    text: str,
    created_at: datetime,
    platform: Platform,
    author: str,
    likes: int,
    reposts: int,
    replies: int,
    impressions: int | None,
    in_reply_to: bool = False,
    day_only: bool = False,
) -> PostEvent:
    """A post with its text unescaped (`&amp;` to `&`) and its kind marked."""
    text = html.unescape(text).strip()
    if not text:
        raise RowError("invalid event", "the text is empty")
    metrics = Metrics(likes=likes, reposts=reposts, replies=replies, impressions=impressions)
    return PostEvent(
        id=id,
        text=text,
        created_at=created_at,
        platform=platform,
        author=author,
        metrics=metrics,
        kind=kind_of(text, in_reply_to),
        day_only=day_only,
    )


def lines(rows: Iterator[tuple[int, str, PostEvent | Rejection]]) -> Iterator[Line]:
    """Input lines from (row number, raw row, post or rejection): a post as its JSON event, a failure
    with its rejection."""
    for number, raw, result in rows:
        if isinstance(result, Rejection):
            yield Line(number, raw.encode(), rejection=result)
        else:
            yield Line(number, msgspec.json.encode(result))
