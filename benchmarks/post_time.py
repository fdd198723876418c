"""Where a mined post's time goes on the local engine: decode steps against steps that prefill a
prompt or score a plan.

    .venv/bin/python -m benchmarks.post_time

Mines `engine_speed.POSTS` in this process with the default settings on the packaged model, and
times every forward pass of the numpy engine, sorted by what its rows fed:
- decode only: every row fed one new token of a generation;
- prefill or scoring only: every row fed a prompt (a generation's, after its cached prefix) or a
  plan and post to score;
- mixed: both in one pass (a prompt joined while other rows decoded).
With the tokens of each kind per post, the forward passes' share of the model thread's time, the
mean rows in a decode-only pass, and the time of the linear layers (with the rate they computed
at, against numpy's best float32 product on this machine) and of attention.
Results: benchmarks/results/post_time-<cpu class>.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import reer_runtime
from benchmarks.common import cpu_class, provenance
from benchmarks.engine_speed import POSTS, RESULTS, write_posts
from runtime.providers.local import numpy_model
from runtime.providers.local.numpy_engine import NumpyEngine
from runtime.providers.local.numpy_model import Array, Kv, Weights
from runtime.providers.local.requests import Scoring
from runtime.providers.local.scheduler import Fed, Scheduler

KINDS = ("decode only", "prefill or scoring only", "mixed")


class Recorder:
    """Counts and times what the engine computes, by wrapping its scheduler, forward pass and step."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(KINDS, 0.0)
        self.passes: Counter[str] = Counter()
        self.tokens: Counter[str] = Counter()
        self.decode_rows = 0
        self.step_seconds = 0.0
        self.linear_seconds = self.linear_flops = self.attention_seconds = 0.0
        self._batch: list[Fed] = []

    def install(self) -> None:
        schedule, forward, step = Scheduler.schedule, Weights.forward, NumpyEngine.step
        linear, attend = numpy_model._Linear.__call__, Kv.attend

        def timed_linear(layer: numpy_model._Linear, x: Array) -> Array:
            started = time.perf_counter()
            y = linear(layer, x)
            self.linear_seconds += time.perf_counter() - started
            self.linear_flops += 2 * x.shape[0] * layer.weight.size
            return y

        def timed_attend(kv: Kv, layer: int, q: Array, k: Array, v: Array) -> Array:
            started = time.perf_counter()
            out = attend(kv, layer, q, k, v)
            self.attention_seconds += time.perf_counter() - started
            return out

        def scheduled(scheduler: Scheduler) -> list[Fed]:
            self._batch = schedule(scheduler)
            return self._batch

        def timed_forward(weights: Weights, spans: Sequence[tuple[Sequence[int], Kv]]) -> Array:
            started = time.perf_counter()
            hidden = forward(weights, spans)
            self._record(time.perf_counter() - started)
            return hidden

        def timed_step(engine: NumpyEngine) -> list[Any]:
            started = time.perf_counter()
            try:
                return step(engine)
            finally:
                self.step_seconds += time.perf_counter() - started

        Scheduler.schedule = scheduled  # type: ignore[method-assign,assignment]
        Weights.forward = timed_forward  # type: ignore[method-assign,assignment]
        NumpyEngine.step = timed_step  # type: ignore[method-assign,assignment]
        numpy_model._Linear.__call__ = timed_linear  # type: ignore[method-assign,assignment]
        Kv.attend = timed_attend  # type: ignore[method-assign,assignment]

    def _record(self, seconds: float) -> None:
        counts: Counter[str] = Counter()
        for fed in self._batch:
            if isinstance(fed.row.request, Scoring):
                counts["scoring"] += len(fed.tokens)
            elif fed.row.request.tokens:  # a generation past its first token feeds one token a step
                counts["decode"] += len(fed.tokens)
            else:
                counts["prefill"] += len(fed.tokens)
        kind = KINDS[0] if set(counts) == {"decode"} else KINDS[1] if "decode" not in counts else KINDS[2]
        self.seconds[kind] += seconds
        self.passes[kind] += 1
        self.tokens.update(counts)
        if kind == KINDS[0]:
            self.decode_rows += counts["decode"]


def best_sgemm_gflops(size: int = 2048, seconds: float = 2.0) -> float:
    """numpy's float32 product of two large square matrices, in GFLOP/s: about the most this
    machine's BLAS computes, the ceiling of the linear layers."""
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    a @ a
    started, runs = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        a @ a
        runs += 1
    return runs * 2 * size**3 / (time.perf_counter() - started) / 1e9


async def mine(recorder: Recorder) -> tuple[int, float]:
    """Mine the posts with the default settings; the traces written and the wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        posts = Path(tmp) / "posts.jsonl"
        write_posts(posts, len(POSTS))
        async with reer_runtime.Runtime(Path(tmp) / "data", provider="mlx://smollm2-135m", min_engagement=0.0) as rt:
            started = time.perf_counter()
            mined = await rt.mine(posts)
            return len(mined.traces), time.perf_counter() - started


def main() -> None:
    recorder = Recorder()
    recorder.install()
    traces, wall = asyncio.run(mine(recorder))
    forward = sum(recorder.seconds.values())
    figures = {
        "posts": traces,
        "wall_seconds": wall,
        "posts_per_hour": traces / wall * 3600,
        "engine_step_seconds_per_post": recorder.step_seconds / traces,
        "forward_share_of_steps": forward / recorder.step_seconds,
        "forward_seconds_per_post": {kind: recorder.seconds[kind] / traces for kind in KINDS},
        "forward_share": {kind: recorder.seconds[kind] / forward for kind in KINDS},
        "passes_per_post": {kind: recorder.passes[kind] / traces for kind in KINDS},
        "tokens_per_post": {kind: n / traces for kind, n in sorted(recorder.tokens.items())},
        "mean_rows_in_decode_only_passes": recorder.decode_rows / max(1, recorder.passes[KINDS[0]]),
        "linear_seconds_per_post": recorder.linear_seconds / traces,
        "linear_gflop_per_post": recorder.linear_flops / traces / 1e9,
        "linear_gflops": recorder.linear_flops / recorder.linear_seconds / 1e9,
        "best_sgemm_gflops": best_sgemm_gflops(),
        "attention_seconds_per_post": recorder.attention_seconds / traces,
    }
    result = provenance() | {"threads": os.cpu_count() or 2, "figures": figures}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"post_time-{cpu_class()}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
