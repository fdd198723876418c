"""Start-up, the run, and shutdown of `reer-runtime start`."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import msgspec
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from actors.base import Consumer
from actors.generator import GeneratorActor, print_draft
from actors.ingestor import Ingestor
from actors.limiter import Limiter
from actors.miner import Miner
from actors.optimizer import AutoOptimize, OptimizerActor
from actors.trace_writer import TraceWriter
from bus.bus import Bus
from bus.messages import GENERATE_REQUESTED, OPTIMIZE_REQUESTED
from bus.records import (
    Accepted,
    DeadLetter,
    Draft,
    Failure,
    GenerateEvent,
    OptimizeEvent,
    Rejected,
    Requested,
    Trace,
    Watched,
)
from runtime import metrics
from runtime.config import DEFAULT_MODEL, Settings
from runtime.errors import CrashLoopError, ExitCode, ReerError, StoreFullError
from runtime.imports.sources import batches, check
from runtime.progress import Progress
from runtime.providers import Provider, open_provider
from runtime.providers.calls import Role
from runtime.stats import write_snapshot
from runtime.store import JsonlStore
from runtime.watch import Watcher
from runtime.writer.programs import Programs

log = logging.getLogger(__name__)


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
    def at(cls, data_dir: Path) -> Stores:
        return cls(
            posts=JsonlStore(data_dir / "posts.jsonl", Accepted),
            rejected=JsonlStore(data_dir / "rejected.jsonl", Rejected),
            traces=JsonlStore(data_dir / "traces.jsonl", Trace),
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

    def settled_requests(self) -> set[str]:
        """Ids of the journaled requests that came to an end: drafts written, a program compiled, or
        the request dead-lettered (refused or failed, kept with the reason)."""
        ids = {d.request_id for d in self.drafts.read()}
        ids |= {p.request_id for p in self.programs.records() if p.request_id}
        for letter in self.dead_letters.read():
            if letter.topic in (GENERATE_REQUESTED.name, OPTIMIZE_REQUESTED.name):
                ids.add(msgspec.json.decode(letter.message, type=_Journaled).body.request_id or "")
        return ids - {""}


class _Journaled(msgspec.Struct):
    """The part of a dead-lettered request's envelope that names it."""

    class Body(msgspec.Struct):
        request_id: str | None = None  # none for a compile `AutoOptimize` asked for

    body: Body


@dataclass
class Inputs:
    """What the daemon reads, in order: the sources, then the watched folder, then the requests."""

    sources: list[str]
    watcher: Watcher | None
    requests: list[GenerateEvent | OptimizeEvent]


