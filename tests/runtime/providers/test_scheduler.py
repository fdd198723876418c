"""The numpy engine's scheduler on its own, with no model: what each row feeds in a step, prompts cut
into chunks, a request waiting for a prefix still being computed, rows leaving when finished."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.providers.local import scheduler
from runtime.providers.local.numpy_model import Kv
from runtime.providers.local.prefix_cache import PrefixCache
from runtime.providers.local.requests import Decoding, Scoring
from runtime.providers.local.scheduler import Fed, Scheduler


def empty(room: int) -> Kv:
    """A sequence of one layer, one key-value head of 2 features, with room for `room` positions."""
    return Kv(np.zeros((1, 1, 2, room), np.float32), np.zeros((1, 1, room, 2), np.float32), 0)


def forward(batch: list[Fed]) -> None:
    """What the forward pass does to the rows' sequences: each holds its fed tokens after."""
    for fed in batch:
        fed.row.kv.reserve(len(fed.tokens))
        fed.row.kv.length += len(fed.tokens)


def test_a_long_prompt_is_fed_in_chunks_and_only_its_last_position_is_wanted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduler, "CHUNK", 4)
    plan = Scheduler(PrefixCache(1 << 20), empty)
    plan.add(Decoding(list(range(10)), 5, 0.0, 1.0, None, []))
    fed = [plan.schedule() for _ in range(3)]
    assert [[(f.tokens, f.wanted) for f in step] for step in fed] == [
        [([0, 1, 2, 3], 0)],
        [([4, 5, 6, 7], 0)],
        [([8, 9], 1)],
    ]
    assert (plan.generation.reused, plan.generation.computed) == (0, 10)


def test_a_request_sharing_a_prefix_being_computed_waits_then_starts_from_the_cache() -> None:
    prompt = list(range(20))
    plan = Scheduler(PrefixCache(1 << 20), empty)
    first, second = Decoding([*prompt, 1], 5, 0.0, 1.0, None, []), Decoding([*prompt, 2], 5, 0.0, 1.0, None, [])
    plan.add(first)
    plan.add(second)
    batch = plan.schedule()
    assert [f.row.request for f in batch] == [first]  # the second waits for the shared prompt
    forward(batch)
    plan.computed(batch[0].row)
    plan.settle(batch[0].row, 1, next_token=7, finished=False)
    batch = plan.schedule()
    assert [(f.row.request, f.tokens) for f in batch] == [(first, [7]), (second, [2])]
    assert (plan.generation.reused, plan.generation.computed) == (20, 22)


def test_a_finished_row_leaves_and_a_scoring_wants_every_target_position() -> None:
    plan = Scheduler(PrefixCache(0), empty)
    scoring = Scoring([5, 6, 7], [8, 9, 10])
    plan.add(scoring)
    (fed,) = plan.schedule()
    assert fed.tokens == [5, 6, 7, 8, 9] and fed.wanted == 3  # from the last context token on
    forward([fed])
    plan.computed(fed.row)
    plan.settle(fed.row, 3, next_token=None, finished=True)
    assert not plan.busy and plan.schedule() == []
