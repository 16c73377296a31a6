"""The audit trail over the API: refused requests (401, 403) audited per source and minute,
and GET /api/v1/audit for people without a SIEM (roles, hospital scope, filters, paging)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridge.clock import WARSAW
from tests.conftest import START, auth


def refusals(bridge, action: str):
    return [e for e in bridge.store.audit_events() if e.action == action]


def push(api, asset: str, mountpoint: str = "/var", who: str = "agent"):
    sample = {
        "metric": "dz_test_disk_used_ratio",
        "labels": {"asset": asset, "mountpoint": mountpoint},
        "value": 0.95,
    }
    r = api.post("/api/v1/samples", json={"samples": [sample]}, headers=auth(who))
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1


# --- refused requests ---------------------------------------------------------------------


def test_a_role_without_the_right_is_one_audit_event_per_minute_with_the_count(
    api, bridge, clock, caplog
):
    for _ in range(3):
        assert api.get("/api/v1/tickets", headers=auth("agent")).status_code == 403
    r = api.post("/api/v1/windows", json={}, headers=auth("agent"))
    assert r.status_code == 403 and r.json()["detail"] == "role 'agent' may not do this"
    assert "role refused: GET /api/v1/tickets from testclient by agent" in caplog.text
    bridge.tick()
    assert refusals(bridge, "role.refused") == []  # counted; written when the minute is over
    clock.advance(61)
    bridge.tick()
    [event] = refusals(bridge, "role.refused")
    assert (event.actor, event.outcome, event.client) == ("agent", "failure", None)
    assert event.detail["role"] == "agent"
    assert event.detail["count"] == 4
    assert event.detail["requests"] == ["GET /api/v1/tickets", "POST /api/v1/windows"]
    assert event.detail["source"] == "testclient"
    assert "t-agent" not in str(event.detail)  # never the token


def test_a_hospital_asking_for_another_is_refused_and_audited_for_its_own_hospital(api, bridge):
    r = api.get("/api/v1/tickets?client=klinika-b", headers=auth("client-a"))
    assert r.status_code == 403
    r = api.post("/api/v1/tickets/DZ-2026-000001/ack", headers=auth("client-a"))
    assert r.status_code == 403
    bridge.refusals.flush(everything=True)
    [event] = refusals(bridge, "role.refused")
    assert (event.actor, event.client) == ("it-szpital-a", "szpital-a")
    assert event.detail["role"] == "client:szpital-a" and event.detail["count"] == 2


def test_requests_without_a_token_are_one_audit_event_with_the_count(api, bridge, clock):
    for path in ("/api/v1/tickets", "/api/v1/tickets", "/api/v1/audit"):
        r = api.get(path)
        assert r.status_code == 401 and r.json()["detail"] == "missing bearer token"
    clock.advance(61)
    bridge.tick()
    [event] = refusals(bridge, "token.missing")
    assert (event.actor, event.outcome) == ("unknown", "failure")
    assert event.detail["count"] == 3
    assert event.detail["requests"] == ["GET /api/v1/tickets", "GET /api/v1/audit"]
    assert refusals(bridge, "token.refused") == []  # a wrong token is another kind


def test_refusals_of_two_tokens_from_one_source_are_told_apart(api, bridge):
    api.get("/api/v1/agents", headers=auth("client-a"))
    api.get("/api/v1/agents", headers=auth("agent"))
    api.get("/api/v1/agents", headers=auth("agent"))
    bridge.close()  # the minute that is not over yet is written at shutdown
    counts = {e.actor: e.detail["count"] for e in refusals(bridge, "role.refused")}
    assert counts == {"it-szpital-a": 1, "agent": 2}


# --- GET /api/v1/audit --------------------------------------------------------------------


@pytest.fixture
def trail(api, bridge, clock):
    """Tickets of both hospitals, an hour apart: ticket.opened events with client and asset."""
    push(api, "srv-a1")
    push(api, "srv-b1")
    clock.advance(3600)
    push(api, "srv-a2")
    return bridge


def listed(api, who="engineer", **params):
    r = api.get("/api/v1/audit", params=params, headers=auth(who))
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize(
    ("who", "status"),
    [("agent", 403), ("agent-a", 403), ("engineer", 200), ("admin", 200), ("client-a", 200)],
)
def test_audit_roles(api, trail, who, status):
    assert api.get("/api/v1/audit", headers=auth(who)).status_code == status


def test_engineers_and_admins_read_every_event_a_hospital_only_its_own(api, trail):
    everything = listed(api, "admin")
    assert {e["client"] for e in everything} == {None, "szpital-a", "klinika-b"}
    assert listed(api, "engineer") == everything
    mine = listed(api, "client-a")
    assert mine and {e["client"] for e in mine} == {"szpital-a"}
    assert {e["asset"] for e in mine if e["action"] == "ticket.opened"} == {"srv-a1", "srv-a2"}
    assert {e["client"] for e in listed(api, "client-b")} == {"klinika-b"}
    # Another hospital's events are not theirs to ask for.
    r = api.get("/api/v1/audit?client=klinika-b", headers=auth("client-a"))
    assert r.status_code == 403
    assert listed(api, "client-a", client="szpital-a") == mine


def test_audit_filters(api, trail):
    opened = listed(api, action="ticket.opened")
    assert [e["asset"] for e in opened] == ["srv-a2", "srv-b1", "srv-a1"]  # newest first
    assert all(e["actor"] == "dyzur" for e in opened)
    assert [e["action"] for e in listed(api, action="config.*")] == ["config.loaded"]
    assert {e["action"].partition(".")[0] for e in listed(api, action="ticket.*")} == {"ticket"}
    assert [e["asset"] for e in listed(api, asset="srv-b1", action="ticket.opened")] == ["srv-b1"]
    assert {e["client"] for e in listed(api, client="klinika-b")} == {"klinika-b"}
    assert [e["action"] for e in listed(api, actor="dyzur", action="config.loaded")] == [
        "config.loaded"
    ]
    assert listed(api, actor="nobody") == []
    # since: a time without an offset is Warsaw's; the last push was an hour after the first.
    half_way = (START + timedelta(minutes=30)).astimezone(WARSAW).replace(tzinfo=None)
    recent = listed(api, since=half_way.isoformat(), action="ticket.opened")
    assert [e["asset"] for e in recent] == ["srv-a2"]
    assert recent[0]["at"] == (START + timedelta(hours=1)).astimezone(WARSAW).isoformat()
    with_offset = listed(api, since=(START + timedelta(minutes=30)).isoformat())
    assert [e["asset"] for e in with_offset if e["action"] == "ticket.opened"] == ["srv-a2"]


def test_audit_pages_by_cursor_in_either_order(api, trail):
    everything = listed(api, "admin", limit=1000)
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids, reverse=True) and len(ids) >= 4
    seen, url = [], "/api/v1/audit?limit=2"
    while url:
        r = api.get(url, headers=auth("admin"))
        seen += [e["id"] for e in r.json()]
        link = r.headers.get("link")
        url = link[1 : link.index(">")] if link else None
    assert seen == ids
    forward = listed(api, "admin", order="oldest", limit=2)
    assert [e["id"] for e in forward] == ids[::-1][:2]
    rest = listed(api, "admin", order="oldest", after=forward[-1]["id"], limit=1000)
    assert [e["id"] for e in rest] == ids[::-1][2:]
    assert listed(api, "admin", after=ids[1]) == everything[2:]  # newest first: older ones


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=yesterday", "query.since"),
        ("since=0001-01-01T00:00:00", "query.since"),
        ("order=sideways", "query.order"),
        ("after=-1", "query.after"),
        ("after=99999999999999999999", "query.after"),
        ("limit=0", "query.limit"),
        ("limit=1001", "query.limit"),
    ],
)
def test_bad_audit_queries_are_422_naming_the_field(api, query, field):
    r = api.get(f"/api/v1/audit?{query}", headers=auth("engineer"))
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == [field]
