"""Reading input lines from files and stdin, in batches, with a cap on line size.

A batch ends at the end of a source, after `max_lines` lines, or when a pipe has no complete
line waiting (so a daemon fed slowly on stdin handles each burst as it comes).
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import msgspec

from runtime.errors import UsageError
from runtime.records import InputEvent, Rejection

CHUNK = 1 << 20
_decoder = msgspec.json.Decoder(InputEvent)
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")


@dataclass(frozen=True)
class Line:
    """One input line: its 1-based number, its bytes (cut at the cap) and whether it was cut.

    An importer's row that could not become an event carries its raw text and the `rejection`.
    """

    number: int
    data: bytes
    too_long: bool = False
    rejection: Rejection | None = None


class LineSplitter:
    """Turns chunks of bytes into `Line`s, cutting any line longer than `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._partial = bytearray()
        self._too_long = False
        self._number = 0

    def feed(self, chunk: bytes) -> list[Line]:
        lines = []
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            self._append(chunk[start:end])
            lines.append(self._emit())
            start = end + 1
        self._append(chunk[start:])
        return lines

    def finish(self) -> list[Line]:
        """The last line, if the input did not end with a newline."""
        return [self._emit()] if self._partial or self._too_long else []

    def _append(self, data: bytes) -> None:
        room = self.max_bytes - len(self._partial)
        if len(data) > room:
            self._too_long = True
            data = data[: max(room, 0)]
        self._partial += data

    def _emit(self) -> Line:
        self._number += 1
        line = Line(self._number, bytes(self._partial).removesuffix(b"\r"), self._too_long)
        self._partial.clear()
        self._too_long = False
        return line


class Source:
    """An input opened once, as a file descriptor: a path (a file, a FIFO, `<(...)`) or `-` for stdin.

    A pipe can be read only once, so its format is told from the head it starts with, and the
    lines are read on from there (`head`, then the rest)."""

    def __init__(self, fd: int, name: str, *, owned: bool) -> None:
        self.fd, self.name, self._owned = fd, name, owned
        self.stream = not stat.S_ISREG(os.fstat(fd).st_mode)

    @classmethod
    async def open(cls, source: str) -> Source:
        """`source` opened for reading; a FIFO waits here for its writer, in a worker thread."""
        if source == "-":
            return cls(sys.stdin.fileno(), "stdin", owned=False)
        return cls(await anyio.to_thread.run_sync(os.open, source, os.O_RDONLY), source, owned=True)

    async def head(self, size: int = 4096) -> bytes:
        """The bytes up to the end of the first line (at most `size`), or fewer at the end of input."""

        def read() -> bytes:
            data = b""
            while b"\n" not in data and len(data) < size and (chunk := os.read(self.fd, size - len(data))):
                data += chunk
            return data

        return await anyio.to_thread.run_sync(read)

    async def rest(self, limit: int) -> bytes:
        """All that is left to read, up to `limit` bytes (`limit + 1` read, so the caller sees more)."""

        def read() -> bytes:
            parts: list[bytes] = []
            total = 0
            while total <= limit and (chunk := os.read(self.fd, min(CHUNK, limit + 1 - total))):
                parts.append(chunk)
                total += len(chunk)
            return b"".join(parts)

        return await anyio.to_thread.run_sync(read)

    def close(self) -> None:
        if self._owned:
            os.close(self.fd)


async def read_batches(source: str, max_line_bytes: int, max_lines: int) -> AsyncIterator[list[Line]]:
    """Batches of lines from `source`, a path or `-` for stdin."""
    opened = await Source.open(source)
    try:
        async for batch in line_batches(opened, b"", max_line_bytes, max_lines):
            yield batch
    finally:
        opened.close()


async def line_batches(source: Source, head: bytes, max_line_bytes: int, max_lines: int) -> AsyncIterator[list[Line]]:
    """Batches of lines from an open `source` whose first bytes, `head`, were read already."""
    splitter = LineSplitter(max_line_bytes)
    batch: list[Line] = splitter.feed(head)
    fd, pollable = source.fd, source.stream
    if pollable:
        os.set_blocking(fd, False)
    try:
        while True:
            try:
                chunk = os.read(fd, CHUNK) if pollable else await anyio.to_thread.run_sync(os.read, fd, CHUNK)
            except BlockingIOError:
                if batch:
                    yield batch
                    batch = []
                await anyio.wait_readable(fd)
                continue
            if not chunk:
                break
            for line in splitter.feed(chunk):
                batch.append(line)
                if len(batch) >= max_lines:
                    yield batch
                    batch = []
        batch.extend(splitter.finish())
        if batch:
            yield batch
    finally:
        if pollable:
            os.set_blocking(fd, True)  # stdin's file description is shared with the parent


def read_text_file(path: Path, what: str, max_bytes: int = 1_000_000) -> str:
    """A whole UTF-8 text file named on the command line (`what` names the flag in errors): a regular
    file, at most `max_bytes` long. A pipe or device is refused without blocking on it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise UsageError(f"{what}: cannot open {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"{what}: {path} is not a regular file")
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UsageError(f"{what}: {path} is over {max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what}: {path} is not UTF-8 text (byte {exc.start})") from None


def nesting_depth(data: bytes) -> int:
    """How deeply the arrays and objects of a JSON text nest (brackets inside strings do not count)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub(b"", data)):
        depth += 1 if bracket in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


def parse_line(data: bytes, max_nesting: int = 32) -> InputEvent | Rejection:
    """The event on one line, or why it is not one."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection("not UTF-8", f"byte {exc.start} ({data[exc.start : exc.start + 1]!r}) {exc.reason}")
    if (depth := nesting_depth(data)) > max_nesting:
        return Rejection("too deeply nested", f"{depth} levels, over max_nesting ({max_nesting})")
    try:
        event: InputEvent = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        return Rejection("invalid event", str(exc))
    except msgspec.DecodeError as exc:
        return Rejection("invalid JSON", str(exc))
    except RecursionError:
        return Rejection("invalid JSON", "nested too deeply to read")
    return event
