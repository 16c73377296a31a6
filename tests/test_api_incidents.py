"""Incidents seen from outside (issue 18, item 6 and the split of item 4), through the API of a
bridge on a real store with a fixed clock: GET /api/v1/incidents and /incidents/held scoped
like tickets, POST /api/v1/tickets/{number}/split, and a ticket's incident."""

from __future__ import annotations

import pytest

from bridge.clock import local_iso
from bridge.config import parse_config
from bridge.models import Category
from tests.conftest import auth
from tests.test_incidents import (
    SERVERS,
    disk,
    heartbeat,
    incident_config,
    on_battery,
    push,
    step,
    ups_battery_cycle,
)

HOSTS = [f"host-{i}" for i in range(8)]


@pytest.fixture
def loaded(tmp_path):
    """Klinika B's UPS, switch, servers and AMMS hosts (tests/test_incidents.py), and Szpital
    A's hosts (no "agent silent" for them) with a storm budget of 3 tickets per 10 minutes."""
    data = incident_config(storm={"tickets": 3, "period": "10m", "quiet": "5m"})
    data["assets"] += [{"id": h, "client": "szpital-a", "reports": False} for h in HOSTS]
    return parse_config(data, "test.yaml", tmp_path)


def incidents(api, who: str = "engineer", **query: str) -> list[dict]:
    r = api.get("/api/v1/incidents", params=query, headers=auth(who))
    assert r.status_code == 200, r.text
    return r.json()


def held(api, who: str = "engineer", **query: str) -> list[dict]:
    r = api.get("/api/v1/incidents/held", params=query, headers=auth(who))
    assert r.status_code == 200, r.text
    return r.json()


def split(api, number: str, body: object, who: str = "engineer"):
    return api.post(f"/api/v1/tickets/{number}/split", json=body, headers=auth(who))


def storm(bridge) -> None:
    """Szpital A: eight disks fill up at once; three open tickets, five join the storm."""
    for h in HOSTS:
        disk(bridge, h, 0.95)


def test_an_incident_lists_its_root_and_the_servers_attached_to_it(api, bridge, clock):
    ups_battery_cycle(bridge, clock)
    [incident] = incidents(api)
    ticket = incident["ticket"]
    assert (ticket["client"], ticket["asset"], ticket["category"]) == (
        "klinika-b",
        "ups-1",
        "awaria",
    )
    assert ticket["status"] == "open" and ticket["reaction_due"] is not None
    assert (incident["kind"], incident["root"], incident["explains"]) == ("dependency", "ups-1", [])
    # the UPS's own alert (its power group's ticket) and the five servers behind it
    attached = incident["attached"]
    assert sorted((a["asset"], a["rule"], a["reason"]) for a in attached) == [
        *[(s, "agent_silent", "dependency") for s in SERVERS],
        ("ups-1", "ups_on_battery", "group"),
    ]
    assert {a["state"] for a in attached} == {"attached"}
    assert all(a["fingerprint"] and a["own_ticket"] is None for a in attached)
    assert all(a["recovered_at"] is None for a in attached)
    assert incident["counts"] == {"firing": 6, "recovered": 0, "released": 0}
    # the root's own ticket is part of no other incident
    detail = api.get(f"/api/v1/tickets/{ticket['number']}", headers=auth("engineer")).json()
    assert detail["incident"] is None
    # one server reports again: its alert recovered, the others still fire
    heartbeat(bridge, ["srv-1"])
    [incident] = incidents(api)
    assert incident["counts"] == {"firing": 5, "recovered": 1, "released": 0}
    [srv1] = [a for a in incident["attached"] if a["asset"] == "srv-1"]
    assert srv1["state"] == "recovered" and srv1["recovered_at"] is not None


