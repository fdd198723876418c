"""Usable drafts from the packaged model: the share that passes the platform's limits and the draft
gate, at the first try and within `writer.max_tries`, uncompiled and compiled.

    .venv/bin/python -m benchmarks.drafts [--provider mlx://smollm2-135m] [--posts 30] [--optimizer bootstrap]

Mines the `--posts` best-performing original posts of the shared Obama file with `--provider` in
both roles, through the Python API (the daemon's own pipeline). Then 3 drafts are written for each
of the 10 fixed `TOPICS` with the uncompiled program (v0); the writer is compiled on the traces;
and the same 30 drafts are written again with the compiled program, whether or not it was
promoted. Each run reports the share of drafts that passed at the first try and within the tries,
the reasons of the refused tries, and the wall time per usable draft. Results go to
`benchmarks/results/drafts-<cpu class>.json`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import cpu_class, provenance
from benchmarks.reer_quality import DATA, original_posts, top_posts
from reer_runtime import Client
from runtime.config import WriterSettings
from runtime.records import Draft
from runtime.writer.draft_gate import kind

RESULTS = Path(__file__).parent / "results"
TOPICS = (
    "why we test backups by restoring them",
    "what shipping every Friday taught our team",
    "how to price a side project",
    "the one metric we check every morning",
    "why our changelog is written for humans",
    "lessons from our first hundred customers",
    "why we removed the free tier",
    "answering every support email within a day",
    "what a failed launch taught us",
    "why small teams should write things down",
)
DRAFTS_PER_TOPIC = 3


def tally(drafts: list[Draft], max_tries: int, seconds: float) -> dict[str, Any]:
    """What a run of drafts came to: asked, usable at the first try and within the tries, the
    reasons of the refused tries (by kind, the text before the first colon), time per usable one."""
    asked = {d.draft_id.split(".")[0] for d in drafts}
    first = sum(d.attempt == 1 and d.rejected_reason is None for d in drafts)
    usable = [d for d in drafts if d.rejected_reason is None]
    reasons = Counter(kind(d.rejected_reason) for d in drafts if d.rejected_reason)
    return {
        "asked": len(asked),
        "tries": len(drafts),
        "usable_first_try": first,
        "usable_within_tries": len(usable),
        "share_first_try": round(first / len(asked), 3),
        "share_within_tries": round(len(usable) / len(asked), 3),
        "max_tries": max_tries,
        "refusals": dict(reasons.most_common()),
        "seconds": round(seconds, 1),
        "seconds_per_usable_draft": round(seconds / len(usable), 1) if usable else None,
        "mean_score": round(statistics.fmean(d.score for d in usable if d.score is not None), 3) if usable else None,
        "examples": [{"topic": d.request.topic, "draft": "\n---\n".join(d.parts)} for d in usable[:: len(TOPICS)]],
    }


def write_all(client: Client, program: int) -> tuple[list[Draft], float]:
    """Every try of `DRAFTS_PER_TOPIC` drafts on each topic with program v`program`, and the wall time."""
    started = time.perf_counter()
    drafts = [d for topic in TOPICS for d in client.generate(topic, n=DRAFTS_PER_TOPIC, program=program)]
    return drafts, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provider", default="mlx://smollm2-135m", help="the model, in both roles")
    parser.add_argument("--posts", type=int, default=30, help="Obama posts mined to compile on")
    parser.add_argument("--optimizer", default="bootstrap", choices=["bootstrap", "mipro", "gepa"])
    args = parser.parse_args()
    out = RESULTS / f"drafts-{cpu_class()}.json"
    report: dict[str, Any] = {"provenance": provenance(), "provider": args.provider, "topics": list(TOPICS)}
    with tempfile.TemporaryDirectory() as home, Client(Path(home), provider=args.provider, min_engagement=0.0) as rt:
        posts = [post for _, post in top_posts(original_posts(DATA), args.posts)]
        started = time.perf_counter()
        mined = rt.mine(posts)
        report["mined"] = {"posts": len(posts), "traces": len(mined.traces), "seconds": time.perf_counter() - started}
        max_tries = WriterSettings().max_tries  # the default: the benchmark leaves the writer's settings alone
        drafts, seconds = write_all(rt, 0)
        report["uncompiled"] = tally(drafts, max_tries, seconds)
        started = time.perf_counter()
        program = rt.optimize(args.optimizer)
        report["compile"] = {
            "optimizer": args.optimizer,
            "version": program.version,
            "promoted": program.promoted,
            "score": program.score,
            "baseline": program.baseline,
            "seconds": round(time.perf_counter() - started, 1),
        }
        drafts, seconds = write_all(rt, program.version)  # promoted or not, the compiled program writes
        report["compiled"] = tally(drafts, max_tries, seconds)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    for run in ("uncompiled", "compiled"):
        r = report[run]
        print(
            f"{run}: {r['share_first_try']:.0%} usable at the first try, {r['share_within_tries']:.0%} within "
            f"{r['max_tries']} tries; {r['seconds_per_usable_draft']} s a usable draft; refusals {r['refusals']}"
        )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
