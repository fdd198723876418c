"""`reer-runtime demo`: the whole loop on the example posts, in one command, through the Python API."""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from importlib.resources import as_file, files
from pathlib import Path

from . import _options
from .report import write

TOPIC = "why we test backups by restoring them"


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "demo",
        parents=[common, _options.models()],
        help="run the whole loop on the example posts: mine, compile (--optimize), write three drafts, report",
        description="On the eight example posts, in a new temporary data dir (or --data-dir): mine the best "
        "posts, compile the writer on their traces (with --optimize), write three drafts, render the HTML "
        "report, and print a summary naming the report. The packaged local model is the default; the first "
        "thing to run.",
    )
    parser.add_argument(
        "--optimize", action="store_true", help="also compile the writer program on the traces (bootstrap)"
    )
    parser.add_argument("--topic", default=TOPIC, help=f"the drafts' topic (default: {TOPIC!r})")
    parser.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    import reer_runtime
    from runtime.config import load_settings
    from runtime.writer.draft_gate import kind

    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="reer-demo-"))
    flags = {**_options.log_flags(args), **_options.model_flags(args)}
    config = flags.pop("config")
    settings = {k: v for k, v in flags.items() if v is not None}
    if args.optimize:  # the examples' best posts are few: compile on both, whatever their held-out gain
        settings["writer"] = {"min_traces": 2, "min_gain": -100.0}
    print(f"demo in {data_dir}")
    with (
        as_file(files(__package__) / "demo_posts.jsonl") as posts,
        reer_runtime.Client(data_dir, config=config, configure_logging=True, **settings) as rt,
    ):
        mined = rt.mine(posts)
        print(f"mined {len(mined.traces)} of the 8 example posts (the best ones for their author)")
        if mined.traces:
            best = max(mined.traces, key=lambda t: t.engagement)
            print(f"\nthe plan found for the best post ({best.post.key}, engagement {best.engagement:.2f}):")
            print("  " + best.plan.replace("\n", "\n  "))
        if args.optimize:
            program = rt.optimize("bootstrap")
            verdict = "promoted" if program.promoted else "not promoted"
            print(
                f"\ncompiled program v{program.version}: {program.score:.3f} against {program.baseline:.3f}, {verdict}"
            )
        written = rt.generate(args.topic, n=3)
        drafts = [d for d in written if d.rejected_reason is None]
        refused = Counter(kind(d.rejected_reason) for d in written if d.rejected_reason)
        why = f"; {sum(refused.values())} tries refused ({', '.join(f'{n}: {r}' for r, n in refused.items())})"
        print(f"\n{len(drafts)} of 3 drafts on {args.topic!r}{why if refused else ''}:")
        for draft in drafts:
            score = f" (likeness to the best post {draft.score:.2f}, 0 to 1)" if draft.score is not None else ""
            print(f"--- {draft.draft_id}{score}")
            print("\n---\n".join(draft.parts))
    report = write(data_dir, data_dir / "report", None, load_settings(data_dir, config, **settings).traces_path)
    print(f"\nthe report: {report}")
    return 0
