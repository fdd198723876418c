"""The `reer-runtime` command line. Heavy modules are imported inside the commands that need them."""

from __future__ import annotations

import argparse
import os
import re
import sys
from contextlib import ExitStack
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from bus.records import GenerateEvent, OptimizeEvent, Platform
from runtime import __version__
from runtime.errors import ExitCode, ReerError, UsageError
from runtime.inputs import read_text_file


def main(argv: list[str] | None = None) -> int:
    """Run one command; a `ReerError` ends it with one line on stderr and the error's exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "command"):
        parser.print_help()
        return ExitCode.USAGE
    try:
        code: int = args.command(args)
    except ReerError as exc:
        print(f"reer-runtime: {exc}", file=sys.stderr)
        return exc.exit_code
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reer-runtime",
        description="Mine the strategies behind a writer's best posts (REER) and keep them as traces.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--data-dir", help="where traces, posts and configuration live (default: $REER_HOME, else ~/.reer)"
    )
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument("--data-dir", dest="data_dir_start", metavar="DIR", help="as the global --data-dir")
    models = argparse.ArgumentParser(add_help=False)
    models.add_argument(
        "--provider",
        metavar="URI",
        help="the model for both roles: mlx://smollm2-135m (the packaged local model, the default), "
        "mlx:///FOLDER or mlx:///FILE.gguf, mlx://ORG/REPO (a hub id), openai://HOST:PORT/MODEL (an "
        "OpenAI-compatible server; ?tls=1, ?key_env=NAME), dspy://PROVIDER/MODEL (a chat model through DSPy; "
        "generator only), fault://?base=URI&error=0.2 (injected failures), dummy:// (a tiny test model)",
    )
    models.add_argument("--generator", metavar="URI[,URI...]", help="models that write plans, in fallback order")
    models.add_argument("--scorer", metavar="URI[,URI...]", help="models that score plans, in fallback order")
    models.add_argument("--log-format", choices=["text", "json"])
    bus = argparse.ArgumentParser(add_help=False)
    bus.add_argument(
        "--bus",
        metavar="URL",
        help="memory:// (everything in this process, the default) or nats://HOST:4222 (NATS JetStream: "
        "miners in other processes and machines, see `reer-runtime worker`)",
    )
    bus.add_argument(
        "--namespace", metavar="NAME", help="keeps one deployment's streams apart on a shared NATS (default: reer)"
    )
    commands = parser.add_subparsers(title="commands")

    start = commands.add_parser(
        "start",
        parents=[data_dir, models, bus],
        help="run the daemon: read events, mine the good posts, write traces",
        description=(
            "Read JSON Lines events (posts) from files or stdin, mine a REER strategy for each post that did "
            "well for its author, and append the traces to <data-dir>/traces.jsonl. Rejected lines go to "
            "<data-dir>/rejected.jsonl with the reason. Exit codes: 0 done, 2 bad usage or configuration "
            "(or another daemon on the data dir), 3 an actor kept failing, 4 the disk is full, 130 interrupted "
            "twice."
        ),
    )
    start.add_argument(
        "--input",
        "-i",
        action="extend",
        nargs="+",
        metavar="PATH",
        help="files or folders to read: JSON Lines, X exports (a folder of them, or the unpacked archive), CSV; "
        "'-' is stdin (the default); several paths, or the option repeated",
    )
    start.add_argument(
        "--format",
        choices=["auto", "jsonl", "x-analytics", "x-archive", "csv"],
        help="the input's format: JSON Lines, an X Analytics CSV, an X archive (tweets.js or the unpacked "
        "folder), or any CSV with --csv; default: told from the content",
    )
    start.add_argument(
        "--csv",
        action="append",
        metavar="KEY=VALUE,...",
        help="how a CSV's columns map to a post, e.g. text=text,time=created_at,time_format=%%m/%%d/%%y %%H:%%M,"
        "id=url,likes=favorites,reposts=retweets,replies=replies,author=user,encoding=cp1252; a comma starts "
        "a new pair only before a KEY=, so 'time_format=%%a, %%b %%d, %%Y' works; or repeat --csv KEY=VALUE",
    )
    start.add_argument(
        "--watch",
        metavar="DIR",
        type=Path,
        help="read each file dropped into DIR once (any input format), then move it to DIR/done/ "
        "(DIR/failed/ if unreadable); with --exit-when-idle, the files there now",
    )
    start.add_argument("--min-engagement", type=float, metavar="X", help="mine posts scoring at least X in [0, 1]")
    start.add_argument("--exit-when-idle", action="store_true", help="exit 0 once the input is consumed and mined")
    start.add_argument(
        "--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics on 127.0.0.1:PORT/metrics"
    )
    start.add_argument(
        "--no-miners",
        dest="mine_here",
        action="store_false",
        default=None,
        help="with a nats:// bus, mine nothing here: workers elsewhere do it all",
    )
    start.set_defaults(command=_start, retry_failed=False, request=None)

    worker = commands.add_parser(
        "worker",
        parents=[data_dir, models, bus],
        help="mine posts for a coordinator (`start --bus nats://...`) from another process or machine",
        description=(
            "Take posts from the NATS JetStream bus of a coordinator (reer-runtime start --bus nats://HOST:4222), "
            "mine them with this machine's models and send the traces back. Start as many as you like, anywhere "
            "the server is reachable: each post is mined by one of them, and a post whose worker dies is mined "
            "by another. Rate limits (limits.* in the data dir's config.toml) hold across all workers together; "
            "concurrency caps and circuit breakers are per worker. The data dir holds only model caches here. "
            "Exit codes: 0 done, 2 bad usage or no server, 3 this worker kept failing, 130 interrupted twice."
        ),
    )
    worker.add_argument("--role", choices=["miner"], default="miner", help="what this worker does (default: miner)")
    worker.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help="posts mined at once (default: miner_concurrency, else as many as the generator batches)",
    )
    worker.add_argument(
        "--exit-when-idle",
        action="store_true",
        help="exit once the coordinator, seen running, has finished (started with --exit-when-idle)",
    )
    worker.add_argument(
        "--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics on 127.0.0.1:PORT/metrics"
    )
    worker.set_defaults(command=_worker)

    status = commands.add_parser(
        "bus",
        parents=[data_dir, bus],
        help="the NATS bus: messages waiting, in flight and redelivered per topic, and who is connected",
        description="Show, for a nats:// bus, each topic's consumer groups with their pending, unacked and "
        "redelivered messages, the coordinator holding the namespace, and the workers present.",
    )
    status.add_argument("what", choices=["status"], help="status: the state of the streams and the processes")
    status.add_argument("--json", action="store_true", help="the state as JSON")
    status.set_defaults(command=_bus_status)

    retry = commands.add_parser(
        "retry-failed",
        parents=[data_dir, models],
        help="mine again the posts whose mining failed (failed.jsonl), then exit",
        description="Run the daemon on no new input, resuming every selected post that has no trace yet, "
        "including those recorded as failed.",
    )
    # the commands that run the daemon once, on no input of their own
    one_shot = {
        "command": _start,
        "request": None,
        "retry_failed": False,
        "input": None,
        "exit_when_idle": True,
        "min_engagement": None,
        "metrics_port": None,
    }
    retry.set_defaults(**one_shot | {"retry_failed": True})

    generate = commands.add_parser(
        "generate",
        parents=[data_dir, models],
        help="write new drafts for a brief with the current writer program, then exit",
        description=(
            "Write N candidate drafts for the brief with the newest promoted writer program (the "
            "uncompiled one until `optimize` has promoted one). Each draft is printed and appended to "
            "<data-dir>/drafts.jsonl with its plan, features and score; a draft that breaks the platform's "
            "limits is kept with the reason."
        ),
    )
    generate.add_argument("--topic", required=True, help="what the post is about")
    generate.add_argument("--platform", default="x", choices=[p.value for p in Platform], help="default: x")
    generate.add_argument(
        "--n", "-n", type=int, default=3, metavar="N", help="how many drafts within the limits (default 3, at most 20)"
    )
    generate.add_argument(
        "--thread-size", type=int, default=1, metavar="K", help="posts in the thread, exactly (default 1: one post)"
    )
    generate.add_argument("--length", default="short", choices=["short", "medium", "long"])
    generate.add_argument("--audience", default="", help="who it is for")
    generate.add_argument("--style", default="", help="e.g. 'plain, first person, no hashtags'")
    generate.add_argument("--key-message", default="", help="the one thing the reader should remember")
    generate.add_argument("--cta", default="", help="the call to action")
    generate.add_argument(
        "--template",
        default="content_generation",
        metavar="NAME",
        help="the writing template: content_generation (a post, the default), thread, reply, repurpose, or one "
        "of config.toml's [[templates]]; `reer-runtime templates` lists them",
    )
    generate.add_argument(
        "--text",
        action="append",
        default=[],
        metavar="NAME=TEXT",
        help="a text the template reads beside the brief, e.g. post_replied_to=... (reply) or source_text=@FILE "
        "(repurpose; @ reads the file); repeat for several",
    )
    generate.add_argument(
        "--json", action="store_true", help="print each draft as one JSON line (its drafts.jsonl record), for scripts"
    )
    generate.set_defaults(**one_shot | {"request": "generate"})

    optimize = commands.add_parser(
        "optimize",
        parents=[data_dir, models],
        help="compile the writer program on the mined traces, then exit",
        description=(
            "Compile the writer program on the traces in the store with a DSPy optimizer, measure it "
            "against the current program on held-out traces, save it under <data-dir>/programs/ and "
            "promote it if it scores at least as well."
        ),
    )
    optimize.add_argument(
        "--optimizer", choices=["bootstrap", "mipro", "gepa"], help="default: writer.optimizer (bootstrap)"
    )
    optimize.add_argument(
        "--template",
        default="content_generation",
        metavar="NAME",
        help="the writing template to compile (default content_generation); each has its own promoted program",
    )
    optimize.set_defaults(**one_shot | {"request": "optimize"})

    report = commands.add_parser(
        "report",
        parents=[data_dir],
        help="write an HTML report of the posts, when they did well, and the strategies mined",
        description=(
            "Write OUT/report.html, one self-contained page (inline SVG charts, nothing fetched when viewed): "
            "the engagement distribution, engagement by hour and day, the top posts, the strategies mined, "
            "and each mined post's score with no plan, the initial plan and the found plan. Safe to run while "
            "the daemon runs."
        ),
    )
    report.add_argument(
        "--out", type=Path, metavar="DIR", help="where to write report.html (default: <data-dir>/report)"
    )
    report.add_argument(
        "--tz", metavar="ZONE", help="the time zone of the charts, e.g. Europe/Paris (default: this machine's)"
    )
    report.set_defaults(command=_report)

    traces = commands.add_parser(
        "traces", parents=[data_dir], help="list the mined traces", description="List the mined traces."
    )
    traces.add_argument(
        "--min-score", type=float, default=0.0, metavar="X", help="only posts whose engagement score is at least X"
    )
    traces.add_argument("--limit", type=int, metavar="N", help="at most N traces (the newest)")
    traces.add_argument("--json", action="store_true", help="one JSON trace per line")
    traces.set_defaults(command=_traces, show=None)
    shown = traces.add_subparsers(title="one trace", metavar="show ID").add_parser(
        "show",
        help="print one trace in full: the post, its brief, each plan section, every step's candidates and "
        "scores, the three scores and the OpenTelemetry trace id",
    )
    shown.add_argument("show", metavar="ID", help="a trace id, a post key (x:1003) or a post id")

    templates = commands.add_parser(
        "templates",
        parents=[data_dir],
        help="list the writing templates and their current programs",
        description="List the writing templates: the four that ship and those of config.toml's [[templates]] "
        "tables, with the texts each reads beside the brief and its promoted program (`optimize --template`).",
    )
    templates.set_defaults(command=_templates)

    stats = commands.add_parser(
        "stats",
        parents=[data_dir],
        help="the last run's figures: counts, success rate, model latencies, rejections",
        description="Summarise the snapshot the daemon writes to <data-dir>/stats.json while it runs and at exit.",
    )
    stats.add_argument("--json", action="store_true", help="the snapshot as JSON")
    stats.set_defaults(command=_stats)

    validate = commands.add_parser(
        "validate",
        parents=[data_dir],
        help="check the configuration, stores, schemas and models; exit 1 on any problem",
        description="Check the configuration, every store, the schemas and each configured model (which "
        "BLAS and device the local model uses). Reports every problem found; exits 1 if there is any.",
    )
    validate.add_argument("--provider", metavar="URI", help="check this model instead of the configured ones")
    validate.set_defaults(command=_validate)
    return parser


def _data_dir(args: argparse.Namespace) -> Path:
    from runtime.config import resolve_data_dir

    return resolve_data_dir(getattr(args, "data_dir_start", None) or args.data_dir)


def _start(args: argparse.Namespace) -> int:
    # DSPy keeps its cache in the data dir, and litellm (loaded only for cloud models) stays offline
    os.environ.setdefault("DSPY_CACHEDIR", str(_data_dir(args) / "dspy-cache"))
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import anyio

    from actors.generator import print_draft, print_draft_json
    from runtime.config import load_settings
    from runtime.daemon import check_chains, make_data_dir, open_chains, serve
    from runtime.imports.sources import check, expand
    from runtime.lock import exclusive
    from runtime.logs import setup_logging
    from runtime.telemetry import setup_telemetry
    from runtime.writer.templates import checked, lookup

    retrying = args.retry_failed
    requests = _requests(args)
    watch = getattr(args, "watch", None)
    if watch is not None and not watch.is_dir():
        raise UsageError(f"--watch {watch}: no such folder")
    sources = [] if retrying or requests else expand(args.input or ([] if watch else ["-"]))
    if missing := [s for s in sources if s != "-" and not Path(s).exists()]:
        raise UsageError(f"no such input file: {', '.join(missing)}")
    csv_mapping = _csv_mapping(getattr(args, "csv", None))
    flags = {
        "input_format": getattr(args, "format", None),
        "csv": csv_mapping,
        "generator": args.generator or args.provider,
        "scorer": args.scorer or args.provider,
        "min_engagement": args.min_engagement,
        "log_format": args.log_format,
        "retry_failed_on_start": True if retrying else None,
        "bus": _bus_flags(args),
    }
    with ExitStack() as stack:
        try:
            settings = load_settings(_data_dir(args), **flags)
            make_data_dir(settings.data_dir)
            stack.enter_context(exclusive(settings.data_dir))
            for source in sources:
                if source != "-":
                    check(Path(source), settings.input_format, settings.csv)
            chains = open_chains(settings)
            telemetry = setup_telemetry(args.metrics_port)
        except (OSError, ValueError) as exc:  # the data dir or an input cannot be made or read
            raise UsageError(str(exc)) from None
        stack.callback(telemetry.shutdown)
        setup_logging(settings.log_format, settings.log_level, telemetry.log_handler)
        for request in requests:
            if isinstance(request, GenerateEvent):
                checked(settings.writing_templates(), request)
            else:
                lookup(settings.writing_templates(), request.template)
        chains = anyio.run(check_chains, chains)
        run = partial(
            serve,
            settings,
            chains,
            sources,
            exit_when_idle=args.exit_when_idle,
            requests=requests,
            watch=watch.resolve() if watch else None,
            stats_reader=telemetry.stats_reader,
            show_draft=print_draft_json if getattr(args, "json", False) else print_draft,
        )
        code: int = anyio.run(run)
    return code


def _bus_flags(args: argparse.Namespace) -> dict[str, object] | None:
    """The bus settings given on the command line."""
    given = {
        "url": getattr(args, "bus", None),
        "namespace": getattr(args, "namespace", None),
        "mine_here": getattr(args, "mine_here", None),
    }
    return {k: v for k, v in given.items() if v is not None} or None


def _worker(args: argparse.Namespace) -> int:
    import anyio

    from runtime.config import load_settings
    from runtime.daemon import check_chains, make_data_dir, open_chains
    from runtime.logs import setup_logging
    from runtime.telemetry import setup_telemetry
    from runtime.worker import run_worker

    flags = {
        "generator": args.generator or args.provider,
        "scorer": args.scorer or args.provider,
        "log_format": args.log_format,
        "bus": _bus_flags(args),
    }
    with ExitStack() as stack:
        try:
            settings = load_settings(_data_dir(args), **flags)
            if settings.bus.url == "memory://":
                raise UsageError("a worker needs a NATS bus to take work from: --bus nats://HOST:4222")
            make_data_dir(settings.data_dir)
            chains = open_chains(settings)
            telemetry = setup_telemetry(args.metrics_port)
        except (OSError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        stack.callback(telemetry.shutdown)
        setup_logging(settings.log_format, settings.log_level, telemetry.log_handler)
        chains = anyio.run(check_chains, chains)
        concurrency = args.concurrency or settings.mining_concurrency(chains["generator"][0].capacity)
        code: int = anyio.run(
            partial(run_worker, settings, chains, concurrency=concurrency, exit_when_idle=args.exit_when_idle)
        )
    return code


def _bus_status(args: argparse.Namespace) -> int:
    import anyio

    from runtime.busstatus import print_status
    from runtime.config import load_settings

    settings = load_settings(_data_dir(args), bus=_bus_flags(args))
    if settings.bus.url == "memory://":
        raise UsageError("the memory:// bus lives inside its daemon; give a NATS bus: --bus nats://HOST:4222")
    code: int = anyio.run(print_status, settings, args.json)
    return code


def _csv_mapping(flags: list[str] | None) -> dict[str, str] | None:
    """`--csv text=body,time=date` (repeatable) as a dict. A comma separates pairs only where a
    mapping key and `=` follow it, so a value such as `time_format=%a, %b %d, %Y` keeps its commas."""
    if not flags:
        return None
    from runtime.config import CsvMapping

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


def _requests(args: argparse.Namespace) -> list[GenerateEvent | OptimizeEvent]:
    """The request `generate` or `optimize` makes, checked like one read from the input."""
    try:
        return _request(args)
    except msgspec.ValidationError as exc:
        raise UsageError(str(exc)) from None


def _request(args: argparse.Namespace) -> list[GenerateEvent | OptimizeEvent]:
    if args.request == "generate":
        fields = {
            "topic": args.topic,
            "platform": args.platform,
            "n": args.n,
            "thread_size": args.thread_size,
            "length": args.length,
            "audience": args.audience,
            "style": args.style,
            "key_message": args.key_message,
            "call_to_action": args.cta,
            "template": args.template,
            "texts": _texts(args.text),
        }
        return [msgspec.convert(fields, GenerateEvent)]
    if args.request == "optimize":
        return [OptimizeEvent(optimizer=args.optimizer, template=args.template)]
    return []


def _texts(flags: list[str]) -> dict[str, str]:
    """`--text NAME=TEXT` flags by name; `NAME=@FILE` reads the text from a regular file."""
    texts: dict[str, str] = {}
    for flag in flags:
        name, sep, value = flag.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--text wants NAME=TEXT or NAME=@FILE; got {flag!r}")
        if value.startswith("@"):
            value = read_text_file(Path(value[1:]), f"--text {name}")
        texts[name.strip()] = value
    return texts


def _report(args: argparse.Namespace) -> int:
    from runtime.report.page import build

    data_dir = _data_dir(args)
    if not (data_dir / "posts.jsonl").is_file():
        raise ReerError(
            f"no data in {data_dir}: mine your posts first (reer-runtime start --input FILE), "
            "or give the data dir (--data-dir, REER_HOME)"
        )
    try:
        tz = ZoneInfo(args.tz) if args.tz else datetime.now().astimezone().tzinfo
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--tz {args.tz}: not a time zone name like Europe/Paris or UTC") from None
    out: Path = args.out or data_dir / "report"
    page = build(data_dir, tz or UTC)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text(page, encoding="utf-8")
    print(out / "report.html")
    return 0


def _templates(args: argparse.Namespace) -> int:
    from runtime.templatelist import print_templates

    return print_templates(_data_dir(args))


def _stats(args: argparse.Namespace) -> int:
    from runtime.stats import print_stats

    return print_stats(_data_dir(args), args.json)


def _validate(args: argparse.Namespace) -> int:
    from runtime.validate import validate

    return validate(_data_dir(args), provider=args.provider)


def _traces(args: argparse.Namespace) -> int:
    from runtime.tracelist import print_traces, show_trace

    if args.show is not None:
        return show_trace(_data_dir(args), args.show)
    return print_traces(_data_dir(args), min_score=args.min_score, limit=args.limit, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
