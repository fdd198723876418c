"""The records that enter and leave the process: input events, traces, rejected lines.

Every type here is a frozen msgspec Struct with a stable JSON encoding. The JSON Schemas in
`runtime/schemas/` are generated from these types (`python -m runtime.schemas --write`), and a test fails
when the checked-in files drift from them.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Literal, get_args

import msgspec

NonNegative = Annotated[int, msgspec.Meta(ge=0)]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


class Platform(enum.StrEnum):
    """Networks the runtime knows, with their per-post character limit."""

    X = "x"
    BLUESKY = "bluesky"
    LINKEDIN = "linkedin"
    THREADS = "threads"
    MASTODON = "mastodon"

    @property
    def max_chars(self) -> int:
        return _MAX_CHARS[self]


_MAX_CHARS = {
    Platform.X: 280,
    Platform.BLUESKY: 300,
    Platform.LINKEDIN: 3000,
    Platform.THREADS: 500,
    Platform.MASTODON: 500,
}


class Metrics(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """Engagement counts of one post. Other metric names in the input are accepted and ignored."""

    likes: NonNegative
    reposts: NonNegative
    replies: NonNegative
    impressions: NonNegative | None = None


# ---------------------------------------------------------------------------------------------
# Input events: one JSON object per line, told apart by "type".


PostKind = Literal["original", "repost", "reply"]


class PostEvent(msgspec.Struct, frozen=True, tag="post", tag_field="type"):
    """A published post with its engagement figures. Only originals are mined unless configured."""

    id: NonEmpty
    text: NonEmpty
    created_at: AwareDatetime
    platform: Platform
    author: NonEmpty
    metrics: Metrics
    kind: PostKind = "original"
    day_only: bool = False
    """True when only the day is known (`created_at` is then its midnight, UTC), as in X's content export."""
    context: str = ""
    """The text the post answers or was made from (the post it replies to, the article it sums up), if
    known; the templates that read such a text (`reply`, `repurpose`) learn from the posts that have one."""

    @property
    def key(self) -> str:
        """The identity used for de-duplication: platform and id."""
        return f"{self.platform.value}:{self.id}"


MAX_THREAD_POSTS = 25


class GenerateEvent(msgspec.Struct, frozen=True, tag="generate", tag_field="type", kw_only=True):
    """A request for new drafts: the brief, and how many candidates to write."""

    topic: NonEmpty
    platform: Platform = Platform.X
    audience: str = ""
    style: str = ""
    length: Literal["short", "medium", "long"] = "short"
    thread_size: Annotated[int, msgspec.Meta(ge=1, le=MAX_THREAD_POSTS)] = 1
    key_message: str = ""
    call_to_action: str = ""
    n: Annotated[int, msgspec.Meta(ge=1, le=20)] = 3
    template: str = "content_generation"
    """The writing template (`reer-runtime templates` lists them)."""
    texts: dict[str, str] = {}
    """The texts the template reads beside the brief, by name (the `reply` template's `post_replied_to`)."""
    program: Annotated[int, msgspec.Meta(ge=0)] | None = None
    """The version of the template's program to write with (0: uncompiled), promoted or not; by
    default its newest promoted one."""


Optimizer = Literal["bootstrap", "mipro", "gepa"]
OPTIMIZERS: tuple[Optimizer, ...] = get_args(Optimizer)
InputFormat = Literal["auto", "jsonl", "x-analytics", "x-archive", "csv"]
"""How an input source is read: told from its content (`auto`), or named."""
INPUT_FORMATS: tuple[InputFormat, ...] = get_args(InputFormat)


class OptimizeEvent(msgspec.Struct, frozen=True, tag="optimize", tag_field="type", kw_only=True):
    """A request to compile the writer program on the traces (with the configured optimizer if none)."""

    optimizer: Optimizer | None = None
    template: str = "content_generation"
    """The writing template to compile."""


InputEvent = PostEvent | GenerateEvent | OptimizeEvent


# ---------------------------------------------------------------------------------------------
# Records the runtime writes.


