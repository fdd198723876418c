"""`reer-runtime mine PATH...`: mine these files, then exit."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import _options
from ._daemon import run_daemon
from .start import add_input_options, input_settings


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "mine",
        parents=[common, _options.models()],
        help="mine the posts of these files, then exit (start --exit-when-idle)",
        description="Read the files (any input format: JSON Lines, a JSON array of posts, X exports, CSV), mine "
        "a REER strategy for each post that did well for its author, append the traces to the trace store, "
        "and exit once all are mined. Posts already mined are not mined again.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or folders of posts; '-' is stdin")
    add_input_options(parser)
    parser.add_argument(
        "--trace-store",
        type=Path,
        metavar="FILE",
        help="where the traces go (default <data-dir>/traces.jsonl); the other stores stay in the data dir",
    )
    parser.add_argument(
        "--rate-limit",
        nargs="?",
        const=60,
        type=_options.whole(1),
        metavar="PER_MINUTE",
        help="at most this many model calls a minute to each provider (60 if no number is given); the "
        "limits.default.per_minute setting",
    )
    parser.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    from runtime.inputs.sources import expand

    limits = {"default": {"per_minute": args.rate_limit}} if args.rate_limit else None
    return run_daemon(
        args,
        sources=expand(args.paths),
        trace_store=args.trace_store.resolve() if args.trace_store else None,
        limits=limits,
        **input_settings(args),
    )
