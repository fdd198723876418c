"""The REER quality table: scores with no plan, the initial plan and the found plan, on real posts.

    .venv/bin/python -m benchmarks.reer_quality [--posts 30] [--generator URI] [--scorer URI] [--serve-generator]

Takes the best-performing original posts (no retweets, no replies) of the shared FiveThirtyEight
file `../shared/data/twitter-ratio/BarackObama.csv` by the project's own engagement score, mines each
with the default search settings, and writes the means and every post's row to
`benchmarks/results/reer_quality.json`. With `--serve-generator` the generator model is put behind the
test harness's OpenAI-compatible server on loopback (`tests/openai_server.py`) and reached through
`openai://`, so the roles are split across a real HTTP hop.
"""

from __future__ import annotations

import argparse
import contextlib
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
import msgspec

from benchmarks.common import provenance
from bus.messages import GenerateCall, Generation, ScoreCall, TokenScores
from bus.records import Metrics, Platform, PostEvent
from runtime.config import SearchSettings
from runtime.engagement import AuthorRanks
from runtime.providers import Provider, open_provider
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


class Roles:
    """The search's model: plans from `generator`, scores from `scorer`."""

    def __init__(self, generator: Provider, scorer: Provider) -> None:
        self.generator, self.scorer = generator, scorer
        self.tokens = dict.fromkeys(("generate_in", "generate_out", "score_in"), 0)
        """Tokens sent and received over the whole run, for the cost of a post on a paid API."""

    async def generate(self, call: GenerateCall) -> Generation:
        result = await self.generator.generate(call)
        self.tokens["generate_in"] += result.input_tokens
        self.tokens["generate_out"] += result.output_tokens
        return msgspec.structs.replace(result, provider=self.generator.uri)

    async def score(self, call: ScoreCall) -> TokenScores:
        result = await self.scorer.score(call)
        self.tokens["score_in"] += result.input_tokens + len(result.logprobs)
        return msgspec.structs.replace(result, provider=self.scorer.uri)


async def run(generator_uri: str, scorer_uri: str, serve: bool, n: int, concurrency: int) -> dict[str, object]:
    with contextlib.ExitStack() as stack:
        home = Path(os.environ.get("REER_HOME") or stack.enter_context(tempfile.TemporaryDirectory()))
        scorer = open_provider(scorer_uri, home)
        generator = scorer if generator_uri == scorer_uri else open_provider(generator_uri, home)
        if serve:
            from tests.openai_server import FakeServer, serving

            server = stack.enter_context(serving(FakeServer(model="served", generator=generator)))
            generator = open_provider(server.uri(), home)
        return await _table(Roles(generator, scorer), n, concurrency)


async def _table(model: Roles, n: int, concurrency: int) -> dict[str, object]:
    settings = SearchSettings()
    rows: list[dict[str, object]] = []
    chosen = top_posts(original_posts(DATA), n)
    limiter = anyio.Semaphore(concurrency)
    started = time.perf_counter()

    async def mine(engagement: float, post: PostEvent) -> None:
        async with limiter:
            try:
                result = await Search(model, settings, derive_brief(post), post.text, post.key).run()
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
                    "generate_s": result.timings.generate_s,
                    "score_s": result.timings.score_s,
                    "plan": result.plan,
                }
            )
            print(f"{len(rows)}/{n} {post.key}: {result.scores}", flush=True)

    async with anyio.create_task_group() as tg:
        for engagement, post in chosen:
            tg.start_soon(mine, engagement, post)
    elapsed = time.perf_counter() - started
    for provider in {model.generator, model.scorer}:
        await provider.aclose()
    mined = [r for r in rows if "failed" not in r]

    def mean(key: str) -> float:
        return round(statistics.fmean(float(r[key]) for r in mined), 4)  # type: ignore[arg-type]

    return {
        **provenance(),
        "generator": model.generator.uri,
        "scorer": model.scorer.uri,
        "posts": n,
        "mined": len(mined),
        "failed": n - len(mined),
        "mean": {k: mean(k) for k in ("no_plan", "initial", "final", "overlap", "seconds", "generate_s", "score_s")}
        if mined
        else {},
        "tokens_per_post": {k: round(v / max(1, len(rows))) for k, v in model.tokens.items()},
        "improved_over_no_plan": sum(float(r["final"]) < float(r["no_plan"]) for r in mined),  # type: ignore[arg-type]
        "seconds_total": round(elapsed, 1),
        "rows": sorted(rows, key=lambda r: -float(r["engagement"])),  # type: ignore[arg-type]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=30)
    parser.add_argument("--generator", default="mlx://smollm2-135m", help="the model that writes plans")
    parser.add_argument("--scorer", default="mlx://smollm2-135m", help="the model that scores them")
    parser.add_argument("--serve-generator", action="store_true", help="reach the generator over openai://")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = anyio.run(run, args.generator, args.scorer, args.serve_generator, args.posts, args.concurrency)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
