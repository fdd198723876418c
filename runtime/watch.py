"""`start --watch DIR`: files dropped into a folder are read once each, recorded, and moved aside."""

from __future__ import annotations

import logging
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

    A file is taken once its size has held still for one poll (so a file still being copied is
    left alone). Its content hash is checked against `watched.jsonl`: a file read before (a restart
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
    ) -> None:
        self.folder = folder
        self._ledger = ledger
        self._check = check
        self._ingest = ingest
        self._poll_s = poll_s
        self._seen = {w.sha256 for w in ledger.read()}
        self._sizes: dict[Path, int] = {}

    async def run(self, until_idle: bool) -> None:
        """Take files as they come; with `until_idle`, return once the folder holds none."""
        for sub in (DONE, FAILED):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        log.info("watching %s for new files", self.folder)
        while True:
            waiting = await anyio.to_thread.run_sync(self._files)
            for path, size in waiting:
                if self._sizes.get(path) == size:
                    await self._ingest_file(path, size)
                    del self._sizes[path]
                else:
                    self._sizes[path] = size
            if until_idle and not waiting:
                return
            await anyio.sleep(self._poll_s)

    def _files(self) -> list[tuple[Path, int]]:
        files = sorted(p for p in self.folder.iterdir() if p.is_file() and not p.name.startswith("."))
        return [(p, p.stat().st_size) for p in files]

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
        moved = self.folder / (FAILED if error else DONE) / path.name
        record = Watched(
            name=path.name, sha256=digest, bytes=size, moved_to=str(moved), error=error, processed_at=datetime.now(UTC)
        )
        await self._ledger.append(record)
        self._seen.add(digest)
        self._move(path, FAILED if error else DONE)

    def _move(self, path: Path, sub: str) -> None:
        target = self.folder / sub / path.name
        stem, number = target, 1
        while target.exists():  # keep both when a name comes twice
            number += 1
            target = stem.with_name(f"{stem.stem}.{number}{stem.suffix}")
        path.replace(target)
