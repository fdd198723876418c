"""Drafts as `generate` shows them: on standard output or in `--output FILE`, as text or JSON lines."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

import msgspec

from runtime.records import Draft
from runtime.terminal import printable


def printer(out: IO[str], *, as_json: bool) -> Callable[[Draft], None]:
    """A function that writes each draft kept to `out`: a header line then its posts separated by
    `---`, or (`as_json`) one JSON line, its `drafts.jsonl` record."""

    def show(draft: Draft) -> None:
        if as_json:
            out.write(msgspec.json.encode(draft).decode() + "\n")
        else:
            score = (
                f"likeness to your best post {draft.score:.2f}, from 0 to 1, higher is better"
                if draft.score is not None
                else f"no score: {draft.score_missing}"
            )
            verdict = f"REJECTED: {draft.rejected_reason}" if draft.rejected_reason else score
            out.write(printable(f"=== draft {draft.draft_id} (program v{draft.program_version}, {verdict})") + "\n")
            out.write(printable("\n---\n".join(draft.parts) if draft.parts else "(empty)", newlines=True) + "\n")
        out.flush()

    return show
