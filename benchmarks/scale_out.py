"""Posts per hour against the number of worker processes on NATS JetStream, and the time from a
worker's kill to its post being mined again.

    .venv/bin/python -m benchmarks.scale_out [--posts 24] [--delay 0.05] [--workers 1 2 4]

The model is `dummy://` behind `fault://` with a fixed delay per call, so a post costs the same
model time everywhere and the figures show what coordination and the broker cost, not a model. Each
row is a real coordinator (`start --bus nats://... --no-miners --exit-when-idle`) and N real worker
processes (`worker --concurrency 1`) on a real `nats-server -js` on loopback; the baseline is the
same daemon in one process on the memory bus with one miner. The kill run starts two workers with
`bus.ack_wait_s` = 5, kills one with SIGKILL once three posts are mined, and reads from the spans
(a real OTLP receiver) which post was delivered a second time and when its trace was written.
Results go to benchmarks/results/scale_out.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

from benchmarks.common import provenance
from tests.helpers import post_line
from tests.nats_server import nats_server
from tests.otlp_receiver import http_receiver

RESULTS = Path(__file__).parent / "results" / "scale_out.json"
ROOT = Path(__file__).resolve().parent.parent


def cli(data: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "reer_runtime", "--data-dir", str(data), *args]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "REER_"))}
    return env | {"OTEL_SDK_DISABLED": "true"} | extra


def daemon_args(provider: str, source: Path, *extra: str) -> list[str]:
    """`start` reading `source`, mining every post, exiting when done; `extra` for the bus."""
    return ["start", *extra, "--provider", provider, "--min-engagement", "0", "--exit-when-idle", "-i", str(source)]


def traces(data: Path) -> list[dict[str, object]]:
    path = data / "traces.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def in_process(work: Path, source: Path, provider: str) -> float:
    """Seconds for the whole daemon in one process, one miner, memory bus."""
    started = time.perf_counter()
    subprocess.run(
        cli(work / "alone", *daemon_args(provider, source)),
        cwd=ROOT,
        env=environment(REER_MINER_CONCURRENCY="1"),
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def cluster(work: Path, source: Path, provider: str, url: str, workers: int, env: dict[str, str]) -> float:
    """Seconds from the coordinator's start to its exit, with `workers` worker processes."""
    namespace = f"bench_{uuid.uuid4().hex[:8]}"
    bus = ["--bus", url, "--namespace", namespace]
    started_workers = [
        subprocess.Popen(
            cli(work / f"w{i}", "worker", *bus, "--provider", provider, "--concurrency", "1", "--exit-when-idle"),
            cwd=ROOT,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        for i in range(workers)
    ]
    started = time.perf_counter()
    subprocess.run(
        cli(work / namespace, *daemon_args(provider, source, *bus, "--no-miners")),
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    elapsed = time.perf_counter() - started
    for process in started_workers:
        process.wait(timeout=120)
    return elapsed


def kill_and_recover(work: Path, source: Path, provider: str, url: str, ack_wait_s: float) -> dict[str, object]:
    """Kill one of two workers mid-post; how long until the post it held was mined again."""
    namespace = f"bench_{uuid.uuid4().hex[:8]}"
    bus = ["--bus", url, "--namespace", namespace]
    data = work / namespace
    with http_receiver() as receiver:
        env = environment(REER_BUS__ACK_WAIT_S=str(ack_wait_s), OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
        env.pop("OTEL_SDK_DISABLED")
        env["OTEL_BSP_SCHEDULE_DELAY"] = "100"
        worker_args = ["worker", *bus, "--provider", provider, "--concurrency", "1", "--exit-when-idle"]
        workers = [
            subprocess.Popen(cli(work / f"k{i}", *worker_args), cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
            for i in range(2)
        ]
        coordinator = subprocess.Popen(
            cli(data, *daemon_args(provider, source, *bus, "--no-miners")),
            cwd=ROOT,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        while len(traces(data)) < 3:
            time.sleep(0.05)
        workers[0].send_signal(signal.SIGKILL)
        killed_at = time.time()
        coordinator.wait(timeout=600)
        workers[1].wait(timeout=120)
        again = {
            s.attributes["reer.post.key"]
            for s in receiver.spans
            if s.attributes.get("reer.delivery.attempt", 1) >= 2 and "reer.post.key" in s.attributes
        }
    written = {f"x:{t['post']['id']}": datetime.fromisoformat(str(t["mined_at"])).timestamp() for t in traces(data)}  # type: ignore[index]
    return {
        "ack_wait_s": ack_wait_s,
        "posts_delivered_again": sorted(again),
        "seconds_from_kill_to_mined_again": [round(written[key] - killed_at, 1) for key in sorted(again)],
        "traces": len(written),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=24)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds of 'model time' per call")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    provider = f"fault://?base=dummy://&delay={args.delay}"
    with tempfile.TemporaryDirectory() as tmp, nats_server(Path(tmp) / "nats") as url:
        work = Path(tmp)
        source = work / "posts.jsonl"
        source.write_text("\n".join(post_line(i, author="bench") for i in range(args.posts)) + "\n")
        alone = in_process(work, source, provider)
        rows = {n: cluster(work, source, provider, url, n, environment()) for n in args.workers}
        kill = kill_and_recover(work, source, provider, url, ack_wait_s=5)
    per_hour = {f"{n} worker{'s' if n > 1 else ''}": round(args.posts / s * 3600) for n, s in rows.items()}
    report = {
        **provenance(),
        "posts": args.posts,
        "provider": provider,
        "seconds": {"one process, memory bus": round(alone, 1)}
        | {f"{n} workers": round(s, 1) for n, s in rows.items()},
        "posts_per_hour": {"one process, memory bus, 1 miner": round(args.posts / alone * 3600)} | per_hour,
        "broker_seconds_per_post_1_worker": round((rows[min(rows)] - alone) / args.posts, 3) if 1 in rows else None,
        "kill": kill,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
