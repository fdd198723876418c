"""The transport across processes and machines: NATS JetStream.

One stream per namespace, `REER_<ns>`, holds the subjects `reer.<ns>.<topic>`. It keeps a message
until every consumer group of its topic has acked it (interest retention). A group is a durable
pull consumer, shared by its members in every process. A message not acked within `ack_wait_s`
(its worker died) goes to another member; a long handler holds it with in-progress marks; after
`max_deliver` deliveries the server stops and publishes an advisory, which `watch_dead_ends` turns
into a dead letter. Publishing with a key sets `Nats-Msg-Id`, so the same work published twice
within `duplicate_window_s` is stored once. W3C trace context travels in the NATS headers.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

from bus.messages import AnyMessage, Envelope, decode, encode
from bus.outage import AWAY, through_outage

log = logging.getLogger(__name__)

TRACE_HEADERS = ("traceparent", "tracestate")
CONNECT_TIMEOUT_S = 10.0


async def _log_error(error: Exception) -> None:
    """nats-py's connection errors (it reconnects by itself): one warning line each."""
    log.warning("NATS: %s", error or type(error).__name__)


def redacted(url: str) -> str:
    """`url` with its user, password or token (`nats://user:pass@host:4222`) shown as ***."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def durable_name(topic: str, group: str) -> str:
    """The durable consumer of `group` on `topic` (NATS names allow no dots)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{group}--{topic}")


@dataclass(frozen=True)
class JetStreamOptions:
    """How long a member may hold a message, how often it is retried, and the dedup window."""

    ack_wait_s: float = 30.0
    max_deliver: int = 5
    duplicate_window_s: float = 3600.0
    poll_s: float = 1.0
    """How long an idle fetch waits, which is also how late a subscription notices a close."""
    tls_ca: Path | None = None
    """CA certificates to trust for a `tls://` broker (else the system's)."""
    creds: Path | None = None
    """A NATS credentials file (JWT and NKey seed) for an account."""


@dataclass(frozen=True)
class GroupState:
    """One consumer group, as the server sees it."""

    topic: str
    group: str
    pending: int
    """Messages not yet delivered to the group."""
    unacked: int
    """Delivered and not yet acked, terminated or given up on."""
    redelivered: int
    delivered_seq: int


class JetStreamDelivery:
    """A delivery from JetStream: settling it acks, naks or terminates the message on the server."""

    def __init__(self, msg: Msg, envelope: Envelope[Any], heartbeat_s: float) -> None:
        self._msg = msg
        self.envelope = envelope
        self.attempt = msg.metadata.num_delivered or 1
        self.heartbeat_s: float | None = heartbeat_s
        self._settled = False

    async def ack(self) -> None:
        if self._settle():
            await self._msg.ack()

    async def nak(self, delay_s: float = 0.0) -> None:
        if self._settle():
            await self._msg.nak(delay=delay_s or None)

    async def term(self) -> None:
        if self._settle():
            await self._msg.term()

    async def in_progress(self) -> None:
        if not self._settled:
            await self._msg.in_progress()

    def _settle(self) -> bool:
        first, self._settled = not self._settled, True
        return first


