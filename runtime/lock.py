"""One daemon per data dir: an exclusive lock on `<data-dir>/daemon.lock`, released by the OS on exit."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runtime.errors import DataDirLockedError
from runtime.files import open_private


@contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """Hold the data dir's lock for the block; raises `DataDirLockedError` if another process has it.

    Readers (`traces`, `stats`, `validate`) do not take it. A killed daemon's lock goes with it.
    """
    fd = open_private(data_dir / "daemon.lock", os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise DataDirLockedError(
                f"another reer-runtime daemon (pid {holder}) is using {data_dir}; stop it first, "
                "or give this one another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
