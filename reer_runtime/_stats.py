"""`Stats`: the figures `reer-runtime stats` prints, typed, for the Python API."""

from __future__ import annotations

from typing import Any

import msgspec

from runtime.ledger import Ledger, Stores


class ModelFigures(msgspec.Struct, frozen=True, kw_only=True):
    """One model's calls of one kind (`chat` or `score`)."""

    calls: int
    errors: int
    p50_s: float | None = None
    """Median latency of the calls that succeeded, in seconds (None: none did)."""
    p95_s: float | None = None


class StoreCounts(msgspec.Struct, frozen=True, kw_only=True):
    """Records in the data dir's stores."""

    total_traces: int
    posts: int
    rejected: int
    failed: int
    drafts: int
    programs: int


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    """This process's figures since it started (all `Runtime`s in it together), and the stores' counts.

    `msgspec.structs.asdict(stats)` gives them as a dict."""

    success_rate: float | None
    """Mined posts over mined and failed ones; None before any finished."""
    traces_holding: int
    """Traces mined whose held-out gain is above 0: their plan explains tokens the search did not see
    better than a generic plan does."""
    traces_judged: int
    """Traces mined whose held-out gain was measured."""
    posts_mined: int
    posts_failed: int
    posts_not_selected: int
    events_read: int
    events_accepted: int
    events_rejected: int
    rejected_by_reason: dict[str, int]
    mining_mean_s: float | None
    """Mean wall time of one post's REER search, in seconds."""
    retries: int
    fallbacks: int
    writer_cache_hits: int
    """Writer calls (drafts, compiles) answered from DSPy's cache, with no model call made."""
    rate_limit_wait_s: float
    """Time model calls spent waiting for their rate limits, in seconds."""
    models: dict[str, ModelFigures]
    """By `provider/model operation`."""
    circuits: dict[str, str]
    """Each provider's circuit breaker: closed, half_open or open."""
    cache_tokens: dict[str, int]
    """Prompt tokens the local model's prefix caches reused (`... hit`) and computed (`... miss`)."""
    store: StoreCounts

    @classmethod
    def of(cls, figures: dict[str, Any], stores: Stores, ledger: Ledger) -> Stats:
        """From a metrics snapshot (`reer_runtime.stats.snapshot`) and the open stores."""
        events, posts, mining = figures["events"], figures["posts"], figures["mining_s"]
        counts = StoreCounts(
            total_traces=ledger.mined,  # one trace a post, as the ledger keeps it
            posts=stores.posts.count(),
            rejected=stores.rejected.count(),
            failed=stores.failures.count(),
            drafts=stores.drafts.count(),
            programs=stores.programs.index.count(),
        )
        return cls(
            success_rate=figures["success_rate"],
            traces_holding=figures["held_out"]["holding"],
            traces_judged=figures["held_out"]["measured"],
            posts_mined=posts["mined"],
            posts_failed=posts["failed"],
            posts_not_selected=posts["skipped"],
            events_read=events["read"],
            events_accepted=events["accepted"],
            events_rejected=events["rejected"],
            rejected_by_reason=events["rejected_by_reason"],
            mining_mean_s=mining["mean"] if mining else None,
            retries=figures["retries"],
            fallbacks=figures["fallbacks"],
            writer_cache_hits=figures["writer_cache_hits"],
            rate_limit_wait_s=figures["rate_limit_wait_s"],
            models=msgspec.convert(figures["providers"], dict[str, ModelFigures]),
            circuits=figures["circuits"],
            cache_tokens=figures["cache_tokens"],
            store=counts,
        )
