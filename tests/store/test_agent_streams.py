"""The agent streams role: each agent's numbered batches claimed once, by the token that opened
the stream, with jumps beyond the allowed gap kept apart until confirmed."""

from __future__ import annotations

from datetime import timedelta

from bridge.store import BatchClaim, BatchRecord
from tests.conftest import START


def _batch(agent, asset, seq, samples, dropped, at, owner="agent-a"):
    return BatchRecord(agent, owner, asset, seq, samples, dropped, at)


def test_agent_batches_are_claimed_once_in_order(store):
    at = START
    taken, dup = BatchClaim.TAKEN, BatchClaim.DUPLICATE
    assert store.record_batch(_batch("ag1", "srv-a1", 1, 10, 0, at), 100) is taken
    assert store.record_batch(_batch("ag1", "srv-a1", 2, 5, 0, at), 100) is taken
    assert store.record_batch(_batch("ag1", "srv-a1", 2, 5, 0, at), 100) is dup  # again
    assert store.record_batch(_batch("ag1", "srv-a1", 1, 10, 0, at), 100) is dup  # older
    later = at + timedelta(minutes=1)
    assert store.record_batch(_batch("ag1", "srv-a1", 5, 7, 300, later), 100) is taken
    assert store.record_batch(_batch("ag2", "srv-b1", 1, 1, 0, at, "agent-b"), 100) is taken
    ag1, ag2 = store.agent_streams()
    assert (ag1.last_seq, ag1.batches, ag1.samples) == (5, 3, 22)
    assert (ag1.duplicates, ag1.gaps, ag1.dropped_reported) == (2, 2, 300)
    assert ag1.first_seen == at and ag1.last_seen == later
    assert (ag2.agent_id, ag2.asset, ag2.batches, ag2.owner) == ("ag2", "srv-b1", 1, "agent-b")


def test_a_stream_belongs_to_the_token_that_opened_it(store):
    assert store.record_batch(_batch("ag1", "srv-a1", 1, 1, 0, START), 100) is BatchClaim.TAKEN
    forged = _batch("ag1", "srv-a1", 10**12, 1, 0, START, owner="agent-b")
    assert store.record_batch(forged, 100) is BatchClaim.FOREIGN
    [stream] = store.agent_streams()
    assert (stream.owner, stream.last_seq, stream.batches) == ("agent-a", 1, 1)  # untouched
    assert store.record_batch(_batch("ag1", "srv-a1", 2, 1, 0, START), 100) is BatchClaim.TAKEN


def test_a_jump_beyond_the_gap_is_an_anomaly_until_confirmed(store):
    def claim(seq):
        return store.record_batch(_batch("ag1", "srv-a1", seq, 1, 0, START), 100)

    assert claim(1) is BatchClaim.TAKEN
    assert claim(10**15) is BatchClaim.ANOMALY  # taken, but the stream does not advance
    assert claim(10**15) is BatchClaim.DUPLICATE  # its retry is still taken once
    assert claim(2) is BatchClaim.TAKEN  # the agent's real batches go on being taken
    [stream] = store.agent_streams()
    assert (stream.last_seq, stream.anomalies, stream.jump_seq) == (2, 1, 10**15)
    # An agent that really dropped that many batches carries on from the jump: confirmed.
    assert claim(5000) is BatchClaim.ANOMALY
    assert claim(5001) is BatchClaim.TAKEN
    [stream] = store.agent_streams()
    assert (stream.last_seq, stream.anomalies, stream.jump_seq, stream.gaps) == (
        5001,
        2,
        None,
        4997,
    )
    assert stream.batches == 5


def test_peek_says_what_a_claim_would_and_records_nothing(store):
    def peek(seq, owner="agent-a"):
        return store.peek_batch(_batch("ag1", "srv-a1", seq, 1, 0, START, owner), 100)

    assert peek(1) is BatchClaim.TAKEN and store.agent_streams() == []
    assert store.record_batch(_batch("ag1", "srv-a1", 1, 1, 0, START), 100) is BatchClaim.TAKEN
    [before] = store.agent_streams()
    assert peek(1) is BatchClaim.DUPLICATE
    assert peek(2) is BatchClaim.TAKEN
    assert peek(10**15) is BatchClaim.ANOMALY
    assert peek(2, owner="agent-b") is BatchClaim.FOREIGN
    assert store.agent_streams() == [before]  # no duplicate, gap or anomaly counted
    assert store.record_batch(_batch("ag1", "srv-a1", 2, 1, 0, START), 100) is BatchClaim.TAKEN
