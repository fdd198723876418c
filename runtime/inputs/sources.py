"""Which format a source is in, and its lines in batches for the Ingestor."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio

from runtime.config import CsvMapping
from runtime.errors import InputError
from runtime.inputs import csv_mapped, json_document, x_analytics, x_archive
from runtime.inputs.common import lines
from runtime.inputs.lines import Line, Source, line_batches, read_batches
from runtime.records import InputFormat

log = logging.getLogger(__name__)


def decode(data: bytes, name: str, encoding: str | None) -> str:
    """A text source's content: in `encoding` if given, else UTF-8, else (with a warning) cp1252."""
    if encoding:
        return data.decode(encoding, errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        log.warning("%s is not UTF-8; reading it as cp1252 (set the encoding in the CSV mapping if wrong)", name)
        return data.decode("cp1252", errors="replace")


def detect(path: Path, mapping: CsvMapping) -> InputFormat:
    """The format of `path`, told from its content (an unpacked X archive is a folder); see `detect_head`."""
    if path.is_dir():
        return "x-archive"
    return detect_head(decode_head(path), str(path), mapping)


def detect_head(head: str, name: str, mapping: CsvMapping) -> InputFormat:
    """The format of the source `name` that starts with `head` (its first line at least).

    A CSV that is neither an X export nor matches the mapping cannot be read: `InputError`.
    Anything else that is not recognised (binary data, a text file) is read as JSON Lines.
    """
    if x_archive.looks_like(head):
        return "x-archive"
    if head.lstrip().startswith(("{", "[")) or not head.strip():
        return "jsonl"  # JSON Lines, or one JSON document of posts (read by `batches` alike)
    if x_analytics.looks_like(head):
        return "x-analytics"
    if csv_mapped.looks_like(head, mapping):
        return "csv"
    first = head.splitlines()[0][:120] if head else ""
    if "," not in first or not first.isprintable():
        return "jsonl"  # not a CSV: read line by line, so each bad line is kept with its reason
    raise InputError(
        f"{name}: cannot tell its format (first line: {first!r}); give --format, and for a CSV the column "
        "mapping (--csv text=COLUMN,time=COLUMN,...)"
    )


def missing(source: str) -> str | None:
    """Why `source` (a path, or `-` for stdin) cannot be opened at all, or None."""
    if source == "-":
        return None
    try:
        os.stat(source)
    except FileNotFoundError:
        return f"no such input file: {source}"
    except OSError as exc:  # a loop of links (ELOOP), a folder that may not be entered
        return f"cannot open {source}: {exc.strerror}"
    return None


def is_stream(path: Path) -> bool:
    """Whether `path` is a pipe, FIFO or device: readable once, so not to be looked into beforehand."""
    try:
        return not (path.is_file() or path.is_dir()) and path.exists()
    except OSError:
        return False


def expand(sources: list[str]) -> list[str]:
    """`sources` with each folder that is not an unpacked X archive replaced by the files in it
    (sorted, hidden ones left out): a folder of monthly analytics exports is read file by file."""
    expanded: list[str] = []
    for source in sources:
        path = Path(source)
        files = []
        if path.is_dir() and not x_archive.is_archive(path):
            files = sorted(str(p) for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        expanded += files or [source]  # an empty folder stays, for `check` to refuse
    return expanded


def check(path: Path, fmt: InputFormat, mapping: CsvMapping) -> InputFormat:
    """The format `path` will be read as, after checking that it can be; raises `InputError` saying
    why not. A stream (a pipe, `<(...)`) is left unread: its format is told as it is read."""
    if is_stream(path):
        return fmt
    kind = detect(path, mapping) if fmt == "auto" else fmt
    if kind == "x-archive" and path.is_dir():
        x_archive.archive_files(path)
    elif kind == "csv" and (problem := csv_mapped.missing_columns(csv_mapped.header(decode_head(path)), mapping)):
        raise InputError(f"{path}: {problem}")
    return kind


def _head_of(path: Path) -> str | None:
    """The start of the file `path`; None for a folder (an unpacked X archive)."""
    return None if path.is_dir() else decode_head(path)


def decode_head(path: Path) -> str:
    with open(path, "rb") as file:
        return file.read(4096).decode("utf-8", errors="replace")


def convert(path: Path, fmt: InputFormat, mapping: CsvMapping) -> list[Line]:
    """Every input line of a non-JSON-Lines file or unpacked X archive."""
    if fmt == "x-archive":
        if path.is_dir():
            files, author = x_archive.archive_files(path)
        else:
            files, author = [path], "me"
            sibling = path.parent / "account.js"
            if sibling.is_file():
                author = x_archive.archive_files(path.parent)[1]
        return [line for file in files for line in lines(x_archive.rows(file.read_text("utf-8", "replace"), author))]
    return convert_text(path.read_bytes(), str(path), fmt, mapping)


def convert_text(data: bytes, name: str, fmt: InputFormat, mapping: CsvMapping) -> list[Line]:
    """Every input line of the CSV, X Analytics export or X archive file `data`, read from `name`."""
    if fmt == "x-archive":
        return list(lines(x_archive.rows(data.decode("utf-8", "replace"), "me")))
    if fmt == "x-analytics":
        return list(lines(x_analytics.rows(decode(data, name, None))))
    return list(lines(csv_mapped.rows(decode(data, name, mapping.encoding), mapping)))


async def batches(
    source: str, fmt: InputFormat, mapping: CsvMapping, max_line_bytes: int, max_lines: int, max_nesting: int = 32
) -> AsyncIterator[list[Line]]:
    """Batches of input lines from `source` (a path, or `-` for stdin). A JSON file that is one
    document of posts (an array, or an object with a `posts` array) gives a line per post.

    A pipe (stdin, a FIFO, `<(...)`) is read once: its format is told from its first line, and
    the reading goes on from there."""
    path = Path(source)
    if source == "-" or is_stream(path):
        opened = await Source.open(source)
        try:
            async for batch in _stream_batches(opened, fmt, mapping, max_line_bytes, max_lines, max_nesting):
                yield batch
        finally:
            opened.close()
        return
    head = await anyio.to_thread.run_sync(_head_of, path)  # read once: the format, and whether one document
    kind = (detect_head(head, source, mapping) if head is not None else "x-archive") if fmt == "auto" else fmt
    document = kind == "jsonl" and head is not None and json_document.looks_like(head)
    if kind == "jsonl" and not document:
        async for batch in read_batches(source, max_line_bytes, max_lines):
            yield batch
        return
    log.info("reading %s as %s", source, "a JSON document" if document else kind)
    if document:
        data = await anyio.to_thread.run_sync(_read_document, path)
        converted = await anyio.to_thread.run_sync(json_document.lines, data, source, max_nesting)
    else:
        converted = await anyio.to_thread.run_sync(convert, path, kind, mapping)
    for batch in _chunks(converted, max_lines):
        yield batch


async def _stream_batches(
    source: Source, fmt: InputFormat, mapping: CsvMapping, max_line_bytes: int, max_lines: int, max_nesting: int
) -> AsyncIterator[list[Line]]:
    head = await source.head()
    text = head.decode("utf-8", errors="replace")
    kind = detect_head(text, source.name, mapping) if fmt == "auto" else fmt
    document = kind == "jsonl" and json_document.looks_like(text)
    if kind == "jsonl" and not document:
        async for batch in line_batches(source, head, max_line_bytes, max_lines):
            yield batch
        return
    log.info("reading %s as %s", source.name, "a JSON document" if document else kind)
    data = head + await source.rest(json_document.MAX_BYTES)
    if document:
        converted = await anyio.to_thread.run_sync(json_document.lines, data, source.name, max_nesting)
    elif len(data) > json_document.MAX_BYTES:
        raise InputError(f"{source.name}: over {json_document.MAX_BYTES >> 20} MB from a pipe; give a file instead")
    else:
        converted = await anyio.to_thread.run_sync(convert_text, data, source.name, kind, mapping)
    for batch in _chunks(converted, max_lines):
        yield batch


def _chunks(converted: list[Line], max_lines: int) -> Iterator[list[Line]]:
    """The lines of a converted source, `max_lines` at a time."""
    for start in range(0, len(converted), max_lines):
        yield converted[start : start + max_lines]


def _read_document(path: Path) -> bytes:
    with open(path, "rb") as file:
        return file.read(json_document.MAX_BYTES + 1)
