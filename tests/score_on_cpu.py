"""Load an `mlx://` model folder and score one text; print the BLAS chosen and the scores as JSON.

Run as its own process by `tests/runtime/providers/test_blas.py`, on the host CPU and under QEMU
as another CPU, as a module (so `tests/runtime` cannot stand in for the `runtime` package):
    python -m tests.score_on_cpu MODEL_FOLDER
"""

from __future__ import annotations

import json
import sys

import anyio

from runtime.providers.calls import ChatMessage, ScoreCall
from runtime.providers.local.provider import LocalProvider


async def main(folder: str) -> None:
    provider = LocalProvider(f"mlx://{folder}", folder, "tiny")
    call = ScoreCall(messages=[ChatMessage("user", "Brief: a short post.")], prefix="", target="Signups doubled.")
    scores = await provider.score(call)
    await provider.aclose()
    blas = provider.blas
    report = {"blas": blas.name, "detail": blas.detail, "passed_over": blas.passed_over, "engine": provider.engine_name}
    print(json.dumps({**report, "logprobs": scores.logprobs}))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
