"""Soak: 10,000 posts through the daemon on `dummy://`; throughput and memory over time.

    .venv/bin/python -m benchmarks.soak [--posts 10000] [--min-engagement 0.95]

Runs the real daemon as a subprocess, samples its resident memory (VmRSS, Linux) and the traces
written every half second, and writes the series and a summary to benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import provenance
from tests.helpers import cli

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "soak.json"


def post(i: int) -> str:
    return json.dumps(
        {
            "type": "post",
            "id": str(i),
            "platform": "x",
            "author": f"author{i % 100}",
            "created_at": "2026-01-01T00:00:00Z",
            "text": f"Build log {i}: shipped {i % 17} fixes, cut load time by {i % 40}% and answered {i % 9} users.",
            "metrics": {"impressions": 1000 + i % 997, "likes": (i * 37) % 211, "reposts": i % 13, "replies": i % 7},
        }
    )


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--min-engagement", type=float, default=0.95)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source, data = Path(tmp) / "posts.jsonl", Path(tmp) / "data"
        source.write_text("\n".join(post(i) for i in range(args.posts)) + "\n")
        started = time.perf_counter()
        daemon = subprocess.Popen(
            cli(
                str(data),
                "start",
                "--input",
                str(source),
                "--provider",
                "dummy://",
                "--min-engagement",
                str(args.min_engagement),
                "--exit-when-idle",
            ),
            cwd=ROOT,
            stderr=subprocess.DEVNULL,
        )
        series = []
        while daemon.poll() is None:
            try:
                series.append(
                    {
                        "t": round(time.perf_counter() - started, 1),
                        "rss_mib": round(rss_mib(daemon.pid), 1),
                        "accepted": lines_in(data / "posts.jsonl"),
                        "traces": lines_in(data / "traces.jsonl"),
                    }
                )
            except FileNotFoundError:  # the process ended between poll and read
                break
            time.sleep(0.5)  # a sampling period, not synchronisation
        elapsed = time.perf_counter() - started
        traces = lines_in(data / "traces.jsonl")
        accepted = lines_in(data / "posts.jsonl")
    mining = [s for s in series if s["accepted"] == args.posts]
    quarter = max(1, len(mining) // 4)
    report = {
        **provenance(),
        "posts": args.posts,
        "exit_code": daemon.returncode,
        "accepted": accepted,
        "traces": traces,
        "seconds": round(elapsed, 1),
        "traces_per_minute": round(traces / elapsed * 60, 1),
        "rss_mib_while_mining": {
            "first_quarter_mean": round(sum(s["rss_mib"] for s in mining[:quarter]) / quarter, 1) if mining else None,
            "last_quarter_mean": round(sum(s["rss_mib"] for s in mining[-quarter:]) / quarter, 1) if mining else None,
            "max": max((s["rss_mib"] for s in series), default=None),
        },
        "series": series,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "series"}, indent=2))


if __name__ == "__main__":
    main()
