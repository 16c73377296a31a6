"""The audit log role: an append-only hash chain, read by id (the outbox's consumers) and by
filter (people), with the counts a consumer needs to report and skip a full queue."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

from bridge.audit import GENESIS_HASH, event_hash, verify_chain
from bridge.models import AuditEvent
from bridge.store import AuditFilter
from tests.conftest import START

# (minutes after START, actor, action, client, asset)
EVENTS = [
    (0, "dyzur", "ticket.opened", "szpital-a", "srv-a1"),
    (1, "jan", "ticket.acknowledged", "szpital-a", "srv-a1"),
    (2, "dyzur", "window.planned", "klinika-b", None),
    (3, "dyzur", "ticket.opened", "klinika-b", "srv-b1"),
    (4, "admin", "config.loaded", None, None),
    (5, "jan", "ticket.resolved", "szpital-a", "srv-a2"),
]


def fill(store) -> list[AuditEvent]:
    return [
        store.append_audit(
            AuditEvent(
                START + timedelta(minutes=m), actor, action, "success", client, asset, {"m": m}
            )
        )
        for m, actor, action, client, asset in EVENTS
    ]


def test_appended_events_form_a_hash_chain(store):
    assert store.audit_high_water() == 0
    events = fill(store)
    assert [e.id for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[0].prev_hash == GENESIS_HASH
    for before, event in pairwise(events):
        assert event.prev_hash == before.hash
    assert all(e.hash == event_hash(e) for e in events)
    stored = store.audit_events()
    assert stored == events  # kept exactly as given, detail included
    assert verify_chain(stored, store.audit_high_water()).intact
    assert store.audit_high_water() == 6


def test_audit_events_are_read_by_id_in_pages_and_by_client(store):
    fill(store)

    def ids(**kw):
        return [e.id for e in store.audit_events(**kw)]

    assert ids(after_id=4) == [5, 6]
    assert ids(after_id=1, limit=2) == [2, 3]
    assert ids(clients=frozenset({"klinika-b"})) == [3, 4]
    assert ids(after_id=3, clients=frozenset({"szpital-a", "klinika-b"})) == [4, 6]
    assert ids(clients=frozenset()) == []
    assert ids(after_id=6) == []


def test_list_audit_filters_and_orders(store):
    fill(store)

    def ids(**kw):
        return [e.id for e in store.list_audit(AuditFilter(**kw))]

    assert ids() == [1, 2, 3, 4, 5, 6]
    assert ids(newest_first=True, limit=2) == [6, 5]
    assert ids(client="szpital-a") == [1, 2, 6]
    assert ids(action="ticket.opened") == [1, 4]
    assert ids(action="ticket.*") == [1, 2, 4, 6]
    assert ids(action="ticket.*", client="klinika-b") == [4]
    assert ids(actor="jan") == [2, 6]
    assert ids(asset="srv-a1") == [1, 2]
    assert ids(since=START + timedelta(minutes=3)) == [4, 5, 6]
    assert ids(after=2, limit=2) == [3, 4]  # the next page, oldest first
    assert ids(after=5, newest_first=True) == [4, 3, 2, 1]  # the next page, newest first
    assert ids(action="ticket") == []  # exact unless it ends in *


def test_backlog_and_skip_count_a_consumers_events(store):
    fill(store)
    szpital = frozenset({"szpital-a"})
    assert store.audit_backlog(0, None) == 6
    assert store.audit_backlog(2, None) == 4
    assert store.audit_backlog(0, szpital) == 3
    assert store.audit_backlog(1, szpital) == 2
    assert store.audit_skip(0, 1, None) == 1
    assert store.audit_skip(1, 3, None) == 4  # the 3rd event after 1
    assert store.audit_skip(0, 2, szpital) == 2  # szpital-a's 2nd event
    assert store.audit_skip(2, 1, szpital) == 6
    assert store.audit_skip(6, 1, None) == 6  # nothing after the last one: stays


def test_the_high_water_mark_is_the_highest_id_given(store):
    """What makes a deletion of the newest events visible to ``dyzur audit verify``."""
    fill(store)
    assert store.audit_high_water() == 6
    assert verify_chain(store.audit_events(limit=4), store.audit_high_water()).broken_at == 5


def test_events_are_read_again_by_their_ids_oldest_first(store):
    """What a helpdesk sink does to send its parked changes again."""
    fill(store)
    every = store.audit_events()
    assert store.audit_events_by_id([6, 2, 4, 2, 99]) == [every[1], every[3], every[5]]
    assert store.audit_events_by_id([]) == []
    assert store.audit_events_by_id(range(1, 1201)) == every  # more ids than one query takes


def test_a_watcher_hears_of_committed_appends_only(store):
    """The outbox's wake-up: after a commit that appended, not after a rollback or a commit
    that appended nothing."""
    heard: list[int] = []
    store.watch_appends(lambda: heard.append(store.audit_high_water()))
    fill(store)  # each append its own transaction
    assert heard == [1, 2, 3, 4, 5, 6]
    try:
        with store.transaction():
            store.append_audit(AuditEvent(START, "jan", "ticket.opened", "success", None, None))
            raise RuntimeError("the unit of work failed")
    except RuntimeError:
        pass
    assert heard == [1, 2, 3, 4, 5, 6]
    with store.transaction():
        store.cursor("sink:x")  # a transaction that appends nothing
    with store.transaction():
        for _ in range(2):
            store.append_audit(AuditEvent(START, "jan", "ticket.opened", "success", None, None))
    assert heard == [1, 2, 3, 4, 5, 6, 8]  # once, after the commit of both (7 and 8)
