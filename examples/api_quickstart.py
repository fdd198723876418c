"""Mine the example posts, read the strategies found, and write two drafts, from Python.

    .venv/bin/python examples/api_quickstart.py [DATA_DIR] [MODEL_URI]

DATA_DIR defaults to a fresh temporary folder; MODEL_URI to `dummy://`, the fast test model (try
`mlx://smollm2-135m`, the packaged local model, or your own: README, "Choosing models").
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import anyio

import reer_runtime

POSTS = Path(__file__).with_name("posts.jsonl")


async def main(data_dir: str, model: str) -> None:
    async with reer_runtime.Runtime(data_dir, provider=model) as rt:
        mined = await rt.mine(POSTS)
        print(f"{len(mined.traces)} posts mined, {mined.not_selected} below the engagement threshold")
        for trace in await rt.traces(min_score=0.8, limit=5):
            gain = trace.scores.no_plan - trace.scores.final
            print(f"{trace.post.key}: engagement {trace.engagement:.2f}, {gain:.3f} nats a token better with the plan")
            print("  " + trace.plan.splitlines()[0])
        for draft in await rt.generate("why we test backups by restoring them", n=2):  # every try, best first
            if draft.rejected_reason:
                print(f"refused {draft.draft_id}: {draft.rejected_reason}")
            else:
                print(f"draft {draft.draft_id}: {' / '.join(draft.parts)[:120]}")
        stats = rt.stats()
        print(f"success rate {stats.success_rate}, {stats.store.total_traces} traces in {rt.data_dir}")


if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="reer-")
    anyio.run(main, folder, sys.argv[2] if len(sys.argv) > 2 else "dummy://")
