"""The coordination role: transactions (atomic, not re-entrant), named locks, leases with a
fencing token, and named sequences. See the contract in bridge/store/roles.py."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import pytest

from bridge.models import (
    AuditEvent,
    Category,
    MaintenanceWindow,
    StepRecord,
    SuppressedAlert,
    UpdatePlan,
)
from bridge.store import BatchRecord, Store, StoreError
from bridge.store.base import StaleLease
from bridge.store.roles import Cursor
from tests.conftest import START
from tests.store.conftest import make_ticket, opened

T = TypeVar("T")


def _batch(seq: int) -> BatchRecord:
    return BatchRecord("ag1", "agent-a", "srv-a1", seq, 1, 0, START)


def _event(n: int = 1) -> AuditEvent:
    return AuditEvent(START, "jan", "ticket.opened", "success", "szpital-a", "srv-a1", {"n": n})


WAIT = 30.0  # seconds before a test that would hang fails instead


def _run(*targets: Callable[[], object]) -> None:
    """Run each target in a thread of its own (a connection of its own) and wait for all;
    the first exception raised in one of them is raised here."""
    errors: list[BaseException] = []

    def guarded(target: Callable[[], object]) -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,), daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads), "a thread is still waiting"
    if errors:
        raise errors[0]


def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in another thread (another connection) and return what it returned."""
    out: list[T] = []
    _run(lambda: out.append(fn()))
    return out[0]


def _wait(event: threading.Event) -> None:
    assert event.wait(WAIT), "the other thread never got there"


# --- transactions ------------------------------------------------------------------------------


def test_a_transaction_is_kept_whole_or_not_at_all(store: Store):
    with pytest.raises(RuntimeError), store.transaction():
        store.record_batch(_batch(1), 100)
        store.next_sequence("ticket-2026")
        raise RuntimeError("applying the batch failed")
    assert store.agent_streams() == []
    assert store.next_sequence("ticket-2026") == 1
    with store.transaction():
        assert store.record_batch(_batch(1), 100)
    assert [s.last_seq for s in store.agent_streams()] == [1]


def test_an_exception_inside_a_transaction_leaves_nothing_of_any_role(store: Store):
    """Every role's writes join the open transaction and go with its rollback."""
    window = MaintenanceWindow("OS-2026-0001", "szpital-a", START, START, "x", assets=["srv-a1"])
    suppressed = SuppressedAlert(
        "fp9", "OS-2026-0001", "szpital-a", "srv-a1", "disk_usage", Category.USTERKA, {}, 0.9,
        START, START + timedelta(hours=1),
    )  # fmt: skip
    plan = UpdatePlan(
        id="AK-2026-0001", client="szpital-a", target_version="5.2.1", runbook=[], stages=[],
        soak=60.0, ticket="DZ-2026-000001", created_by="jan", created_at=START,
    )  # fmt: skip
    step = StepRecord("AK-2026-0001", "test", "a", "update", "x", 0, "", "", START, 0.1)
    high_water = store.audit_high_water()
    with pytest.raises(RuntimeError), store.transaction():
        store.insert_ticket(make_ticket(1), opened(START))
        store.append_audit(_event())
        store.save_window(window)
        store.save_suppressed(suppressed)
        store.save_plan(plan)
        store.append_step(step)
        store.record_batch(_batch(1), 100)
        store.set_asset_fact("srv-a1", "amms_version", "5.2.1", START)
        assert store.lease("job", "a", 10, 100.0) is not None
        store.next_sequence("window-2026")
        store.set_cursor("siem:soc", Cursor(7, 1), 1)
        # Inside, the transaction reads what it wrote.
        assert store.get_ticket(make_ticket(1).number) is not None
        raise RuntimeError("something failed half way")
    assert store.get_ticket(make_ticket(1).number) is None
    assert store.timeline(make_ticket(1).number) == []
    assert store.audit_events() == [] and store.audit_high_water() == high_water
    assert store.windows() == [] and store.suppressed_alerts() == []
    assert store.plans() == [] and store.steps("AK-2026-0001") == []
    assert store.agent_streams() == [] and store.asset_facts() == {}
    assert store.lease("job", "b", 10, 101.0) is not None  # a never held it
    assert store.next_sequence("window-2026") == 1
    assert store.cursor("siem:soc") == Cursor()
    # The audit chain goes on from where it was: no id was used up.
    assert store.append_audit(_event()).id == high_water + 1


