"""The outbox (bridge.delivery.outbox) with a real consumer that records what it was given,
over a real SQLite store: at least once with a stable key, in order, retries with backoff, a
refusal recorded and skipped, one worker per consumer across bridges, fencing."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import pytest

from bridge.clock import FixedClock
from bridge.delivery.outbox import (
    DELIVERY_FAILED,
    IDLE_POLL,
    LEASE_SECONDS,
    Backoff,
    Consumer,
    Outbox,
    Permanent,
    Retry,
    Selection,
    idempotency_key,
)
from bridge.models import AuditEvent
from bridge.store import AuditFilter
from bridge.store.roles import Cursor
from bridge.store.sqlite import MIGRATIONS, SQLiteStore, _apply_script
from tests.processes import wait_for

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "outbox.db"


@pytest.fixture
def stores(path):
    """Stores on one file, as several bridges have them; all closed at the end."""
    opened: list[SQLiteStore] = []

    def open_one() -> SQLiteStore:
        s = SQLiteStore(path)
        s.migrate()
        opened.append(s)
        return s

    yield open_one
    for s in opened:
        s.close()


@pytest.fixture
def store(stores):
    return stores()


@pytest.fixture
def clock():
    return FixedClock(START)


def add(store, n: int, client: str | None = "szpital-a", action: str = "ticket.opened"):
    return [
        store.append_audit(
            AuditEvent(START, "dyzur", action, "success", client, "srv-a1", {"n": i})
        )
        for i in range(n)
    ]


class Recorder(Consumer):
    """Takes every batch and keeps (id, idempotency key) of each event, in the order given;
    ``behaviour`` may refuse a batch (after it was received, like a destination that failed
    to answer)."""

    def __init__(
        self,
        name: str = "recorder",
        selection: Selection | None = None,
        behaviour: Callable[[Sequence[AuditEvent]], None] | None = None,
        **settings,
    ) -> None:
        super().__init__(name, selection, **settings)
        self.behaviour = behaviour
        self.batches: list[list[tuple[int, str]]] = []
        self.closed = 0
        self.written_ok = True

    @property
    def got(self) -> list[tuple[int, str]]:
        return [item for batch in self.batches for item in batch]

    def deliver(self, events: Sequence[AuditEvent]) -> None:
        self.batches.append([(e.id, idempotency_key(e)) for e in events])
        if self.behaviour is not None:
            self.behaviour(events)

    def check_written(self) -> None:
        if not self.written_ok:
            raise Retry("the connection dropped")

    def close(self) -> None:
        self.closed += 1

    def dropped_event(self, count: int, at: datetime) -> AuditEvent:
        return AuditEvent(at, "dyzur", "test.dropped", "failure", detail={"dropped": count})


def drain(worker, rounds: int = 50) -> None:
    """Step until the worker has nothing to do at once."""
    for _ in range(rounds):
        if worker.step() > 0:
            return
    raise AssertionError("the worker never ran out of work")


def keyed(events) -> list[tuple[int, str]]:
    return [(e.id, e.hash) for e in events]


def test_the_registry_refuses_a_second_consumer_of_one_name(store, clock):
    outbox = Outbox(store, clock)
    outbox.register(Recorder("siem:soc"))
    with pytest.raises(ValueError, match="'siem:soc' is already registered"):
        outbox.register(Recorder("siem:soc"))
    outbox.register(Recorder("siem:other"))
    assert list(outbox.workers) == ["siem:soc", "siem:other"]


def test_every_event_in_order_once_and_the_cursor_follows(stores, clock):
    store = stores()
    events = add(store, 11)
    consumer = Recorder(batch_size=4)
    worker = Outbox(store, clock, owner="a").register(consumer)
    drain(worker)
    assert consumer.got == keyed(events)
    assert [len(b) for b in consumer.batches] == [4, 4, 3]
    assert store.cursor("recorder") == Cursor(events[-1].id, 0)
    later = add(store, 2)
    drain(worker)
    assert consumer.got == keyed(events + later)
    # Another bridge, once the lease is free, goes on from the cursor: nothing twice.
    store.release_lease("recorder", "a")
    other = Recorder(batch_size=4)
    drain(Outbox(stores(), clock, owner="b").register(other))
    assert other.got == []


class Crash(BaseException):
    """The worker dies here (a killed process): nothing after it runs."""


def test_a_crash_after_delivery_delivers_again_with_the_same_keys(stores, clock):
    events = add(stores(), 5)

    def crash(_events):
        raise Crash

    crashed = Recorder(behaviour=crash)
    with pytest.raises(Crash):
        Outbox(stores(), clock, owner="a").register(crashed).step()
    assert crashed.got == keyed(events)  # received, and the cursor never moved
    store_b = stores()
    assert store_b.cursor("recorder").last_id == 0
    survivor = Recorder()
    worker = Outbox(store_b, clock, owner="b").register(survivor)
    assert worker.step() == IDLE_POLL and survivor.got == []  # the dead worker's lease runs
    clock.advance(LEASE_SECONDS + 1)
    drain(worker)
    assert survivor.got == crashed.got  # at least once, the same idempotency keys
    assert store_b.cursor("recorder").last_id == events[-1].id


class RecordingStop:
    """The worker loop's stop event: records each pause instead of sleeping it."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True

    def wait(self, timeout: float) -> bool:
        self.pauses.append(timeout)
        return self._set


