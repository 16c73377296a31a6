"""The ticket lifecycle driven by the real engine and a real store: one alert, one ticket."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from bridge.models import Category, TicketStatus
from bridge.service import Bridge
from bridge.sources.samples import BatchOrigin
from bridge.store import StoreError, TicketFilter
from bridge.store.sqlite import SQLiteStore
from bridge.tickets.lifecycle import TicketLifecycle
from collectors import Sample
from tests.conftest import AGENT


def disk(bridge: Bridge, value: float, asset: str = "srv-a1", mountpoint: str = "/var"):
    """Push one disk-usage sample stamped with the bridge clock's time."""
    s = Sample(
        "dz_test_disk_used_ratio",
        {"asset": asset, "mountpoint": mountpoint},
        value,
        bridge.clock.time(),
    )
    result = bridge.ingestor.ingest([s], AGENT)
    assert result.accepted == 1, result.rejected


def tickets(bridge: Bridge, **query) -> list:
    return bridge.store.list_tickets(TicketFilter(**query))


def kinds(bridge: Bridge, number: str) -> list[str]:
    return [e.kind for e in bridge.store.timeline(number)]


def test_firing_opens_one_ticket_in_the_contract_language(bridge):
    disk(bridge, 0.95)
    disk(bridge, 0.93, asset="srv-b1")
    [b, a] = tickets(bridge)
    assert a.number == "DZ-2026-000001" and b.number == "DZ-2026-000002"
    assert a.category is Category.USTERKA and a.status is TicketStatus.OPEN
    assert a.client == "szpital-a" and a.asset == "srv-a1" and a.rule == "disk_usage"
    # Each number as its contract's language writes it: Polish with a decimal comma.
    assert a.title == "Zajętość dysku /var na srv-a1: 95,0 %"
    assert a.description == "Dysk /var jest zapełniony w 95,0 %."
    assert b.title == "Disk /var on srv-b1 is 93.0 % full"
    assert bridge.store.timeline(a.number)[0].message.startswith(
        "Zgłoszenie otwarte automatycznie przez regułę disk_usage (wartość 0,95)."
    )
    assert "(value 0.93)." in bridge.store.timeline(b.number)[0].message
    assert kinds(bridge, a.number) == ["opened"]


def test_a_value_that_stays_high_opens_nothing_new(bridge, clock):
    for value in (0.95, 0.96, 0.95, 0.97):
        disk(bridge, value)
        clock.advance(30)
    [ticket] = tickets(bridge)
    assert ticket.fire_count == 1
    assert kinds(bridge, ticket.number) == ["opened"]


def test_hovering_at_the_threshold_does_not_flap(bridge, clock):
    for value in (0.91, 0.89, 0.91, 0.88, 0.905, 0.86):
        disk(bridge, value)
        clock.advance(30)
    [ticket] = tickets(bridge)
    assert ticket.status is TicketStatus.OPEN and ticket.fire_count == 1
    disk(bridge, 0.80)
    [ticket] = tickets(bridge)
    assert ticket.status is TicketStatus.RESOLVED


def test_escalation_upgrades_the_category_in_place(bridge, clock):
    disk(bridge, 0.92)
    clock.advance(60)
    disk(bridge, 0.99)
    [ticket] = tickets(bridge)
    assert ticket.category is Category.AWARIA
    assert ticket.number == "DZ-2026-000001"
    assert kinds(bridge, ticket.number) == ["opened", "escalated"]
    entry = bridge.store.timeline(ticket.number)[-1]
    assert "Usterka → Awaria" in entry.message


def test_recovery_resolves_with_a_recovered_entry(bridge, clock):
    disk(bridge, 0.95)
    clock.advance(120)
    disk(bridge, 0.5)
    [ticket] = tickets(bridge)
    assert ticket.status is TicketStatus.RESOLVED
    assert ticket.resolved_at == clock.now()
    assert kinds(bridge, ticket.number) == ["opened", "recovered", "resolved"]


