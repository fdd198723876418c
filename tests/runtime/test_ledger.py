"""The ledger: what is mined, failed and settled, read from the stores and kept up to date."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

import actors.base
from bus.messages import (
    GENERATE_REQUESTED,
    OPTIMIZE_REQUESTED,
    Envelope,
    GenerateRequested,
    OptimizeRequested,
)
from runtime.ledger import Ledger, Stores
from runtime.records import (
    DeadLetter,
    Draft,
    Failure,
    Features,
    GenerateEvent,
    OptimizeEvent,
    Program,
    Rejected,
    Requested,
    Watched,
)
from tests.helpers import make_post
from tests.runtime.writer.test_writer import make_trace

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 12, 1, tzinfo=UTC)


async def test_posts_with_a_trace_are_mined_and_failed_ones_finished_unless_retried(stores: Stores) -> None:
    await stores.traces.append_many([make_trace(1, "We shipped."), make_trace(2, "We learned.")])
    failed = make_post(3)
    await stores.failures.append(Failure(post=failed, reason="every plan copied the post", failed_at=NOW))
    ledger = Ledger(stores)
    mined = {t.post.key for t in stores.traces.read()}
    assert ledger.mined == 2 and all(ledger.is_mined(key) for key in mined)
    assert not ledger.is_mined(failed.key) and ledger.finished_posts() == mined | {failed.key}
    assert Ledger(stores, retry_failed=True).finished_posts() == mined  # `retry-failed` mines it again

    ledger.record_mined(failed.key)  # the TraceWriter wrote its trace
    assert ledger.is_mined(failed.key) and ledger.mined == 3


async def test_a_request_is_settled_by_its_drafts_its_program_or_its_dead_letter(stores: Stores) -> None:
    request = GenerateEvent(topic="pricing")
    draft = Draft(
        draft_id="d1",
        request_id="drafted",
        request=request,
        parts=["Prices go up."],
        features=Features(chars=13, words=3, hashtags=0, mentions=0, links=0),
        plan="Angle: I will say it plainly.",
        program_version=0,
        provider=["dummy://"],
        trace_ids=[],
        score=0.5,
        score_parts={},
        otel_trace_id="0" * 32,
        created_at=NOW,
    )
    await stores.drafts.append(draft)
    compiled = Program(
        version=1,
        optimizer="bootstrap",
        score=0.6,
        baseline=0.5,
        promoted=True,
        train_trace_ids=[],
        val_trace_ids=[],
        demo_trace_ids=[],
        model_calls=3,
        compile_s=1.0,
        created_at=NOW,
        request_id="compiled",
    )
    await stores.programs.index.append(compiled)
    automatic = msgspec.structs.replace(compiled, version=2, request_id=None)  # an automatic compile: no id
    await stores.programs.index.append(automatic)
    refused = GenerateRequested(request_id="refused", request=request)
    await stores.dead_letters.append(dead_letter("generator", GENERATE_REQUESTED.name, refused))
    assert Ledger(stores).settled_requests() == {"drafted", "compiled", "refused"}


async def test_dead_lettered_requests_are_settled_and_automatic_compiles_have_no_id(stores: Stores) -> None:
    """A refused compile that the TraceWriter asked for carries no request id; it must not stop a start."""
    for request_id in (None, "r7"):  # the TraceWriter's, then a user's
        message = OptimizeRequested(request_id=request_id, request=OptimizeEvent())
        await stores.dead_letters.append(dead_letter("optimizer", OPTIMIZE_REQUESTED.name, message))
    assert Ledger(stores).settled_requests() == {"r7"}


def dead_letter(actor: str, topic: str, body: GenerateRequested | OptimizeRequested) -> DeadLetter:
    """The dead letter a refused request leaves, as the actors write it."""
    return actors.base.dead_letter(actor, Envelope(id="m", topic=topic, headers={}, body=body), "Refused: not now")


async def test_dead_letters_written_before_they_carried_the_request_id_still_settle_it(stores: Stores) -> None:
    requests: list[tuple[str, GenerateRequested | OptimizeRequested]] = [
        (GENERATE_REQUESTED.name, GenerateRequested(request_id="g1", request=GenerateEvent(topic="x"))),
        (OPTIMIZE_REQUESTED.name, OptimizeRequested(request_id="o1", request=OptimizeEvent())),
    ]
    for topic, body in requests:
        letter = dead_letter("generator", topic, body)
        assert letter.request_id == body.request_id
        old = msgspec.structs.replace(letter, request_id=None)  # the record as an earlier version wrote it
        await stores.dead_letters.append(old)
    assert Ledger(stores).failed_requests() == {"g1": "not now", "o1": "not now"}


def test_the_stores_have_the_names_the_readme_documents(tmp_path: Path) -> None:
    names = {store.path.name for store in Stores.at(tmp_path).all()}
    assert names == {
        "posts.jsonl",
        "rejected.jsonl",
        "traces.jsonl",
        "failed.jsonl",
        "dead-letters.jsonl",
        "drafts.jsonl",
        "watched.jsonl",
        "requests.jsonl",
        "index.jsonl",
    }
    assert Stores.at(tmp_path).programs.index.path == tmp_path / "programs" / "index.jsonl"
    elsewhere = Stores.at(tmp_path, traces=tmp_path / "shared" / "all-traces.jsonl")
    assert elsewhere.traces.path == tmp_path / "shared" / "all-traces.jsonl"


async def test_the_journals_read_back_as_their_records(stores: Stores) -> None:
    rejected = Rejected(source="posts.csv", line=3, raw="x", reason="no text", rejected_at=NOW)
    watched = Watched(name="posts.csv", sha256="ab" * 32, bytes=10, moved_to="done/posts.csv", processed_at=NOW)
    requested = Requested(request_id="r1", request=GenerateEvent(topic="backups"), accepted_at=NOW)
    await stores.rejected.append(rejected)
    await stores.watched.append(watched)
    await stores.requests.append(requested)
    assert list(stores.rejected.read()) == [rejected]
    assert list(stores.watched.read()) == [watched]
    assert list(stores.requests.read()) == [requested]


async def test_a_failed_post_is_settled_and_retried_only_when_asked(stores: Stores) -> None:
    await stores.traces.append(make_trace(1, "We shipped."))
    failed = make_post(3)
    await stores.failures.append(Failure(post=failed, reason="timed out", failed_at=NOW))
    ledger, retrying = Ledger(stores), Ledger(stores, retry_failed=True)
    mined = make_trace(1, "We shipped.").post.key
    assert ledger.is_settled(failed.key) and ledger.is_settled(mined) and not ledger.is_settled("x:99")
    assert ledger.retried_posts() == set() and retrying.retried_posts() == {failed.key}
    assert not retrying.is_settled(failed.key)
    retrying.record_failed(failed.key)  # failed again in this run
    assert retrying.is_settled(failed.key)


async def test_a_failed_request_keeps_its_whole_reason(stores: Stores) -> None:
    body = OptimizeRequested(request_id="o2", request=OptimizeEvent())
    envelope = Envelope(id="m", topic=OPTIMIZE_REQUESTED.name, headers={}, body=body)
    reason = "compiling content_generation: needs more than 5 model calls"
    await stores.dead_letters.append(actors.base.dead_letter("optimizer", envelope, f"CallCapReached: {reason}"))
    unnamed = Envelope(
        id="n",
        topic=OPTIMIZE_REQUESTED.name,
        headers={},
        body=OptimizeRequested(request_id="o3", request=OptimizeEvent()),
    )
    await stores.dead_letters.append(actors.base.dead_letter("optimizer", unnamed, "cancelled at shutdown"))
    assert Ledger(stores).failed_requests() == {"o2": reason, "o3": "cancelled at shutdown"}  # no name: all of it
