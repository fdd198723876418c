"""`reer-runtime optimize`: compile a writing template's program on the traces, then exit."""

from __future__ import annotations

import argparse

from runtime.records import OPTIMIZERS, OptimizeEvent

from . import _options
from ._daemon import run_daemon


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "optimize",
        parents=[common, _options.models()],
        help="compile the writer program on the mined traces, then exit",
        description=(
            "Compile a writing template's program on the traces in the store with a DSPy optimizer, measure it "
            "against the template's current program on held-out traces, save it under <data-dir>/programs/ and "
            "promote it if it scores at least as well."
        ),
    )
    parser.add_argument("--optimizer", choices=OPTIMIZERS, help="default: writer.optimizer (bootstrap)")
    parser.add_argument(
        "--template",
        default="content_generation",
        metavar="NAME",
        help="the writing template to compile (default content_generation); each has its own promoted program",
    )
    parser.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    return run_daemon(args, requests=[OptimizeEvent(optimizer=args.optimizer, template=args.template)])
