"""The REER quality table: scores with no plan, the initial plan and the found plan, on real posts.

    .venv/bin/python -m benchmarks.reer_quality [--posts 30] [--provider mlx://smollm2-135m]

Takes the best-performing original posts (no retweets, no replies) of the shared FiveThirtyEight
file `../shared/data/twitter-ratio/BarackObama.csv` by the project's own engagement score, mines each
with the default search settings, and writes the means and every post's row to
`benchmarks/results/reer_quality.json`.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio

from benchmarks.common import provenance
from bus.records import Metrics, Platform, PostEvent
from runtime.config import SearchSettings
from runtime.engagement import AuthorRanks
from runtime.providers import open_provider
from runtime.reer.brief import derive_brief
from runtime.reer.search import NoPlanError, Search

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "twitter-ratio" / "BarackObama.csv"
RESULTS = Path(__file__).parent / "results" / "reer_quality.json"


def original_posts(path: Path) -> list[PostEvent]:
    """The file's posts that are the author's own writing: no retweets, no replies."""
    text = path.read_bytes().decode("cp1252", errors="replace")
    posts = []
    for row in csv.DictReader(io.StringIO(text)):
        body = html.unescape(row["text"]).strip()
        if body.startswith(("RT @", "@")) or not body:
            continue
        posts.append(
            PostEvent(
                id=row["url"].rsplit("/", 1)[-1],
                text=body,
                created_at=datetime.strptime(row["created_at"], "%m/%d/%y %H:%M").replace(tzinfo=UTC),
                platform=Platform.X,
                author=row["user"],
                metrics=Metrics(likes=int(row["favorites"]), reposts=int(row["retweets"]), replies=int(row["replies"])),
            )
        )
    return posts


def top_posts(posts: list[PostEvent], n: int) -> list[tuple[float, PostEvent]]:
    ranks = AuthorRanks()
    for post in posts:
        ranks.add(post.author, post.metrics)
    scored = [(ranks.score(p.author, p.metrics), p) for p in posts]
    return sorted(scored, key=lambda sp: sp[0], reverse=True)[:n]


async def run(provider_uri: str, n: int, concurrency: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        provider = open_provider(provider_uri, Path(os.environ.get("REER_HOME", tmp)))
    settings = SearchSettings()
    rows: list[dict[str, object]] = []
    chosen = top_posts(original_posts(DATA), n)
    limiter = anyio.Semaphore(concurrency)
    started = time.perf_counter()

    async def mine(engagement: float, post: PostEvent) -> None:
        async with limiter:
            try:
                result = await Search(provider, settings, derive_brief(post), post.text, post.key).run()
            except NoPlanError as exc:
                rows.append({"post": post.key, "engagement": engagement, "failed": str(exc)})
                return
            rows.append(
                {
                    "post": post.key,
                    "engagement": engagement,
                    "no_plan": result.scores.no_plan,
                    "initial": result.scores.initial,
                    "final": result.scores.final,
                    "overlap": result.overlap,
                    "leak_rejections": result.leak_rejections,
                    "seconds": result.timings.total_s,
                    "plan": result.plan,
                }
            )
            print(f"{len(rows)}/{n} {post.key}: {result.scores}", flush=True)

    async with anyio.create_task_group() as tg:
        for engagement, post in chosen:
            tg.start_soon(mine, engagement, post)
    elapsed = time.perf_counter() - started
    await provider.aclose()
    mined = [r for r in rows if "failed" not in r]

    def mean(key: str) -> float:
        return round(statistics.fmean(float(r[key]) for r in mined), 4)  # type: ignore[arg-type]

    return {
        **provenance(),
        "provider": provider_uri,
        "posts": n,
        "mined": len(mined),
        "failed": n - len(mined),
        "mean": {k: mean(k) for k in ("no_plan", "initial", "final", "overlap")} if mined else {},
        "improved_over_no_plan": sum(float(r["final"]) < float(r["no_plan"]) for r in mined),  # type: ignore[arg-type]
        "seconds_total": round(elapsed, 1),
        "rows": sorted(rows, key=lambda r: -float(r["engagement"])),  # type: ignore[arg-type]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=30)
    parser.add_argument("--provider", default="mlx://smollm2-135m")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = anyio.run(run, args.provider, args.posts, args.concurrency)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