def test_alerts_held_for_their_root_are_listed_until_it_claims_them(api, bridge, clock):
    heartbeat(bridge, SERVERS)
    step(bridge, clock, 270)
    on_battery(bridge)  # pending: it fires after a minute on battery
    step(bridge, clock, 30)  # the servers silent for 5 minutes: "agent silent" held
    found = held(api)
    assert sorted(h["asset"] for h in found) == SERVERS
    assert {(h["client"], h["rule"]) for h in found} == {("klinika-b", "agent_silent")}
    assert all(h["waiting_for"] == ["sw-1", "ups-1"] for h in found)
    assert all(h["held_until"] is not None and h["fingerprint"] for h in found)
    assert incidents(api) == []  # no ticket yet
    # scoped like tickets
    assert held(api, "client-a") == []
    assert len(held(api, "client-b")) == 5
    assert held(api, client="szpital-a") == []
    r = api.get("/api/v1/incidents/held?client=klinika-b", headers=auth("client-a"))
    assert r.status_code == 403
    # the UPS's alert fires: they are attached to its ticket, none held
    step(bridge, clock, 30)
    on_battery(bridge)
    assert held(api) == []
    [incident] = incidents(api)
    assert sum(a["reason"] == "dependency" for a in incident["attached"]) == 5


def test_a_ticket_explained_by_a_later_root_names_it_and_is_listed_by_it(api, bridge, clock):
    heartbeat(bridge, ["ups-1", "sw-1"])
    disk(bridge, "srv-4", 0.95)
    step(bridge, clock, 91)  # not claimed within the settle time: its own ticket
    heartbeat(bridge, ["ups-1", "sw-1"])
    step(bridge, clock, 1)
    [own] = api.get("/api/v1/tickets?status=open", headers=auth("engineer")).json()
    on_battery(bridge)
    step(bridge, clock, 60)
    on_battery(bridge)
    [incident] = incidents(api)
    root = incident["ticket"]["number"]
    assert root != own["number"]
    assert (incident["kind"], incident["root"]) == ("dependency", "ups-1")
    assert [a["reason"] for a in incident["attached"]] == ["group"]  # the UPS's own alert
    assert incident["explains"] == [own["number"]]
    detail = api.get(f"/api/v1/tickets/{own['number']}", headers=auth("client-b"))
    assert detail.status_code == 200 and detail.json()["incident"] == root
    # the explained ticket resolves: still part of the incident
    disk(bridge, "srv-4", 0.5)
    detail = api.get(f"/api/v1/tickets/{own['number']}", headers=auth("engineer")).json()
    assert detail["status"] == "resolved"
    assert incidents(api)[0]["explains"] == [own["number"]]


def test_a_group_ticket_is_an_incident_once_a_second_alert_joins(api, bridge, clock):
    on_battery(bridge)
    step(bridge, clock, 60)
    on_battery(bridge)
    assert incidents(api) == []  # one alert, one ticket: no incident
    push(bridge, "dyzur_ups_battery_low", "ups-1", 1)
    [incident] = incidents(api)
    assert (incident["kind"], incident["root"]) == ("group", "ups-1")
    assert sorted(a["rule"] for a in incident["attached"]) == ["ups_battery_low", "ups_on_battery"]
    assert {a["reason"] for a in incident["attached"]} == {"group"}
    assert incident["counts"] == {"firing": 2, "recovered": 0, "released": 0}


