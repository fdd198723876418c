"""The `reer-runtime` command line: one module per command, each with its parser and its `run`.

Heavy modules are imported inside the commands that need them, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys

import shtab

from runtime.errors import ExitCode, ReerError

from . import (
    _options,
    bus,
    demo,
    generate,
    mine,
    optimize,
    providers,
    repair,
    report,
    retry,
    start,
    stats,
    templates,
    traces,
    validate,
    worker,
)

COMMANDS = [
    mine,
    start,
    generate,
    optimize,
    demo,
    traces,
    templates,
    report,
    stats,
    validate,
    repair,
    providers,
    retry,
    worker,
    bus,
]


def parser() -> argparse.ArgumentParser:
    """The parser of every command."""
    top = argparse.ArgumentParser(
        prog="reer-runtime",
        description="Mine the strategies behind a writer's best posts (REER), keep them as traces, and write "
        "new posts with a writer program compiled on them. Start with `reer-runtime demo`.",
    )
    _options.add_global(top, top=True)
    shtab.add_argument_to(
        top,
        ["--print-completion"],
        help="print a shell completion script: reer-runtime --print-completion bash > "
        "~/.local/share/bash-completion/completions/reer-runtime",
    )
    common = argparse.ArgumentParser(add_help=False)
    _options.add_global(common, top=False)
    commands = top.add_subparsers(title="commands", metavar="COMMAND")
    for command in COMMANDS:
        command.add(commands, common)
    return top


def main(argv: list[str] | None = None) -> int:
    """Run one command; a `ReerError` ends it with one line on stderr and the error's exit code."""
    cli = parser()
    args = cli.parse_args(argv)
    if not hasattr(args, "command"):
        cli.print_help()
        return ExitCode.USAGE
    try:
        code: int = args.command(args)
    except ReerError as exc:
        print(f"reer-runtime: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # the reader went away (`traces --json | head -1`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush fails nowhere
        return ExitCode.OK
    return code
