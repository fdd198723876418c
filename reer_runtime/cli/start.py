"""`reer-runtime start`: the daemon."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from runtime.records import INPUT_FORMATS

from . import _options
from ._daemon import run_daemon
from ._drafts import printer


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """`--format`, `--csv` and `--min-engagement`: how input is read and which posts are mined."""
    parser.add_argument(
        "--format",
        choices=INPUT_FORMATS,
        help="the input's format: JSON Lines (or one JSON array of posts), an X Analytics CSV, an X archive "
        "(tweets.js or the unpacked folder), or any CSV with --csv; default: told from the content",
    )
    parser.add_argument(
        "--csv",
        action="append",
        metavar="KEY=VALUE,...",
        help="how a CSV's columns map to a post, e.g. text=text,time=created_at,time_format=%%m/%%d/%%y %%H:%%M,"
        "id=url,likes=favorites,reposts=retweets,replies=replies,author=user,encoding=cp1252; a comma starts "
        "a new pair only before a KEY=, so 'time_format=%%a, %%b %%d, %%Y' works; or repeat --csv KEY=VALUE",
    )
    parser.add_argument("--min-engagement", type=float, metavar="X", help="mine posts scoring at least X in [0, 1]")


def input_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings `add_input_options` gives."""
    return {
        "input_format": args.format,
        "csv": _options.csv_mapping(args.csv),
        "min_engagement": args.min_engagement,
    }


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "start",
        parents=[common, _options.models(), _options.bus()],
        help="run the daemon: read events, mine the good posts, write traces",
        description=(
            "Read JSON Lines events (posts) from files or stdin, mine a REER strategy for each post that did "
            "well for its author, and append the traces to <data-dir>/traces.jsonl. Rejected lines go to "
            "<data-dir>/rejected.jsonl with the reason. Exit codes: 0 done, 2 bad usage or configuration "
            "(or another daemon on the data dir), 3 an actor kept failing, 4 the disk is full, 130 interrupted "
            "twice."
        ),
    )
    parser.add_argument(
        "--input",
        "-i",
        action="extend",
        nargs="+",
        metavar="PATH",
        help="files or folders to read: JSON Lines, X exports (a folder of them, or the unpacked archive), CSV; "
        "'-' is stdin (the default); several paths, or the option repeated",
    )
    add_input_options(parser)
    parser.add_argument(
        "--watch",
        metavar="DIR",
        type=Path,
        help="read each file dropped into DIR once (any input format), then move it to DIR/done/ "
        "(DIR/failed/ if unreadable); with --exit-when-idle, the files there now",
    )
    parser.add_argument("--exit-when-idle", action="store_true", help="exit 0 once the input is consumed and mined")
    parser.add_argument(
        "--metrics-port",
        type=_options.whole(1, 65535),
        metavar="PORT",
        help="serve Prometheus metrics on 127.0.0.1:PORT/metrics",
    )
    parser.add_argument(
        "--no-miners",
        dest="mine_here",
        action="store_false",
        default=None,
        help="with a nats:// bus, mine nothing here: workers elsewhere do it all",
    )
    parser.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    from runtime.errors import UsageError
    from runtime.inputs.sources import expand

    if args.watch is not None and not args.watch.is_dir():
        raise UsageError(f"--watch {args.watch}: no such folder")
    if not args.input and args.watch is None and sys.stdin.isatty():
        print("reading posts (JSON Lines) from the terminal; end with Ctrl-D, or give --input FILE", file=sys.stderr)
    return run_daemon(
        args,
        sources=expand(args.input or ([] if args.watch else ["-"])),
        exit_when_idle=args.exit_when_idle,
        watch=args.watch,
        metrics_port=args.metrics_port,
        show_draft=printer(sys.stdout, as_json=False),
        bus=_options.bus_flags(args),
        **input_settings(args),
    )
