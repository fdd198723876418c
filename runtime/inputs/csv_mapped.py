"""Any CSV, read through a column mapping (for example the FiveThirtyEight file, in cp1252 with HTML entities)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime

from runtime.config import CsvMapping
from runtime.errors import InputError
from runtime.inputs.common import RowError, count, csv_rows, make_post
from runtime.records import PostEvent, Rejection


def header(head: str) -> list[str]:
    """The column names on the first line of `head`, the start of a CSV file."""
    return next(csv.reader(io.StringIO(head.splitlines()[0] if head else "")), [])


def looks_like(head: str, mapping: CsvMapping) -> bool:
    columns = header(head)
    return mapping.text in columns and mapping.time in columns


def missing_columns(columns: list[str], mapping: CsvMapping) -> str | None:
    """Why a CSV with these columns cannot be read through `mapping`, or None."""
    missing = [c for c in mapping.columns() if c not in columns]
    if not missing:
        return None
    return (
        f"no column {', '.join(map(repr, missing))} in its header {columns}; "
        "map the columns with --csv text=COLUMN,time=COLUMN,..."
    )


def rows(text: str, mapping: CsvMapping) -> Iterator[tuple[int, str, PostEvent | Rejection]]:
    """(row number, raw row, post or rejection) for each row."""
    raw_lines = text.splitlines()
    reader = csv_rows(text)
    if problem := missing_columns(list(reader.fieldnames or []), mapping):
        raise InputError(f"the CSV has {problem}")
    for row in reader:
        number = reader.line_num
        raw = raw_lines[number - 1] if number - 1 < len(raw_lines) else ""
        try:
            yield number, raw, _post(row, mapping, number)
        except RowError as exc:
            yield number, raw, exc.rejection


def _post(row: dict[str, str], m: CsvMapping, number: int) -> PostEvent:
    value = row.get(m.time) or ""
    try:
        created = datetime.strptime(value, m.time_format) if m.time_format else datetime.fromisoformat(value)
    except ValueError:
        raise RowError("invalid time", f"{value!r} does not match {m.time_format or 'ISO 8601'}") from None
    identifier = (row.get(m.id) or "").rstrip("/").rsplit("/", 1)[-1] if m.id else str(number)
    if not identifier:
        raise RowError("invalid event", f"the {m.id!r} column is empty")

    def metric(column: str | None) -> int:
        return count(row.get(column), column) if column else 0

    return make_post(
        id=identifier,
        text=row.get(m.text) or "",
        created_at=created if created.tzinfo else created.replace(tzinfo=UTC),
        platform=m.platform,
        author=(row.get(m.author) if m.author else None) or m.author_name,
        likes=metric(m.likes),
        reposts=metric(m.reposts),
        replies=metric(m.replies),
        impressions=metric(m.impressions) if m.impressions else None,
    )
