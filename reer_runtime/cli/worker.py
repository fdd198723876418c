"""`reer-runtime worker`: mine for a coordinator over NATS JetStream."""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from functools import partial

from runtime.errors import UsageError

from . import _options


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "worker",
        parents=[common, _options.models(), _options.bus()],
        help="mine posts for a coordinator (`start --bus nats://...`) from another process or machine",
        description=(
            "Take posts from the NATS JetStream bus of a coordinator (reer-runtime start --bus nats://HOST:4222), "
            "mine them with this machine's models and send the traces back. Start as many as you like, anywhere "
            "the server is reachable: each post is mined by one of them, and a post whose worker dies is mined "
            "by another. Rate limits (limits.* in the configuration) hold across all workers together; "
            "concurrency caps and circuit breakers are per worker. The data dir holds only model caches here. "
            "Exit codes: 0 done, 2 bad usage or no server, 3 this worker kept failing, 130 interrupted twice."
        ),
    )
    parser.add_argument("--role", choices=["miner"], default="miner", help="what this worker does (default: miner)")
    parser.add_argument(
        "--concurrency",
        type=_options.whole(1),
        metavar="N",
        help="posts mined at once (default: miner_concurrency, else as many as the generator batches)",
    )
    parser.add_argument(
        "--exit-when-idle",
        action="store_true",
        help="exit once the coordinator, seen running, has finished (started with --exit-when-idle)",
    )
    parser.add_argument(
        "--metrics-port",
        type=_options.whole(1, 65535),
        metavar="PORT",
        help="serve Prometheus metrics on 127.0.0.1:PORT/metrics",
    )
    parser.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    import anyio

    from reer_runtime.daemon import check_chains, make_data_dir, open_chains
    from reer_runtime.worker import run_worker
    from runtime.config import load_settings
    from runtime.logs import configure
    from runtime.telemetry import setup_telemetry

    with ExitStack() as stack:
        try:
            settings = load_settings(
                _options.data_dir(args),
                **_options.log_flags(args),
                **_options.model_flags(args),
                bus=_options.bus_flags(args),
            )
            if settings.bus.url == "memory://":
                raise UsageError("a worker needs a NATS bus to take work from: --bus nats://HOST:4222")
            make_data_dir(settings.data_dir)
            chains = open_chains(settings)
            telemetry = setup_telemetry(args.metrics_port)
        except (OSError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        stack.callback(telemetry.shutdown)
        configure(settings, telemetry.log_handler)
        chains = anyio.run(check_chains, chains)
        concurrency = args.concurrency or settings.mining_concurrency(chains["generator"][0].capacity)
        code: int = anyio.run(
            partial(run_worker, settings, chains, concurrency=concurrency, exit_when_idle=args.exit_when_idle)
        )
    return code