def test_a_retry_backs_off_exponentially_with_jitter_to_a_cap(stores, clock):
    store = stores()
    events = add(store, 3)
    stop = RecordingStop()
    failures = 7

    def flaky(_events):
        if len(consumer.batches) <= failures:
            raise Retry("the helpdesk answers 503")
        stop.set()  # taken: end the loop

    consumer = Recorder(behaviour=flaky)
    backoff = Backoff(base=0.5, cap=4.0, jitter=0.2)
    outbox = Outbox(store, clock, owner="a", backoff=backoff, rng=random.Random(15))
    outbox.register(consumer).run(stop)
    # One pause per failure, doubling from the base up to the cap, each cut by up to 20 %.
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert len(stop.pauses) == failures
    for pause, ceiling in zip(stop.pauses, ceilings, strict=True):
        assert 0.8 * ceiling <= pause <= ceiling
    assert len(set(stop.pauses[3:])) > 1  # jittered, not in step with other bridges
    # Every attempt offered the same events, from the cursor, with the same keys.
    assert consumer.batches == [keyed(events)] * (failures + 1)
    assert consumer.closed >= failures  # let go of the destination after each failure
    assert store.cursor("recorder").last_id == events[-1].id
    # The loop released its lease on stop: another bridge takes over at once.
    assert store.lease("recorder", "b", LEASE_SECONDS, clock.time()) is not None


def test_a_retry_after_success_starts_again_from_the_base(store, clock):
    add(store, 1)
    outcomes = iter([Retry("away"), Retry("away"), None, Retry("away")])

    def scripted(_events):
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome

    worker = Outbox(store, clock, backoff=Backoff(base=1.0, cap=60.0, jitter=0.0)).register(
        Recorder(behaviour=scripted)
    )
    assert [worker.step(), worker.step(), worker.step()] == [1.0, 2.0, 0.0]
    add(store, 1)
    assert worker.step() == 1.0


def test_a_retry_after_longer_than_the_lease_keeps_it_through_the_pause(stores, clock):
    """A busy destination asks for 100 s: the worker renews its lease while it waits, so
    another bridge does not take over and try at once."""
    store, other = stores(), stores()
    add(store, 1)
    taken_by_other: list[int | None] = []

    class Waiting(RecordingStop):
        def wait(self, timeout: float) -> bool:
            clock.advance(timeout)
            taken_by_other.append(other.lease("recorder", "b", LEASE_SECONDS, clock.time()))
            if len(self.pauses) > 50:  # the other bridge holds it: end the loop
                self.set()
            return super().wait(timeout)

    stop = Waiting()

    def busy(_events):
        if len(consumer.batches) == 1:
            raise Retry("the helpdesk answers 429", after=100.0)
        stop.set()

    consumer = Recorder(behaviour=busy)
    Outbox(store, clock, owner="a").register(consumer).run(stop)
    assert sum(stop.pauses) == pytest.approx(100.0)  # the Retry-After, in full
    assert len(taken_by_other) > 3 and set(taken_by_other) == {None}
    assert len(consumer.batches) == 2  # the same worker asked again


