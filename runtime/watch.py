"""`start --watch DIR`: files dropped into a folder are read once each, recorded, and moved aside."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio

from runtime.errors import InputError
from runtime.records import Watched
from runtime.store import JsonlStore, file_sha256

log = logging.getLogger(__name__)

DONE, FAILED = "done", "failed"


class Watcher:
    """Polls `folder` every `poll_s` seconds for files (not hidden, not in `done/` or `failed/`).

    A file is taken once its size and modification time have held still for `settle_s` seconds
    (so a file still being written, even by a writer that pauses, is left alone), and at the next
    poll when it was last modified longer ago than that. A writer that cannot pause for so little
    writes under a hidden name and renames the file when done (the usual convention for drop
    folders: hidden names are never read). Only regular files are read:
    a link, a FIFO or a device is moved to `failed/` unread. Its content hash is checked against
    `watched.jsonl`: a file read before (a restart
    after a crash between reading and moving, or the same export dropped again) is only moved
    aside. Otherwise `check` (may raise `ValueError`: the file goes to `failed/`) and `ingest` run,
    the file is recorded, then moved to `done/`.
    """

    def __init__(
        self,
        folder: Path,
        ledger: JsonlStore[Watched],
        check: Callable[[Path], object],
        ingest: Callable[[str], Awaitable[None]],
        poll_s: float = 1.0,
        settle_s: float = 5.0,
    ) -> None:
        self.folder = folder
        self._ledger = ledger
        self._check = check
        self._ingest = ingest
        self._poll_s = poll_s
        self._settle_s = settle_s
        self._seen = {w.sha256 for w in ledger.read()}
        self._changes: dict[Path, tuple[tuple[int, int], float]] = {}  # (size, mtime), and since when

    async def run(self, until_idle: bool) -> None:
        """Take files as they come; with `until_idle`, return once the folder holds none."""
        for sub in (DONE, FAILED):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        log.info("watching %s for new files", self.folder)
        while True:
            waiting, unsafe = await anyio.to_thread.run_sync(self._files)
            for path, kind in unsafe:
                await self._refuse(path, kind)
            now = time.time()
            for path, (size, mtime) in waiting.items():
                seen, since = self._changes.get(path, (None, now))
                if seen == (size, mtime) and now - min(since, mtime / 1e9) >= self._settle_s:
                    await self._ingest_file(path, size)
                    del self._changes[path]
                elif seen != (size, mtime):
                    self._changes[path] = ((size, mtime), now)
            if until_idle and not waiting and not unsafe:
                return
            await anyio.sleep(self._poll_s)

    def _files(self) -> tuple[dict[Path, tuple[int, int]], list[tuple[Path, str]]]:
        """The regular files waiting, with (size, mtime); any other entry (a link, a FIFO), with what it is."""
        files: dict[Path, tuple[int, int]] = {}
        unsafe: list[tuple[Path, str]] = []
        for path in sorted(self.folder.iterdir()):
            if path.name.startswith(".") or path.name in (DONE, FAILED):
                continue
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                files[path] = (info.st_size, info.st_mtime_ns)
            elif not stat.S_ISDIR(info.st_mode):
                unsafe.append((path, "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"))
        return files, unsafe

    async def _refuse(self, path: Path, kind: str) -> None:
        """Move a link, FIFO or device aside unread, with the reason recorded."""
        error = f"{kind}: only regular files dropped into the folder are read"
        log.error("not reading %s: %s; moving it to %s/", path.name, error, FAILED)
        digest = hashlib.sha256(os.fsencode(path.name)).hexdigest()
        moved = self._move(path, FAILED)
        await self._record(path, digest, 0, moved, error)

    async def _ingest_file(self, path: Path, size: int) -> None:
        digest = await anyio.to_thread.run_sync(file_sha256, path)
        if digest in self._seen:
            log.info("%s was read before (same content); moving it aside", path.name)
            self._move(path, DONE)
            return
        error = None
        try:
            self._check(path)
        except (ValueError, InputError) as exc:
            error = str(exc)
            log.error("cannot read %s: %s; moving it to %s/", path.name, error, FAILED)
        else:
            await self._ingest(str(path))
        await self._record(path, digest, size, self.folder / (FAILED if error else DONE) / path.name, error)
        self._seen.add(digest)
        self._move(path, FAILED if error else DONE)

    async def _record(self, path: Path, digest: str, size: int, moved: Path, error: str | None) -> None:
        """Say in `watched.jsonl` what became of the file `path`."""
        record = Watched(
            name=path.name, sha256=digest, bytes=size, moved_to=str(moved), error=error, processed_at=datetime.now(UTC)
        )
        await self._ledger.append(record)

    def _move(self, path: Path, sub: str) -> Path:
        target = self.folder / sub / path.name
        stem, number = target, 1
        while os.path.lexists(target):  # keep both when a name comes twice
            number += 1
            target = stem.with_name(f"{stem.stem}.{number}{stem.suffix}")
        path.replace(target)
        return target