def test_each_hospital_sees_only_its_own_incidents_and_never_splits_anothers(api, bridge, clock):
    ups_battery_cycle(bridge, clock)  # klinika-b
    storm(bridge)  # szpital-a
    both = incidents(api)
    assert [(i["ticket"]["client"], i["kind"]) for i in both] == [
        ("klinika-b", "dependency"),
        ("szpital-a", "storm"),
    ]
    assert [i["kind"] for i in incidents(api, "client-a")] == ["storm"]
    assert [i["kind"] for i in incidents(api, "client-b")] == ["dependency"]
    assert [i["kind"] for i in incidents(api, client="klinika-b")] == ["dependency"]
    r = api.get("/api/v1/incidents?client=klinika-b", headers=auth("client-a"))
    assert r.status_code == 403
    # Szpital A's token may not split Klinika B's ticket, nor learn that it exists
    ups = both[0]
    number = ups["ticket"]["number"]
    [fingerprint, *_] = [a["fingerprint"] for a in ups["attached"] if a["asset"] == "srv-1"]
    r = split(api, number, {"alert": fingerprint}, "client-a")
    assert r.status_code == 404 and number in r.json()["detail"]
    # Klinika B's own token is read-only, the agent's may not either
    assert split(api, number, {"alert": fingerprint}, "client-b").status_code == 403
    assert split(api, number, {"alert": fingerprint}, "agent").status_code == 403
    assert incidents(api, client="klinika-b")[0]["counts"]["firing"] == 6
    assert len(api.get("/api/v1/tickets?client=klinika-b", headers=auth("admin")).json()) == 1


def test_a_storm_member_split_out_keeps_the_deadline_of_its_first_firing(api, bridge, clock):
    storm(bridge)
    [incident] = incidents(api, client="szpital-a")
    assert (incident["kind"], incident["root"]) == ("storm", None)
    assert incident["ticket"]["asset"] == "" and incident["ticket"]["rule"] == "alert_storm"
    attached = incident["attached"]
    assert [a["asset"] for a in attached] == HOSTS[3:]
    assert {(a["state"], a["reason"]) for a in attached} == {("attached", "storm")}
    member = attached[1]
    clock.advance(120)  # the engineer splits it two minutes later
    r = split(api, incident["ticket"]["number"], {"alert": member["fingerprint"]})
    assert r.status_code == 201, r.text
    ticket = r.json()
    assert (ticket["asset"], ticket["rule"], ticket["status"]) == (
        member["asset"],
        "disk_usage",
        "open",
    )
    # the reaction deadline runs from the alert's first firing, not from the split
    fired = bridge.store.incident_alerts(fingerprint=member["fingerprint"])[0].fired_at
    due = bridge.lifecycle.deadline("szpital-a", Category.USTERKA, fired).due
    late = bridge.lifecycle.deadline("szpital-a", Category.USTERKA, clock.now()).due
    assert ticket["reaction_due"] == local_iso(due) != local_iso(late)
    assert "incident_split" in [e["kind"] for e in ticket["timeline"]]
    # the storm lists it as released into that ticket
    [incident] = incidents(api, client="szpital-a")
    [released] = [a for a in incident["attached"] if a["fingerprint"] == member["fingerprint"]]
    assert (released["state"], released["own_ticket"]) == ("released", ticket["number"])
    assert incident["counts"] == {"firing": 4, "recovered": 0, "released": 1}
    # audited with the engineer's token name
    [event] = [e for e in bridge.store.audit_events() if e.action == "incident.alert_split"]
    assert event.actor == "jan.kowalski" and event.asset == member["asset"]
    # split again: it is no longer a firing attached alert of the storm
    again = split(api, incident["ticket"]["number"], {"alert": member["fingerprint"]})
    assert again.status_code == 404


def test_a_split_names_what_it_did_not_find_or_the_field_it_refused(api, bridge):
    storm(bridge)
    [incident] = incidents(api, client="szpital-a")
    number = incident["ticket"]["number"]
    r = split(api, number, {"alert": "0123456789abcdef"})
    assert r.status_code == 404 and "0123456789abcdef" in r.json()["detail"]
    r = split(api, "DZ-2026-999999", {"alert": incident["attached"][0]["fingerprint"]})
    assert r.status_code == 404 and "DZ-2026-999999" in r.json()["detail"]
    for body in ({}, {"fingerprint": "x"}, {"alert": ""}, {"alert": 7}):
        r = split(api, number, body)
        assert r.status_code == 422, body
        assert "body.alert" in [e["field"] for e in r.json()["errors"]], r.json()
    assert incidents(api, client="szpital-a")[0]["counts"]["firing"] == 5