def test_transactions_do_not_nest(store: Store):
    with store.transaction():
        store.insert_ticket(make_ticket(1), opened(START))
        with pytest.raises(StoreError, match="transactions do not nest"), store.transaction():
            store.insert_ticket(make_ticket(2), opened(START))  # never runs
        store.insert_ticket(make_ticket(3), opened(START))
    # The refused inner transaction neither committed nor rolled back the outer one.
    assert sorted(t.number[-1] for t in store.open_tickets()) == ["1", "3"]
    # A nested transaction that is not caught rolls the outer one back, like any error.
    with pytest.raises(StoreError), store.transaction():
        store.insert_ticket(make_ticket(4), opened(START))
        store.transaction()
    assert store.get_ticket(make_ticket(4).number) is None
    with store.transaction():  # and the next transaction opens as usual
        store.insert_ticket(make_ticket(5), opened(START))
    assert store.get_ticket(make_ticket(5).number) is not None


def test_writes_outside_a_transaction_are_their_own_units(store: Store):
    store.insert_ticket(make_ticket(1), opened(START))
    with pytest.raises(StoreError):
        store.update_ticket(make_ticket(2))  # fails alone; the insert before it is kept
    assert _in_thread(lambda: store.get_ticket(make_ticket(1).number)) is not None


def test_what_a_transaction_writes_is_seen_by_others_only_once_it_commits(store: Store):
    number = make_ticket(1).number
    with store.transaction():
        store.insert_ticket(make_ticket(1), opened(START))
        assert _in_thread(lambda: store.get_ticket(number)) is None
    assert _in_thread(lambda: store.get_ticket(number)) == make_ticket(1)


# --- named locks ---------------------------------------------------------------------------------


def test_a_lock_is_taken_only_inside_a_transaction(store: Store):
    with pytest.raises(StoreError, match="outside a transaction"):
        store.lock("planning")
    with pytest.raises(StoreError, match="outside a transaction"), store.lock("planning"):
        pass
    with store.transaction():
        with store.lock("plan:AK-2026-0001"):
            store.lock("planning")
        store.lock("plan:AK-2026-0001")  # held already: taking it again is a no-op
        store.lock("alert:fp1")
        store.insert_ticket(make_ticket(1), opened(START))
    assert store.get_ticket(make_ticket(1).number) is not None


def test_two_threads_contending_for_one_lock_take_it_one_after_the_other(store: Store):
    order: list[str] = []
    first_holds, second_trying, second_holds = (threading.Event() for _ in range(3))

    def first() -> None:
        with store.transaction():
            store.lock("alert:fp1")
            order.append("first takes")
            first_holds.set()
            _wait(second_trying)
            # The second thread is asking for the lock now; it must not get it while this
            # transaction runs (if it did, it would say so before the wait runs out).
            second_holds.wait(timeout=0.5)
            order.append("first ends")

    def second() -> None:
        _wait(first_holds)
        second_trying.set()
        with store.transaction():
            store.lock("alert:fp1")
            order.append("second takes")
            second_holds.set()
            order.append("second ends")

    _run(first, second)
    assert order == ["first takes", "first ends", "second takes", "second ends"]


def test_no_update_is_lost_under_a_lock(store: Store):
    """Read, change, write under one lock from several threads: each sees the one before."""
    store.set_asset_fact("srv-a1", "counter", "0", START)
    workers, rounds = 6, 10

    def work() -> None:
        for _ in range(rounds):
            with store.transaction():
                store.lock("counter")
                value = int(store.asset_facts()["srv-a1"]["counter"])
                store.set_asset_fact("srv-a1", "counter", str(value + 1), START)

    _run(*[work] * workers)
    assert store.asset_facts()["srv-a1"]["counter"] == str(workers * rounds)


# --- leases --------------------------------------------------------------------------------------


