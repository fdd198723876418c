"""`reer-runtime generate`: write drafts for a brief, then exit."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec

from runtime.errors import UsageError
from runtime.records import MAX_THREAD_POSTS, GenerateEvent, Platform

from . import _options
from ._daemon import run_daemon
from ._drafts import printer


def add(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "generate",
        parents=[common, _options.models()],
        help="write new drafts for a brief with the current writer program, then exit",
        description=(
            "Write N candidate drafts for the brief with the newest promoted program of the template (the "
            "uncompiled one until `optimize` has promoted one). Each draft is printed and appended to "
            "<data-dir>/drafts.jsonl with its plan, features and score; a try that breaks the platform's "
            "limits or fails the draft gate (markup, placeholders, loops, another language, off the topic) is kept "
            "with the reason and written again. Drafts are shown best first."
        ),
    )
    parser.add_argument("topic_text", nargs="?", metavar="TOPIC", help="what the post is about (or --topic)")
    parser.add_argument("--topic", help="what the post is about")
    parser.add_argument("--platform", default="x", choices=[p.value for p in Platform], help="default: x")
    parser.add_argument(
        "--n",
        "-n",
        type=_options.whole(1, 20),
        default=3,
        metavar="N",
        help="how many drafts within the limits (default 3, at most 20)",
    )
    parser.add_argument(
        "--thread-size",
        type=_options.whole(1, MAX_THREAD_POSTS),
        default=1,
        metavar="K",
        help="posts in the thread, exactly (default 1: one post)",
    )
    parser.add_argument("--length", default="short", choices=["short", "medium", "long"], help="default: short")
    parser.add_argument("--audience", default="", help="who it is for")
    parser.add_argument("--style", default="", help="e.g. 'plain, first person, no hashtags'")
    parser.add_argument("--key-message", default="", help="the one thing the reader should remember")
    parser.add_argument("--cta", default="", help="the call to action")
    parser.add_argument(
        "--template",
        default="content_generation",
        metavar="NAME",
        help="the writing template: content_generation (a post, the default), thread, reply, repurpose, or one "
        "of the configuration's [[templates]]; `reer-runtime templates` lists them",
    )
    parser.add_argument(
        "--text",
        action="append",
        default=[],
        metavar="NAME=TEXT",
        help="a text the template reads beside the brief, e.g. post_replied_to=... (reply) or source_text=@FILE "
        "(repurpose; @ reads the file); repeat for several",
    )
    _program_and_output(parser)
    parser.set_defaults(command=run)


def _program_and_output(parser: argparse.ArgumentParser) -> None:
    """`--program`, and where and how the drafts are written."""
    parser.add_argument(
        "--program",
        type=_options.whole(0),
        metavar="N",
        help="write with program vN of the template, promoted or not (0: the uncompiled one); default: the newest "
        "promoted one",
    )
    parser.add_argument(
        "--json", action="store_true", help="print each draft as one JSON line (its drafts.jsonl record), for scripts"
    )
    parser.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="write the drafts to FILE (text, or JSON lines with --json)"
    )


def run(args: argparse.Namespace) -> int:
    asked = [request(args)]
    if args.output is None:
        return run_daemon(args, requests=asked, show_draft=printer(sys.stdout, as_json=args.json))
    try:
        out = args.output.open("w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--output {args.output}: {exc.strerror}") from None
    with out:
        return run_daemon(args, requests=asked, show_draft=printer(out, as_json=args.json))


def request(args: argparse.Namespace) -> GenerateEvent:
    """The request the options make, checked as one read from the input is."""
    if args.topic and args.topic_text:
        raise UsageError("give the topic once: as TOPIC or as --topic")
    fields = {
        "topic": args.topic or args.topic_text or "",
        "platform": args.platform,
        "n": args.n,
        "thread_size": args.thread_size,
        "length": args.length,
        "audience": args.audience,
        "style": args.style,
        "key_message": args.key_message,
        "call_to_action": args.cta,
        "template": args.template,
        "texts": texts(args.text),
        "program": args.program,
    }
    if not fields["topic"]:
        raise UsageError('generate needs a topic: reer-runtime generate "what the post is about"')
    try:
        return msgspec.convert(fields, GenerateEvent)
    except msgspec.ValidationError as exc:
        raise UsageError(str(exc)) from None


def texts(flags: list[str]) -> dict[str, str]:
    """`--text NAME=TEXT` flags by name; `NAME=@FILE` reads the text from a regular file."""
    from runtime.inputs.lines import read_text_file

    found: dict[str, str] = {}
    for flag in flags:
        name, sep, value = flag.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--text wants NAME=TEXT or NAME=@FILE; got {flag!r}")
        if value.startswith("@"):
            value = read_text_file(Path(value[1:]), f"--text {name}")
        found[name.strip()] = value
    return found
