"""What processes sharing a NATS namespace agree on, in JetStream key-value buckets:

- the coordinator's lease (`reer_<ns>_leases`, key `coordinator`): one coordinator per namespace;
- the workers present (same bucket, keys `worker.<id>`), for `reer-runtime bus status`;
- each provider's rate limits (`reer_<ns>_limits`): the next free call slot, moved forward by
  compare-and-set, so calls are spaced 60/N s apart across every process together.

Entries in the lease bucket expire `LEASE_TTL_S` after their last renewal, so a killed process
leaves no lease behind for long; a coordinator restarted on the same host takes over at once the
lease of its own dead predecessor.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bus.outage import through_outage
from runtime.errors import UsageError

log = logging.getLogger(__name__)

LEASE_TTL_S = 30.0
RENEW_EVERY_S = LEASE_TTL_S / 3


class CoordinatorRunningError(UsageError):
    """Another coordinator holds the namespace's lease."""


async def bucket(js: JetStreamContext, name: str, ttl_s: float | None = None) -> KeyValue:
    """The key-value bucket `name`, created on first use."""
    try:
        return await js.key_value(name)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(bucket=name, history=1, ttl=ttl_s)


async def _leases(js: JetStreamContext, namespace: str) -> KeyValue:
    """The bucket of the coordinator's lease and the workers' presence entries."""
    return await bucket(js, f"reer_{namespace}_leases", LEASE_TTL_S)


def holder() -> dict[str, Any]:
    """Who this process is, as written into leases and presence entries."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}


def _alive_here(entry: dict[str, Any]) -> bool:
    """Whether `entry` names a process of this host that still runs (other hosts: assumed so)."""
    if entry.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(entry["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Lease:
    """A key held by renewing it; see the module docstring."""

    kv: KeyValue
    key: str
    value: dict[str, Any]
    revision: int = 0

    @classmethod
    async def acquire(cls, js: JetStreamContext, namespace: str, value: dict[str, Any]) -> Lease:
        """The coordinator's lease of `namespace`; raises `CoordinatorRunningError` while another holds it."""
        kv = await _leases(js, namespace)
        lease = cls(kv, "coordinator", value)
        data = json.dumps(value).encode()
        try:
            lease.revision = await kv.create(lease.key, data)
            return lease
        except nats.js.errors.KeyWrongLastSequenceError:
            entry = await kv.get(lease.key)
        other = json.loads(entry.value or b"{}")
        if _alive_here(other):
            raise CoordinatorRunningError(
                f"another coordinator runs on namespace {namespace!r} (pid {other.get('pid')} on "
                f"{other.get('host')}, data dir {other.get('data_dir')}); stop it, or give this one "
                "another --namespace"
            )
        log.info("taking over the lease of namespace %r from pid %s, which is gone", namespace, other.get("pid"))
        lease.revision = await kv.update(lease.key, data, last=entry.revision)
        return lease

    async def keep(self, every_s: float = RENEW_EVERY_S) -> None:
        """Renew the lease until cancelled. Raises `CoordinatorRunningError` if another took it."""
        data = json.dumps(self.value).encode()
        while True:
            await anyio.sleep(every_s)
            try:
                self.revision = await through_outage(
                    "lease", lambda: self.kv.update(self.key, data, last=self.revision)
                )
            except nats.js.errors.KeyWrongLastSequenceError:
                await self._take_back(data)

    async def _take_back(self, data: bytes) -> None:
        """The lease moved on without us: after an outage longer than its time to live it expired
        (take it again), or an update held through the outage landed late (adopt it). Raises
        `CoordinatorRunningError` if another coordinator has it."""
        try:
            self.revision = await through_outage("lease", lambda: self.kv.create(self.key, data))
        except nats.js.errors.KeyWrongLastSequenceError:
            entry = await through_outage("lease", lambda: self.kv.get(self.key))
            if json.loads(entry.value or b"{}") != self.value:
                raise CoordinatorRunningError("another coordinator took over this namespace's lease") from None
            self.revision = entry.revision or 0  # an update sent before the outage landed after it
            return
        log.warning("the coordinator lease expired while the broker was away; taken back")

    async def release(self) -> None:
        """Give the lease up (workers started with --exit-when-idle then stop)."""
        try:
            await self.kv.delete(self.key, last=self.revision)
        except nats.js.errors.Error as exc:
            log.warning("could not release the coordinator lease: %s", exc)


async def coordinator_present(js: JetStreamContext, namespace: str) -> dict[str, Any] | None:
    """The coordinator's lease entry, or None while no coordinator holds the namespace."""
    kv = await through_outage("lease", lambda: _leases(js, namespace))
    try:
        entry = await through_outage("lease", lambda: kv.get("coordinator"))
    except nats.js.errors.KeyNotFoundError:
        return None
    value: dict[str, Any] = json.loads(entry.value or b"{}")
    return value


async def announce(
    js: JetStreamContext,
    namespace: str,
    value: dict[str, Any],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Say this worker is present (started once it is listed), renewing until cancelled; the entry
    is removed when it stops, and expires if it is killed."""
    kv = await _leases(js, namespace)
    key = f"worker.{uuid.uuid4().hex[:12]}"
    try:
        await kv.put(key, json.dumps(value).encode())
        task_status.started()
        while True:
            await anyio.sleep(RENEW_EVERY_S)
            await through_outage("presence", lambda: kv.put(key, json.dumps(value).encode()))
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            await kv.delete(key)


async def present(js: JetStreamContext, namespace: str) -> dict[str, dict[str, Any]]:
    """Every live lease and presence entry of `namespace`, by key."""
    kv = await _leases(js, namespace)
    try:
        keys = await kv.keys()
    except nats.js.errors.NoKeysError:
        return {}
    found = {}
    for key in keys:
        try:
            found[key] = json.loads((await kv.get(key)).value or b"{}")
        except nats.js.errors.KeyNotFoundError:
            continue  # expired in between
    return found


class SharedSpacing:
    """Spaces calls at least `interval_s` apart across every process of the namespace.

    The bucket holds the time of the last slot handed out; taking the next one is a
    compare-and-set on it, retried when another process moved it first. Relies on the machines'
    clocks agreeing (NTP) to well within `interval_s`.
    """

    def __init__(self, js: JetStreamContext, namespace: str, key: str, interval_s: float) -> None:
        self._js = js
        self._bucket = f"reer_{namespace}_limits"
        self._key = re.sub(r"[^A-Za-z0-9_=-]", "_", key)
        self._interval_s = interval_s
        self._kv: KeyValue | None = None

    async def acquire(self) -> float:
        """Wait for this process's turn; the time of the slot taken."""
        if self._kv is None:
            self._kv = await bucket(self._js, self._bucket)
        while True:
            try:
                entry = await self._kv.get(self._key)
                last, revision = float(entry.value or b"0"), entry.revision
            except nats.js.errors.KeyNotFoundError:
                last, revision = 0.0, None
            now = time.time()
            slot = max(now, last + self._interval_s)
            try:
                if revision is None:
                    await self._kv.create(self._key, repr(slot).encode())
                else:
                    await self._kv.update(self._key, repr(slot).encode(), last=revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # another process took a slot in between: read again
            await anyio.sleep(slot - now)
            return slot