def test_a_permanent_refusal_is_audited_and_skipped(store, clock):
    events = add(store, 5)
    bad = events[2]

    def refuse(given):
        if any(e.id == bad.id for e in given):
            raise Permanent("422: the helpdesk refuses the category", bad.id)

    consumer = Recorder(batch_size=10, behaviour=refuse)
    worker = Outbox(store, clock).register(consumer)
    drain(worker)
    [failed] = store.list_audit(AuditFilter(action=DELIVERY_FAILED))
    assert (failed.outcome, failed.client, failed.asset) == ("failure", bad.client, bad.asset)
    assert failed.detail == {
        "consumer": "recorder",
        "event": bad.id,
        "action": "ticket.opened",
        "reason": "422: the helpdesk refuses the category",
    }
    # The events before it were taken in the refused batch; the rest, then the record of the
    # refusal (an audit event like any other), came after; the refused one never again.
    assert consumer.batches[0] == keyed(events)
    assert [i for i, _ in consumer.got[5:]] == [e.id for e in events[3:]] + [failed.id]
    assert store.cursor("recorder").last_id == failed.id


def test_a_consumer_refusing_everything_does_not_feed_itself(store, clock):
    events = add(store, 2)

    def refuse(_given):
        raise Permanent("no")

    worker = Outbox(store, clock).register(Recorder(batch_size=1, behaviour=refuse))
    drain(worker)
    drain(worker)
    trail = store.audit_events()
    assert [e.action for e in trail] == ["ticket.opened"] * 2 + [DELIVERY_FAILED] * 2
    assert [e.detail["event"] for e in trail[2:]] == [e.id for e in events]
    assert store.cursor("recorder").last_id == trail[-1].id


def test_a_selection_takes_its_clients_and_actions_and_passes_the_rest(store, clock):
    wanted = [
        *add(store, 1, "szpital-a", "ticket.opened"),
        *add(store, 1, "szpital-a", "sla.breached"),
    ]
    add(store, 1, "szpital-a", "sla.at_risk")
    add(store, 1, "klinika-b", "ticket.opened")
    add(store, 1, None, "config.loaded")
    wanted += add(store, 1, "szpital-a", "ticket.resolved")
    tail = add(store, 3, "szpital-a", "sla.at_risk")  # a whole page of events it does not take
    consumer = Recorder(
        selection=Selection(frozenset({"szpital-a"}), frozenset({"ticket.*", "sla.breached"})),
        batch_size=3,
    )
    drain(Outbox(store, clock).register(consumer))
    assert consumer.got == keyed(wanted)
    assert store.cursor("recorder").last_id == tail[-1].id  # passed, not waited for


def test_a_write_counts_once_the_connection_held_for_confirm_after(store, clock):
    events = add(store, 4)
    now = [100.0]
    consumer = Recorder(batch_size=2, confirm_after=1.0)
    worker = Outbox(store, clock, monotonic=lambda: now[0]).register(consumer)
    drain(worker)  # written without waiting for the confirmations
    assert consumer.got == keyed(events) and store.cursor("recorder").last_id == 0
    now[0] += 1.0
    worker.step()
    assert store.cursor("recorder").last_id == events[-1].id
    more = add(store, 2)
    drain(worker)
    consumer.written_ok = False  # the destination went away before confirming them
    now[0] += 1.0
    assert worker.step() > 0
    consumer.written_ok = True
    drain(worker)
    now[0] += 1.0
    worker.step()
    assert consumer.got == keyed(events + more + more)  # sent again, same keys
    assert store.cursor("recorder").last_id == more[-1].id


def test_a_full_queue_drops_the_oldest_and_reports_when_delivering_again(store, clock):
    events = add(store, 10)
    away = [True]

    def maybe_away(_events):
        if away[0]:
            raise Retry("away")

    consumer = Recorder(max_queue=3, behaviour=maybe_away)
    worker = Outbox(store, clock).register(consumer)
    assert worker.step() > 0  # the first round drops 7 and fails on the other 3
    assert store.cursor("recorder") == Cursor(events[6].id, 7)
    away[0] = False
    drain(worker)
    [report] = store.list_audit(AuditFilter(action="test.dropped"))
    assert consumer.batches[-2:] == [keyed(events[7:]), keyed([report])]
    assert report.detail == {"dropped": 7}
    assert store.cursor("recorder").dropped == 0


class Gate(Recorder):
    """Records which bridge delivered and notices two deliveries at once."""

    def __init__(self, shared: dict, bridge: int) -> None:
        super().__init__("helpdesk", batch_size=5)
        self.shared = shared
        self.bridge = bridge

    def deliver(self, events: Sequence[AuditEvent]) -> None:
        s = self.shared
        with s["lock"]:
            s["active"] += 1
            s["overlaps"] += s["active"] > 1
        time.sleep(0.02)  # a slow destination: a second worker would overlap
        with s["lock"]:
            s["got"].extend((self.bridge, e.id) for e in events)
            s["active"] -= 1


