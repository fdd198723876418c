"""Append-only JSON Lines files: the trace store, the post ledger, rejected lines, dead letters.

A record is one line, written whole and fsynced before `append` returns, so once it returns the
record survives a crash. A crash mid-write can only leave a torn last line without its newline;
opening the file cuts that tail off (keeping the bytes in `<name>.torn`) and says so. A write that
fails (a full disk) is cut off at once, so the file holds whole records only, and raises.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Generic, TypeVar

import anyio
import msgspec

from runtime.errors import CorruptRecordError, StoreFullError
from runtime.files import make_private_dir, open_private, write_private

T = TypeVar("T")

log = logging.getLogger(__name__)


class JsonlStore(Generic[T]):
    """An append-only file of records of type `T`."""

    def __init__(self, path: Path, type_: type[T]) -> None:
        self.path = path
        self._decoder = msgspec.json.Decoder(type_)
        self._encoder = msgspec.json.Encoder()
        self._lock = anyio.Lock()
        self._file: BinaryIO | None = None
        self.repaired_bytes = 0

    def open(self) -> None:
        """Open for appending, repairing a torn last line first."""
        make_private_dir(self.path.parent)
        self.repaired_bytes = repair_torn_tail(self.path)
        fd = open_private(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        self._file = os.fdopen(fd, "ab", buffering=0)  # held for the store's lifetime

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    async def append(self, record: T) -> None:
        """Write one record and make it durable."""
        await self.append_many([record])

    async def append_many(self, records: Iterable[T]) -> None:
        """Write records in order with a single fsync. Each is first checked against its type's
        constraints (the same ones its JSON Schema states); an invalid record raises and nothing
        of the batch is written."""
        lines = [self._encoder.encode(r) for r in records]
        for line in lines:
            try:
                self._decoder.decode(line)
            except msgspec.ValidationError as exc:
                raise CorruptRecordError(f"refusing to write an invalid record to {self.path}: {exc}") from exc
        data = b"".join(line + b"\n" for line in lines)
        if data:
            async with self._lock:
                await anyio.to_thread.run_sync(self._write, data)

    def _write(self, data: bytes) -> None:
        if self._file is None:
            raise RuntimeError(f"store {self.path} is not open")
        fd = self._file.fileno()
        size = os.fstat(fd).st_size
        try:
            written = memoryview(data)
            while written:
                written = written[os.write(fd, written) :]
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # none of the batch, rather than a part of it
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreFullError(self.path, exc) from exc
            raise

    def count(self) -> int:
        """How many complete records the file holds (read, not decoded)."""
        return sum(1 for _ in read_lines(self.path))

    def read(self, start: int = 0) -> Iterator[T]:
        """Every complete record, in the order written, from record `start` on (those before it
        are not decoded). Raises `CorruptRecordError` on a bad line."""
        for number, line in enumerate(read_lines(self.path), start=1):
            if number <= start:
                continue
            try:
                yield self._decoder.decode(line)
            except msgspec.ValidationError as exc:
                raise CorruptRecordError(f"{self.path}:{number}: {exc}") from exc
            except msgspec.DecodeError as exc:
                raise CorruptRecordError(f"{self.path}:{number}: not valid JSON ({exc})") from exc

    def set_aside_corrupt(self) -> int:
        """Move every complete line that is not a valid record to `<name>.corrupt` (fsynced first),
        and rewrite the store with the rest, in order, at once. How many lines were moved. The
        store must not be open for appending (no daemon on the data dir)."""
        good: list[bytes] = []
        bad: list[bytes] = []
        for line in read_lines(self.path):
            try:
                self._decoder.decode(line)
            except (msgspec.ValidationError, msgspec.DecodeError):
                bad.append(line)
            else:
                good.append(line)
        if bad:
            corrupt = self.path.with_name(self.path.name + ".corrupt")
            with os.fdopen(open_private(corrupt, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab") as kept:
                kept.write(b"".join(line + b"\n" for line in bad))
                kept.flush()
                os.fsync(kept.fileno())
            write_private(self.path, b"".join(line + b"\n" for line in good))
        return len(bad)


def read_lines(path: Path) -> Iterator[bytes]:
    """The complete lines of a file, without the torn tail a crash may have left."""
    if not path.exists():
        return
    with os.fdopen(open_private(path, os.O_RDONLY), "rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                yield line[:-1]


def repair_torn_tail(path: Path) -> int:
    """Cut a last line that has no newline; returns how many bytes were moved to `<name>.torn`."""
    if not path.exists():
        return 0
    with os.fdopen(open_private(path, os.O_RDWR), "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        f.seek(0)
        data = f.read()
        keep = data.rfind(b"\n") + 1
        torn_fd = open_private(path.with_name(path.name + ".torn"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        with os.fdopen(torn_fd, "ab") as torn:
            torn.write(data[keep:] + b"\n")
            torn.flush()
            os.fsync(torn.fileno())
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    dropped = size - keep
    log.warning("repaired %s: cut a torn last record of %d bytes (kept in %s.torn)", path, dropped, path.name)
    return dropped


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with os.fdopen(open_private(path, os.O_RDONLY), "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
