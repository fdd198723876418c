"""What the processes of a NATS namespace agree on: one coordinator, who is present, shared rate limits."""

from __future__ import annotations

import itertools
import json
import sys
import time

import anyio
import pytest
from nats.js.kv import KeyValue

from bus import cluster
from bus.cluster import (
    LEASE_TTL_S,
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


async def revision_past(kv: KeyValue, key: str, revision: int) -> int:
    """Wait (at most 10 s) until `key` is written after `revision`; its new revision."""
    watcher = await kv.watch(key)  # the current entry, a None marker, then each update
    try:
        with anyio.fail_after(10):
            async for entry in watcher:
                if entry is not None and entry.revision is not None and entry.revision > revision:
                    new: int = entry.revision
                    return new
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    raise AssertionError(f"the watch of {key} ended")


async def test_the_lease_bucket_keeps_the_last_value_of_a_key_for_the_lease_time(nats_url: str, namespace: str) -> None:
    transport = await JetStreamTransport.connect(nats_url, namespace)
    try:
        await Lease.acquire(transport.js, namespace, holder())
        status = await (await bucket(transport.js, f"reer_{namespace}_leases")).status()
        assert (status.history, status.ttl) == (1, LEASE_TTL_S)  # a killed holder's entry expires
    finally:
        await transport.disconnect()


async def test_a_kept_lease_is_renewed_with_its_holder(nats_url: str, namespace: str) -> None:
    transport = await JetStreamTransport.connect(nats_url, namespace)
    try:
        me = holder() | {"data_dir": "/srv/a"}
        lease = await Lease.acquire(transport.js, namespace, me)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lease.keep, 0)
            renewed = await revision_past(lease.kv, "coordinator", lease.revision)
            await revision_past(lease.kv, "coordinator", renewed)  # and again
            tg.cancel_scope.cancel()
        assert await coordinator_present(transport.js, namespace) == me
    finally:
        await transport.disconnect()


async def test_an_update_that_landed_late_is_adopted_not_fought(nats_url: str, namespace: str) -> None:
    transport = await JetStreamTransport.connect(nats_url, namespace)
    try:
        me = holder()
        lease = await Lease.acquire(transport.js, namespace, me)
        data = json.dumps(me).encode()
        landed = await lease.kv.update("coordinator", data, last=lease.revision)  # a renewal held through an outage
        await lease._take_back(data)  # what keep() does when its next renewal is refused
        assert lease.revision == landed
    finally:
        await transport.disconnect()


async def test_releasing_a_lease_taken_over_leaves_the_new_holders(nats_url: str, namespace: str) -> None:
    transport = await JetStreamTransport.connect(nats_url, namespace)
    try:
        old = await Lease.acquire(transport.js, namespace, holder() | {"data_dir": "/srv/old"})
        new = holder() | {"data_dir": "/srv/new"}
        await old.kv.update("coordinator", json.dumps(new).encode(), last=old.revision)  # it expired; another took it
        await old.release()
        assert await coordinator_present(transport.js, namespace) == new
    finally:
        await transport.disconnect()


@pytest.mark.parametrize(
    ("host", "kill", "alive"),
    [
        ("another-host", None, True),  # not ours to check: assumed alive
        ("this-host", None, True),
        ("this-host", ProcessLookupError, False),
        ("this-host", PermissionError, True),  # it runs, as another user
    ],
)
def test_a_lease_holder_of_this_host_is_alive_while_its_process_runs(
    host: str, kill: type[OSError] | None, alive: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    signals: list[tuple[int, int]] = []

    def fake_kill(pid: int, signal: int) -> None:
        signals.append((pid, signal))
        if kill is not None:
            raise kill()

    monkeypatch.setattr("bus.cluster.socket.gethostname", lambda: "this-host")
    monkeypatch.setattr("bus.cluster.os.kill", fake_kill)
    assert cluster._alive_here({"host": host, "pid": "4242"}) is alive
    assert signals == ([] if host == "another-host" else [(4242, 0)])  # signal 0: a check, never a signal sent


async def test_a_present_worker_renews_its_entry(
    nats_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "RENEW_EVERY_S", 0.01)
    transport = await JetStreamTransport.connect(nats_url, namespace)
    try:
        kv = await bucket(transport.js, f"reer_{namespace}_leases")
        async with anyio.create_task_group() as tg:
            await tg.start(announce, transport.js, namespace, {"role": "miner"})
            (key,) = await kv.keys()
            first = await kv.get(key)
            assert first.revision is not None
            await revision_past(kv, key, first.revision)
            assert json.loads((await kv.get(key)).value or b"") == {"role": "miner"}
            tg.cancel_scope.cancel()
    finally:
        await transport.disconnect()
