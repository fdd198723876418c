"""reer-runtime from Python: mine the strategies behind a writer's best posts (REER), query the
traces, write drafts and compile the writer program, on the daemon's own actors, limits, stores
and telemetry.

    import reer_runtime

    async with reer_runtime.Runtime(provider="dummy://") as rt:
        mined = await rt.mine("posts.jsonl")
        drafts = await rt.generate("why we test backups by restoring them", n=2)

`Client` is the same API, blocking, for scripts and notebooks; `Models` calls any provider URI
with fallbacks; `reer_runtime.pack` holds the REER x DSPy x MLX pack's own function names.
See docs/api.md.
"""

import importlib
from typing import TYPE_CHECKING, Any

from runtime import __version__
from runtime.config import DEFAULT_MODEL, LimitSettings
from runtime.errors import ProviderError, ReerError, Refused, UsageError
from runtime.providers.calls import Generation, TokenScores
from runtime.records import (
    Brief,
    Draft,
    Failure,
    GenerateEvent,
    HeldOut,
    Judged,
    Metrics,
    Optimizer,
    Platform,
    PostEvent,
    Program,
    Rejected,
    Scores,
    Trace,
)
from runtime.writer.templates import Template

from . import errors

if TYPE_CHECKING:
    from ._client import Client
    from ._models import Models
    from ._runtime import Mined, PostLike, Runtime
    from ._stats import ModelFigures, Stats, StoreCounts

# the running parts load DSPy, anyio and OpenTelemetry: imported when first named, so that the
# command line (reer_runtime.cli) starts at once
_LAZY = {
    "Client": "_client",
    "Models": "_models",
    "Mined": "_runtime",
    "PostLike": "_runtime",
    "Runtime": "_runtime",
    "ModelFigures": "_stats",
    "Stats": "_stats",
    "StoreCounts": "_stats",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_MODEL",
    "Brief",
    "Client",
    "Draft",
    "Failure",
    "GenerateEvent",
    "Generation",
    "HeldOut",
    "Judged",
    "LimitSettings",
    "Metrics",
    "Mined",
    "ModelFigures",
    "Models",
    "Optimizer",
    "Platform",
    "PostEvent",
    "PostLike",
    "Program",
    "ProviderError",
    "ReerError",
    "Refused",
    "Rejected",
    "Runtime",
    "Scores",
    "Stats",
    "StoreCounts",
    "Template",
    "TokenScores",
    "Trace",
    "UsageError",
    "__version__",
    "errors",
]
