"""Start-up, the run, and shutdown of `reer-runtime start`."""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from actors.base import Consumer, dead_letter
from actors.generator import GeneratorActor
from actors.ingestor import Ingestor
from actors.limiter import Limiter
from actors.miner import Miner
from actors.model_client import ModelClient
from actors.optimizer import OptimizerActor
from actors.trace_writer import TraceWriter
from bus.bus import Bus
from bus.cluster import CoordinatorRunningError, Lease, SharedSpacing, holder
from bus.jetstream import JetStreamOptions, JetStreamTransport, redacted
from bus.messages import (
    POSTS_OBSERVED,
    RESULTS,
    AnyMessage,
    DeadLettered,
    Envelope,
    MiningFailed,
    PostObserved,
)
from reer_runtime.progress import Progress
from reer_runtime.stats import decode_batch, write_snapshot
from runtime import metrics
from runtime.config import DEFAULT_MODEL, Settings
from runtime.errors import (
    CrashLoopError,
    ExitCode,
    ProviderConfigError,
    ProviderError,
    ReerError,
    StoreFullError,
    UsageError,
    first_error,
)
from runtime.files import warn_if_shared
from runtime.inputs.sources import batches, check
from runtime.ledger import Ledger, Stores
from runtime.providers import Provider, open_provider
from runtime.providers.calls import Role
from runtime.providers.gate import SpacingFactory, local_spacing
from runtime.records import Draft, Failure, GenerateEvent, OptimizeEvent
from runtime.watch import Watcher

log = logging.getLogger(__name__)


def make_data_dir(path: Path) -> None:
    """Create the data dir readable by its owner only; warn when one made before is not."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    warn_if_shared(path)


def open_chains(settings: Settings) -> dict[Role, list[Provider]]:
    """The provider chain of each role (a judge's only when one is configured); a URI named in two
    roles is one provider."""
    opened: dict[str, Provider] = {}

    def chain(uris: list[str]) -> list[Provider]:
        return [opened[u] if u in opened else opened.setdefault(u, open_provider(u, settings.data_dir)) for u in uris]

    chains: dict[Role, list[Provider]] = {"generator": chain(settings.generator), "scorer": chain(settings.scorer)}
    if settings.judge:
        chains["judge"] = chain(settings.judge)
    return chains


async def check_chains(chains: dict[Role, list[Provider]]) -> dict[Role, list[Provider]]:
    """Ask every provider whether it can serve its role, logging what each says; the chains of
    the providers that can.

    A provider that cannot (a server that does not answer, a chat API configured as a scorer) is
    left out of its chain with a warning, and the chain starts on the next one. A chain left with
    none raises the first provider's `ProviderConfigError`.
    """
    checked: dict[Role, list[Provider]] = {}
    for role, chain in chains.items():
        errors: list[ProviderConfigError] = []
        checked[role] = []
        for provider in chain:
            try:
                log.info("%s %s: %s", role, provider.uri, await provider.check(role))
            except (ProviderConfigError, ProviderError) as exc:
                errors.append(exc if isinstance(exc, ProviderConfigError) else ProviderConfigError(str(exc)))
                continue
            checked[role].append(provider)
        if not checked[role]:
            raise errors[0]
        for error in errors:
            log.warning("%s chain: left out, starting on the next provider: %s", role, error)
    used = {id(p) for chain in checked.values() for p in chain}
    for dropped in {id(p): p for chain in chains.values() for p in chain if id(p) not in used}.values():
        await dropped.aclose()
    return checked


@dataclass
class Actors:
    """The actors of one run, built over the data dir's stores and the ledger."""

    ingestor: Ingestor
    trace_writer: TraceWriter
    consumers: list[Consumer[Any]]
    """Every actor that consumes from the bus: the Limiter, the Miner, the TraceWriter and the writing actors."""
    watcher: Watcher | None


def build_actors(
    settings: Settings,
    chains: dict[Role, list[Provider]],
    stores: Stores,
    ledger: Ledger,
    bus: Bus,
    watch: Path | None,
    show_draft: Callable[[Draft], None] | None,
    spacing: SpacingFactory = local_spacing,
) -> Actors:
    """The Ingestor, the Limiter, the Miner (unless `bus.mine_here` is off), the TraceWriter, the
    Optimizer and Generator and the folder watcher, wired to `bus`."""
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
            max_nesting=settings.max_nesting,
        ),
    )
    writer = TraceWriter(
        bus,
        stores.dead_letters,
        stores.traces,
        stores.failures,
        ledger,
        ingestor.accepted,
        settings.writer.optimize_after,
    )
    consumers: list[Consumer[Any]] = [
        Limiter(bus, stores.dead_letters, chains, settings.limits, spacing=spacing),
        writer,
        OptimizerActor(bus, stores.dead_letters, stores.traces, stores.programs, settings),
        GeneratorActor(bus, stores.dead_letters, stores.drafts, stores.traces, stores.programs, settings, show_draft),
    ]
    if settings.bus.mine_here:
        miner = Miner(
            bus,
            stores.dead_letters,
            settings.search,
            concurrency=settings.mining_concurrency(chains["generator"][0].capacity),
            max_consecutive_failures=settings.max_consecutive_failures,
            ledger=ledger,
            judged="judge" in chains,
        )
        consumers.insert(1, miner)
    watcher = None
    if watch is not None:
        fits = partial(check, fmt=settings.input_format, mapping=settings.csv)
        watcher = Watcher(
            watch, stores.watched, fits, lambda source: ingestor.run([source]), settle_s=settings.watch_settle_s
        )
    return Actors(ingestor, writer, consumers, watcher)


