"""The files of a data dir (`Stores`), and the one owner of what is finished (`Ledger`).

Which posts are mined or failed, and which requests have come to an end, is read from the stores
once at start and kept up to date as traces are written. The TraceWriter and the Miner ask the
ledger whether a post is mined; the start-up asks it which accepted posts and journaled requests to
pass on again, so a restart finishes what was accepted and repeats nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec

from runtime.records import Accepted, DeadLetter, Draft, Failure, Rejected, Requested, Trace, Watched
from runtime.store import JsonlStore
from runtime.writer.programs import Programs


@dataclass
class Stores:
    """The files of a data dir."""

    posts: JsonlStore[Accepted]
    rejected: JsonlStore[Rejected]
    traces: JsonlStore[Trace]
    failures: JsonlStore[Failure]
    dead_letters: JsonlStore[DeadLetter]
    drafts: JsonlStore[Draft]
    watched: JsonlStore[Watched]
    requests: JsonlStore[Requested]
    programs: Programs

    @classmethod
    def at(cls, data_dir: Path, traces: Path | None = None) -> Stores:
        """The stores of `data_dir`, with the trace store at `traces` if it is elsewhere."""
        return cls(
            posts=JsonlStore(data_dir / "posts.jsonl", Accepted),
            rejected=JsonlStore(data_dir / "rejected.jsonl", Rejected),
            traces=JsonlStore(traces or data_dir / "traces.jsonl", Trace),
            failures=JsonlStore(data_dir / "failed.jsonl", Failure),
            dead_letters=JsonlStore(data_dir / "dead-letters.jsonl", DeadLetter),
            drafts=JsonlStore(data_dir / "drafts.jsonl", Draft),
            watched=JsonlStore(data_dir / "watched.jsonl", Watched),
            requests=JsonlStore(data_dir / "requests.jsonl", Requested),
            programs=Programs(data_dir / "programs"),
        )

    def all(self) -> list[JsonlStore[object]]:
        stores = [self.posts, self.rejected, self.traces, self.failures, self.dead_letters, self.drafts, self.watched]
        return [*stores, self.requests, self.programs.index]  # type: ignore[list-item]


class Ledger:
    """What is finished: the posts with a trace, the posts whose mining failed (unless they are to
    be retried), and the requests that came to an end. Read from `stores`, which must be open."""

    def __init__(self, stores: Stores, *, retry_failed: bool = False) -> None:
        self._stores = stores
        self._mined = {t.post.key for t in stores.traces.read()}
        failed = {f.post.key for f in stores.failures.read()}
        self._failed = set() if retry_failed else failed
        self._failed_before = failed if retry_failed else set()

    @property
    def mined(self) -> int:
        """How many posts have a trace."""
        return len(self._mined)

    def is_mined(self, key: str) -> bool:
        """Whether the post `key` has a trace (a second one is not mined or written)."""
        return key in self._mined

    def record_mined(self, key: str) -> None:
        """The post `key`'s trace is in the store."""
        self._mined.add(key)

    def record_failed(self, key: str) -> None:
        """The post `key`'s failure is in the store."""
        self._failed.add(key)

    def is_settled(self, key: str) -> bool:
        """Whether the post `key` has a trace or a failure recorded in this run's terms."""
        return key in self._mined or key in self._failed

    def retried_posts(self) -> set[str]:
        """Keys of the posts that failed before and are to be mined again (`retry_failed_on_start`)."""
        return self._failed_before

    def finished_posts(self) -> set[str]:
        """Keys of the posts not to announce again at start: mined, or failed and not to be retried."""
        return self._mined | self._failed

    def settled_requests(self) -> set[str]:
        """Ids of the journaled requests that came to an end: drafts written, a program compiled, or
        the request dead-lettered (refused or failed, kept with the reason)."""
        ids = {d.request_id for d in self._stores.drafts.read()}
        ids |= {p.request_id for p in self._stores.programs.records() if p.request_id}
        return ids | set(self.failed_requests())

    def failed_requests(self) -> dict[str, str]:
        """The journaled requests that were dead-lettered (refused or failed), each with why (the
        error without the name of the actor that raised it)."""
        failed = {}
        for letter in self._stores.dead_letters.read():
            if request_id := letter.request_id or _request_id(letter):
                failed[request_id] = letter.error.split(": ", 1)[-1]
        return failed


def _request_id(letter: DeadLetter) -> str | None:
    """The request id in a dead letter written before dead letters carried it: in the body of a
    message on a `*.requested` topic (`generate.requested`, `optimize.requested`)."""
    if not letter.topic.endswith(".requested"):
        return None
    body = msgspec.json.decode(letter.message).get("body") or {}
    return body.get("request_id") if isinstance(body, dict) else None