class JetStreamSubscription:
    """A member of a consumer group: fetches one message at a time, whichever slot asks."""

    def __init__(self, transport: JetStreamTransport, topic: str, group: str) -> None:
        self._transport = transport
        self._topic = topic
        self._group = group
        self._pull: JetStreamContext.PullSubscription | None = None
        self._lock = anyio.Lock()

    async def next(self) -> JetStreamDelivery | None:
        t = self._transport
        while not t.closed:
            async with self._lock:
                if self._pull is None:
                    await through_outage("declare", lambda: t.declare(self._topic, self._group))
                    self._pull = await t.js.pull_subscribe_bind(
                        durable=durable_name(self._topic, self._group), stream=t.stream
                    )
                try:
                    msgs = await self._pull.fetch(1, timeout=t.options.poll_s)
                except nats.errors.TimeoutError:
                    continue  # nothing to take, or the broker away (nats-py reconnects meanwhile)
                except AWAY:
                    await anyio.sleep(t.options.poll_s)
                    continue
                except nats.errors.Error:
                    if t.closed:
                        return None
                    raise
            delivery = await self._read(msgs[0])
            if delivery is not None:
                return delivery
        return None

    async def _read(self, msg: Msg) -> JetStreamDelivery | None:
        try:
            envelope = decode(msg.data)
        except msgspec.DecodeError as exc:  # not ours: another program publishing on our subjects
            log.error("dropping a message on %s that is not a reer envelope: %s", msg.subject, exc)
            await msg.term()
            return None
        headers = {k: v for k, v in (msg.headers or {}).items() if k in TRACE_HEADERS}
        if headers:
            envelope = msgspec.structs.replace(envelope, headers=headers)
        return JetStreamDelivery(msg, envelope, self._transport.options.ack_wait_s / 3)