class Rejection(msgspec.Struct, frozen=True):
    """Why an input line is not accepted: its kind (`invalid JSON`, `duplicate`, `too long`, ...),
    which the rejected-lines metric counts by, and the detail."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


class Rejected(msgspec.Struct, frozen=True, kw_only=True):
    """An input line that was not accepted, kept with the reason, `str(Rejection)` (`rejected.jsonl`)."""

    source: str
    line: int
    raw: str
    reason: str
    rejected_at: datetime


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    """An accepted post with the decision taken on it (`posts.jsonl`, the ledger).

    Written before the post is announced, so a restart can finish what a crash interrupted.
    """

    post: PostEvent
    engagement: float
    selected: bool
    source: str
    line: int
    accepted_at: datetime


class Brief(msgspec.Struct, frozen=True, kw_only=True):
    """The writing brief `x` a post answers, derived from the post's features, not its words."""

    platform: Platform
    max_chars: int
    length: str
    features: list[str]
    text: str


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """One proposed rewrite of a plan section, with its score or the reason it was refused."""

    text: str
    score: float | None
    accepted: bool
    rejected_reason: str | None = None


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """One refinement step: the plan section rewritten and the candidates tried for it."""

    section: str = ""
    """Empty in traces of schema version 1, whose plans had no named sections."""
    best_before: float
    candidates: list[Candidate]


class Scores(msgspec.Struct, frozen=True, kw_only=True):
    """Clipped mean NLL of the post under the scorer: no plan, initial plan, found plan."""

    no_plan: float
    initial: float
    final: float
    clip_share: float | None = None
    """Share of the post's tokens whose log-probability under the found plan sat at the clip floor
    (None in traces mined before it was recorded). Near 1, the scores compare almost nothing."""


class HeldOut(msgspec.Struct, frozen=True, kw_only=True):
    """The post's tokens the search never saw (a seeded half of the positions): their clipped mean
    NLL under each plan, and what the found plan gains there over a generic plan.

    The search picks its plan by the NLL of the other tokens, so `Scores` flatter the found plan
    (it is the best of many on those very tokens); these figures do not."""

    tokens: int
    """How many of the post's tokens were held out; the search scored the rest."""
    no_plan: float
    initial: float
    final: float
    generic: float
    """Under `prompts.GENERIC_PLAN`, the same fixed, reasonable plan for every post."""
    gain: float
    """`generic - final`, in nats a token: how much better the found plan explains tokens the search
    did not see than a generic plan does. Near 0 or below, the plan explains nothing beyond luck."""
    in_sample_gain: float
    """The same difference on the tokens the search chose by: it includes the selection's luck."""


HELD_OUT_GAIN = "nats a token better than a generic plan, on tokens the search did not see"
"""What a held-out gain is, in the words every listing uses."""


class Timings(msgspec.Struct, frozen=True, kw_only=True):
    """Wall time of one search, and how it splits between generating and scoring."""

    total_s: float
    generate_s: float
    score_s: float
    generate_calls: int
    score_calls: int


class Mining(msgspec.Struct, frozen=True, kw_only=True):
    """What one REER search found: the plans, their scores, every step, and what it cost."""

    plan_initial: str
    plan: str
    sections: dict[str, str] = {}
    """The found plan's sections by name (`Angle`, `Hook`, ...); empty in schema version 1."""
    scores: Scores
    overlap: float
    """Share of the post's word 3-grams the plan holds."""
    content_overlap: float = 0.0
    """Share of the post's content words (stemmed) the plan names; 0 in traces mined before it was recorded."""
    steps: list[Step]
    leak_rejections: int
    generators: list[str]
    scorers: list[str]
    timings: Timings
    held_out: HeldOut | None = None
    """None in traces of schema version 2 and before, or when `search.held_out` is 0 or the post is
    a single token: then the search scored every token."""


