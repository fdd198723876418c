"""`Client`: the same API as `Runtime`, blocking, for scripts and notebooks (no event loop needed)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from functools import partial
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from runtime.errors import UsageError
from runtime.providers.calls import Generation, TokenScores
from runtime.records import Draft, Optimizer, Program, Trace
from runtime.writer.templates import DEFAULT, Template

from ._runtime import Mined, PostLike, Runtime
from ._stats import Stats

P = ParamSpec("P")
T = TypeVar("T")


class Client:
    """A `Runtime` run on an event loop of its own, in a background thread.

    Use it in a `with` block, or call `close()` when done; every method is `Runtime`'s, blocking::

        with reer_runtime.Client(provider="dummy://") as rt:
            mined = rt.mine("posts.jsonl")
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        provider: str | None = None,
        generator: str | list[str] | None = None,
        scorer: str | list[str] | None = None,
        templates: Iterable[Template] = (),
        **settings: Any,
    ) -> None:
        self._runtime = Runtime(
            data_dir, provider=provider, generator=generator, scorer=scorer, templates=templates, **settings
        )
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._runtime_cm: AbstractContextManager[Runtime] | None = None

    @property
    def data_dir(self) -> os.PathLike[str]:
        return self._runtime.data_dir

    def __enter__(self) -> Client:
        self._portal_cm = start_blocking_portal()
        portal = self._portal_cm.__enter__()
        self._runtime_cm = portal.wrap_async_context_manager(self._runtime)
        try:
            self._runtime_cm.__enter__()
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            self._portal_cm = self._runtime_cm = None
            raise
        self._portal = portal
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._portal_cm is None or self._runtime_cm is None:
            return
        try:
            self._runtime_cm.__exit__(exc_type, exc, tb)
        finally:
            self._portal_cm.__exit__(None, None, None)
            self._portal_cm = self._runtime_cm = None

    def close(self) -> None:
        """Finish the work in flight and stop."""
        self.__exit__(None, None, None)

    def _call(self, function: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> Any:
        if self._portal_cm is None:
            raise UsageError("the Client is not open: use it in a `with reer_runtime.Client(...)` block")
        return self._portal.call(partial(function, *args, **kwargs))

    def mine(self, posts: str | os.PathLike[str] | Iterable[PostLike]) -> Mined:
        """`Runtime.mine`."""
        result: Mined = self._call(self._runtime.mine, posts)
        return result

    def mine_post(self, text: str, **options: Any) -> Trace:
        """`Runtime.mine_post`."""
        result: Trace = self._call(self._runtime.mine_post, text, **options)
        return result

    def traces(self, **filters: Any) -> list[Trace]:
        """`Runtime.traces`."""
        result: list[Trace] = self._call(self._runtime.traces, **filters)
        return result

    def generate(self, topic: str, **brief: Any) -> list[Draft]:
        """`Runtime.generate`."""
        result: list[Draft] = self._call(self._runtime.generate, topic, **brief)
        return result

    def optimize(self, optimizer: Optimizer | None = None, *, template: str = DEFAULT) -> Program:
        """`Runtime.optimize`."""
        result: Program = self._call(self._runtime.optimize, optimizer, template=template)
        return result

    def templates(self) -> dict[str, Template]:
        """`Runtime.templates`."""
        result: dict[str, Template] = self._call(self._runtime.templates)
        return result

    def complete(self, prompt: str, **options: Any) -> Generation:
        """`Runtime.complete`."""
        result: Generation = self._call(self._runtime.complete, prompt, **options)
        return result

    def score(self, text: str, **options: Any) -> TokenScores:
        """`Runtime.score`."""
        result: TokenScores = self._call(self._runtime.score, text, **options)
        return result

    def stats(self) -> Stats:
        """`Runtime.stats`."""
        result: Stats = self._call(self._runtime.stats)  # run on the event loop's thread, as the portal does
        return result
