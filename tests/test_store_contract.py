"""The contract every store keeps. A new store joins by adding itself to STORE_FACTORIES in
conftest.py; these tests then run against it unchanged."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from bridge.models import Category, Ticket, TicketStatus, TimelineEntry, ticket_number
from bridge.store import BatchClaim, BatchRecord, StoreError, TicketFilter, open_store
from bridge.store.sqlite import MIGRATIONS, SQLiteStore
from tests.conftest import START


def make_ticket(n: int, **overrides) -> Ticket:
    fields = dict(
        number=ticket_number(2026, n),
        client="szpital-a",
        asset="srv-a1",
        rule="disk_usage",
        fingerprint=f"fp{n}",
        category=Category.USTERKA,
        status=TicketStatus.OPEN,
        title=f"Ticket {n}",
        description="opis",
        opened_at=START + timedelta(minutes=n),
        updated_at=START + timedelta(minutes=n),
        labels={"asset": "srv-a1", "mountpoint": "/var"},
        last_value=0.95,
    )
    fields.update(overrides)
    return Ticket(**fields)


def opened(at) -> TimelineEntry:
    return TimelineEntry(at, "opened", "otwarte")


def test_migrate_is_idempotent(store):
    store.migrate()
    store.migrate()
    assert store.list_tickets(TicketFilter()) == []


def test_ping_answers_while_open_and_fails_once_closed(tmp_path):
    store = SQLiteStore(tmp_path / "ping.db")
    store.migrate()
    store.ping()
    (tmp_path / "ping.db").unlink()
    (tmp_path / "ping.db-wal").unlink(missing_ok=True)
    store.close()
    with pytest.raises(StoreError, match="does not answer"):
        store.ping()


def test_ticket_round_trip(store):
    t = make_ticket(1, responded_at=START + timedelta(hours=1), responded_by="jan")
    store.insert_ticket(t, opened(t.opened_at))
    assert store.get_ticket(t.number) == t
    assert store.get_ticket("DZ-2026-999999") is None


def test_sequences_count_per_year_and_never_repeat(store):
    assert [store.next_ticket_sequence(2026) for _ in range(3)] == [1, 2, 3]
    assert store.next_ticket_sequence(2027) == 1
    assert store.next_ticket_sequence(2026) == 4


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


def test_sqlite_lists_tickets_from_an_index_without_sorting(tmp_path):
    """Every filter combination, with and without a cursor, reads its page in index order:
    no temporary B-tree sorting the whole table for ORDER BY."""
    import itertools

    store = SQLiteStore(tmp_path / "plan.db")
    store.migrate()
    statements = []
    conn = store._conn()
    conn.set_trace_callback(statements.append)
    filters = {
        "client": "szpital-a",
        "status": TicketStatus.OPEN,
        "category": Category.AWARIA,
        "asset": "srv-a1",
    }
    plans = {}
    for size in range(len(filters) + 1):
        for names in itertools.combinations(filters, size):
            for before in (None, "DZ-2026-000001"):
                statements.clear()
                store.list_tickets(TicketFilter(**{k: filters[k] for k in names}, before=before))
                [sql] = [s for s in statements if s.lstrip().startswith("SELECT")]
                plan = conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
                plans[names, before] = " / ".join(row[3] for row in plan)
    conn.set_trace_callback(None)
    store.close()
    sorting = {k: v for k, v in plans.items() if "TEMP B-TREE" in v or v == "SCAN tickets"}
    assert sorting == {}
    assert plans[(), None] == "SCAN tickets USING INDEX tickets_by_opened"


def test_latest_ticket_for_alert(store):
    assert store.latest_ticket_for_alert("nothing") is None
    store.insert_ticket(
        make_ticket(1, fingerprint="x", status=TicketStatus.RESOLVED), opened(START)
    )
    store.insert_ticket(make_ticket(2, fingerprint="x"), opened(START))
    assert store.latest_ticket_for_alert("x").number == ticket_number(2026, 2)


def test_sqlite_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer than this dyzur"):
        SQLiteStore(path).migrate()


def test_sqlite_store_is_chosen_by_url_relative_to_the_config(tmp_path):
    store = open_store("sqlite:///sub/dir/dyzur.db", base_dir=tmp_path)
    assert (tmp_path / "sub/dir/dyzur.db").exists()
    assert store.schema_version() == len(MIGRATIONS)
    store.close()
    with pytest.raises(StoreError, match="unsupported store URL scheme 'mysql'"):
        open_store("mysql://localhost/dyzur")


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


def test_a_transaction_is_kept_whole_or_not_at_all(store):
    with pytest.raises(RuntimeError), store.transaction():
        store.record_batch(_batch("ag1", "srv-a1", 1, 1, 0, START), 100)
        store.next_ticket_sequence(2026)
        raise RuntimeError("applying the batch failed")
    assert store.agent_streams() == []
    assert store.next_ticket_sequence(2026) == 1
    with store.transaction():
        assert store.record_batch(_batch("ag1", "srv-a1", 1, 1, 0, START), 100)
    assert [s.last_seq for s in store.agent_streams()] == [1]


def test_asset_facts_keep_the_latest_value_and_say_when_it_changed(store):
    assert store.set_asset_fact("amms-1", "amms_version", "7.3.1", START)
    assert not store.set_asset_fact("amms-1", "amms_version", "7.3.1", START)
    assert store.set_asset_fact("amms-1", "amms_version", "7.4.0", START)
    assert store.asset_facts() == {"amms-1": {"amms_version": "7.4.0"}}


def test_counters_and_leases(store):
    assert [store.next_sequence("window-2026") for _ in range(3)] == [1, 2, 3]
    assert store.next_sequence("update-2026") == 1
    assert store.lease("job", "a", 100.0, 10) and store.lease("job", "a", 105.0, 10)
    assert not store.lease("job", "b", 114.0, 10)  # a's lease runs to 115
    assert store.lease("job", "b", 116.0, 10)
    store.release_lease("job", "b")
    assert store.lease("job", "a", 117.0, 10)


def test_windows_are_kept_whole_and_cancelled_not_deleted(store):
    from bridge.models import MaintenanceWindow

    w = MaintenanceWindow(
        "OS-2026-0001", "szpital-a", START, START + timedelta(hours=4), "aktualizacja",
        selector={"environment": "test"}, rrule="FREQ=WEEKLY", ticket="DZ-2026-000001",
        created_by="jan", created_at=START,
    )  # fmt: skip
    store.save_window(w)
    store.save_window(
        MaintenanceWindow("OS-2026-0002", "klinika-b", START, START, "x", assets=["srv-b1"])
    )
    assert store.windows("szpital-a") == [w]
    w.cancelled_at, w.cancelled_by = START + timedelta(hours=1), "anna"
    store.save_window(w)
    assert [x.cancelled_by for x in store.windows()] == ["anna", None]


def test_suppressed_alerts_one_firing_record_per_alert(store):
    from bridge.models import SuppressedAlert, SuppressedState

    def record(**kw):
        fields = dict(
            fingerprint="fp1", window="OS-2026-0001", client="szpital-a", asset="srv-a1",
            rule="disk_usage", category=Category.USTERKA, labels={"asset": "srv-a1"},
            value=0.95, fired_at=START, until=START + timedelta(hours=1),
        )  # fmt: skip
        return SuppressedAlert(**{**fields, **kw})

    first = store.save_suppressed(record())
    assert first.id is not None
    with pytest.raises(StoreError, match="UNIQUE constraint"):
        store.save_suppressed(record())  # a second firing record of the same alert
    first.state, first.recovered_at = SuppressedState.RECOVERED, START + timedelta(minutes=5)
    store.save_suppressed(first)
    store.save_suppressed(record(fired_at=START + timedelta(minutes=9)))
    assert [r.state for r in store.suppressed_alerts(fingerprint="fp1")] == [
        SuppressedState.RECOVERED,
        SuppressedState.FIRING,
    ]
    assert store.suppressed_alerts(until_before=START) == []
    assert len(store.suppressed_alerts(window="OS-2026-0001", state=SuppressedState.FIRING)) == 1


def test_update_plans_and_their_steps_round_trip(store):
    from bridge.models import (
        GateState,
        PlanStatus,
        RunbookStep,
        StageState,
        StepRecord,
        UpdatePlan,
        UpdateStage,
    )

    plan = UpdatePlan(
        id="AK-2026-0001", client="szpital-a", target_version="5.2.1",
        runbook=[RunbookStep("update", "echo {version}", 60.0)],
        stages=[UpdateStage("test", "OS-2026-0001", START, START + timedelta(hours=1), ["a"])],
        soak=1800.0, ticket="DZ-2026-000001", created_by="jan", created_at=START,
    )  # fmt: skip
    store.save_plan(plan)
    plan.gate, plan.soak_until = GateState.SOAKING, START + timedelta(hours=2)
    plan.stages[0].state = StageState.SUCCEEDED
    store.save_plan(plan)
    assert store.get_plan("AK-2026-0001") == plan
    assert store.plans(status=PlanStatus.ACTIVE) == [plan] and store.plans("klinika-b") == []
    step = StepRecord(
        "AK-2026-0001", "test", "a", "update", "echo 5.2.1", 0, "5.2.1\n", "ab" * 32, START, 0.1
    )
    store.append_step(step)
    assert store.steps("AK-2026-0001") == [step]
