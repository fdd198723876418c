"""`reer-runtime bus status`: the NATS bus's streams and processes."""

from __future__ import annotations

import argparse

from runtime.errors import UsageError

from . import _options


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "bus",
        parents=[common, _options.bus()],
        help="the NATS bus: messages waiting, in flight and redelivered per topic, and who is connected",
        description="Show, for a nats:// bus, each topic's consumer groups with their pending, unacked and "
        "redelivered messages, the coordinator holding the namespace, and the workers present.",
    )
    parser.add_argument("what", choices=["status"], help="status: the state of the streams and the processes")
    parser.add_argument("--json", action="store_true", help="the state as JSON")
    parser.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    import anyio

    from reer_runtime.busstatus import print_status
    from runtime.config import load_settings

    settings = load_settings(_options.data_dir(args), args.config, bus=_options.bus_flags(args))
    if settings.bus.url == "memory://":
        raise UsageError("the memory:// bus lives inside its daemon; give a NATS bus: --bus nats://HOST:4222")
    code: int = anyio.run(print_status, settings, args.json)
    return code
