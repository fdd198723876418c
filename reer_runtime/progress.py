"""Progress of a run: a bar on a terminal, a plain log line every few seconds otherwise."""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable

import anyio
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from actors.ingestor import Ingestor
from actors.trace_writer import TraceWriter

log = logging.getLogger(__name__)


class Progress:
    """Reports lines read, posts accepted and rejected, posts mined of those to mine, the rate and time left;
    with `decode_batch`, the requests a local model decodes together on average (how much mining overlaps)."""

    def __init__(
        self,
        ingestor: Ingestor,
        trace_writer: TraceWriter,
        interval_s: float,
        terminal: bool | None = None,
        decode_batch: Callable[[], float | None] = lambda: None,
    ) -> None:
        self._ingestor = ingestor
        self._trace_writer = trace_writer
        self._decode_batch = decode_batch
        self._interval_s = interval_s
        self._terminal = sys.stderr.isatty() if terminal is None else terminal
        self._started = time.monotonic()

    def line(self) -> str:
        c = self._ingestor.counts
        done, total = self._trace_writer.mined + self._trace_writer.failed, c.selected + c.resumed
        rate = done / max(1e-9, time.monotonic() - self._started)
        if total <= done:
            left = "nothing queued"
        else:
            left = f"about {(total - done) / rate:.0f}s left" if rate else "time left not known yet"
        return (
            f"progress: {c.lines} lines read, {c.accepted} accepted, {c.rejected} rejected; "
            f"{self._trace_writer.mined} of {total} mined ({self._trace_writer.failed} failed), "
            f"{rate * 60:.1f} posts/min, "
            f"{left}{self._batch()}"
        )

    def _batch(self) -> str:
        batch = self._decode_batch()
        return f"; decode batch {batch:.1f}" if batch is not None else ""

    async def run(self) -> None:
        """Report until cancelled."""
        if not self._terminal:
            while True:
                await anyio.sleep(self._interval_s)
                log.info("%s", self.line())
        size = shutil.get_terminal_size()  # $COLUMNS/$LINES, the terminal's, or 80x24 if it says 0
        bar = tqdm(total=0, unit="post", desc="mining", file=sys.stderr, ncols=size.columns, nrows=size.lines)

        def update() -> None:
            c = self._ingestor.counts
            bar.total = c.selected + c.resumed
            bar.n = self._trace_writer.mined + self._trace_writer.failed
            failed = self._trace_writer.failed
            bar.set_postfix_str(f"{c.lines} read, {c.rejected} rejected, {failed} failed{self._batch()}", refresh=False)
            bar.refresh()

        with logging_redirect_tqdm(), bar:  # log lines print above the bar
            try:
                while True:
                    await anyio.sleep(0.5)
                    update()
            finally:
                update()  # the final counts, drawn before the bar closes
