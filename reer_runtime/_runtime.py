"""`Runtime`: the daemon's pipeline (actors, bus, Limiter, stores, spans) in the caller's process."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import dspy
import msgspec

from reer_runtime.daemon import Pipeline, check_chains, make_data_dir, open_chains
from reer_runtime.stats import snapshot
from reer_runtime.tracelist import query
from runtime.config import load_settings, resolve_data_dir
from runtime.errors import ReerError, Refused, UsageError, first_error
from runtime.inputs.lines import Line
from runtime.inputs.sources import check, expand, missing
from runtime.lock import exclusive
from runtime.logs import configure
from runtime.providers.calls import ChatMessage, GenerateCall, Generation, ScoreCall, TokenScores
from runtime.records import (
    Accepted,
    Draft,
    Failure,
    GenerateEvent,
    Metrics,
    OptimizeEvent,
    Optimizer,
    Platform,
    PostEvent,
    Program,
    Rejected,
    Trace,
)
from runtime.telemetry import process_telemetry
from runtime.writer.drafting import ranked
from runtime.writer.templates import DEFAULT, Template, checked, lookup

from ._stats import Stats

PostLike = PostEvent | Mapping[str, Any]
"""A post to mine: a `PostEvent`, or a dict of its JSON fields (`"type": "post"` may be left out)."""


@dataclass(frozen=True)
class Mined:
    """What one `Runtime.mine` call came to, for the posts it was given."""

    traces: list[Trace]
    """The traces of the selected posts, mined now or before."""
    failures: list[Failure]
    """Selected posts whose search failed, with why (`retry-failed` mines them again)."""
    rejected: list[Rejected]
    """Input that was not accepted, with the reason: invalid, duplicate, too long."""
    not_selected: int
    """Accepted posts below the engagement threshold (`min_engagement`), kept but not mined."""


class Runtime:
    """reer-runtime in this process: the daemon's own actors over a data dir, for as long as the
    `async with` block lasts.

    `data_dir` is `~/.reer` unless given (or `$REER_HOME`); the configuration is read as the daemon
    reads it (`config.toml`, `REER_*` variables), and `settings` override it with the daemon's
    setting names (`min_engagement=0.5`, `search={"max_steps": 4}`). `provider` names the model of
    both roles, as `--provider` does; `generator` and `scorer` name each role's fallback chain.
    `templates` are writing templates added to the shipped ones and `config.toml`'s. `config` names
    the configuration file (as `--config`). With `configure_logging`, the process's logging is set
    up from the settings as the daemon's is (stderr, the log file, the levels); by default the
    caller's logging is left as it is.

    Leaving the block waits for the work in flight. A cancelled caller stops at once: what was
    accepted is finished by the next `Runtime` (or daemon) on the same data dir, as after a kill.
    Errors are those of the command line, from `reer_runtime.errors`.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        provider: str | None = None,
        generator: str | list[str] | None = None,
        scorer: str | list[str] | None = None,
        templates: Iterable[Template] = (),
        config: str | os.PathLike[str] | None = None,
        configure_logging: bool = False,
        **settings: Any,
    ) -> None:
        self.data_dir = resolve_data_dir(os.fspath(data_dir) if data_dir is not None else None)
        self._flags = {"generator": generator or provider, "scorer": scorer or provider, **settings}
        self._added = list(templates)
        self._config = Path(config) if config is not None else None
        self._configure_logging = configure_logging
        self._locks = ExitStack()
        self._pipeline: Pipeline | None = None

    async def __aenter__(self) -> Runtime:
        try:
            settings = load_settings(self.data_dir, self._config, **self._flags)
            if self._configure_logging:
                configure(settings, process_telemetry().log_handler)
            settings = settings.model_copy(update={"templates": [*settings.templates, *self._added]})
            settings.writing_templates()  # a name used twice is refused here
            make_data_dir(self.data_dir)
            self._locks.enter_context(exclusive(self.data_dir))
            dspy.configure_cache(disk_cache_dir=str(self.data_dir / "dspy-cache"))  # as the CLI's DSPY_CACHEDIR
            chains = await check_chains(open_chains(settings))
            telemetry = process_telemetry()
            self._pipeline = Pipeline(settings, chains, stats_reader=telemetry.stats_reader)
            await self._pipeline.__aenter__()
        except OSError as exc:
            self._locks.close()
            raise UsageError(str(exc)) from None
        except BaseException:
            self._locks.close()
            raise
        self._model = self._pipeline.model_client(f"api-{uuid.uuid4().hex[:8]}")
        await self._pipeline.resume()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pipeline = self._running
        self._pipeline = None
        try:
            if exc_type is None:
                await pipeline.drain()
            await pipeline.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            errors, _ = group.split(ReerError)
            if errors is None:
                raise
            raise first_error(errors) from None
        finally:
            self._locks.close()

    @property
    def _running(self) -> Pipeline:
        if self._pipeline is None:
            raise UsageError("the Runtime is not open: use it inside `async with Runtime(...) as rt:`")
        return self._pipeline

    async def wait_idle(self) -> None:
        """Wait until every post and request handed in so far is finished."""
        await self._running.bus.wait_idle()

    async def mine(self, posts: str | os.PathLike[str] | Iterable[PostLike]) -> Mined:
        """Mine posts given as a path (a file or folder in any input format) or as posts, and wait
        for their traces. Which posts are mined follows the configuration (`min_engagement`)."""
        pipeline = self._running
        before = await anyio.to_thread.run_sync(_counts, pipeline)
        if isinstance(posts, str | os.PathLike):
            sources = await anyio.to_thread.run_sync(_checked_sources, pipeline, os.fspath(posts))
            await pipeline.ingestor.run(sources)
        else:
            sources = [f"python:{uuid.uuid4().hex[:12]}"]
            await pipeline.ingestor.ingest(sources[0], _lines(posts))
        await self.wait_idle()
        return await anyio.to_thread.run_sync(_mined, pipeline, before, set(sources))

    async def mine_post(
        self,
        text: str,
        *,
        post_id: str | None = None,
        platform: Platform | str = Platform.X,
        author: str = "me",
        created_at: datetime | None = None,
        metrics: Metrics | None = None,
    ) -> Trace:
        """Mine one post given by its text, whatever its engagement, and store its trace.

        Raises `ReerError` with the reason when its search fails, and `UsageError` when the post is
        refused (a duplicate id, an empty text)."""
        post = PostEvent(
            id=post_id or uuid.uuid4().hex[:12],
            text=text,
            created_at=created_at or datetime.now(UTC),
            platform=Platform(platform),
            author=author,
            metrics=metrics or Metrics(likes=0, reposts=0, replies=0),
        )
        pipeline = self._running
        before = await anyio.to_thread.run_sync(_counts, pipeline)
        source = f"python:{post.key}"
        await pipeline.ingestor.ingest(source, _lines([post]), select_all=True)
        await self.wait_idle()
        mined = await anyio.to_thread.run_sync(_mined, pipeline, before, {source})
        if mined.rejected:
            raise UsageError(f"post {post.key} refused: {mined.rejected[0].reason}")
        if mined.failures:
            raise ReerError(f"could not mine {post.key}: {mined.failures[0].reason}")
        return mined.traces[0]

    async def traces(
        self,
        *,
        min_score: float = 0.0,
        platform: Platform | str | None = None,
        author: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[Trace]:
        """The stored traces whose post's engagement score (0 to 1, its rank among its author's
        posts) is at least `min_score`, on `platform`, by `author`, published in [`since`, `until`):
        the newest `limit`, in the order mined."""
        store = self._running.stores.traces
        wanted = Platform(platform).value if platform is not None else None
        return await anyio.to_thread.run_sync(
            lambda: query(
                store.read(),
                min_score=min_score,
                platform=wanted,
                author=author,
                since=since,
                until=until,
                limit=limit,
            )
        )

    async def generate(
        self,
        topic: str,
        *,
        platform: Platform | str = Platform.X,
        n: int = 3,
        thread_size: int = 1,
        length: str = "short",
        audience: str = "",
        style: str = "",
        key_message: str = "",
        call_to_action: str = "",
        template: str = DEFAULT,
        texts: Mapping[str, str] | None = None,
        program: int | None = None,
    ) -> list[Draft]:
        """Write `n` drafts for the brief with the newest promoted program of `template` (or its
        version `program`, promoted or not; 0 is the uncompiled one), as `reer-runtime generate`
        does; `texts` are the texts the template reads beside the brief (the
        `reply` template's `post_replied_to`). A thread has exactly `thread_size` posts. Every try is
        returned, best first (`runtime.writer.drafting.ranked`); those that broke the limits or
        failed the draft gate come last, with `rejected_reason`.

        Raises `UsageError` for an unknown template, or texts it does not read or lacks; `ReerError`
        when no draft was written (an unknown `program`, say)."""
        fields = {
            "topic": topic,
            "platform": Platform(platform).value,
            "n": n,
            "thread_size": thread_size,
            "length": length,
            "audience": audience,
            "style": style,
            "key_message": key_message,
            "call_to_action": call_to_action,
            "template": template,
            "texts": dict(texts or {}),
            "program": program,
        }
        try:
            request = msgspec.convert(fields, GenerateEvent)
        except msgspec.ValidationError as exc:
            raise UsageError(f"generate: {exc}") from None
        pipeline = self._running
        checked(pipeline.settings.writing_templates(), request)
        request_id = await pipeline.ingestor.submit(request)
        await self.wait_idle()
        drafts = await anyio.to_thread.run_sync(lambda: list(pipeline.stores.drafts.read()))
        written = [d for d in drafts if d.request_id == request_id]
        if not written:
            raise ReerError(f"no drafts written: {_refusal(pipeline, request_id) or 'see the logs'}")
        return ranked(written)

    async def optimize(self, optimizer: Optimizer | None = None, *, template: str = DEFAULT) -> Program:
        """Compile the program of `template` on the stored traces (with `writer.optimizer` if none is
        named); the new program's record, which says whether it was promoted for that template.

        Raises `Refused` when there are too few traces to compile on, `UsageError` for an unknown
        template."""
        pipeline = self._running
        lookup(pipeline.settings.writing_templates(), template)
        request_id = await pipeline.ingestor.submit(OptimizeEvent(optimizer=optimizer, template=template))
        await self.wait_idle()
        records = await anyio.to_thread.run_sync(pipeline.stores.programs.records)
        if found := [r for r in records if r.request_id == request_id]:
            return found[-1]
        raise Refused(_refusal(pipeline, request_id) or "the compile did not finish; see the logs")

    async def complete(
        self, prompt: str, *, system: str | None = None, max_tokens: int = 256, temperature: float = 0.7
    ) -> Generation:
        """A completion of `prompt` by the generator chain, through the Limiter: its rate limits,
        retries and fallbacks. `Generation.provider` names the model that answered."""
        messages = [ChatMessage("system", system)] if system else []
        call = GenerateCall(
            messages=[*messages, ChatMessage("user", prompt)], max_tokens=max_tokens, temperature=temperature
        )
        return await self._model.generate(call)

    async def score(self, text: str, *, prompt: str = "", prefix: str = "") -> TokenScores:
        """The log-probability of each token of `text` after `prompt` (a user turn) and `prefix`
        (the start of the answer), by the scorer chain, through the Limiter."""
        call = ScoreCall(messages=[ChatMessage("user", prompt)], prefix=prefix, target=text)
        return await self._model.score(call)

    def templates(self) -> dict[str, Template]:
        """The writing templates by name: the shipped ones, `config.toml`'s and those given here."""
        return self._running.settings.writing_templates()

    def stats(self) -> Stats:
        """This process's figures so far, with the data dir's store counts."""
        pipeline = self._running
        return Stats.of(snapshot(process_telemetry().stats_reader), pipeline.stores, pipeline.ledger)


def _checked_sources(pipeline: Pipeline, path: str) -> list[str]:
    """The files of `path`, each checked readable as the configured input format (as `start --input` does)."""
    sources = expand([path])
    for source in sources:
        if problem := missing(source):
            raise UsageError(problem)
        check(Path(source), pipeline.settings.input_format, pipeline.settings.csv)
    return sources


def _lines(posts: Iterable[PostLike]) -> list[Line]:
    """Posts as the input lines the Ingestor reads, so they are checked and kept as a file's are."""
    lines = []
    for number, post in enumerate(posts, start=1):
        data = msgspec.json.encode(post if isinstance(post, PostEvent) else {"type": "post", **post})
        lines.append(Line(number, data))
    return lines


@dataclass(frozen=True)
class _Counts:
    posts: int
    rejected: int


def _counts(pipeline: Pipeline) -> _Counts:
    stores = pipeline.stores
    return _Counts(stores.posts.count(), stores.rejected.count())


def _mined(pipeline: Pipeline, before: _Counts, sources: set[str]) -> Mined:
    """What became of the records the sources added to the stores since `before`."""
    stores = pipeline.stores
    accepted: list[Accepted] = [a for a in stores.posts.read(before.posts) if a.source in sources]
    rejected = [r for r in stores.rejected.read(before.rejected) if r.source in sources]
    selected = {a.post.key for a in accepted if a.selected}
    traces = {t.post.key: t for t in stores.traces.read() if t.post.key in selected}
    failures = {f.post.key: f for f in stores.failures.read() if f.post.key in selected and f.post.key not in traces}
    return Mined(
        traces=[traces[a.post.key] for a in accepted if a.post.key in traces],
        failures=list(failures.values()),
        rejected=rejected,
        not_selected=len(accepted) - len(selected),
    )


def _refusal(pipeline: Pipeline, request_id: str) -> str | None:
    """Why the request `request_id` was refused or failed, from its dead letter."""
    return pipeline.ledger.failed_requests().get(request_id)
