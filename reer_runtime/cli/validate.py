"""`reer-runtime validate`: check the configuration, stores, schemas and models."""

from __future__ import annotations

import argparse

from . import _options


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "validate",
        parents=[common],
        help="check the configuration, stores, schemas and models; exit 1 on any problem",
        description="Check the configuration (naming the file read), every store, the schemas and each configured "
        "model (which BLAS and device the local model uses). Reports every problem found; exits 1 if there is any.",
    )
    parser.add_argument("--provider", metavar="URI", help="check this model instead of the configured ones")
    parser.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    from reer_runtime.validate import validate

    return validate(_options.data_dir(args), provider=args.provider, config=args.config)
