"""The on-call pages role: per ticket the paging state (step, when the next is due, whether it
stopped), each page with its outcome, the pages waiting for a second channel, and the one-time
use of a page's link."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest

from bridge.store import StoreError
from bridge.store.roles import Page, Paging
from tests.conftest import START

TICKET = "DZ-2026-000001"


def paging(ticket: str = TICKET, **kw) -> Paging:
    fields = dict(
        client="klinika-b",
        asset="srv-b1",
        round=1,
        step=0,
        stepped_at=START,
        next_at=START + timedelta(minutes=15),
        last_event=3,
    )
    fields.update(kw)
    return Paging(ticket, **fields)  # type: ignore[arg-type]


def page(event_id: int, ticket: str = TICKET, **kw) -> Page:
    fields = dict(
        round=1,
        step=0,
        person="jan",
        channel="sms",
        at=START,
        expires=START + timedelta(minutes=15),
    )
    fields.update(kw)
    return Page(event_id, ticket, **fields)  # type: ignore[arg-type]


def test_a_ticket_never_paged_has_no_paging_and_no_pages(store):
    assert store.paging(TICKET) is None
    assert store.pages(TICKET) == []
    assert store.page(1) is None


def test_the_paging_of_a_ticket_is_kept_and_replaced(store):
    store.save_paging(paging())
    assert store.paging(TICKET) == paging()
    later = paging(step=1, stepped_at=START + timedelta(minutes=15), next_at=None, last_event=9)
    store.save_paging(later)
    assert store.paging(TICKET) == later
    stopped = replace(later, stopped_at=START + timedelta(minutes=20), stopped_by="acknowledged")
    store.save_paging(stopped)
    assert store.paging(TICKET) == stopped


def test_pagings_due_are_the_running_ones_whose_next_step_is_due(store):
    store.save_paging(paging("DZ-2026-000001", next_at=START + timedelta(minutes=30)))
    store.save_paging(paging("DZ-2026-000002", next_at=START + timedelta(minutes=10)))
    store.save_paging(paging("DZ-2026-000003", next_at=None))  # the last step was paged
    store.save_paging(
        paging("DZ-2026-000004", stopped_at=START, stopped_by="acknowledged")  # over
    )
    assert store.pagings_due(START) == []
    due = store.pagings_due(START + timedelta(minutes=30))
    assert [p.ticket for p in due] == ["DZ-2026-000002", "DZ-2026-000001"]


def test_pages_are_kept_per_ticket_in_order_with_their_outcome(store):
    store.add_page(page(7))
    store.add_page(page(5, channel="email"))
    store.add_page(page(6, "DZ-2026-000002"))
    assert [p.event_id for p in store.pages(TICKET)] == [5, 7]
    assert store.page(7) == page(7)
    at = START + timedelta(minutes=1)
    store.set_page_outcome(7, "delivered", at)
    store.set_page_outcome(5, "failed", at, "554 refused")
    assert store.page(7) == page(7, outcome="delivered", outcome_at=at)
    assert store.page(5) == page(5, channel="email", outcome="failed", outcome_at=at, reason=(
        "554 refused"
    ))  # fmt: skip


def test_a_page_is_kept_once(store):
    store.add_page(page(5))
    with pytest.raises(StoreError):
        store.add_page(page(5, person="ewa"))
    assert store.page(5) == page(5)


def test_pages_waiting_are_undelivered_older_ones_nobody_stands_in_for_yet(store):
    store.add_page(page(1, at=START))
    store.add_page(page(2, at=START, person="ewa"))
    store.add_page(page(3, at=START + timedelta(minutes=10), person="olek"))
    store.set_page_outcome(2, "delivered", START + timedelta(seconds=5))
    assert [p.event_id for p in store.pages_waiting(START + timedelta(minutes=5))] == [1]
    # The person's next channel stands in for page 1: it waits no more, the new page does.
    store.add_page(page(4, at=START + timedelta(minutes=5), channel="email", fallback_for=1))
    waiting = store.pages_waiting(START + timedelta(minutes=11))
    assert [p.event_id for p in waiting] == [3, 4]
    assert waiting[1].fallback_for == 1
    # A page refused for good waits for the next channel at once; a skipped one never.
    store.add_page(page(8, at=START + timedelta(minutes=20), person="ala"))
    store.add_page(page(9, at=START + timedelta(minutes=20), person="iza"))
    store.set_page_outcome(8, "failed", START + timedelta(minutes=20), "400")
    store.set_page_outcome(9, "skipped", START + timedelta(minutes=20))
    assert [p.event_id for p in store.pages_waiting(START)] == [8]


def test_a_link_is_used_once(store):
    assert store.use_page_link("abc", START) is True
    assert store.use_page_link("abc", START + timedelta(seconds=1)) is False
    assert store.use_page_link("abd", START) is True


def test_of_many_uses_of_a_link_at_once_one_counts(store):
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def use() -> None:
        barrier.wait()
        results.append(store.use_page_link("same-token", START))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
