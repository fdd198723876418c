"""Files of the data dir, opened without following links and private to their owner.

A link planted at a store's path (`failed.jsonl` -> `~/.bashrc`) would make the daemon append to,
truncate or overwrite a file outside the data dir: every file here is opened with `O_NOFOLLOW`,
and created 0600 (0700 for folders) whatever the umask.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import tempfile
from pathlib import Path

from runtime.errors import StoreError

log = logging.getLogger(__name__)

PRIVATE = 0o600


def link_refused(path: Path) -> StoreError:
    """The error for a symbolic link found where the data dir writes."""
    return StoreError(f"{path} is a symbolic link: refusing to write through it; remove it")


def open_private(path: Path, flags: int) -> int:
    """`os.open(path, flags)` that refuses a symbolic link at `path`, creating it 0600."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise link_refused(path) from None
        raise


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data` at once (a link there is replaced, not followed), 0600, fsynced."""
    make_private_dir(path.parent)
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600, O_EXCL
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def make_private_dir(path: Path) -> None:
    """Create the folder `path` 0700 (and its parents) if missing; refuse one that is a link."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.is_symlink():
        raise link_refused(path)


def warn_if_shared(data_dir: Path) -> None:
    """Say so when others may read the data dir (one made before, with a loose umask)."""
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "%s is readable by others (mode %o): posts, traces and drafts are kept there; chmod 700 %s",
            data_dir,
            mode,
            data_dir,
        )
