"""The run's figures for people: a snapshot of the metrics written to `<data-dir>/stats.json`,
and `reer-runtime stats`, which reads it back."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint

from runtime.errors import ReerError
from runtime.files import write_private
from runtime.records import HELD_OUT_GAIN

log = logging.getLogger(__name__)

STATS_FILE = "stats.json"
CIRCUIT_STATES = ("closed", "half_open", "open")


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = defaultdict(list)
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name].extend(metric.data.data_points)
    return found


def percentile(point: HistogramDataPoint, q: float) -> float:
    """An estimate of quantile `q` from a histogram: linear within the bucket that holds it."""
    if point.count == 0:
        return 0.0
    rank = q * point.count
    seen = 0
    bounds = [point.min, *point.explicit_bounds, point.max]
    for i, n in enumerate(point.bucket_counts):
        if n and seen + n >= rank:
            low, high = max(bounds[i], point.min), min(bounds[i + 1], point.max)
            return float(low + (high - low) * (rank - seen) / n)
        seen += n
    return float(point.max)


def _mean_of(points: list[HistogramDataPoint], unit: str = "steps") -> dict[str, float] | None:
    """The count and mean of a histogram's points, or None when nothing was recorded."""
    count = sum(x.count for x in points)
    return {unit: count, "mean": round(sum(x.sum for x in points) / count, 2)} if count else None


def _total(points: list[NumberDataPoint], outcome: str | None = None) -> int:
    """The sum of a counter's points, or of those whose `reer.outcome` is `outcome`."""
    return int(sum(p.value for p in points if outcome is None or (p.attributes or {}).get("reer.outcome") == outcome))


def _holding(points: list[NumberDataPoint]) -> dict[str, Any]:
    """Traces whose held-out gain was measured, those above 0 (that hold), and their share."""
    measured = _total(points)
    holding = int(sum(p.value for p in points if (p.attributes or {}).get("reer.holds")))
    return {"measured": measured, "holding": holding, "share": round(holding / measured, 4) if measured else None}


def decode_batch(reader: InMemoryMetricReader) -> float | None:
    """Requests a local model's decode steps have held on average so far; None before the first step."""
    mean = _mean_of(_points(reader)["reer.decode.batch"])
    return mean["mean"] if mean else None


def snapshot(reader: InMemoryMetricReader) -> dict[str, Any]:
    """The figures of this run so far."""
    p = _points(reader)
    rejected: dict[str, int] = defaultdict(int)
    for point in p["reer.events.rejected"]:
        rejected[str(point.attributes.get("reer.reason"))] += int(point.value)
    mined, failed = (
        _total(p["reer.posts"], "mined"),
        _total(p["reer.posts"], "failed"),
    )
    providers: dict[str, dict[str, Any]] = {}
    for point in p["gen_ai.client.operation.duration"]:
        a = point.attributes
        key = f"{a.get('gen_ai.provider.name')}/{a.get('gen_ai.request.model')} {a.get('reer.operation')}"
        outcome = "errors" if "error.type" in a else "calls"
        entry = providers.setdefault(key, {"calls": 0, "errors": 0})
        entry[outcome] += point.count
        if outcome == "calls":
            entry |= {"p50_s": round(percentile(point, 0.5), 4), "p95_s": round(percentile(point, 0.95), 4)}
    waits = p["reer.provider.rate_limit.wait"]
    return {
        "written_at": datetime.now(UTC).isoformat(),
        "events": {
            "read": _total(p["reer.events.read"]),
            "accepted": _total(p["reer.events.accepted"]),
            "rejected": sum(rejected.values()),
            "rejected_by_reason": dict(sorted(rejected.items(), key=lambda kv: -kv[1])),
        },
        "posts": {"mined": mined, "failed": failed, "skipped": _total(p["reer.posts"], "skipped")},
        "success_rate": round(mined / (mined + failed), 4) if mined + failed else None,
        "held_out": _holding(p["reer.traces.held_out"]),
        "providers": providers,
        "retries": _total(p["reer.provider.retries"]),
        "fallbacks": _total(p["reer.provider.fallbacks"]),
        "writer_cache_hits": _total(p["reer.writer.cache.hits"]),
        "rate_limit_wait_s": round(sum(w.sum for w in waits), 3),
        "circuits": {
            str(x.attributes.get("reer.provider")): CIRCUIT_STATES[int(x.value)]
            for x in p["reer.provider.circuit.state"]
        },
        "decode_batch": _mean_of(p["reer.decode.batch"]),
        "mining_s": _mean_of(p["reer.mining.duration"], "posts"),
        "engine_seconds": {str(x.attributes.get("reer.engine.work")): round(x.value, 1) for x in p["reer.engine.time"]},
        "cache_tokens": {
            f"{x.attributes.get('reer.cache')} {x.attributes.get('reer.cache.result')}": int(x.value)
            for x in p["reer.cache.tokens"]
        },
    }


