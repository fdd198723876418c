"""`reer-runtime bus status`: the streams and processes of a NATS namespace, as the server sees them."""

from __future__ import annotations

import json
import time
from contextlib import AsyncExitStack
from dataclasses import asdict

from bus.cluster import present
from bus.jetstream import redacted
from reer_runtime.daemon import connect_bus
from runtime.config import Settings


async def print_status(settings: Settings, as_json: bool) -> int:
    """Print each consumer group's counts, the messages the stream holds, the coordinator and workers."""
    async with AsyncExitStack() as stack:
        transport = await connect_bus(settings, stack, role="status reader")
        groups = await transport.groups()
        held = (await transport.js.stream_info(transport.stream)).state.messages
        processes = await present(transport.js, transport.namespace)
    if as_json:
        state = {"stream": transport.stream, "messages": held, "groups": [asdict(g) for g in groups]}
        print(json.dumps(state | {"processes": processes}))
        return 0
    print(f"{transport.stream} on {redacted(settings.bus.url)}: {held} messages held")
    print(f"{'topic':<20} {'group':<14} {'pending':>8} {'unacked':>8} {'redelivered':>12}")
    for g in sorted(groups, key=lambda g: (g.topic, g.group)):
        print(f"{g.topic:<20} {g.group:<14} {g.pending:>8} {g.unacked:>8} {g.redelivered:>12}")
    if not processes:
        print("no coordinator or worker present")
    for key, about in sorted(processes.items()):
        role = "coordinator" if key == "coordinator" else about.get("role", "worker")
        since = time.time() - float(about.get("since", time.time()))
        extra = f", concurrency {about['concurrency']}" if "concurrency" in about else ""
        print(f"{role}: pid {about.get('pid')} on {about.get('host')}, up {since:.0f}s{extra}")
    return 0
