"""The helpdesk sink deliveries role: per sink and ticket, the helpdesk's id and the state of
the last change delivered or refused."""

from __future__ import annotations

from datetime import timedelta

from bridge.store.roles import SinkDelivery
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
