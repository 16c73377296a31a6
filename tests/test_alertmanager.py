"""Alertmanager's webhook into the ticket lifecycle, in process (a real Alertmanager and
Prometheus drive it in tests/test_alertmanager_real.py)."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import timedelta

from bridge.maintenance.planning import WindowRequest
from bridge.models import Category, SuppressedState, TicketStatus
from bridge.store import TicketFilter
from bridge.store.sqlite import MIGRATIONS, SQLiteStore
from tests.conftest import START, auth


def notification(*alerts: dict, status: str = "firing") -> dict:
    return {
        "version": "4",
        "status": status,
        "receiver": "dyzur",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "alerts": list(alerts),
    }


def am_alert(status: str = "firing", fingerprint: str = "a1b2c3d4e5f60718", **labels) -> dict:
    return {
        "status": status,
        "labels": {"alertname": "AmmsDown", "severity": "critical", **labels},
        "annotations": {"summary": "AMMS nie odpowiada", "description": "Port 1521 zamknięty."},
        "startsAt": START.isoformat(),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fingerprint,
    }


def post(api, body, who="agent"):
    return api.post("/api/v1/alertmanager", json=body, headers=auth(who))


def tickets(bridge):
    return bridge.store.list_tickets(TicketFilter())


def test_a_firing_alert_opens_one_ticket_and_resolved_resolves_it(api, bridge):
    r = post(api, notification(am_alert(instance="srv-a1:9100")))
    assert r.status_code == 200 and r.json() == {"accepted": 1, "rejected": []}
    [ticket] = tickets(bridge)
    assert ticket.asset == "srv-a1" and ticket.category is Category.AWARIA
    assert ticket.title == "AMMS nie odpowiada na srv-a1 (Alertmanager)"
    assert "Port 1521 zamknięty." in ticket.description
    assert ticket.reaction_due is not None  # the contract's clock
    for _ in range(3):  # Alertmanager repeats the notification: nothing changes
        post(api, notification(am_alert(instance="srv-a1:9100")))
    [ticket] = tickets(bridge)
    assert ticket.fire_count == 1
    assert [e.kind for e in bridge.store.timeline(ticket.number)] == ["opened"]
    post(api, notification(am_alert("resolved", instance="srv-a1:9100"), status="resolved"))
    [ticket] = tickets(bridge)
    assert ticket.status is TicketStatus.RESOLVED


def test_a_long_description_is_kept_short_not_refused(api, bridge):
    alert = am_alert(instance="srv-a1")
    alert["annotations"]["description"] = "x" * 50_000
    assert post(api, notification(alert)).json()["accepted"] == 1
    [ticket] = tickets(bridge)
    assert 4000 <= len(ticket.description) < 4200


def test_labels_choose_the_asset_and_the_category(api, bridge):
    post(api, notification(am_alert(asset="srv-a2", severity="warning", fingerprint="f2")))
    post(api, notification(am_alert(asset="srv-b1", severity="info", fingerprint="f3")))
    by_asset = {t.asset: t.category for t in tickets(bridge)}
    assert by_asset == {"srv-a2": Category.USTERKA, "srv-b1": Category.USTERKA}  # default
    # a higher severity of the same alert escalates the same ticket
    post(api, notification(am_alert(asset="srv-a2", severity="critical", fingerprint="f2")))
    assert {t.asset: t.category for t in tickets(bridge)}["srv-a2"] is Category.AWARIA


def test_bad_alerts_are_refused_one_by_one_and_named(api, bridge):
    body = notification(
        am_alert(instance="db-x:9100", fingerprint="f1"),
        {**am_alert(fingerprint="f2"), "labels": {"instance": "srv-a1"}},
        am_alert(instance="srv-a1", fingerprint="f3"),
    )
    r = post(api, body)
    assert r.status_code == 200
    assert r.json()["accepted"] == 1
    assert [(x["index"], x["reason"]) for x in r.json()["rejected"]] == [
        (0, "unknown_asset"),
        (1, "missing_alertname"),
    ]
    assert "instance='db-x:9100'" in r.json()["rejected"][0]["detail"]
    assert len(tickets(bridge)) == 1


def test_schema_errors_roles_and_hospital_scope(api, bridge):
    r = post(api, {**notification(am_alert(instance="srv-a1")), "version": "3"})
    assert r.status_code == 422 and "body.version" in r.text
    bad = am_alert(instance="srv-a1")
    bad["startsAt"] = "yesterday"
    assert post(api, notification(bad)).status_code == 422
    assert post(api, notification(am_alert(instance="srv-a1")), who="client-a").status_code == 403
    assert api.post("/api/v1/alertmanager", json=notification()).status_code == 401
    # an agent token of szpital-a may not report klinika-b's assets
    r = post(api, notification(am_alert(instance="srv-b1")), who="agent-a")
    assert r.json()["rejected"][0]["reason"] == "forbidden_asset"
    assert tickets(bridge) == []


def test_a_maintenance_window_mutes_alertmanager_alerts_too(api, bridge, clock):
    window = bridge.maintenance.plan(
        WindowRequest("szpital-a", START, START + timedelta(hours=1), "prace", ["srv-a1"]), "jan"
    )
    post(api, notification(am_alert(instance="srv-a1")))
    assert tickets(bridge) == []
    [record] = bridge.store.suppressed_alerts(window=window.id)
    assert record.state is SuppressedState.FIRING and record.rule == "alertmanager:AmmsDown"
    clock.set(window.end)
    bridge.tick()
    [ticket] = [t for t in tickets(bridge) if t.rule == "alertmanager:AmmsDown"]
    assert ticket.asset == "srv-a1" and ticket.opened_at == window.end
    post(api, notification(am_alert("resolved", instance="srv-a1"), status="resolved"))
    assert bridge.store.get_ticket(ticket.number).status is TicketStatus.RESOLVED


# --- one hospital's fingerprint never reaches another's ticket ------------------------------


def test_an_agent_of_one_hospital_cannot_touch_anothers_alertmanager_ticket(api, bridge):
    # klinika-b's alert, through the fleet-wide agent token
    post(api, notification(am_alert(asset="srv-b1", severity="warning", fingerprint="f00d")))
    [theirs] = tickets(bridge)
    # szpital-a's agent sends the same fingerprint with one of its own assets
    r = post(api, notification(am_alert("resolved", asset="srv-a1", fingerprint="f00d")), "agent-a")
    assert r.json() == {"accepted": 1, "rejected": []}
    assert bridge.store.get_ticket(theirs.number).status is TicketStatus.OPEN
    post(
        api,
        notification(am_alert(asset="srv-a1", severity="critical", fingerprint="f00d")),
        "agent-a",
    )
    theirs = bridge.store.get_ticket(theirs.number)
    assert theirs.category is Category.USTERKA and theirs.fire_count == 1
    assert [e.kind for e in bridge.store.timeline(theirs.number)] == ["opened"]
    # szpital-a's alert got a ticket of its own
    [ours] = [t for t in tickets(bridge) if t.client == "szpital-a"]
    assert ours.asset == "srv-a1" and ours.category is Category.AWARIA


def test_the_same_fingerprint_from_two_hospitals_is_two_alerts(api, bridge):
    post(api, notification(am_alert(asset="srv-a1", fingerprint="f00d")))
    post(api, notification(am_alert(asset="srv-b1", fingerprint="f00d")))  # not swallowed
    by_client = {t.client: t for t in tickets(bridge)}
    assert sorted(by_client) == ["klinika-b", "szpital-a"]
    assert {t.fingerprint for t in by_client.values()} == {"am:szpital-a:f00d", "am:klinika-b:f00d"}
    post(api, notification(am_alert("resolved", asset="srv-a1", fingerprint="f00d")))
    assert bridge.store.get_ticket(by_client["szpital-a"].number).status is TicketStatus.RESOLVED
    assert bridge.store.get_ticket(by_client["klinika-b"].number).status is TicketStatus.OPEN


def _store_before_hospital_identity(path) -> None:
    """A store at the schema version before Alertmanager alerts were identified per hospital,
    holding what that version wrote: an open ticket and a window record keyed ``am-<key>``."""
    [index] = [i for i, m in enumerate(MIGRATIONS) if "am:<client>:<fingerprint>" in m]
    conn = sqlite3.connect(path)
    for script in MIGRATIONS[:index]:
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {index}")
    columns = (
        "number, client, asset, rule, fingerprint, category, status, title, description, "
        "labels, fire_count, opened_at, updated_at"
    )
    labels = json.dumps({"alertname": "AmmsDown", "asset": "srv-a1"})
    at = START.timestamp()
    for number, rule, key in (
        ("DZ-2026-000001", "alertmanager:AmmsDown", "am-a1b2c3d4e5f60718"),
        ("DZ-2026-000002", "cpu_high", "0123456789abcdef"),
    ):
        conn.execute(
            f"INSERT INTO tickets ({columns}) VALUES (?, 'szpital-a', 'srv-a1', ?, ?, 'awaria', "
            "'open', 'AMMS nie odpowiada na srv-a1 (Alertmanager)', '', ?, 1, ?, ?)",
            (number, rule, key, labels, at, at),
        )
    conn.execute("INSERT INTO ticket_sequences VALUES (2026, 2)")
    conn.execute(
        "INSERT INTO suppressed_alerts (fingerprint, window_id, client, asset, rule, category, "
        "labels, fired_at, until, state) VALUES ('am-b0b0', 'w-1', 'klinika-b', 'srv-b1', "
        "'alertmanager:DiskSlow', 'usterka', '{}', ?, ?, 'firing')",
        (at, at + 3600),
    )
    conn.commit()
    conn.close()


def test_alertmanager_tickets_of_an_older_store_keep_working(tmp_path, loaded, clock):
    from fastapi.testclient import TestClient

    from bridge.api import create_app
    from bridge.service import Bridge

    path = tmp_path / "old.db"
    _store_before_hospital_identity(path)
    store = SQLiteStore(path)
    store.migrate()
    old = Bridge(loaded, store=store, clock=clock)
    try:
        with TestClient(create_app(old, run_ticker=False)) as client:
            assert store.get_ticket("DZ-2026-000002").fingerprint == "0123456789abcdef"
            # a repeat of the open alert changes nothing; klinika-b's same fingerprint is its own
            post(client, notification(am_alert(instance="srv-a1")))
            post(client, notification(am_alert(instance="srv-b1")))
            assert [e.kind for e in store.timeline("DZ-2026-000001")] == []
            assert len(tickets(old)) == 3
            post(client, notification(am_alert("resolved", instance="srv-a1"), status="resolved"))
            assert store.get_ticket("DZ-2026-000001").status is TicketStatus.RESOLVED
            # the alert recorded against a window recovers inside it
            disk = am_alert("resolved", asset="srv-b1", fingerprint="b0b0", alertname="DiskSlow")
            post(client, notification(disk, status="resolved"))
            [record] = store.suppressed_alerts(window="w-1")
            assert record.state is SuppressedState.RECOVERED
    finally:
        old.close()


# --- stale notifications ------------------------------------------------------------------


def stale_count(bridge, client="szpital-a") -> float:
    value = bridge.metrics.registry.get_sample_value(
        "dyzur_alertmanager_stale_total", {"client": client}
    )
    return value or 0.0


def test_a_late_copy_of_a_resolved_firing_reopens_nothing(api, bridge, clock):
    post(api, notification(am_alert(instance="srv-a1")))
    clock.advance(10 * 60)
    post(api, notification(am_alert("resolved", instance="srv-a1"), status="resolved"))
    [ticket] = tickets(bridge)
    assert ticket.status is TicketStatus.RESOLVED
    # an HA peer's late copy of the firing (started at START, before the resolution)
    clock.advance(1 * 60)
    assert post(api, notification(am_alert(instance="srv-a1"))).json()["accepted"] == 1
    [ticket] = tickets(bridge)
    assert ticket.status is TicketStatus.RESOLVED and ticket.fire_count == 1
    entries = bridge.store.timeline(ticket.number)
    assert [e.kind for e in entries] == ["opened", "recovered", "resolved", "stale"]
    assert entries[-1].message.startswith("Pominięto nieaktualne powiadomienie")
    assert "2026-11-23 10:00" in entries[-1].message and "2026-11-23 10:10" in entries[-1].message
    assert stale_count(bridge) == 1
    # a firing that started exactly at the resolution is not newer either; long after the
    # reopen period it would open a new ticket, but does not
    clock.advance(2 * 3600)
    replay = am_alert(instance="srv-a1")
    replay["startsAt"] = (START + timedelta(minutes=10)).isoformat()
    post(api, notification(replay))
    assert [t.status for t in tickets(bridge)] == [TicketStatus.RESOLVED]
    assert stale_count(bridge) == 2


def test_a_new_firing_after_the_resolution_still_reopens(api, bridge, clock):
    post(api, notification(am_alert(instance="srv-a1")))
    clock.advance(10 * 60)
    post(api, notification(am_alert("resolved", instance="srv-a1"), status="resolved"))
    clock.advance(5 * 60)
    again = am_alert(instance="srv-a1")
    again["startsAt"] = (START + timedelta(minutes=11)).isoformat()
    post(api, notification(again))
    [ticket] = tickets(bridge)
    assert ticket.status is TicketStatus.OPEN and ticket.fire_count == 2
    assert [e.kind for e in bridge.store.timeline(ticket.number)][-1] == "reopened"
    assert stale_count(bridge) == 0


def test_a_late_copy_after_a_recovery_inside_a_window_opens_no_ticket(api, bridge, clock):
    window = bridge.maintenance.plan(
        WindowRequest("szpital-a", START, START + timedelta(hours=1), "prace", ["srv-a1"]), "jan"
    )
    post(api, notification(am_alert(instance="srv-a1")))
    clock.advance(10 * 60)
    post(api, notification(am_alert("resolved", instance="srv-a1"), status="resolved"))
    clock.advance(1 * 60)
    post(api, notification(am_alert(instance="srv-a1")))  # the late copy, window still on
    assert [r.state for r in bridge.store.suppressed_alerts(window=window.id)] == [
        SuppressedState.RECOVERED
    ]
    clock.set(window.end)
    bridge.tick()
    # nothing fires when the window ends
    assert [t for t in tickets(bridge) if t.rule.startswith("alertmanager:")] == []
    assert stale_count(bridge) == 1


# --- alerts without an asset are visible in the log -----------------------------------------


def test_an_alert_without_an_inventory_asset_is_logged_once(api, bridge, caplog, monkeypatch):
    caplog.set_level(logging.WARNING, logger="bridge.sources.alertmanager")
    ups = {"alertname": "UpsOnBattery", "instance": "ups-x:9100", "fingerprint": "u1"}

    def send(**labels):
        fp = labels.pop("fingerprint")
        r = post(api, notification(am_alert(fingerprint=fp, **labels)))
        assert r.json()["rejected"][0]["reason"] == "unknown_asset"

    def warnings():
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    for _ in range(3):
        send(**ups)
    [line] = warnings()
    assert "'UpsOnBattery'" in line and "instance='ups-x:9100'" in line
    send(**{**ups, "instance": "ups-y:9100"})  # another asset label value: its own warning
    assert len(warnings()) == 2
    # the memory of what was logged is bounded: the oldest is forgotten, and logged again
    monkeypatch.setattr("bridge.sources.alertmanager.UNKNOWN_WARNED", 2)
    send(**{**ups, "instance": "ups-z:9100"})
    send(**ups)
    assert len(warnings()) == 4
    assert len(bridge.alertmanager._warned) == 2
    value = bridge.metrics.registry.get_sample_value(
        "dyzur_alertmanager_alerts_total", {"status": "firing", "outcome": "unknown_asset"}
    )
    assert value == 6