class Judged(msgspec.Struct, frozen=True, kw_only=True):
    """The plans scored by the judge, a model that took no part in the search: the clipped mean NLL
    of every token of the post under each plan, and the found plan's gain over the generic one."""

    model: str
    """The URI of the provider that judged."""
    no_plan: float
    initial: float
    final: float
    generic: float
    gain: float
    """`generic - final`, in nats a token, by the judge."""


class Trace(Mining, frozen=True, kw_only=True):
    """A mined REER trace `(x, z, y)` with everything needed to judge it (`traces.jsonl`)."""

    schema_version: int = 3
    trace_id: str
    post: PostEvent
    engagement: float
    brief: Brief
    otel_trace_id: str
    mined_at: datetime
    judge: Judged | None = None
    """None when no judge was configured (`judge`), or it failed on this post."""


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A message whose handler raised, kept with the error (`dead-letters.jsonl`)."""

    actor: str
    topic: str
    message: msgspec.Raw
    error: str
    failed_at: datetime
    request_id: str | None = None
    """The id of the user's request (for drafts or a compile) the message carried, if it was one."""


class Failure(msgspec.Struct, frozen=True, kw_only=True):
    """A selected post whose mining failed, kept with the reason (`failed.jsonl`)."""

    post: PostEvent
    reason: str
    failed_at: datetime


class Features(msgspec.Struct, frozen=True, kw_only=True):
    """What a draft contains, counted over all its parts."""

    chars: int
    words: int
    hashtags: int
    mentions: int
    links: int


class Draft(msgspec.Struct, frozen=True, kw_only=True):
    """One candidate post or thread written by the writer program (`drafts.jsonl`).

    A draft that breaks the platform's limits and cannot be repaired is kept with `rejected_reason`.
    """

    draft_id: str
    request_id: str
    request: GenerateEvent
    parts: list[str]
    """The post, or the posts of the thread in order."""
    features: Features
    plan: str
    program_version: int
    """The compiled program that wrote it; 0 is the uncompiled program."""
    provider: list[str]
    trace_ids: list[str]
    """The mined traces whose strategies the program was shown."""
    score: float | None
    """The writer's metric (0 for a draft that breaks the limits); None when it could not be measured."""
    score_parts: dict[str, float]
    score_missing: str | None = None
    """Why there is no score, when there is none."""
    attempt: int = 1
    """Which try of this draft it is: a draft that broke the limits is written again."""
    repaired: str | None = None
    rejected_reason: str | None = None
    otel_trace_id: str
    created_at: datetime


class Program(msgspec.Struct, frozen=True, kw_only=True):
    """One compiled writer program (`programs/index.jsonl`); the file is `programs/v{version}.json`."""

    version: int
    optimizer: Optimizer
    score: float
    """Its mean metric on the validation traces."""
    baseline: float
    """The promoted program's mean metric on the same traces when this one was compiled."""
    promoted: bool
    train_trace_ids: list[str]
    val_trace_ids: list[str]
    demo_trace_ids: list[str]
    model_calls: int
    compile_s: float
    created_at: datetime
    request_id: str | None = None
    """The journaled request that asked for this compile; none when the TraceWriter asked (every
    `writer.optimize_after` traces)."""
    template: str = "content_generation"
    """The writing template it was compiled for; each has its own promoted program."""
    left_out: int = 0
    """Traces not trained or validated on: their held-out gain was at or below `writer.min_gain`."""


class Watched(msgspec.Struct, frozen=True, kw_only=True):
    """A file taken from the watched folder (`watched.jsonl`): read once, then moved aside."""

    name: str
    sha256: str
    bytes: int
    moved_to: str
    error: str | None = None
    """Why the file could not be read at all (it is moved to `failed/`); its bad rows are in rejected.jsonl."""
    processed_at: datetime


class Requested(msgspec.Struct, frozen=True, kw_only=True):
    """A request for drafts or for a compile, journaled before it is passed on (`requests.jsonl`),
    so that one cut short by a crash is handled at the next start."""

    request_id: str
    request: GenerateEvent | OptimizeEvent
    accepted_at: datetime
