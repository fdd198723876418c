"""The REER quality table: does the found plan `z*` explain *its* post better than controls do?

    .venv/bin/python -m benchmarks.reer_quality [--posts 30] [--generator URI] [--scorer URI] [--serve-generator]

Takes the best-performing original posts (no retweets, no replies) of the shared FiveThirtyEight
file `../shared/data/twitter-ratio/BarackObama.csv` by the project's own engagement score and mines
each with the default search settings. Every post is then scored, by the same scorer, under five
plans: none, a fixed generic plan, the `z*` of another post of the set, its own `z0` and its own
`z*`. The table gives each plan's mean, how often `z*` beats the controls, the paired difference
`generic - z*` with a 95% bootstrap interval and the share of tokens at the clip floor, for clip
floors -2 (the authors'), -6 and -8, under today's writing instruction and the previous scoring
prompt. The search chooses on half of each post's tokens (`search.held_out`); `held_out` sums up
each trace's figures on the other half: the in-sample and held-out gains over the generic plan with
their 95% intervals, their paired difference (the selection's luck), and the share of posts whose
held-out gain is above 0. Everything, with every token's log-probability, goes to
`benchmarks/results/reer_quality.json`.

Any provider works for either role; with a GPU server (vLLM) the same table for a 7B model is
`--generator openai://HOST:8000/MODEL --scorer openai://HOST:8000/MODEL`. With `--serve-generator`
the generator is put behind the test harness's OpenAI-compatible server on loopback
(`tests/openai_server.py`) and reached through `openai://`, so the roles cross a real HTTP hop.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import html
import io
import json
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import msgspec

from benchmarks.common import provenance
from runtime.config import SearchSettings
from runtime.engagement import AuthorRanks
from runtime.errors import NoPlanError
from runtime.providers import Provider, open_provider
from runtime.providers.calls import ChatMessage, GenerateCall, Generation, ScoreCall, TokenScores
from runtime.records import Metrics, Platform, PostEvent
from runtime.reer import prompts
from runtime.reer.brief import derive_brief
from runtime.reer.search import Search, clip_share, clipped_nll

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
        self.tokens["generate_in"] += result.input_tokens or 0
        self.tokens["generate_out"] += result.output_tokens or 0
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


PLANS = ("none", "generic", "other", "initial", "found")
"""The plans scored on each post: no plan, the generic plan, the found plan of another post of the
set, the post's initial plan `z0` and its found plan `z*`."""
CLIPS = (-2.0, -6.0, -8.0)


def previous_task(brief: str) -> list[ChatMessage]:
    """The scoring prompt before the writing instruction (the generator's system prompt and the brief),
    kept here only to measure what the change did."""
    return [ChatMessage("system", prompts.SYSTEM), ChatMessage("user", f"Brief: {brief}\n\nWrite the post.")]


