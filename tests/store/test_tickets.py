"""The tickets role: tickets, their timelines, lists with keyset paging, and the counts the
metrics and reports read."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridge.models import Category, SlaState, TicketStatus, TimelineEntry, ticket_number
from bridge.store import StoreError, TicketFilter
from tests.conftest import START
from tests.store.conftest import make_ticket, opened


def test_ticket_round_trip(store):
    t = make_ticket(1, responded_at=START + timedelta(hours=1), responded_by="jan")
    store.insert_ticket(t, opened(t.opened_at))
    assert store.get_ticket(t.number) == t
    assert store.get_ticket("DZ-2026-999999") is None


def test_one_open_ticket_per_alert_is_enforced(store):
    store.insert_ticket(make_ticket(1, fingerprint="same"), opened(START))
    with pytest.raises(Exception):  # noqa: B017 - each store raises its own integrity error
        store.insert_ticket(make_ticket(2, fingerprint="same"), opened(START))
    # A resolved ticket of the same alert does not block a new one.
    first = store.get_ticket(ticket_number(2026, 1))
    first.status = TicketStatus.RESOLVED
    store.update_ticket(first)
    store.insert_ticket(make_ticket(3, fingerprint="same"), opened(START))
    assert store.latest_ticket_for_alert("same").number == ticket_number(2026, 3)


def test_update_appends_to_the_timeline_in_order(store):
    t = make_ticket(1)
    store.insert_ticket(t, opened(t.opened_at))
    t.fire_count = 2
    store.update_ticket(t, TimelineEntry(START + timedelta(hours=1), "refired", "again"))
    store.update_ticket(t, TimelineEntry(START + timedelta(hours=2), "recovered", "ok", "jan"))
    assert store.get_ticket(t.number).fire_count == 2
    assert [(e.kind, e.actor) for e in store.timeline(t.number)] == [
        ("opened", "dyzur"),
        ("refired", "dyzur"),
        ("recovered", "jan"),
    ]


def test_updating_a_missing_ticket_fails(store):
    with pytest.raises(StoreError):
        store.update_ticket(make_ticket(7))


def test_list_filters_and_orders_newest_first(store):
    store.insert_ticket(make_ticket(1), opened(START))
    store.insert_ticket(make_ticket(2, client="klinika-b", asset="srv-b1"), opened(START))
    store.insert_ticket(
        make_ticket(3, category=Category.AWARIA, status=TicketStatus.RESOLVED), opened(START)
    )

    def numbers(**q):
        return [t.number[-1] for t in store.list_tickets(TicketFilter(**q))]

    assert numbers() == ["3", "2", "1"]
    assert numbers(client="szpital-a") == ["3", "1"]
    assert numbers(status=TicketStatus.OPEN) == ["2", "1"]
    assert numbers(category=Category.AWARIA) == ["3"]
    assert numbers(asset="srv-b1") == ["2"]
    assert numbers(limit=1, offset=1) == ["2"]
    assert sorted(t.number for t in store.open_tickets()) == [
        ticket_number(2026, 1),
        ticket_number(2026, 2),
    ]


def fill_for_paging(store, count: int = 30) -> None:
    """Tickets of two clients, statuses and categories, opened five at a time at the same
    second (as a storm opens them), inserted out of number order."""
    for n in [*range(1, count + 1, 2), *range(2, count + 1, 2)]:
        store.insert_ticket(
            make_ticket(
                n,
                client="szpital-a" if n % 3 else "klinika-b",
                asset="srv-a1" if n % 3 else "srv-b1",
                status=TicketStatus.OPEN if n % 4 else TicketStatus.RESOLVED,
                category=Category.AWARIA if n % 5 == 0 else Category.USTERKA,
                opened_at=START + timedelta(minutes=n // 5),
            ),
            opened(START),
        )


def pages(store, page_size: int, **q) -> list[list[str]]:
    """Every page of a listing, each page asked for with the previous page's last number."""
    result, before = [], None
    while True:
        page = store.list_tickets(TicketFilter(**q, limit=page_size, before=before))
        if not page:
            return result
        result.append([t.number for t in page])
        before = page[-1].number


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"client": "szpital-a"},
        {"client": "szpital-a", "status": TicketStatus.OPEN},
        {"status": TicketStatus.RESOLVED},
        {"category": Category.AWARIA},
        {"asset": "srv-b1", "category": Category.USTERKA},
    ],
)
def test_before_pages_through_every_ticket_once(store, query):
    fill_for_paging(store)
    everything = [t.number for t in store.list_tickets(TicketFilter(**query, limit=1000))]
    assert everything  # every query above matches something
    for page_size in (1, 3, 4, 7):
        got = pages(store, page_size, **query)
        flat = [n for page in got for n in page]
        assert flat == everything, (page_size, query)  # none missed, none repeated, in order
        assert all(len(page) == page_size for page in got[:-1])


def test_before_is_not_shifted_by_tickets_opened_meanwhile(store):
    fill_for_paging(store, 12)
    first = store.list_tickets(TicketFilter(limit=5))
    # New tickets arrive between two pages: offset would repeat old ones, the cursor does not.
    for n in range(100, 104):
        store.insert_ticket(make_ticket(n, opened_at=START + timedelta(days=1)), opened(START))
    second = store.list_tickets(TicketFilter(limit=5, before=first[-1].number))
    by_offset = store.list_tickets(TicketFilter(limit=5, offset=5))
    everything = [t.number for t in store.list_tickets(TicketFilter(limit=1000))]
    start = everything.index(first[-1].number) + 1
    assert [t.number for t in second] == everything[start : start + 5]
    assert {t.number for t in by_offset} & {t.number for t in first}  # what before= avoids


