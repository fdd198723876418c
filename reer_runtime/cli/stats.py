"""`reer-runtime stats`: the last run's figures."""

from __future__ import annotations

import argparse

from . import _options


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "stats",
        parents=[common],
        help="the last run's figures: counts, success rate, model latencies, rejections",
        description="Summarise the snapshot the daemon writes to <data-dir>/stats.json while it runs and at exit.",
    )
    parser.add_argument("--json", action="store_true", help="the snapshot as JSON")
    parser.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    from reer_runtime.stats import print_stats

    return print_stats(_options.existing_data_dir(args), args.json)
