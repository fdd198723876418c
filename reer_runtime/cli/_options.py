"""Options shared by several commands, and the helpers that read them."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime import __version__
from runtime.config import CsvMapping, resolve_data_dir
from runtime.errors import UsageError

PROVIDERS_HELP = (
    "the model for both roles: mlx://smollm2-135m (the packaged local model, the default; local:// is the same), "
    "mlx:///FOLDER or mlx:///FILE.gguf, mlx://ORG/REPO (a hub id), openai://HOST:PORT/MODEL (an "
    "OpenAI-compatible server; ?tls=1, ?key_env=NAME), dspy://PROVIDER/MODEL (a chat model through DSPy; "
    "generator only), fault://?base=URI&error=0.2 (injected failures), dummy:// (a tiny test model)"
)


def add_global(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every command takes, before or after its name. On a command they default to
    nothing (`SUPPRESS`), so one given before the command name is not undone after it."""
    unset: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where traces, posts and configuration live ($REER_HOME, else ~/.reer)",
        **unset,
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        help="the configuration file (.toml or .json; $REER_CONFIG), instead of the data dir's config.toml or "
        "config.json",
        **unset,
    )
    parser.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper, help="default INFO", **unset
    )
    parser.add_argument("-v", "--verbose", action="count", help="more logs: -v is --log-level DEBUG", **unset)
    parser.add_argument("-q", "--quiet", action="count", help="fewer logs: -q is WARNING, -qq ERROR", **unset)
    parser.add_argument(
        "--log-format", choices=["text", "json"], help="text lines (default) or one JSON object a line", **unset
    )
    parser.add_argument(
        "--log-file",
        metavar="PATH",
        type=Path,
        help="also log to PATH, rotated by size (logging.max_bytes, logging.backups); logging.file_enabled logs to "
        "<data-dir>/logs/reer.log",
        **unset,
    )
    parser.add_argument("--version", action="version", version=f"reer-runtime {__version__}")


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse `type`: a whole number in [low, high], so a bad one is reported with its option."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"{value} is out of range: at least {low}" + (f" and at most {high}" if high is not None else "")
            )
        return value

    return parse


def models() -> argparse.ArgumentParser:
    """`--provider`, `--generator` and `--scorer`."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--provider", metavar="URI", help=PROVIDERS_HELP)
    parent.add_argument("--generator", metavar="URI[,URI...]", help="models that write plans, in fallback order")
    parent.add_argument("--scorer", metavar="URI[,URI...]", help="models that score plans, in fallback order")
    parent.add_argument(
        "--judge",
        metavar="URI[,URI...]",
        help="a second scorer that takes no part in the search and judges the plans found (a larger GGUF, a vLLM "
        "server); its figures go in each trace's `judge`",
    )
    return parent


def bus() -> argparse.ArgumentParser:
    """`--bus` and `--namespace`."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--bus",
        metavar="URL",
        help="memory:// (everything in this process, the default) or nats://HOST:4222 (NATS JetStream: "
        "miners in other processes and machines, see `reer-runtime worker`); tls://USER:PASSWORD@HOST:4222 "
        "over TLS with a user (bus.tls_ca and bus.creds in the config)",
    )
    parent.add_argument(
        "--namespace", metavar="NAME", help="keeps one deployment's streams apart on a shared NATS (default: reer)"
    )
    return parent


def data_dir(args: argparse.Namespace) -> Path:
    """`--data-dir`, else `$REER_HOME`, else `~/.reer`."""
    return resolve_data_dir(args.data_dir)


def existing_data_dir(args: argparse.Namespace) -> Path:
    """`data_dir(args)`, for commands that only read it: a usage error if it does not exist (a typo
    would otherwise read as an empty store)."""
    path = data_dir(args)
    if not path.is_dir():
        raise UsageError(f"data dir {path} does not exist (--data-dir, else $REER_HOME, else ~/.reer)")
    return path


def log_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The logging settings the global options give: `--log-level` over `-v`/`-q`."""
    level = args.log_level
    if level is None and args.verbose:
        level = "DEBUG"
    if level is None and args.quiet:
        level = "WARNING" if args.quiet == 1 else "ERROR"
    logging = {"file": args.log_file, "file_enabled": True} if args.log_file else None
    return {"log_level": level, "log_format": args.log_format, "logging": logging, "config": args.config}


def model_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The model chains `--provider`, `--generator`, `--scorer` and `--judge` give."""
    return {"generator": args.generator or args.provider, "scorer": args.scorer or args.provider, "judge": args.judge}


def bus_flags(args: argparse.Namespace) -> dict[str, object] | None:
    """The bus settings given on the command line."""
    given = {
        "url": getattr(args, "bus", None),
        "namespace": getattr(args, "namespace", None),
        "mine_here": getattr(args, "mine_here", None),
    }
    return {k: v for k, v in given.items() if v is not None} or None


def csv_mapping(flags: list[str] | None) -> dict[str, str] | None:
    """`--csv text=body,time=date` (repeatable) as a dict. A comma separates pairs only where a
    mapping key and `=` follow it, so a value such as `time_format=%a, %b %d, %Y` keeps its commas."""
    if not flags:
        return None
    keys = "|".join(CsvMapping.model_fields)
    parts = [part for flag in flags for part in re.split(rf",\s*(?=(?:{keys})=)", flag) if part.strip()]
    pairs = [part.split("=", 1) for part in parts]
    if bad := [
        part
        for part, pair in zip(parts, pairs, strict=True)
        if len(pair) != 2 or pair[0].strip() not in CsvMapping.model_fields
    ]:
        raise UsageError(f"--csv wants KEY=VALUE pairs with KEY one of {keys.replace('|', ', ')}; got {bad[0]!r}")
    return {k.strip(): v for k, v in pairs}
