"""`reer-runtime traces`: the mined traces, or one in full."""

from __future__ import annotations

import argparse

from . import _options


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "traces", parents=[common], help="list the mined traces", description="List the mined traces."
    )
    parser.add_argument(
        "--min-score", type=float, default=0.0, metavar="X", help="only posts whose engagement score is at least X"
    )
    parser.add_argument("--limit", type=_options.whole(1), metavar="N", help="at most N traces (the newest)")
    parser.add_argument("--json", action="store_true", help="one JSON trace per line")
    parser.set_defaults(command=run, show=None)
    shown = parser.add_subparsers(title="one trace", metavar="show ID").add_parser(
        "show",
        parents=[common],
        help="print one trace in full: the post, its brief, each plan section, every step's candidates and "
        "scores, the three scores and the OpenTelemetry trace id",
    )
    shown.add_argument("show", metavar="ID", help="a trace id, a post key (x:1003) or a post id")


def run(args: argparse.Namespace) -> int:
    from reer_runtime.tracelist import print_traces, show_trace
    from runtime.config import load_settings

    store = load_settings(_options.existing_data_dir(args), args.config).traces_path
    if args.show is not None:
        return show_trace(store, args.show)
    return print_traces(store, min_score=args.min_score, limit=args.limit, as_json=args.json)
