"""Compile time and model calls of each optimizer on N traces, and draft latency, with the local model.

    .venv/bin/python -m benchmarks.optimizers [--traces 50] [--provider mlx://smollm2-135m]
                                              [--optimizers bootstrap,mipro,gepa]

The traces are the N best-performing original posts of the shared Obama file, mined with `dummy://`
(seconds) so that the figures are those of compiling, not of mining. Each optimizer then compiles
the writer through the real daemon (`reer-runtime optimize`, a subprocess) with `--provider` in both
roles, and `reer-runtime generate` writes 3 drafts. Budgets are cut for a CPU (`BUDGET`: writer
steps of at most 120 tokens, 10% of the traces to validate, 2 demos, MIPROv2 with 2 trials of 2
candidates, GEPA with 12 metric calls); the results go to `benchmarks/results/optimizers.json`,
rewritten after each step so that a long run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from benchmarks.common import provenance
from benchmarks.reer_quality import DATA, original_posts, top_posts

RESULTS = Path(__file__).parent / "results" / "optimizers.json"
BUDGET = {
    "REER_WRITER__MAX_TOKENS": "120",
    "REER_WRITER__VAL_FRACTION": "0.1",
    "REER_WRITER__MAX_DEMOS": "2",
    "REER_WRITER__MIPRO_TRIALS": "2",
    "REER_WRITER__MIPRO_CANDIDATES": "2",
    "REER_WRITER__GEPA_MAX_METRIC_CALLS": "12",
    "REER_WRITER__OPTIMIZE_AFTER": "1000000",
}


def cli(data: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REER_", "OTEL_"))} | BUDGET
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "reer_runtime", "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"reer-runtime {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=50)
    parser.add_argument("--provider", default="mlx://smollm2-135m")
    parser.add_argument("--optimizers", default="bootstrap,gepa,mipro")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report: dict[str, object] = {**provenance(), "provider": args.provider, "traces": args.traces, "budget": BUDGET}
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        posts = Path(tmp) / "posts.jsonl"
        chosen = [post for _, post in top_posts(original_posts(DATA), args.traces)]
        posts.write_bytes(b"".join(msgspec.json.encode(p) + b"\n" for p in chosen))
        data = Path(os.environ.get("REER_HOME") or tmp) / "bench-data"
        cli(data, "start", "--input", str(posts), "--exit-when-idle", "--min-engagement", "0", "--provider", "dummy://")
        for optimizer in args.optimizers.split(","):
            wall, _ = cli(data, "optimize", "--optimizer", optimizer, "--provider", args.provider)
            record = json.loads((data / "programs" / "index.jsonl").read_text().splitlines()[-1])
            runs.append(
                {
                    "optimizer": optimizer,
                    "wall_s": round(wall, 1),
                    **{k: record[k] for k in ("version", "compile_s", "model_calls", "score", "baseline", "promoted")},
                }
            )
            print(json.dumps(runs[-1]), flush=True)
            save(args.out, report | {"optimizers": runs})
        wall, _ = cli(data, "generate", "--topic", "why voting matters", "--n", "3", "--provider", args.provider)
        drafts = [json.loads(line) for line in (data / "drafts.jsonl").read_text().splitlines()]
    report["optimizers"] = runs
    report["drafts"] = {
        "n": len(drafts),
        "wall_s_for_3": round(wall, 1),
        "rejected": [d["rejected_reason"] for d in drafts if d["rejected_reason"]],
        "scores": [round(d["score"], 3) for d in drafts],
        "program_version": drafts[-1]["program_version"],
        "first_draft": drafts[0]["parts"],
    }
    save(args.out, report)
    print(json.dumps(report, indent=2))


def save(path: Path, report: dict[str, object]) -> None:
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