def service(bridge: Bridge, up: float) -> None:
    s = Sample(
        "dz_test_service_up", {"asset": "srv-a1", "service": "amms"}, up, bridge.clock.time()
    )
    assert bridge.ingestor.ingest([s], AGENT).accepted == 1


def test_keep_open_rule_leaves_the_ticket_for_an_engineer_and_counts_refires(bridge, clock):
    service(bridge, 0)
    clock.advance(30)
    service(bridge, 0)
    assert tickets(bridge) == []  # `for: 60s` has not passed
    clock.advance(31)
    service(bridge, 0)
    [ticket] = tickets(bridge)
    assert ticket.category is Category.AWARIA
    clock.advance(30)
    service(bridge, 1)
    [ticket] = tickets(bridge)
    assert ticket.status is TicketStatus.OPEN
    assert kinds(bridge, ticket.number) == ["opened", "recovered", "left_open"]
    # It breaks again while the ticket is still open: same ticket, counted, on the timeline.
    for _ in range(3):
        clock.advance(61)
        service(bridge, 0)
    [ticket] = tickets(bridge)
    assert ticket.fire_count == 2
    assert kinds(bridge, ticket.number)[-1] == "refired"
    resolved = bridge.lifecycle.resolve(ticket.number, "jan.kowalski")
    assert resolved.status is TicketStatus.RESOLVED
    assert bridge.store.timeline(ticket.number)[-1].actor == "jan.kowalski"


def test_refire_within_the_reopen_period_reopens_the_same_ticket(bridge, clock):
    disk(bridge, 0.95)
    clock.advance(60)
    disk(bridge, 0.5)
    clock.advance(59 * 60)  # 59 minutes later: inside the 1 h reopen period
    disk(bridge, 0.95)
    [ticket] = tickets(bridge)
    assert ticket.status is TicketStatus.OPEN and ticket.fire_count == 2
    assert ticket.resolved_at is None
    assert kinds(bridge, ticket.number) == ["opened", "recovered", "resolved", "reopened"]


def test_refire_after_the_reopen_period_opens_a_new_ticket(bridge, clock):
    disk(bridge, 0.95)
    clock.advance(60)
    disk(bridge, 0.5)
    clock.advance(3601)
    disk(bridge, 0.95)
    new, old = tickets(bridge)
    assert old.status is TicketStatus.RESOLVED and new.status is TicketStatus.OPEN
    assert new.number == "DZ-2026-000002"


def test_acknowledge_records_the_first_response_once(bridge, clock):
    disk(bridge, 0.95)
    [ticket] = tickets(bridge)
    clock.advance(600)
    first, was_first = bridge.lifecycle.acknowledge(ticket.number, "jan.kowalski")
    clock.advance(600)
    again, again_first = bridge.lifecycle.acknowledge(ticket.number, "anna.nowak")
    assert (was_first, again_first) == (True, False)
    assert (
        first.responded_at
        == again.responded_at
        == bridge.store.get_ticket(ticket.number).responded_at
    )
    assert again.responded_by == "jan.kowalski"
    assert kinds(bridge, ticket.number) == ["opened", "acknowledged"]


def test_a_restarted_bridge_keeps_its_alerts(loaded, store, clock):
    first = Bridge(loaded, store=store, clock=clock)
    first.start(ticker=False)
    disk(first, 0.95)
    # A new bridge process on the same store: it must know the alert is firing.
    second = Bridge(loaded, store=store, clock=clock)
    second.start(ticker=False)
    clock.advance(60)
    disk(second, 0.96)
    [ticket] = tickets(second)
    assert ticket.status is TicketStatus.OPEN
    clock.advance(60)
    disk(second, 0.5)
    [ticket] = tickets(second)
    assert ticket.status is TicketStatus.RESOLVED


