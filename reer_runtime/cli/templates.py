"""`reer-runtime templates`: the writing templates and their current programs."""

from __future__ import annotations

import argparse

from . import _options


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "templates",
        parents=[common],
        help="list the writing templates and their current programs",
        description="List the writing templates: the four that ship and the configuration's [[templates]], with "
        "the texts each reads beside the brief and its promoted program (`optimize --template`).",
    )
    parser.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    from reer_runtime.templatelist import print_templates
    from runtime.config import load_settings

    return print_templates(load_settings(_options.data_dir(args), args.config))