async def _table(model: Roles, n: int, concurrency: int) -> dict[str, object]:
    settings = SearchSettings()
    rows: list[dict[str, Any]] = []
    chosen = top_posts(original_posts(DATA), n)
    limiter = anyio.Semaphore(concurrency)
    started = time.perf_counter()

    async def mine(engagement: float, post: PostEvent) -> None:
        async with limiter:
            brief = derive_brief(post)
            try:
                result = await Search(model, settings, brief, post.text, post.key).run()
            except NoPlanError as exc:
                rows.append({"post": post.key, "engagement": engagement, "failed": str(exc)})
                return
            rows.append(
                {
                    "post": post.key,
                    "text": post.text,
                    "brief": brief.text,
                    "engagement": engagement,
                    "scores": msgspec.to_builtins(result.scores),
                    "overlap": result.overlap,
                    "content_overlap": result.content_overlap,
                    "leak_rejections": result.leak_rejections,
                    "seconds": result.timings.total_s,
                    "generate_s": result.timings.generate_s,
                    "score_s": result.timings.score_s,
                    "initial": result.plan_initial,
                    "found": result.plan,
                    "held_out": msgspec.to_builtins(result.held_out),
                }
            )
            print(f"{len(rows)}/{n} {post.key}: {result.scores}", flush=True)

    async with anyio.create_task_group() as tg:
        for engagement, post in chosen:
            tg.start_soon(mine, engagement, post)
    mined_s = time.perf_counter() - started
    mined = sorted((r for r in rows if "failed" not in r), key=lambda r: -float(r["engagement"]))
    for i, row in enumerate(mined):  # every plan kind, scored again with token log-probabilities kept
        plans = {
            "none": None,
            "generic": prompts.GENERIC_PLAN,
            "other": mined[(i + 1) % len(mined)]["found"] if len(mined) > 1 else None,
            "initial": row["initial"],
            "found": row["found"],
        }
        row["logprobs"] = {}
        for prompt, messages in (("writing", prompts.task(row["brief"])), ("previous", previous_task(row["brief"]))):
            calls = {
                k: ScoreCall(messages=messages, prefix=prompts.scored_prefix(p), target=row["text"])
                for k, p in plans.items()
            }
            row["logprobs"][prompt] = {kind: (await model.score(call)).logprobs for kind, call in calls.items()}
    for provider in {model.generator, model.scorer}:
        await provider.aclose()
    return {
        **provenance(),
        "generator": model.generator.uri,
        "scorer": model.scorer.uri,
        "posts": n,
        "mined": len(mined),
        "failed": [r for r in rows if "failed" in r],
        "summary": summarise(mined) if mined else {},
        "held_out": held_out(mined) if mined else {},
        "mean": {k: _mean(mined, k) for k in ("overlap", "content_overlap", "seconds", "generate_s", "score_s")}
        if mined
        else {},
        "tokens_per_post": {k: round(v / max(1, len(rows))) for k, v in model.tokens.items()},
        "seconds_mining": round(mined_s, 1),
        "rows": mined,
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """For each scoring prompt and clip floor: each plan kind's mean score, how often each wins, the
    paired difference `generic - found` with its 95% interval, and the share of tokens at the floor."""
    out: dict[str, Any] = {}
    for prompt in ("writing", "previous"):
        for clip in CLIPS:
            scores = {k: [clipped_nll(r["logprobs"][prompt][k], clip) for r in rows] for k in PLANS}
            winners = [
                min(PLANS, key=dict(zip(PLANS, post, strict=True)).__getitem__)
                for post in zip(*scores.values(), strict=True)
            ]
            out[f"{prompt} prompt, clip {clip:g}"] = {
                "mean": {k: round(statistics.fmean(v), 4) for k, v in scores.items()},
                "wins": {k: winners.count(k) for k in PLANS},
                "found_beats_generic": sum(f < g for f, g in zip(scores["found"], scores["generic"], strict=True)),
                "found_beats_other": sum(f < o for f, o in zip(scores["found"], scores["other"], strict=True)),
                "generic_minus_found": paired(scores["generic"], scores["found"]),
                "other_minus_found": paired(scores["other"], scores["found"]),
                "clip_share": {
                    k: round(statistics.fmean(clip_share(r["logprobs"][prompt][k], clip) for r in rows), 3)
                    for k in PLANS
                },
            }
    return out


def held_out(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The found plan's gain over the generic plan (`generic - found`, nats a token) on the tokens the
    search chose by and on those it never saw, each with its 95% interval; their difference, the
    selection's luck, paired post by post; and the share of posts whose held-out gain is above 0."""
    judged = [r["held_out"] for r in rows if r["held_out"]]
    in_sample, held = [h["in_sample_gain"] for h in judged], [h["gain"] for h in judged]
    return {
        "posts": len(judged),
        "tokens_held_out_mean": round(statistics.fmean(h["tokens"] for h in judged), 1) if judged else None,
        "in_sample_gain": interval(in_sample),
        "held_out_gain": interval(held),
        "selection_bias": paired(in_sample, held),
        "share_holding": round(sum(g > 0 for g in held) / len(held), 3) if held else None,
    }


def paired(a: list[float], b: list[float], resamples: int = 10_000) -> dict[str, float]:
    """Mean of `a - b` post by post, with a 95% bootstrap interval (seeded, so reruns agree)."""
    return interval([x - y for x, y in zip(a, b, strict=True)], resamples)


def interval(diffs: list[float], resamples: int = 10_000) -> dict[str, float]:
    """The mean of `diffs` with a 95% bootstrap interval (seeded, so reruns agree)."""
    rng = random.Random(0)
    means = sorted(statistics.fmean(rng.choices(diffs, k=len(diffs))) for _ in range(resamples))
    low, high = means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]
    return {"mean": round(statistics.fmean(diffs), 4), "ci95_low": round(low, 4), "ci95_high": round(high, 4)}


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return round(statistics.fmean(float(r[key]) for r in rows), 4)


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
    print(f"every post's plans and token log-probabilities: {args.out}")


if __name__ == "__main__":
    main()
