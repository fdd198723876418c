"""`reer-runtime worker`: miners in a process of their own, on a NATS bus, next to their models.

A worker keeps no data dir stores: it takes posts from the coordinator's stream, mines them with its
own Limiter and models, and sends traces, failures and dead letters back to the coordinator's
TraceWriter. Its rate limits are shared with every process of the namespace; its concurrency cap
and circuits are its own. A crash loop stops this worker only (exit 3): its messages go to others.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from functools import partial

import anyio

from actors.base import ForwardedDeadLetters
from actors.limiter import Limiter
from actors.miner import Miner
from bus.bus import Bus
from bus.cluster import SharedSpacing, announce, coordinator_present, holder
from bus.jetstream import JetStreamTransport
from reer_runtime.daemon import connect_bus, handle_signals
from runtime.config import Settings
from runtime.errors import CrashLoopError, ExitCode, ReerError, first_error
from runtime.providers import Provider
from runtime.providers.calls import Role

log = logging.getLogger(__name__)

WATCH_EVERY_S = 1.0
"""How often a worker started with `--exit-when-idle` looks for its coordinator."""


async def run_worker(
    settings: Settings, chains: dict[Role, list[Provider]], *, concurrency: int, exit_when_idle: bool
) -> int:
    """Mine posts from the bus until SIGINT/SIGTERM (or, with `exit_when_idle`, until the coordinator
    that was running has finished), then finish the posts in hand within the grace period."""
    async with AsyncExitStack() as stack:
        for provider in {p.uri: p for chain in chains.values() for p in chain}.values():
            stack.push_async_callback(provider.aclose)
        transport = await connect_bus(settings, stack, role="miner")
        bus = Bus(settings.bus_buffer, shared=transport)
        namespace = settings.bus.namespace
        forward = ForwardedDeadLetters(bus)
        limiter = Limiter(
            bus, forward, chains, settings.limits, spacing=partial(SharedSpacing, transport.js, namespace)
        )
        miner = Miner(
            bus,
            forward,
            settings.search,
            concurrency=concurrency,
            max_consecutive_failures=settings.max_consecutive_failures,
            judged="judge" in chains,
        )
        about = holder() | {"role": "miner", "concurrency": concurrency, "generator": settings.generator[0]}
        stopped: ReerError | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(announce, transport.js, namespace, about)
                tg.start_soon(limiter.run)
                stop = anyio.Event()
                tg.start_soon(handle_signals, stop, "taking no more posts; finishing those in hand")
                if exit_when_idle:
                    tg.start_soon(_watch_coordinator, transport, stop)
                await _mine(miner, transport, stop, settings.shutdown_grace_s)
                await bus.local.aclose()
                tg.cancel_scope.cancel()
        except* CrashLoopError as group:
            stopped = first_error(group)
        if stopped is not None:
            log.error("stopping: %s", stopped)
            return stopped.exit_code
        log.info("worker done: %d posts mined, %d failed", miner.mined, miner.failed)
    return ExitCode.OK


async def _mine(miner: Miner, transport: JetStreamTransport, stop: anyio.Event, grace_s: float) -> None:
    """Run the miner until `stop`; then take no more posts and finish those in hand within `grace_s`
    (the rest are handed back to the broker for another worker)."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(miner.run)
        await stop.wait()
        await transport.aclose()
        tg.cancel_scope.deadline = anyio.current_time() + grace_s


async def _watch_coordinator(transport: JetStreamTransport, stop: anyio.Event) -> None:
    """Set `stop` once a coordinator has been seen and its lease is gone (it finished)."""
    seen = False
    while True:
        present = await coordinator_present(transport.js, transport.namespace) is not None
        if seen and not present:
            log.info("the coordinator has finished; finishing too")
            stop.set()
            return
        seen = seen or present
        await anyio.sleep(WATCH_EVERY_S)
