"""`reer-runtime traces`: the mined traces as a table or as JSON lines."""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec

from bus.records import Trace
from runtime.store import JsonlStore


def print_traces(data_dir: Path, *, min_score: float, limit: int | None, as_json: bool) -> int:
    """Print the traces whose engagement is at least `min_score`, the newest `limit` of them."""
    traces = [t for t in JsonlStore(data_dir / "traces.jsonl", Trace).read() if t.engagement >= min_score]
    if limit is not None:
        traces = traces[-limit:] if limit > 0 else []
    out = sys.stdout
    if as_json:
        for t in traces:
            out.write(msgspec.json.encode(t).decode() + "\n")
        return 0
    if not traces:
        print(f"no traces in {data_dir} match", file=sys.stderr)
        return 0
    out.write(f"{'post':<24} {'engage':>6} {'no plan':>7} {'z0':>6} {'z*':>6} {'overlap':>7}  plan\n")
    for t in traces:
        first = t.plan.splitlines()[0] if t.plan else ""
        out.write(
            f"{t.post.key[:24]:<24} {t.engagement:6.2f} {t.scores.no_plan:7.3f} {t.scores.initial:6.3f} "
            f"{t.scores.final:6.3f} {t.overlap:7.0%}  {first[:60]}\n"
        )
    return 0
