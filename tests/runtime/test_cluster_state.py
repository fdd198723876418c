"""What the processes of a NATS namespace agree on: one coordinator, who is present, shared rate limits."""

from __future__ import annotations

import itertools
import json
import sys
import time

import anyio
import pytest

from bus.cluster import (
    CoordinatorRunningError,
    Lease,
    SharedSpacing,
    announce,
    bucket,
    coordinator_present,
    holder,
    present,
)
from bus.jetstream import JetStreamTransport

pytestmark = pytest.mark.anyio


async def test_one_coordinator_per_namespace_and_a_dead_ones_lease_is_taken_over(nats_url: str, namespace: str) -> None:
    transport = await JetStreamTransport.connect(nats_url, namespace)
    try:
        first = await Lease.acquire(transport.js, namespace, holder() | {"data_dir": "/srv/a"})
        with pytest.raises(CoordinatorRunningError, match=r"another coordinator runs on namespace .*data dir /srv/a"):
            await Lease.acquire(transport.js, namespace, holder())
        assert (await coordinator_present(transport.js, namespace) or {})["data_dir"] == "/srv/a"
        await first.release()
        assert await coordinator_present(transport.js, namespace) is None

        gone = await anyio.run_process([sys.executable, "-c", "import os; print(os.getpid())"])
        dead = holder() | {"pid": int(gone.stdout)}  # a process of this host that has exited
        kv = await bucket(transport.js, f"reer_{namespace}_leases")
        await kv.put("coordinator", json.dumps(dead).encode())
        second = await Lease.acquire(transport.js, namespace, holder())  # taken over at once
        stale = Lease(kv, "coordinator", {}, revision=second.revision - 1)
        with pytest.raises(CoordinatorRunningError, match="took over"):
            await stale.keep(every_s=0)  # the previous holder, back, finds it gone
    finally:
        await transport.disconnect()


async def test_workers_are_listed_while_they_run(nats_url: str, namespace: str) -> None:
    transport = await JetStreamTransport.connect(nats_url, namespace)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(announce, transport.js, namespace, {"role": "miner", "pid": 7})
            (about,) = (await present(transport.js, namespace)).values()
            assert about == {"role": "miner", "pid": 7}
            tg.cancel_scope.cancel()
        assert await present(transport.js, namespace) == {}  # it said goodbye
    finally:
        await transport.disconnect()


async def test_a_rate_limit_spaces_the_calls_of_every_process_together(nats_url: str, namespace: str) -> None:
    one = await JetStreamTransport.connect(nats_url, namespace)
    two = await JetStreamTransport.connect(nats_url, namespace)
    try:
        interval = 0.1
        limits = [SharedSpacing(t.js, namespace, "openai://gpu:8000/llama.per_minute", interval) for t in (one, two)]
        slots: list[float] = []
        made: list[float] = []  # when each call could go, timed after acquire() returned

        async def calls(limit: SharedSpacing) -> None:
            for _ in range(4):
                slot = await limit.acquire()
                made.append(time.time())
                slots.append(slot)

        async with anyio.create_task_group() as tg:
            for limit in limits:
                tg.start_soon(calls, limit)
        slots.sort()
        gaps = [b - a for a, b in itertools.pairwise(slots)]
        assert len(slots) == 8 and min(gaps) >= interval - 1e-6  # never two slots closer than the interval
        # and no call went before its slot (a timer may fire a clock tick early): the calls are spaced too
        assert all(when >= slot - 5e-3 for when, slot in zip(sorted(made), slots, strict=True))
    finally:
        await one.disconnect()
        await two.disconnect()
