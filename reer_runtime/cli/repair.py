"""`reer-runtime repair`: set aside the lines of the stores that are not records, so the rest can be read."""

from __future__ import annotations

import argparse
import sys

from . import _options


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "repair",
        parents=[common],
        help="move corrupt lines out of the stores (into <store>.corrupt) so that the rest can be read",
        description=(
            "A store line that is not a valid record (a disk error, an edit by hand) stops `start`, `traces` "
            "and `report`, which say which line. This moves each such line, whole, to <store>.corrupt beside "
            "the store, and keeps every other record in order. Run it with no daemon on the data dir; "
            "`validate` shows what it would find."
        ),
    )
    parser.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    from runtime.config import load_settings
    from runtime.ledger import Stores
    from runtime.lock import exclusive

    data_dir = _options.existing_data_dir(args)
    stores = Stores.at(data_dir, load_settings(data_dir, args.config).traces_path).all()
    with exclusive(data_dir):
        moved = {store.path: store.set_aside_corrupt() for store in stores if store.path.exists()}
    for path, count in moved.items():
        if count:
            print(f"{path}: {count} corrupt line(s) moved to {path.name}.corrupt", file=sys.stderr)
    print(f"{sum(moved.values())} corrupt line(s) set aside in {data_dir}", file=sys.stderr)
    return 0