def test_before_never_reaches_another_clients_tickets(store):
    fill_for_paging(store, 12)
    theirs = store.list_tickets(TicketFilter(client="klinika-b"))[0].number
    # Another client's ticket as the cursor of a client's list matches nothing at all.
    assert store.list_tickets(TicketFilter(client="szpital-a", before=theirs)) == []
    mine = store.list_tickets(TicketFilter(client="szpital-a"))
    after = store.list_tickets(TicketFilter(client="szpital-a", before=mine[0].number))
    assert after == mine[1:]
    assert {t.client for t in after} == {"szpital-a"}
    assert store.list_tickets(TicketFilter(before="DZ-2026-999999")) == []


def test_latest_ticket_for_alert(store):
    assert store.latest_ticket_for_alert("nothing") is None
    store.insert_ticket(
        make_ticket(1, fingerprint="x", status=TicketStatus.RESOLVED), opened(START)
    )
    store.insert_ticket(make_ticket(2, fingerprint="x"), opened(START))
    assert store.latest_ticket_for_alert("x").number == ticket_number(2026, 2)


def test_open_tickets_are_every_open_ticket(store):
    assert list(store.open_tickets()) == []
    store.insert_ticket(make_ticket(1), opened(START))
    store.insert_ticket(make_ticket(2, status=TicketStatus.RESOLVED), opened(START))
    store.insert_ticket(make_ticket(3, client="klinika-b"), opened(START))
    assert sorted(t.number for t in store.open_tickets()) == [
        ticket_number(2026, 1),
        ticket_number(2026, 3),
    ]


def test_sla_counts_are_open_tickets_at_risk_or_breached(store):
    states = [SlaState.AT_RISK, SlaState.BREACHED, SlaState.BREACHED, SlaState.RUNNING]
    for n, state in enumerate(states, start=1):
        store.insert_ticket(make_ticket(n, sla_state=state), opened(START))
    store.insert_ticket(
        make_ticket(5, sla_state=SlaState.BREACHED, status=TicketStatus.RESOLVED), opened(START)
    )
    store.insert_ticket(
        make_ticket(6, sla_state=SlaState.AT_RISK, category=Category.AWARIA, client="klinika-b"),
        opened(START),
    )
    assert store.sla_counts() == {
        ("szpital-a", "usterka", "at_risk"): 1,
        ("szpital-a", "usterka", "breached"): 2,
        ("klinika-b", "awaria", "at_risk"): 1,
    }


def test_ticket_counts_are_by_client_category_and_status(store):
    store.insert_ticket(make_ticket(1), opened(START))
    store.insert_ticket(make_ticket(2), opened(START))
    store.insert_ticket(make_ticket(3, status=TicketStatus.RESOLVED), opened(START))
    store.insert_ticket(make_ticket(4, client="klinika-b", category=Category.AWARIA), opened(START))
    assert store.ticket_counts() == {
        ("szpital-a", "usterka", "open"): 2,
        ("szpital-a", "usterka", "resolved"): 1,
        ("klinika-b", "awaria", "open"): 1,
    }


def test_tickets_opened_between_are_a_clients_oldest_first(store):
    for n in (3, 1, 2, 4):  # opened at START + n minutes, inserted out of order
        store.insert_ticket(make_ticket(n), opened(START))
    store.insert_ticket(make_ticket(5, client="klinika-b"), opened(START))
    found = store.tickets_opened_between(
        "szpital-a", START + timedelta(minutes=1), START + timedelta(minutes=4)
    )
    assert [t.number[-1] for t in found] == ["1", "2", "3"]  # [start, end): 4 is not in
    assert store.tickets_opened_between("klinika-b", START, START) == []


def test_the_queue_lists_waiting_tickets_by_deadline_then_without_a_clock_then_answered(store):
    due = START + timedelta(hours=8)
    rows = [
        make_ticket(1, reaction_due=due + timedelta(hours=2)),
        make_ticket(2, reaction_due=due - timedelta(hours=1)),  # the most urgent
        make_ticket(3),  # no reaction clock
        make_ticket(4, reaction_due=due - timedelta(hours=3), responded_at=START),  # answered
        make_ticket(5, reaction_due=due, client="klinika-b", asset="srv-b1"),
    ]
    for t in rows:
        store.insert_ticket(t, opened(t.opened_at))
    queue = store.list_tickets(TicketFilter(status=TicketStatus.OPEN, by_deadline=True))
    assert [t.number for t in queue] == [ticket_number(2026, n) for n in (2, 5, 1, 3, 4)]
    mine = store.list_tickets(TicketFilter(client="szpital-a", by_deadline=True, limit=2))
    assert [t.number for t in mine] == [ticket_number(2026, n) for n in (2, 1)]
    rest = store.list_tickets(TicketFilter(client="szpital-a", by_deadline=True, offset=2))
    assert [t.number for t in rest] == [ticket_number(2026, n) for n in (3, 4)]
