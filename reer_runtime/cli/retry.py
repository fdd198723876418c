"""`reer-runtime retry-failed`: mine again the posts whose mining failed."""

from __future__ import annotations

import argparse

from . import _options
from ._daemon import run_daemon


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "retry-failed",
        parents=[common, _options.models()],
        help="mine again the posts whose mining failed (failed.jsonl), then exit",
        description="Run the daemon on no new input, resuming every selected post that has no trace yet, "
        "including those recorded as failed.",
    )
    parser.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    return run_daemon(args, retry_failed_on_start=True)
