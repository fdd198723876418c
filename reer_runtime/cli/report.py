"""`reer-runtime report`: one HTML page of the posts, when they did well, and the strategies mined."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runtime.errors import ReerError, UsageError
from runtime.files import write_private

from . import _options


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "report",
        parents=[common],
        help="write an HTML report of the posts, when they did well, and the strategies mined",
        description=(
            "Write OUT/report.html, one self-contained page (inline SVG charts, nothing fetched when viewed): "
            "the engagement distribution, engagement by hour and day, the top posts, the strategies mined, "
            "and each mined post's score with no plan, the initial plan and the found plan. Safe to run while "
            "the daemon runs."
        ),
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="where to write report.html (default: <data-dir>/report)"
    )
    parser.add_argument(
        "--tz", metavar="ZONE", help="the time zone of the charts, e.g. Europe/Paris (default: this machine's)"
    )
    parser.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    from runtime.config import load_settings

    data_dir = _options.data_dir(args)
    settings = load_settings(data_dir, args.config)
    print(write(data_dir, args.out or data_dir / "report", args.tz, settings.traces_path))
    return 0


def write(data_dir: Path, out: Path, tz_name: str | None, traces: Path) -> Path:
    """Write `out`/report.html for `data_dir` in the time zone `tz_name` (this machine's if None); its path."""
    from runtime.report.page import build

    if not (data_dir / "posts.jsonl").is_file():
        raise ReerError(
            f"no data in {data_dir}: mine your posts first (reer-runtime mine FILE), "
            "or give the data dir (--data-dir, REER_HOME)"
        )
    try:
        tz = ZoneInfo(tz_name) if tz_name else datetime.now().astimezone().tzinfo
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--tz {tz_name}: not a time zone name like Europe/Paris or UTC") from None
    page = build(data_dir, tz or UTC, traces)
    write_private(out / "report.html", page.encode())
    return out / "report.html"
