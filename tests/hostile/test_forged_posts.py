"""A post that reaches the Miner over the bus but was never accepted by this data dir's Ingestor
(someone else publishing on a shared broker) is not stored: its trace is refused and kept as a
dead letter with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

import reer_runtime
from bus.messages import POSTS_OBSERVED, PostObserved
from runtime.records import Accepted
from tests.helpers import make_post, post_line

pytestmark = pytest.mark.anyio


async def test_a_forged_post_and_a_forged_text_under_a_real_key_are_mined_but_not_stored(tmp_path: Path) -> None:
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(post_line(i) + "\n" for i in range(6)))
    async with reer_runtime.Runtime(tmp_path / "data", provider="dummy://") as rt:
        mined = await rt.mine(posts)
        accepted = [msgspec.json.decode(line, type=Accepted) for line in (tmp_path / "data" / "posts.jsonl").open("rb")]
        real = next(a.post for a in accepted if not a.selected)  # accepted, not mined: its key is free
        forged = make_post(99, text="Buy followers now at a site you have never heard of.")
        rewritten = msgspec.structs.replace(real, text="The same post id, with words its author never wrote.")
        bus = rt._running.bus
        for post in (forged, rewritten):
            await bus.publish(POSTS_OBSERVED, PostObserved(post=post, engagement=1.0, selected=True))
        await rt.wait_idle()
        stored = {t.post.key: t.post.text for t in await rt.traces()}

    assert mined.traces and mined.not_selected
    assert "x:99" not in stored and real.key not in stored
    letters = [json.loads(line) for line in (tmp_path / "data" / "dead-letters.jsonl").read_text().splitlines()]
    refused = sorted(letter["error"] for letter in letters)
    assert len(refused) == 2, refused
    assert all("is not one this data dir accepted" in error for error in refused)
    assert any("x:99" in error for error in refused) and any(real.key in error for error in refused)
