"""The helpdesk sink deliveries role: per sink and ticket, the helpdesk's id and the state of
the last change delivered or refused; and per sink the list of changes it parked."""

from __future__ import annotations

from datetime import timedelta

from bridge.store.roles import ParkedChange, SinkDelivery
from tests.conftest import START


def delivery(sink: str, ticket: str, remote_id: str | None, state: str = "delivered", **kw):
    fields = dict(reason=None, event_id=1, at=START)
    fields.update(kw)
    return SinkDelivery(sink, ticket, remote_id, state, **fields)  # type: ignore[arg-type]


def test_a_ticket_not_delivered_anywhere_has_no_deliveries(store):
    assert store.sink_deliveries("DZ-2026-000001") == []
    assert store.sink_delivery("webhook:glpi", "DZ-2026-000001") is None


def test_the_latest_delivery_per_sink_is_kept_with_the_remote_id(store):
    store.record_delivery(delivery("webhook:glpi", "DZ-2026-000001", "77", event_id=3))
    store.record_delivery(delivery("webhook:chat", "DZ-2026-000001", None, event_id=4))
    store.record_delivery(delivery("webhook:glpi", "DZ-2026-000002", "78", event_id=5))
    later = START + timedelta(minutes=5)
    # A later change refused for good: the state and reason change, the helpdesk's id stays.
    store.record_delivery(
        delivery(
            "webhook:glpi", "DZ-2026-000001", None, "failed", reason="400", event_id=9, at=later
        )
    )
    assert store.sink_deliveries("DZ-2026-000001") == [
        delivery("webhook:chat", "DZ-2026-000001", None, event_id=4),
        delivery(
            "webhook:glpi", "DZ-2026-000001", "77", "failed", reason="400", event_id=9, at=later
        ),
    ]
    assert store.sink_delivery("webhook:glpi", "DZ-2026-000002") == delivery(
        "webhook:glpi", "DZ-2026-000002", "78", event_id=5
    )


def parked(sink: str, ticket: str, event_id: int, state: str = "failed", **kw) -> ParkedChange:
    fields: dict = dict(
        client="szpital-a", action="ticket.acknowledged", reason="answered 400", at=START
    )
    fields.update(kw)
    return ParkedChange(sink, ticket, event_id, state=state, **fields)


def test_parked_changes_are_a_list_per_sink_in_change_order(store):
    assert store.parked_changes() == [] and store.parked_counts() == {}
    refused = parked("glpi", "DZ-2026-000001", 7)
    held = parked("glpi", "DZ-2026-000001", 9, "waiting", reason="behind 7")
    other = parked("glpi", "DZ-2026-000002", 8, client="klinika-b", action="ticket.opened")
    chat = parked("chat", "DZ-2026-000001", 7)
    store.park_changes([held, refused])
    store.park_changes([other, chat])
    assert store.parked_changes() == [chat, refused, other, held]
    assert store.parked_changes("glpi") == [refused, other, held]
    assert store.parked_changes("glpi", ticket="DZ-2026-000001") == [refused, held]
    assert store.parked_changes(clients=frozenset({"klinika-b"})) == [other]
    assert store.parked_changes(clients=frozenset()) == []
    assert store.parked_changes("glpi", limit=2, offset=1) == [other, held]
    assert store.parked_counts() == {"glpi": 3, "chat": 1}


def test_a_change_refused_again_keeps_its_place_with_the_new_reason(store):
    store.park_changes([parked("glpi", "DZ-2026-000001", 7), parked("glpi", "DZ-2026-000001", 9)])
    later = START + timedelta(hours=1)
    again = parked("glpi", "DZ-2026-000001", 7, reason="answered 422", at=later)
    store.park_changes([again])
    assert store.parked_changes("glpi") == [again, parked("glpi", "DZ-2026-000001", 9)]


def test_a_change_delivered_or_unparked_leaves_the_list_of_its_sink_only(store):
    store.park_changes(
        [parked("glpi", "DZ-2026-000001", e) for e in (7, 9, 11)]
        + [parked("chat", "DZ-2026-000001", 7)]
    )
    store.record_delivery(delivery("glpi", "DZ-2026-000001", "77", event_id=7))
    store.unpark_changes("glpi", [11, 12])
    assert [(p.sink, p.event_id) for p in store.parked_changes()] == [("chat", 7), ("glpi", 9)]
    # A failed delivery recorded for a change does not take it off the list.
    store.record_delivery(delivery("glpi", "DZ-2026-000001", None, "failed", event_id=9))
    assert [p.event_id for p in store.parked_changes("glpi")] == [9]