class JetStreamTransport:
    """See the module docstring. Open with `connect`; close with `aclose`."""

    system = "nats"

    def __init__(self, client: Client, namespace: str, options: JetStreamOptions) -> None:
        self.client = client
        self.js = client.jetstream()
        self.namespace = namespace
        self.stream = f"REER_{namespace}"
        self.options = options
        self.closed = False
        self._declared: set[tuple[str, str]] = set()
        self._undeclared: set[tuple[str, str]] = set()
        self._depths: dict[str, int] = {}

    @classmethod
    async def connect(
        cls, url: str, namespace: str, options: JetStreamOptions | None = None, *, name: str = "reer-runtime"
    ) -> JetStreamTransport:
        """Connect to the server at `url` and make sure the namespace's stream exists.

        Raises `OSError` (with the address) when no server answers there.
        """
        if not re.fullmatch(r"[A-Za-z0-9_-]+", namespace):
            raise ValueError(f"a bus namespace is letters, digits, '_' and '-'; got {namespace!r}")
        options = options or JetStreamOptions()
        secure: dict[str, Any] = {}
        if url.startswith("tls://") or options.tls_ca:
            secure["tls"] = ssl.create_default_context(cafile=options.tls_ca)
        if options.creds:
            secure["user_credentials"] = str(options.creds)
        try:
            with anyio.fail_after(CONNECT_TIMEOUT_S):  # reconnects are unbounded later on, not at first
                client = await nats.connect(
                    url, name=name, connect_timeout=2, max_reconnect_attempts=-1, error_cb=_log_error, **secure
                )
        except (OSError, nats.errors.Error, TimeoutError) as exc:
            said = f": {exc}" if str(exc) else f" within {CONNECT_TIMEOUT_S:g}s"
            raise OSError(f"no NATS server answers at {redacted(url)}{said}") from exc
        transport = cls(client, namespace, options)
        await transport._ensure_stream()
        return transport

    def subject(self, topic: str) -> str:
        return f"reer.{self.namespace}.{topic}"

    async def _ensure_stream(self) -> None:
        config = StreamConfig(
            name=self.stream,
            subjects=[f"reer.{self.namespace}.>"],
            retention=RetentionPolicy.INTEREST,
            duplicate_window=self.options.duplicate_window_s,
        )
        try:
            await self.js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            await self.js.add_stream(config)

    def subscribe(self, topic: str, group: str) -> JetStreamSubscription:
        self._undeclared.add((topic, group))
        return JetStreamSubscription(self, topic, group)

    async def declare(self, topic: str, group: str) -> None:
        """Create the durable consumer of `group` on `topic` if it does not exist: from then on the
        stream keeps every message of the topic until that group has settled it."""
        if (topic, group) in self._declared:
            return
        durable = durable_name(topic, group)
        try:
            await self.js.consumer_info(self.stream, durable)
        except nats.js.errors.NotFoundError:
            config = ConsumerConfig(
                durable_name=durable,
                filter_subject=self.subject(topic),
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.options.ack_wait_s,
                max_deliver=self.options.max_deliver,
                max_ack_pending=-1,
            )
            await self.js.add_consumer(self.stream, config)
        self._declared.add((topic, group))
        self._undeclared.discard((topic, group))

    async def publish(self, envelope: Envelope[Any], key: str | None) -> None:
        for topic, group in list(self._undeclared):  # a group joined in this process hears from now on
            await self.declare(topic, group)
        headers = {k: v for k, v in envelope.headers.items() if k in TRACE_HEADERS}
        if key is not None:
            headers["Nats-Msg-Id"] = key
        subject, data = self.subject(envelope.topic), encode(envelope)
        await through_outage("publish", lambda: self.js.publish(subject, data, headers=headers))

    async def groups(self) -> list[GroupState]:
        """Every consumer group of the namespace, as the server sees it now."""
        prefix = len(f"reer.{self.namespace}.")
        states = []
        for info in await through_outage("consumer info", lambda: self.js.consumers_info(self.stream)):
            topic = (info.config.filter_subject or "")[prefix:]
            group = (info.config.durable_name or info.name).split("--")[0]
            states.append(
                GroupState(
                    topic=topic,
                    group=group,
                    pending=info.num_pending or 0,
                    unacked=info.num_ack_pending or 0,
                    redelivered=info.num_redelivered or 0,
                    delivered_seq=info.delivered.stream_seq if info.delivered else 0,
                )
            )
        return states

    async def wait_idle(self) -> None:
        """Return once no group has messages pending or unacked, and nothing moved between two
        readings `poll_s` apart (a message published or delivered in between)."""
        previous: tuple[int, ...] | None = None
        while True:
            groups = await self.groups()
            last_seq = (await through_outage("stream info", lambda: self.js.stream_info(self.stream))).state.last_seq
            self._depths = {}
            for g in groups:
                self._depths[g.topic] = self._depths.get(g.topic, 0) + g.pending
            idle = all(g.pending == 0 and g.unacked == 0 for g in groups)
            marker = (last_seq, *sorted(g.delivered_seq for g in groups))
            if idle and marker == previous:
                return
            previous = marker if idle else None
            await anyio.sleep(self.options.poll_s)

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting per topic, as of the last idle check."""
        return dict(self._depths)

    async def watch_dead_ends(self, dead_letter: Callable[[str, Envelope[AnyMessage], str], Awaitable[None]]) -> None:
        """Turn each message that reached `max_deliver` into a dead letter, `dead_letter(group,
        envelope, reason)`, and remove it from the stream. Runs until cancelled."""
        subject = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.stream}.*"
        subscription = await self.client.subscribe(subject)
        try:
            async for advisory in subscription.messages:
                event = json.loads(advisory.data)
                seq, deliveries = event["stream_seq"], event["deliveries"]
                try:
                    raw = await through_outage("get message", partial(self.js.get_msg, self.stream, seq))
                except nats.js.errors.NotFoundError:
                    continue  # another coordinator's, or already removed
                group = str(event["consumer"]).split("--")[0]
                reason = (
                    f"delivered {deliveries} times and never settled (max_deliver): "
                    "the process handling it stopped each time"
                )
                try:
                    envelope = decode(raw.data or b"")
                except msgspec.DecodeError as exc:
                    log.error("dropping message %d of %s, which is not a reer envelope: %s", seq, self.stream, exc)
                else:
                    await dead_letter(group, envelope, reason)
                await through_outage("delete message", partial(self.js.delete_msg, self.stream, seq))
        finally:
            await subscription.unsubscribe()

    async def aclose(self) -> None:
        """Stop fetching: subscriptions end within `poll_s`. Unsettled messages stay on the server."""
        self.closed = True

    async def disconnect(self) -> None:
        """Close the connection, flushing what was sent (after `aclose`, once the consumers are done)."""
        self.closed = True
        if self.client.is_connected:
            await self.client.flush()
        await self.client.close()