def make_data_dir(path: Path) -> None:
    """Create the data dir readable by its owner only."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def open_chains(settings: Settings) -> dict[Role, list[Provider]]:
    """The provider chain of each role; a URI named in both roles is one provider."""
    opened: dict[str, Provider] = {}

    def chain(uris: list[str]) -> list[Provider]:
        return [opened[u] if u in opened else opened.setdefault(u, open_provider(u, settings.data_dir)) for u in uris]

    return {"generator": chain(settings.generator), "scorer": chain(settings.scorer)}


async def check_chains(chains: dict[Role, list[Provider]]) -> None:
    """Ask every provider whether it can serve its role, logging what each says.

    Raises `ProviderConfigError` for one that cannot, such as a chat API configured as a scorer.
    """
    for role, chain in chains.items():
        for provider in chain:
            log.info("%s %s: %s", role, provider.uri, await provider.check(role))


async def serve(
    settings: Settings,
    chains: dict[Role, list[Provider]],
    sources: list[str],
    *,
    exit_when_idle: bool,
    requests: list[GenerateEvent | OptimizeEvent] | None = None,
    watch: Path | None = None,
    stats_reader: InMemoryMetricReader | None = None,
    show_draft: Callable[[Draft], None] = print_draft,
) -> int:
    """Run the actors until the input is done (`exit_when_idle`) or a signal arrives; drain; exit code.

    `requests` (from `reer-runtime generate` and `optimize`) are handled after the input is read.
    With `watch`, files dropped into that folder are read as they come (`runtime/watch.py`).

    With `stats_reader`, a snapshot of the metrics goes to `<data-dir>/stats.json` every
    `stats_interval_s` and at the end.
    """
    make_data_dir(settings.data_dir)
    stores = Stores.at(settings.data_dir)
    log.info(
        "started: data dir %s, generator %s, scorer %s",
        settings.data_dir,
        ",".join(p.uri for p in chains["generator"]),
        ",".join(p.uri for p in chains["scorer"]),
    )
    providers = list({p.uri: p for chain in chains.values() for p in chain}.values())
    if any(p.uri == DEFAULT_MODEL for p in providers):
        log.warning(
            "%s is a small demonstration model (135M parameters): it runs the whole pipeline, but its plans "
            "are not strategies worth reading. Point --generator and --scorer at a larger model "
            "(README, 'Choosing models').",
            DEFAULT_MODEL,
        )
    async with AsyncExitStack() as stack:
        for store in stores.all():
            store.open()
            stack.callback(store.close)
        bus = Bus(settings.bus_buffer)
        metrics.observe_queue_depths(bus.queue_depths)
        for provider in providers:
            stack.push_async_callback(provider.aclose)
            if (cache := provider.describe().cache) is not None:
                metrics.observe_cache(f"{provider.uri} prefix", cache)
        writer = TraceWriter(bus, stores.dead_letters, stores.traces)
        miner = Miner(
            bus,
            stores.dead_letters,
            stores.failures,
            settings.search,
            concurrency=settings.miner_concurrency,
            max_consecutive_failures=settings.max_consecutive_failures,
            already_mined=writer.mined,
        )
        limiter = Limiter(bus, stores.dead_letters, chains, settings.limits)
        writers: list[Consumer[Any]] = [
            OptimizerActor(bus, stores.dead_letters, stores.traces, stores.programs, settings),
            GeneratorActor(
                bus, stores.dead_letters, stores.drafts, stores.traces, stores.programs, settings, show_draft
            ),
        ]
        if settings.writer.optimize_after:
            writers.append(AutoOptimize(bus, stores.dead_letters, settings.writer.optimize_after))
        ingestor = Ingestor(
            bus,
            stores.posts,
            stores.rejected,
            min_engagement=settings.min_engagement,
            min_author_posts=settings.min_author_posts,
            max_line_bytes=settings.max_line_bytes,
            batch_max_lines=settings.batch_max_lines,
            max_text_chars=settings.max_text_chars,
            max_nesting=settings.max_nesting,
            mine_all_kinds=settings.mine_reposts_and_replies,
            journal=stores.requests,
            read=partial(
                batches,
                fmt=settings.input_format,
                mapping=settings.csv,
                max_line_bytes=settings.max_line_bytes,
                max_lines=settings.batch_max_lines,
            ),
        )
        watcher = None
        if watch is not None:
            fits = partial(check, fmt=settings.input_format, mapping=settings.csv)
            watcher = Watcher(watch, stores.watched, fits, lambda source: ingestor.run([source]))
        stopped: ReerError | None = None
        try:
            async with anyio.create_task_group() as tg:
                if stats_reader is not None:
                    tg.start_soon(_write_stats, stats_reader, settings)
                tg.start_soon(Progress(ingestor, miner, settings.progress_interval_s).run)
                failed = set() if settings.retry_failed_on_start else {f.post.key for f in stores.failures.read()}
                finished = writer.mined | failed
                consumers: list[Consumer[Any]] = [limiter, miner, writer, *writers]
                inputs = Inputs(sources, watcher, requests or [])
                settled = stores.settled_requests()
                await _run(bus, ingestor, finished, settled, consumers, inputs, settings, exit_when_idle)
                tg.cancel_scope.cancel()
        except* (CrashLoopError, StoreFullError) as group:
            stopped = _first(group)
        finally:
            if stats_reader is not None:
                write_snapshot(stats_reader, settings.data_dir)
        if stopped is not None:
            log.error("stopping: %s", stopped)
            return stopped.exit_code
        counts = ingestor.counts
        log.info(
            "done: %d lines read, %d posts accepted, %d rejected, %d selected, %d traces in the store",
            counts.lines,
            counts.accepted,
            counts.rejected,
            counts.selected,
            len(writer.mined),
        )
    return ExitCode.OK


async def _run(
    bus: Bus,
    ingestor: Ingestor,
    finished: set[str],
    settled: set[str],
    consumers: list[Consumer[Any]],
    inputs: Inputs,
    settings: Settings,
    exit_when_idle: bool,
) -> None:
    stopping = anyio.Event()
    ingest_scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        for consumer in consumers:
            tg.start_soon(consumer.run)
        async with anyio.create_task_group() as watcher:
            watcher.start_soon(_watch_signals, stopping, ingest_scope)
            with ingest_scope:
                await ingestor.recover(finished)
                await ingestor.resume_requests(settled)
                await ingestor.run(inputs.sources)
                if inputs.watcher is not None:
                    await inputs.watcher.run(until_idle=exit_when_idle)
                for request in inputs.requests:
                    await ingestor.submit(request)
            if not exit_when_idle and not stopping.is_set():
                log.info("input consumed; running until SIGINT or SIGTERM")
                await stopping.wait()
            grace = settings.shutdown_grace_s if stopping.is_set() else float("inf")
            with anyio.move_on_after(grace) as drain:
                await bus.wait_idle()
            watcher.cancel_scope.cancel()
        if drain.cancelled_caught:
            log.warning("grace period of %gs over with %d deliveries unfinished; stopping", grace, bus.pending)
            tg.cancel_scope.cancel()
        bus.close()


def _first(group: BaseExceptionGroup[ReerError]) -> ReerError:
    """The first error of a (possibly nested) exception group: the one to report."""
    error: ReerError | BaseExceptionGroup[ReerError] = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


async def _write_stats(reader: InMemoryMetricReader, settings: Settings) -> None:
    while True:
        await anyio.sleep(settings.stats_interval_s)
        await anyio.to_thread.run_sync(write_snapshot, reader, settings.data_dir)


async def _watch_signals(stopping: anyio.Event, ingest_scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if stopping.is_set():
                log.error("second %s: exiting now", signal.Signals(signum).name)
                os._exit(ExitCode.INTERRUPTED)
            log.info("%s: no more input; finishing the work in flight", signal.Signals(signum).name)
            stopping.set()
            ingest_scope.cancel()
