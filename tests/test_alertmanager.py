"""Alertmanager's webhook into the ticket lifecycle, in process (a real Alertmanager and
Prometheus drive it in tests/test_alertmanager_real.py)."""

from __future__ import annotations

from datetime import timedelta

from bridge.maintenance import WindowRequest
from bridge.models import Category, SuppressedState, TicketStatus
from bridge.store import TicketFilter
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