def test_an_asset_that_does_not_report_itself_never_goes_silent(bridge, clock):
    """ups-b1 has ``reports: false``: srv-b1's agent polls it. When the polling stops, the UPS
    pack's own rules say so; "agent silent" (a 2-hour Awaria) must not, at night or ever."""
    rule = bridge.engine.rules["agent_silent"]
    polled = Sample("dz_test_disk_used_ratio", {"asset": "ups-b1", "mountpoint": "/"}, 0.5,
                    clock.time())  # fmt: skip
    assert bridge.ingestor.ingest([polled], AGENT).accepted == 1
    for _ in range(3):
        clock.advance(rule.absent_seconds + 1)
        disk(bridge, 0.5, asset="srv-b1")  # the poller itself keeps reporting
        bridge.ingestor.tick()
    assert tickets(bridge, asset="ups-b1") == []


def test_agent_silence_opens_a_ticket_and_a_returning_agent_resolves_it(bridge, clock):
    rule = bridge.engine.rules["agent_silent"]
    disk(bridge, 0.5, asset="srv-b1")
    clock.advance(rule.absent_seconds + 1)
    changes = bridge.ingestor.tick()
    silent = {c.ticket.asset for c in changes if c.ticket.rule == "agent_silent"}
    # Every reporting asset was silent; the UPS is polled, not reporting, so it is not expected.
    assert silent == {"srv-a1", "srv-a2", "srv-b1"}
    assert bridge.ingestor.tick() == []  # no second ticket on the next tick
    disk(bridge, 0.5, asset="srv-b1")
    [ticket] = tickets(bridge, asset="srv-b1")
    assert ticket.status is TicketStatus.RESOLVED


def test_a_locked_database_refuses_the_batch_and_its_retry_is_taken(loaded, tmp_path, clock):
    path = tmp_path / "locked.db"
    store = SQLiteStore(path, busy_timeout=0.05)
    store.migrate()
    bridge = Bridge(loaded, store=store, clock=clock)
    bridge.start(ticker=False)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    # The sender is told (503 over HTTP): nothing of the batch was kept, not even evaluated.
    with pytest.raises(StoreError):
        disk(bridge, 0.95)
    with pytest.raises(StoreError):
        disk(bridge, 0.97, mountpoint="/data")
    blocker.execute("ROLLBACK")
    blocker.close()
    assert tickets(bridge) == []
    disk(bridge, 0.95)  # the retries
    disk(bridge, 0.97, mountpoint="/data")
    assert sorted(t.labels["mountpoint"] for t in tickets(bridge)) == ["/data", "/var"]
    bridge.close()


def test_a_store_failing_mid_batch_keeps_nothing_and_loses_nothing(loaded, tmp_path, clock):
    """The store fails after the engine evaluated the batch (a real SQLite error raised by a
    trigger): the batch is refused whole, claim included, and its transitions wait in order
    for the retry, which writes each ticket once."""
    path = tmp_path / "failing.db"
    store = SQLiteStore(path)
    store.migrate()
    bridge = Bridge(loaded, store=store, clock=clock)
    bridge.start(ticker=False)
    breaker = sqlite3.connect(path, isolation_level=None)
    breaker.execute(
        "CREATE TRIGGER disk_full BEFORE INSERT ON timeline "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
    )
    origin = BatchOrigin("agent-x", 1)
    batch = [
        Sample("dz_test_disk_used_ratio", {"asset": "srv-a1", "mountpoint": m}, 0.95, clock.time())
        for m in ("/var", "/data")
    ]
    with pytest.raises(StoreError, match="disk is full"):
        bridge.ingestor.ingest(batch, AGENT, origin)
    assert tickets(bridge) == [] and store.agent_streams() == []  # nothing kept, no claim
    assert bridge.ingestor.queued_transitions == 2
    assert bridge.ingestor.tick() == []  # still failing: still queued, in order
    assert bridge.ingestor.queued_transitions == 2
    breaker.execute("DROP TRIGGER disk_full")
    breaker.close()
    result = bridge.ingestor.ingest(batch, AGENT, origin)  # the agent's retry
    assert not result.duplicate and result.accepted == 2
    assert bridge.ingestor.queued_transitions == 0
    assert sorted(t.labels["mountpoint"] for t in tickets(bridge)) == ["/data", "/var"]
    assert [t.fire_count for t in tickets(bridge)] == [1, 1]
    assert bridge.ingestor.ingest(batch, AGENT, origin).duplicate
    bridge.close()


