"""Actors survive their handlers' errors, keep the message as a dead letter, and stop on a crash loop."""

from __future__ import annotations

from pathlib import Path

import anyio
import msgspec
import pytest

from actors.base import Consumer
from bus.bus import Bus
from bus.messages import POSTS_OBSERVED, PostObserved
from runtime.errors import CrashLoopError
from runtime.records import DeadLetter
from runtime.store import JsonlStore
from tests.helpers import make_post

pytestmark = pytest.mark.anyio


class Picky(Consumer[PostObserved]):
    name = "picky"

    def __init__(self, bus: Bus, dead: JsonlStore[DeadLetter], **kwargs: int) -> None:
        super().__init__(bus, POSTS_OBSERVED, dead, **kwargs)
        self.handled: list[str] = []

    async def handle(self, message: PostObserved) -> None:
        if int(message.post.id) % 2:
            raise ValueError(f"odd post {message.post.id}")
        self.handled.append(message.post.id)


def dead_store(tmp_path: Path) -> JsonlStore[DeadLetter]:
    store = JsonlStore(tmp_path / "dead-letters.jsonl", DeadLetter)
    store.open()
    return store


async def feed(bus: Bus, actor: Picky, ids: list[int]) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(actor.run)
        for i in ids:
            await bus.publish(POSTS_OBSERVED, PostObserved(post=make_post(i), engagement=1, selected=True))
        await bus.wait_idle()
        await bus.aclose()


async def test_a_failing_message_becomes_a_dead_letter_and_the_actor_goes_on(tmp_path: Path) -> None:
    bus, dead = Bus(), dead_store(tmp_path)
    actor = Picky(bus, dead)
    await feed(bus, actor, [0, 1, 2, 3, 4])
    assert actor.handled == ["0", "2", "4"]
    letters = list(dead.read())
    assert [(d.actor, d.topic, d.error) for d in letters] == [
        ("picky", "posts.observed", "ValueError: odd post 1"),
        ("picky", "posts.observed", "ValueError: odd post 3"),
    ]
    envelope = msgspec.json.decode(letters[0].message)
    assert envelope["body"]["post"]["id"] == "1"  # the whole message is kept, to replay or inspect


async def test_failures_in_a_row_stop_the_actor_with_a_clear_error(tmp_path: Path) -> None:
    bus = Bus()
    actor = Picky(bus, dead_store(tmp_path), max_consecutive_failures=3)
    with pytest.raises(ExceptionGroup) as caught:
        await feed(bus, actor, [1, 3, 5, 7])
    crash = caught.value.exceptions[0]
    while isinstance(crash, ExceptionGroup):
        crash = crash.exceptions[0]
    assert isinstance(crash, CrashLoopError)
    assert "actor 'picky' failed on 3 messages in a row; last error: ValueError: odd post 5" in str(crash)
