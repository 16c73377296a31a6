"""The housekeeping role: migrating (safe at every start), answering, closing."""

from __future__ import annotations

from bridge.store import TicketFilter
from tests.conftest import START
from tests.store.conftest import make_ticket, opened


def test_migrate_is_idempotent(store):
    store.migrate()
    store.migrate()
    assert store.list_tickets(TicketFilter()) == []


def test_migrate_keeps_what_the_store_holds(store):
    store.insert_ticket(make_ticket(1), opened(START))
    number = store.next_sequence("ticket-2026")
    store.migrate()
    assert store.get_ticket(make_ticket(1).number) == make_ticket(1)
    assert store.next_sequence("ticket-2026") == number + 1


def test_ping_answers_an_open_store(store):
    store.ping()