def test_a_lease_is_held_by_one_owner_until_it_runs_out(store: Store):
    a = store.lease("job", "a", 10, 100.0)
    assert a is not None
    assert store.lease("job", "a", 10, 105.0) == a  # extended: the same token
    assert store.lease("job", "b", 10, 114.0) is None  # a's lease runs to 115
    b = store.lease("job", "b", 10, 116.0)
    assert b is not None and b > a  # changed hands: a newer token
    assert store.lease("job", "a", 10, 117.0) is None  # b's now, to 126
    store.release_lease("job", "a")  # a no longer holds it: nothing happens
    assert store.lease("job", "a", 10, 118.0) is None
    store.release_lease("job", "b")
    again = store.lease("job", "a", 10, 119.0)
    assert again is not None and again > b
    assert store.lease("other-job", "b", 10, 119.0) is not None  # leases are per name


def test_the_fencing_token_grows_only_when_the_lease_changes_hands(store: Store):
    tokens = [store.lease("siem:soc", "a", 10, 0.0)]
    tokens += [store.lease("siem:soc", "a", 10, float(t)) for t in (5, 10, 14)]  # extended
    tokens.append(store.lease("siem:soc", "a", 10, 100.0))  # lapsed, nobody else took it
    assert len(set(tokens)) == 1
    taken = [store.lease("siem:soc", "b", 10, 200.0), store.lease("siem:soc", "a", 10, 300.0)]
    store.release_lease("siem:soc", "a")
    taken.append(store.lease("siem:soc", "a", 10, 301.0))  # after its own release
    assert tokens[0] is not None and taken == sorted(taken) and len(set(taken)) == 3
    assert taken[0] > tokens[0]


def test_an_older_token_cannot_move_a_cursor(store: Store):
    """A worker paused past its lease comes back with the old token: refused."""
    old = store.lease("siem:soc", "a", 10, 0.0)
    new = store.lease("siem:soc", "b", 10, 20.0)
    assert old is not None and new is not None
    assert store.set_cursor("siem:soc", Cursor(10), new)
    assert not store.set_cursor("siem:soc", Cursor(5), old)
    assert store.cursor("siem:soc") == Cursor(10)


def test_a_stale_holder_s_write_is_refused_by_its_fencing_token(store: Store):
    """A worker paused past its lease (a runbook's, a hospital's shard) comes back with the
    old token: its write is refused, and nothing of its transaction is kept."""
    old = store.lease("update:AK-2026-0001", "a", 10, 0.0)
    assert old is not None
    store.check_fence("update:AK-2026-0001", old)  # still the newest: nothing happens
    new = store.lease("update:AK-2026-0001", "b", 10, 20.0)
    assert new is not None and new > old
    with pytest.raises(StaleLease, match="taken by another bridge"), store.transaction():
        store.insert_ticket(make_ticket(1), opened(START))
        store.check_fence("update:AK-2026-0001", old)
    assert store.get_ticket(make_ticket(1).number) is None
    with store.transaction():
        store.check_fence("update:AK-2026-0001", new)
    store.check_fence("never-leased", 1)  # no token given yet: nothing to be stale against


def test_two_workers_racing_for_a_free_lease_one_takes_it(store: Store):
    start = threading.Barrier(6)
    won: list[tuple[str, int | None]] = []

    def take(owner: str) -> None:
        start.wait()
        won.append((owner, store.lease("ticker", owner, 30, 1000.0)))

    _run(*[lambda o=f"bridge-{i}": take(o) for i in range(6)])
    holders = [(o, t) for o, t in won if t is not None]
    assert len(holders) == 1, won


# --- sequences -----------------------------------------------------------------------------------


def test_sequences_count_per_name_and_never_repeat(store: Store):
    assert [store.next_sequence("ticket-2026") for _ in range(3)] == [1, 2, 3]
    assert store.next_sequence("ticket-2027") == 1
    assert store.next_sequence("ticket-2026") == 4
    assert [store.next_sequence("window-2026") for _ in range(3)] == [1, 2, 3]
    assert store.next_sequence("update-2026") == 1


def test_sequences_never_repeat_across_threads(store: Store):
    workers, each = 8, 25
    taken: list[list[int]] = [[] for _ in range(workers)]

    def take(i: int) -> None:
        for n in range(each):
            if n % 2:
                taken[i].append(store.next_sequence("ticket-2026"))
            else:
                with store.transaction():
                    taken[i].append(store.next_sequence("ticket-2026"))

    _run(*[lambda i=i: take(i) for i in range(workers)])
    numbers = [n for mine in taken for n in mine]
    assert sorted(numbers) == list(range(1, workers * each + 1))
    assert all(mine == sorted(mine) for mine in taken)  # each thread's numbers go up