@pytest.mark.parametrize("workers", [8])
def test_concurrent_firings_of_one_alert_make_one_ticket(loaded, tmp_path, clock, workers):
    """Several bridge workers, each with its own engine and connection, fire the same alert
    at once: the store's alert lock lets exactly one of them open the ticket."""
    path = tmp_path / "shared.db"
    SQLiteStore(path).migrate()
    bridges = [Bridge(loaded, store=SQLiteStore(path), clock=clock) for _ in range(workers)]
    for b in bridges:
        b.start(ticker=False)
    barrier = threading.Barrier(workers)

    def fire(b: Bridge) -> None:
        barrier.wait()
        disk(b, 0.95)

    threads = [threading.Thread(target=fire, args=(b,)) for b in bridges]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    [ticket] = tickets(bridges[0])
    assert ticket.fire_count == workers  # one opened it, the others counted as re-fires
    assert kinds(bridges[0], ticket.number) == ["opened"] + ["refired"] * (workers - 1)
    for b in bridges:
        b.close()


def test_lifecycle_is_usable_without_the_api(store, loaded, clock):
    # The lifecycle is plain Python over the store: no FastAPI import needed to drive it.
    from bridge.maintenance.planning import Maintenance

    muter = Maintenance(store, loaded.clients, loaded.assets, clock)
    lifecycle = TicketLifecycle(store, loaded.clients, loaded.assets, clock, muter=muter)
    assert lifecycle.firing_alerts() == []


# --- what a person reads: titles that follow the alert, values in the contract's language ----


def test_a_reopened_ticket_is_retitled_with_the_new_value(bridge, clock):
    disk(bridge, 0.95)
    clock.advance(60)
    disk(bridge, 0.5)
    clock.advance(10 * 60)
    disk(bridge, 0.97)
    [ticket] = tickets(bridge)
    assert kinds(bridge, ticket.number)[-1] == "reopened"
    assert ticket.title == "Zajętość dysku /var na srv-a1: 97,0 %"
    assert ticket.description == "Dysk /var jest zapełniony w 97,0 %."
    reopened = bridge.store.timeline(ticket.number)[-1].message
    assert reopened == "Zgłoszenie otwarte ponownie: alert wrócił po rozwiązaniu (wartość 0,97)."


def test_an_escalated_ticket_is_retitled_with_the_new_value(bridge, clock):
    disk(bridge, 0.92, asset="srv-b1")
    clock.advance(60)
    disk(bridge, 0.99, asset="srv-b1")
    [ticket] = tickets(bridge)
    assert ticket.category is Category.AWARIA
    assert ticket.title == "Disk /var on srv-b1 is 99.0 % full"


RUNTIME_RULES = """
rules:
  - name: ups_runtime_low
    metric: dz_test_ups_runtime_seconds
    when: '< 600'
    category: awaria
    keep_open: true
    labels: [asset]
    title:
      pl: "UPS {{ asset }}: zostało {{ value | duration }} pracy na baterii"
      en: "UPS {{ asset }}: {{ value | duration }} of battery runtime left"
    description:
      pl: "Szacowany czas pracy: {{ value | duration }}, obciążenie {{ labels.load }} W."
      en: "Estimated runtime: {{ value | duration }}, load {{ labels.load }} W."
"""


def test_a_ticket_that_fires_again_is_retitled_with_the_new_value(tmp_path, store, clock):
    from bridge.config import parse_config
    from tests.conftest import config_data

    (tmp_path / "runtime.yaml").write_text(RUNTIME_RULES)
    data = config_data()
    data["rule_files"] = [str(tmp_path / "runtime.yaml")]
    bridge = Bridge(parse_config(data, "test.yaml", tmp_path), store=store, clock=clock)
    bridge.start(ticker=False)

    def runtime(seconds: float, load: str) -> None:
        s = Sample(
            "dz_test_ups_runtime_seconds",
            {"asset": "srv-a1", "load": load},
            seconds,
            clock.time(),
        )
        assert bridge.ingestor.ingest([s], AGENT).accepted == 1
        clock.advance(60)

    runtime(300, "1200")  # opens: 5m left
    runtime(900, "1200")  # recovers; keep_open leaves the ticket open
    runtime(0, "1800")  # fires again on the same open ticket: nothing left
    [ticket] = tickets(bridge)
    assert kinds(bridge, ticket.number) == ["opened", "recovered", "left_open", "refired"]
    assert ticket.title == "UPS srv-a1: zostało 0s pracy na baterii"
    assert ticket.description == "Szacowany czas pracy: 0s, obciążenie 1800 W."
    assert bridge.store.timeline(ticket.number)[-1].message == (
        "Alert ponownie aktywny, wystąpienie nr 2 (wartość 0)."
    )
    bridge.close()