def test_two_bridges_never_deliver_to_one_consumer_at_once(stores):
    first_store = stores()
    events = add(first_store, 60)
    shared: dict = {"lock": threading.Lock(), "active": 0, "overlaps": 0, "got": []}
    outboxes = []
    for bridge, store in enumerate([first_store, stores()]):
        outbox = Outbox(store, FixedClock(START), owner=f"bridge-{bridge}")
        outbox.register(Gate(shared, bridge))
        outboxes.append(outbox)
    try:
        for outbox in outboxes:
            outbox.start()
        wait_for(lambda: len(shared["got"]) >= 20, timeout=20, what="a third of the events")
        holder = shared["got"][0][0]
        outboxes[holder].stop()  # it finishes its batch and releases its lease
        wait_for(lambda: len(shared["got"]) >= 60, timeout=20, what="the other bridge")
    finally:
        for outbox in outboxes:
            outbox.stop()
    assert shared["overlaps"] == 0
    assert [i for _, i in shared["got"]] == [e.id for e in events]  # in order, each once
    assert {b for b, _ in shared["got"]} == {0, 1}  # the other bridge took over


def test_a_stale_worker_cannot_move_the_cursor_back(stores, clock):
    store_a, store_b = stores(), stores()
    events = add(store_a, 10)
    paused, resume = threading.Event(), threading.Event()

    def pause(_events):  # the worker stalls (GC, a stopped VM) mid-delivery
        paused.set()
        resume.wait(20)

    stale = Outbox(store_a, clock, owner="a").register(Recorder(batch_size=5, behaviour=pause))
    fresh_consumer = Recorder(batch_size=5)
    fresh = Outbox(store_b, clock, owner="b").register(fresh_consumer)
    thread = threading.Thread(target=stale.step)
    thread.start()
    try:
        assert paused.wait(20)
        clock.advance(LEASE_SECONDS + 1)  # its lease ran out while it stalled
        drain(fresh)
        assert store_b.cursor("recorder").last_id == events[-1].id
        stale_token = stale.token
        assert fresh.token > stale_token
    finally:
        resume.set()
        thread.join(20)
    # The stale worker tried to move the cursor to events[4] with its old token: refused.
    assert store_b.cursor("recorder").last_id == events[-1].id
    assert stale.token is None  # it noticed, let go of the destination
    assert stale.step() == IDLE_POLL and fresh_consumer.got == keyed(events)
    assert not store_a.set_cursor("recorder", Cursor(events[4].id), stale_token)
    assert store_a.cursor("recorder").last_id == events[-1].id


def test_an_upgraded_store_keeps_each_siem_position(path):
    """The SIEM cursors of a store written before the outbox become its consumers' cursors."""
    version = next(i for i, m in enumerate(MIGRATIONS) if "CREATE TABLE outbox_cursors" in m)
    conn = sqlite3.connect(path)
    for script in MIGRATIONS[:version]:
        _apply_script(conn, script)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.executemany(
        "INSERT INTO siem_cursors(destination, last_id, dropped) VALUES (?, ?, ?)",
        [("soc", 42, 0), ("szpital-a-siem", 17, 5)],
    )
    conn.commit()
    conn.close()
    store = SQLiteStore(path)
    try:
        store.migrate()
        assert store.cursor("siem:soc") == Cursor(42, 0)
        assert store.cursor("siem:szpital-a-siem") == Cursor(17, 5)
        assert store.cursor("siem:unknown") == Cursor(0, 0)
    finally:
        store.close()


def test_a_worker_back_from_a_pause_past_its_lease_sends_nothing_before_renewing(store, clock):
    """Paused (SIGSTOP, a frozen VM) between renewing its lease and sending: by its own clock
    the lease may have been taken meanwhile, so it sends nothing until it renewed it."""
    events = add(store, 3)
    now = [100.0]
    consumer = Recorder(batch_size=5)
    worker = Outbox(store, clock, owner="a", monotonic=lambda: now[0]).register(consumer)
    real_audit_events = store.audit_events

    def paused_reading(*args, **kwargs):
        now[0] += LEASE_SECONDS  # the pause falls between the lease and the send
        return real_audit_events(*args, **kwargs)

    store.audit_events = paused_reading  # type: ignore[method-assign]
    try:
        assert worker.step() == 0.0
    finally:
        store.audit_events = real_audit_events  # type: ignore[method-assign]
    assert consumer.got == []  # nothing sent on a lease that may be another's
    drain(worker)  # renewed (it was nobody else's): sent, in order, once
    assert consumer.got == keyed(events)