class Pipeline:
    """The daemon's running parts over one data dir: its stores, the bus (and, on NATS, the
    coordinator's lease), the actors and their background tasks. `reer-runtime start` and the
    Python API (`reer_runtime.Runtime`) both run it.

    Entering opens the stores and starts the consumers; `resume` passes on again what the ledger
    says an earlier run left unfinished; input goes to `ingestor`; `drain` waits until the work is
    done and closes the bus. Leaving without a drain (an error, a cancelled caller) stops the actors
    at once: what they held is handed back and finished by the next run, as after a kill. With
    `stats_reader`, `<data-dir>/stats.json` is rewritten every `stats_interval_s` and on leaving.
    """

    def __init__(
        self,
        settings: Settings,
        chains: dict[Role, list[Provider]],
        *,
        watch: Path | None = None,
        stats_reader: InMemoryMetricReader | None = None,
        show_draft: Callable[[Draft], None] | None = None,
    ) -> None:
        self.settings = settings
        self.chains = chains
        self.stores = Stores.at(settings.data_dir, settings.traces_path)
        self._watch = watch
        self._stats_reader = stats_reader
        self._show_draft = show_draft
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Pipeline:
        settings, chains = self.settings, self.chains
        make_data_dir(settings.data_dir)
        log.info(
            "started: data dir %s, %s",
            settings.data_dir,
            ", ".join(f"{role} {','.join(p.uri for p in chain)}" for role, chain in chains.items()),
        )
        providers = list({p.uri: p for chain in chains.values() for p in chain}.values())
        if any(p.uri == DEFAULT_MODEL for p in providers):
            log.warning(
                "%s is a small demonstration model (135M parameters): it runs the whole pipeline, but its plans "
                "are not strategies worth reading. Point --generator and --scorer at a larger model "
                "(README, 'Choosing models').",
                DEFAULT_MODEL,
            )
        stack = await self._stack.__aenter__()
        try:
            await self._start(stack, providers)
        except BaseException:
            await self._stack.__aexit__(None, None, None)
            raise
        return self

    async def _start(self, stack: AsyncExitStack, providers: list[Provider]) -> None:
        settings, stores = self.settings, self.stores
        if self._stats_reader is not None:
            stack.callback(write_snapshot, self._stats_reader, settings.data_dir)
        for store in stores.all():
            store.open()
            stack.callback(store.close)
        transport = await connect_bus(settings, stack) if settings.bus.url != "memory://" else None
        self.bus = bus = Bus(settings.bus_buffer, shared=transport)
        metrics.observe_queue_depths(bus.queue_depths)
        spacing: SpacingFactory = local_spacing
        if transport is not None:
            namespace = settings.bus.namespace
            lease = await Lease.acquire(transport.js, namespace, holder() | {"data_dir": str(settings.data_dir)})
            stack.push_async_callback(lease.release)
            spacing = partial(SharedSpacing, transport.js, namespace)
            await transport.declare(POSTS_OBSERVED.name, Miner.name)  # kept for workers, even before one joins
            if not settings.bus.mine_here:
                log.info("no miners here: posts wait for `reer-runtime worker --bus %s`", redacted(settings.bus.url))
        for provider in providers:
            stack.push_async_callback(provider.aclose)
        caches = {f"{p.uri} {name}": tokens for p in providers for name, tokens in p.describe().caches.items()}
        metrics.observe_caches(caches)
        self.ledger = Ledger(stores, retry_failed=settings.retry_failed_on_start)
        self.actors = build_actors(
            settings, self.chains, stores, self.ledger, bus, self._watch, self._show_draft, spacing
        )
        background = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(background.cancel_scope.cancel)  # after the consumers have ended
        if self._stats_reader is not None:
            background.start_soon(_write_stats, self._stats_reader, settings)
        if transport is not None:
            background.start_soon(lease.keep)
            background.start_soon(transport.watch_dead_ends, partial(_dead_end, bus))
        reader = self._stats_reader
        batch = partial(decode_batch, reader) if reader is not None else lambda: None
        actors = self.actors
        progress = Progress(actors.ingestor, actors.trace_writer, settings.progress_interval_s, decode_batch=batch)
        background.start_soon(progress.run)
        # The consumers run in a task of their own, so that stopping them cancels none of the caller's code.
        self._consumers_scope = anyio.CancelScope()
        runner = await stack.enter_async_context(anyio.create_task_group())
        await runner.start(self._run_consumers)

    async def _run_consumers(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        with self._consumers_scope:
            async with anyio.create_task_group() as consumers:
                self._consumers = consumers
                for consumer in self.actors.consumers:
                    consumers.start_soon(consumer.run)
                task_status.started()

    def model_client(self, name: str) -> ModelClient:
        """A client of this pipeline's Limiter for calls made from outside the actors (the Python API)."""
        client = ModelClient(self.bus, name, self.stores.dead_letters)
        self._consumers.start_soon(client.run)
        return client

    @property
    def ingestor(self) -> Ingestor:
        """Where input goes: posts, lines of a source, and requests for drafts or a compile."""
        return self.actors.ingestor

    async def resume(self) -> None:
        """Pass on again the selected posts and the requests that earlier runs accepted and did not finish."""
        await self.ingestor.recover(self.ledger.finished_posts(), self.ledger.retried_posts())
        await self.ingestor.resume_requests(self.ledger.settled_requests())

    async def drain(self, grace: float = float("inf")) -> bool:
        """Wait up to `grace` seconds for the work in flight to finish, then stop the actors; whether it finished."""
        with anyio.move_on_after(grace) as waiting:
            await self.bus.wait_idle()
        if waiting.cancelled_caught:
            log.warning("grace period of %gs over with %d deliveries unfinished; stopping", grace, self.bus.pending)
            self._consumers_scope.cancel()
            return False
        await self.bus.aclose()
        return True

    async def __aexit__(self, *exc_info: object) -> None:
        if exc_info[0] is not None:
            self._consumers_scope.cancel()
        await self._stack.__aexit__(*exc_info)  # type: ignore[arg-type]


async def serve(
    settings: Settings,
    chains: dict[Role, list[Provider]],
    sources: list[str],
    *,
    exit_when_idle: bool,
    requests: list[GenerateEvent | OptimizeEvent] | None = None,
    watch: Path | None = None,
    stats_reader: InMemoryMetricReader | None = None,
    show_draft: Callable[[Draft], None] | None = None,
) -> int:
    """Run the actors until the input is done (`exit_when_idle`) or a signal arrives; drain; exit code.

    `requests` (from `reer-runtime generate` and `optimize`) are handled after the input is read.
    With `watch`, files dropped into that folder are read as they come (`runtime/watch.py`).
    """
    pipeline = Pipeline(settings, chains, watch=watch, stats_reader=stats_reader, show_draft=show_draft)
    stopped: ReerError | None = None
    submitted: list[str] = []
    try:
        async with pipeline:
            submitted = await _run(pipeline, sources, requests or [], exit_when_idle)
    except* (CrashLoopError, StoreFullError, CoordinatorRunningError) as group:
        stopped = first_error(group)
    if stopped is not None:
        log.error("stopping: %s", stopped)
        return stopped.exit_code
    counts = pipeline.ingestor.counts
    if sources or watch is not None or counts.resumed:  # bookkeeping of input, for the runs that read some
        log.info(
            "done: %d lines read, %d posts accepted, %d rejected, %d selected, %d traces in the store",
            counts.lines,
            counts.accepted,
            counts.rejected,
            counts.selected,
            pipeline.ledger.mined,
        )
    failed = pipeline.ledger.failed_requests()
    if refusals := [failed[i] for i in submitted if i in failed]:
        for reason in refusals:
            log.error("not done: %s", reason)
        return ExitCode.FAILURE
    if counts.unreadable:
        log.error("%d input source(s) could not be read at all (said above); the others were", counts.unreadable)
        return ExitCode.FAILURE
    return ExitCode.OK


async def _run(
    pipeline: Pipeline, sources: list[str], requests: list[GenerateEvent | OptimizeEvent], exit_when_idle: bool
) -> list[str]:
    """Resume what the ledger says is unfinished; read the input; submit `requests`; drain (within
    the grace period once a signal has asked to stop). The ids of the requests submitted."""
    stopping = anyio.Event()
    ingest_scope = anyio.CancelScope()
    ingestor, watcher = pipeline.ingestor, pipeline.actors.watcher
    submitted: list[str] = []
    async with anyio.create_task_group() as signals:
        signals.start_soon(handle_signals, stopping, "no more input; finishing the work in flight", ingest_scope.cancel)
        with ingest_scope:
            await pipeline.resume()
            await ingestor.run(sources)
            if watcher is not None:
                await watcher.run(until_idle=exit_when_idle)
            submitted = [await ingestor.submit(request) for request in requests]
        if not exit_when_idle and not stopping.is_set():
            log.info("input consumed; running until SIGINT or SIGTERM")
            await stopping.wait()
        await pipeline.drain(pipeline.settings.shutdown_grace_s if stopping.is_set() else float("inf"))
        signals.cancel_scope.cancel()
    return submitted


async def connect_bus(settings: Settings, stack: AsyncExitStack, role: str = "coordinator") -> JetStreamTransport:
    """Connect to the NATS server of `settings.bus`; it is disconnected when `stack` closes.
    Raises `UsageError` when no server answers."""
    options = JetStreamOptions(
        ack_wait_s=settings.bus.ack_wait_s,
        max_deliver=settings.bus.max_deliver,
        duplicate_window_s=settings.bus.duplicate_window_s,
        tls_ca=settings.bus.tls_ca,
        creds=settings.bus.creds,
    )
    name = f"reer-runtime {role} {socket.gethostname()} {os.getpid()}"
    try:
        transport = await JetStreamTransport.connect(settings.bus.url, settings.bus.namespace, options, name=name)
    except OSError as exc:
        raise UsageError(f"{exc}; start one (nats-server -js) or point --bus (bus.url) at one") from None
    stack.push_async_callback(transport.disconnect)
    log.info(
        "bus: NATS JetStream at %s, namespace %r, as the %s", redacted(settings.bus.url), settings.bus.namespace, role
    )
    return transport


async def _dead_end(bus: Bus, group: str, envelope: Envelope[AnyMessage], reason: str) -> None:
    """Send a message the broker gave up on (see `JetStreamTransport.watch_dead_ends`) to the
    TraceWriter as a dead letter; a post, also as failed, so that `retry-failed` mines it again."""
    log.error("%s gave up on a %s message: %s", group, envelope.topic, reason)
    letter = dead_letter(group, envelope, reason)
    await bus.publish(RESULTS, DeadLettered(letter=letter))
    if isinstance(envelope.body, PostObserved):
        post = envelope.body.post
        failure = Failure(post=post, reason=reason, failed_at=letter.failed_at)
        await bus.publish(RESULTS, MiningFailed(failure=failure), key=f"failed:{post.key}")


async def _write_stats(reader: InMemoryMetricReader, settings: Settings) -> None:
    while True:
        await anyio.sleep(settings.stats_interval_s)
        await anyio.to_thread.run_sync(write_snapshot, reader, settings.data_dir)


async def handle_signals(stopping: anyio.Event, saying: str, then: Callable[[], object] = lambda: None) -> None:
    """On the first SIGINT or SIGTERM log `saying`, set `stopping` and call `then`; on a second, exit at once."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if stopping.is_set():
                log.error("second %s: exiting now", signal.Signals(signum).name)
                os._exit(ExitCode.INTERRUPTED)
            log.info("%s: %s", signal.Signals(signum).name, saying)
            stopping.set()
            then()
