"""Nothing slow inside a store transaction, and transactions that do not nest.

The slow parts of turning alerts into tickets — rendering a rule's templates, asking whether a
maintenance window mutes the alert (which expands recurrences), working out a deadline in
service hours, checking a planned window for conflicts — must run while no other writer is
kept waiting. Each is watched here while it runs: a probe tries to take SQLite's write lock
from another connection without waiting; if the bridge held it (a transaction was open), the
probe could not.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.maintenance import planning
from bridge.maintenance.planning import Maintenance, WindowConflict, WindowRequest
from bridge.service import Bridge
from bridge.store import StoreError
from bridge.store.sqlite import SQLiteStore
from bridge.tickets import lifecycle as lifecycle_module
from bridge.tickets.sla import ServiceCalendar
from tests.conftest import START, auth
from tests.test_alertmanager import am_alert, notification
from tests.test_lifecycle import disk, tickets


def write_lock_free(path: Path) -> bool:
    """Whether another writer could start now (nobody holds SQLite's write lock)."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


class Probes:
    """Wraps the slow steps; each call records whether the write lock was free meanwhile."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, bridge: Bridge) -> None:
        assert isinstance(bridge.store, SQLiteStore)
        self.path = bridge.store.path
        self.seen: dict[str, list[bool]] = {}
        self.wrap(monkeypatch, lifecycle_module, "render", "render")
        self.wrap(monkeypatch, lifecycle_module, "try_render", "render")
        self.wrap(monkeypatch, ServiceCalendar, "add", "deadline")
        self.wrap(monkeypatch, bridge.lifecycle.muter, "muting", "muting")
        self.wrap(monkeypatch, planning, "find_conflict", "conflicts")

    def wrap(self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, step: str) -> None:
        original: Callable[..., Any] = getattr(owner, name)

        def probed(*args: Any, **kwargs: Any) -> Any:
            self.seen.setdefault(step, []).append(write_lock_free(self.path))
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, probed)

    def held_during(self) -> dict[str, int]:
        """Each step that ran while the write lock was held: how many times."""
        return {step: free.count(False) for step, free in self.seen.items() if not all(free)}


def test_a_pushed_batch_prepares_its_tickets_before_its_transaction(bridge, clock, monkeypatch):
    probes = Probes(monkeypatch, bridge)
    disk(bridge, 0.95)  # opens an Usterka in szpital-a's service hours
    clock.advance(60)
    disk(bridge, 0.99)  # escalates it: new texts, new deadline
    [ticket] = tickets(bridge)
    assert ticket.category.value == "awaria" and ticket.reaction_due is not None
    assert {"render", "deadline", "muting"} <= set(probes.seen)
    assert probes.held_during() == {}


def test_an_alertmanager_alert_is_prepared_before_its_transaction(api, bridge, monkeypatch):
    probes = Probes(monkeypatch, bridge)
    r = api.post(
        "/api/v1/alertmanager",
        json=notification(am_alert(instance="srv-a1:9100")),
        headers=auth("agent"),
    )
    assert r.status_code == 200 and len(tickets(bridge)) == 1
    assert {"render", "deadline", "muting"} <= set(probes.seen)
    assert probes.held_during() == {}


def test_an_alert_released_at_the_end_of_its_window_is_prepared_first(bridge, clock, monkeypatch):
    window = bridge.maintenance.plan(
        WindowRequest("szpital-a", START, START + timedelta(hours=1), "przegląd", ["srv-a1"]),
        "jan.kowalski",
    )
    disk(bridge, 0.95)
    assert tickets(bridge) == []  # muted
    probes = Probes(monkeypatch, bridge)
    clock.set(window.end)
    bridge.tick()  # an hour later: the agents' silence opens tickets too
    [ticket] = [t for t in tickets(bridge) if t.rule == "disk_usage"]
    assert ticket.asset == "srv-a1"
    assert {"render", "deadline", "muting"} <= set(probes.seen)
    assert probes.held_during() == {}


def test_a_recurring_window_is_checked_for_conflicts_before_its_transaction(bridge, monkeypatch):
    probes = Probes(monkeypatch, bridge)
    request = WindowRequest(
        "szpital-a", START, START + timedelta(hours=2), "kopie", ["srv-a1"], rrule="FREQ=DAILY"
    )
    bridge.maintenance.plan(request, "jan.kowalski")
    bridge.maintenance.plan(
        WindowRequest("szpital-a", START, START + timedelta(hours=2), "x", ["srv-a2"]), "anna"
    )
    assert len(probes.seen["conflicts"]) == 2
    assert probes.held_during() == {}


def test_a_window_planned_meanwhile_by_another_worker_is_still_a_conflict(
    bridge, loaded, clock, monkeypatch
):
    """The conflict check runs before the transaction: a window another worker saves between
    the check and the save is caught by checking again, never saved beside it."""
    assert isinstance(bridge.store, SQLiteStore)
    other = Maintenance(SQLiteStore(bridge.store.path), loaded.clients, loaded.assets, clock)
    night = WindowRequest("szpital-a", START, START + timedelta(hours=2), "noc", ["srv-a1"])
    original = planning.find_conflict
    meanwhile: list[str] = []
    raced = False

    def check_then_race(*args: Any, **kwargs: Any) -> Any:
        nonlocal raced
        found = original(*args, **kwargs)
        if not raced:  # the other worker saves its window right after this first check
            raced = True
            meanwhile.append(other.plan(night, "anna.nowak").id)
        return found

    monkeypatch.setattr(planning, "find_conflict", check_then_race)
    with pytest.raises(WindowConflict) as refused:
        bridge.maintenance.plan(night, "jan.kowalski")
    assert refused.value.other.id == meanwhile[0]
    assert [w.id for w in bridge.store.windows()] == meanwhile
    other.store.close()


# --- units of work: who opens the transaction ---------------------------------------------------


def test_steps_of_a_callers_unit_need_the_callers_transaction(bridge, clock):
    disk(bridge, 0.95)
    [ticket] = tickets(bridge)
    with pytest.raises(StoreError, match="outside a transaction"):
        bridge.lifecycle.note(ticket.number, "stage_started", "Etap rozpoczęty")
    with pytest.raises(StoreError, match="outside a transaction"):
        bridge.lifecycle.resolve_within(ticket.number, "jan.kowalski")
    with bridge.store.transaction():
        bridge.lifecycle.note(ticket.number, "stage_started", "Etap rozpoczęty")
        bridge.lifecycle.resolve_within(ticket.number, "jan.kowalski")
    assert [e.kind for e in bridge.store.timeline(ticket.number)][-2:] == [
        "stage_started",
        "resolved",
    ]


def test_units_of_their_own_refuse_to_run_inside_another_transaction(bridge, clock):
    disk(bridge, 0.95)
    [ticket] = tickets(bridge)
    with pytest.raises(StoreError, match="do not nest"), bridge.store.transaction():
        bridge.lifecycle.acknowledge(ticket.number, "jan.kowalski")
    [ticket] = tickets(bridge)
    assert ticket.responded_at is None  # nothing of it was kept
    ticket, first = bridge.lifecycle.acknowledge(ticket.number, "jan.kowalski")
    assert first and ticket.responded_by == "jan.kowalski"


def test_an_alert_storm_in_a_window_renders_nothing(bridge, clock, monkeypatch):
    """Alerts recorded against a window need no ticket texts nor deadlines: none are worked
    out (a storm of a thousand alerts in one window stays cheap)."""
    bridge.maintenance.plan(
        WindowRequest("szpital-a", START, START + timedelta(hours=1), "przegląd", ["srv-a1"]),
        "jan.kowalski",
    )
    probes = Probes(monkeypatch, bridge)
    for mountpoint in ("/var", "/data", "/srv"):
        disk(bridge, 0.95, mountpoint=mountpoint)
    assert tickets(bridge) == []
    assert "render" not in probes.seen and "deadline" not in probes.seen
    assert len(bridge.store.suppressed_alerts()) == 3


def test_an_alert_prepared_as_muted_whose_ticket_opened_meanwhile_gets_its_texts(bridge, clock):
    """Another worker opened the alert's ticket between this worker's preparation (muted, no
    ticket: nothing rendered) and its transaction: the re-fire still carries its texts."""
    from collectors import Sample

    window = bridge.maintenance.plan(
        WindowRequest("szpital-a", START, START + timedelta(hours=1), "przegląd", ["srv-a1"]),
        "jan.kowalski",
    )
    sample = Sample("dz_test_disk_used_ratio", {"asset": "srv-a1", "mountpoint": "/var"}, 0.95,
                    clock.time())  # fmt: skip
    [transition] = bridge.engine.evaluate([sample], clock.time())
    rule = bridge.engine.rules[transition.alert.rule]
    muted = bridge.lifecycle.prepare(transition, rule, clock.now())
    assert muted is not None and muted.muting is not None and not muted.texts
    bridge.maintenance.cancel(window.id, "jan.kowalski")  # the other worker sees no window
    other = bridge.lifecycle.prepare(transition, rule, clock.now())
    with bridge.store.transaction():
        bridge.lifecycle.apply(other)
    with bridge.store.transaction():
        change = bridge.lifecycle.apply(muted)
    [ticket] = tickets(bridge)
    assert change.action == "refired" and ticket.fire_count == 2
    assert ticket.title.startswith("Zajętość dysku /var na srv-a1")
    assert ticket.reaction_due is not None