def test_an_alert_without_a_value_leaves_the_value_out_of_the_timeline(bridge, clock):
    """Alertmanager alerts carry no value (NaN): no "(wartość nan)" on the ticket."""
    from bridge.sources.alertmanager import alertmanager_rule
    from rules.model import Alert, AlertState

    def notified(asset: str, state: AlertState) -> None:
        labels = {"alertname": "HostDown", "asset": asset}
        rule = alertmanager_rule("alertmanager:HostDown")
        alert = Alert(
            rule=rule.name,
            fingerprint=f"am-test-{asset}",
            labels=labels,
            state=state,
            category="awaria",
            value=float("nan"),
            active_since=clock.time() - 60,
            fired_at=clock.time() - 60,
            annotations={"summary": "Host nie odpowiada"},
        )
        prepared = bridge.lifecycle.prepare_notified(alert, rule)
        with bridge.store.transaction():
            bridge.lifecycle.apply_notified(prepared)

    for asset in ("srv-a1", "srv-b1"):
        notified(asset, AlertState.FIRING)
        clock.advance(60)
        notified(asset, AlertState.RESOLVED)
    a, b = (tickets(bridge, asset=asset)[0] for asset in ("srv-a1", "srv-b1"))
    pl = [e.message for e in bridge.store.timeline(a.number)]
    en = [e.message for e in bridge.store.timeline(b.number)]
    assert a.title == "Host nie odpowiada na srv-a1 (Alertmanager)"
    for message in pl + en:
        assert "nan" not in message.lower() and "wartość" not in message, message
        assert "(value" not in message, message
    assert pl[0].startswith(
        "Zgłoszenie otwarte automatycznie przez regułę alertmanager:HostDown. Termin reakcji:"
    )
    assert "Alert ustąpił." in pl
    assert en[0].startswith("Ticket opened automatically by rule alertmanager:HostDown.")
    assert "Alert recovered." in en


def test_a_batch_another_bridge_took_meanwhile_is_not_counted_twice(loaded, tmp_path, clock):
    """Two bridge processes on one store get the same numbered batch (an agent's retry to the
    other worker): the one whose claim comes second wrote nothing, and its evaluation of the
    batch does not reach the ticket later (no second firing on its next tick)."""
    path = tmp_path / "shared.db"
    SQLiteStore(path).migrate()
    first, second = (Bridge(loaded, store=SQLiteStore(path), clock=clock) for _ in range(2))
    for b in (first, second):
        b.start(ticker=False)
    origin = BatchOrigin("agent-x", 1)
    batch = [Sample("dz_test_disk_used_ratio", {"asset": "srv-a1", "mountpoint": "/var"}, 0.95,
                    clock.time())]  # fmt: skip
    peek = second.store.peek_batch

    def peek_then_lose_the_race(record, max_gap):
        seen = peek(record, max_gap)
        assert not first.ingestor.ingest(batch, AGENT, origin).duplicate
        return seen

    second.ingestor.store.peek_batch = peek_then_lose_the_race  # type: ignore[method-assign]
    assert second.ingestor.ingest(batch, AGENT, origin).duplicate
    assert second.ingestor.queued_transitions == 0
    second.ingestor.tick()
    [ticket] = tickets(first)
    assert ticket.fire_count == 1 and kinds(first, ticket.number) == ["opened"]
    for b in (first, second):
        b.close()