def write_snapshot(reader: InMemoryMetricReader, data_dir: Path) -> None:
    """Replace `stats.json` atomically; a snapshot that cannot be written (a full disk) is skipped
    with a warning, keeping the last one."""
    path = data_dir / STATS_FILE
    try:
        write_private(path, (json.dumps(snapshot(reader), indent=2) + "\n").encode())
    except OSError as exc:
        log.warning("cannot write %s: %s; keeping the last snapshot", path, exc.strerror)


def print_stats(data_dir: Path, as_json: bool) -> int:
    """Print the last run's snapshot; a `ReerError` if there is none."""
    path = data_dir / STATS_FILE
    if not path.exists():
        raise ReerError(f"no run recorded in {data_dir} yet (start the daemon first)")
    stats = json.loads(path.read_text())
    if as_json:
        print(json.dumps(stats, indent=2))
        return 0
    e, posts = stats["events"], stats["posts"]
    rate = "n/a" if stats["success_rate"] is None else f"{stats['success_rate']:.0%}"
    lines = [
        f"last snapshot {stats['written_at']} ({data_dir})",
        f"events:   {e['read']} read, {e['accepted']} accepted, {e['rejected']} rejected",
        f"posts:    {posts['mined']} mined, {posts['failed']} failed, {posts['skipped']} not selected; "
        f"success rate {rate}",
        _held_out_line(stats.get("held_out")),
        f"limits:   {stats['retries']} retries, {stats['fallbacks']} fallbacks, "
        f"{stats['rate_limit_wait_s']:.1f}s waiting on rate limits, "
        f"{stats.get('writer_cache_hits', 0)} writer calls answered from DSPy's cache",
    ]
    for name, figures in stats["providers"].items():
        latency = f"p50 {figures['p50_s']:.3f}s, p95 {figures['p95_s']:.3f}s" if "p50_s" in figures else "no success"
        lines.append(f"model:    {name}: {figures['calls']} calls, {figures['errors']} errors, {latency}")
    for uri, state in stats.get("circuits", {}).items():
        lines.append(f"circuit:  {uri}: {state}")
    for reason, n in list(e["rejected_by_reason"].items())[:5]:
        lines.append(f"rejected: {n} x {reason}")
    for name, n in stats["cache_tokens"].items():
        lines.append(f"cache:    {name}: {n} tokens")
    if batch := stats.get("decode_batch"):
        lines.append(
            f"decoding: {batch['steps']} steps of the local model, {batch['mean']:.1f} requests a step on average"
        )
    if engine := stats.get("engine_seconds"):
        lines.append("engine:   " + ", ".join(f"{work} {seconds:.1f}s" for work, seconds in sorted(engine.items())))
    print("\n".join(lines))
    return 0


def _held_out_line(held: dict[str, Any] | None) -> str:
    if not held or not held["measured"]:
        return "plans:    no held-out gain measured in this run"
    return (
        f"plans:    {held['holding']} of {held['measured']} traces hold ({held['share']:.0%}): their held-out gain, "
        f"{HELD_OUT_GAIN}, is above 0"
    )
