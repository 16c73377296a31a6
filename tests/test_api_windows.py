"""The windows API and the calendar feed over HTTP: roles, Warsaw times, conflicts, errors."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from icalendar import Calendar

from bridge.clock import WARSAW
from bridge.config import LoadedConfig, parse_config
from tests.conftest import TOKENS, auth, config_data, free_port
from tests.test_lifecycle import disk

WINDOW = {
    "client": "szpital-a",
    "start": "2026-11-24T22:00:00",  # no offset: Europe/Warsaw
    "end": "2026-11-25T02:00:00",
    "reason": "aktualizacja bazy danych",
    "assets": ["srv-a1"],
}


def test_an_engineer_plans_a_window_shown_in_warsaw_time(api):
    r = api.post("/api/v1/windows", json=WINDOW, headers=auth("engineer"))
    assert r.status_code == 201, r.text
    w = r.json()
    assert w["id"] == "OS-2026-0001" and w["created_by"] == "jan.kowalski"
    assert w["start"] == "2026-11-24T22:00:00+01:00" and w["end"] == "2026-11-25T02:00:00+01:00"
    assert w["assets"] == ["srv-a1"] and w["active"] is False
    assert w["next_start"] == w["start"]
    shown = api.get(f"/api/v1/windows/{w['id']}", headers=auth("engineer")).json()
    assert shown["alerts"] == []


def test_an_overlapping_window_gets_409_naming_the_other(api):
    first = api.post("/api/v1/windows", json=WINDOW, headers=auth("engineer")).json()
    again = {**WINDOW, "start": "2026-11-25T01:00:00+01:00", "end": "2026-11-25T03:00:00+01:00"}
    r = api.post("/api/v1/windows", json=again, headers=auth("engineer"))
    assert r.status_code == 409
    assert r.json()["conflicts_with"] == first["id"] and first["id"] in r.json()["detail"]


def test_bad_windows_get_a_4xx_naming_the_field(api):
    cases = [
        ({**WINDOW, "end": "2026-11-24T21:00:00"}, 422, "end"),
        ({**WINDOW, "start": "jutro"}, 422, "body.start"),
        ({**WINDOW, "colour": "red"}, 422, "body.colour"),
        ({**WINDOW, "selector": "room=5", "assets": []}, 422, "selector"),
        ({**WINDOW, "rrule": "FREQ=NEVER"}, 422, "rrule"),
    ]
    for body, status, field in cases:
        r = api.post("/api/v1/windows", json=body, headers=auth("engineer"))
        assert r.status_code == status, (body, r.text)
        assert field in r.text
    r = api.post(
        "/api/v1/windows",
        content=b"{not json",
        headers={**auth("engineer"), "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("malformed JSON")  # as /samples
    assert api.get("/api/v1/windows", headers=auth("engineer")).json() == []


@pytest.mark.parametrize(
    ("selector", "msg"),
    [
        ("room=5", "unknown key 'room' (known: "),
        ("environment", "expected key=value, got 'environment'"),
    ],
)
def test_a_bad_selector_is_422_naming_the_field(amms_api, selector, msg):
    window = {**WINDOW, "selector": selector, "assets": []}
    update = {**PLAN, "selector": selector}
    for path, body in [("/api/v1/windows", window), ("/api/v1/updates", update)]:
        r = amms_api.post(path, json=body, headers=auth("engineer"))
        assert r.status_code == 422, r.text
        [error] = r.json()["errors"]
        assert error["field"] == "body.selector" and msg in error["msg"], error


def test_only_engineers_and_admins_plan_and_cancel(api):
    for who in ("client-a", "agent"):
        r = api.post("/api/v1/windows", json=WINDOW, headers=auth(who))
        assert r.status_code == 403
    w = api.post("/api/v1/windows", json=WINDOW, headers=auth("admin")).json()
    r = api.post(f"/api/v1/windows/{w['id']}/cancel", headers=auth("client-a"))
    assert r.status_code == 403
    r = api.post(f"/api/v1/windows/{w['id']}/cancel", headers=auth("engineer"))
    assert r.status_code == 200 and r.json()["cancelled_by"] == "jan.kowalski"
    listed = api.get("/api/v1/windows", headers=auth("engineer")).json()
    assert listed == []
    listed = api.get("/api/v1/windows?include_cancelled=true", headers=auth("engineer")).json()
    assert [x["id"] for x in listed] == [w["id"]]


def test_a_hospital_sees_only_its_own_windows(api):
    a = api.post("/api/v1/windows", json=WINDOW, headers=auth("engineer")).json()
    b = api.post(
        "/api/v1/windows",
        json={**WINDOW, "client": "klinika-b", "assets": ["srv-b1"]},
        headers=auth("engineer"),
    ).json()
    mine = api.get("/api/v1/windows", headers=auth("client-a")).json()
    assert [w["id"] for w in mine] == [a["id"]]
    assert api.get(f"/api/v1/windows/{b['id']}", headers=auth("client-a")).status_code == 404
    r = api.get("/api/v1/windows?client=klinika-b", headers=auth("client-a"))
    assert r.status_code == 403


def _events(body: bytes) -> dict[str, object]:
    calendar = Calendar.from_ical(body)
    return {str(e["UID"]): e for e in calendar.walk("VEVENT")}


def test_the_calendar_feed_per_role(api):
    a = api.post(
        "/api/v1/windows",
        json={**WINDOW, "rrule": "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU"},
        headers=auth("engineer"),
    ).json()
    b = api.post(
        "/api/v1/windows",
        json={**WINDOW, "client": "klinika-b", "assets": ["srv-b1"]},
        headers=auth("engineer"),
    ).json()
    r = api.get("/api/v1/calendar.ics", headers=auth("engineer"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/calendar")
    events = _events(r.content)
    assert set(events) == {f"{a['id']}@dyzur", f"{b['id']}@dyzur"}
    mine = events[f"{a['id']}@dyzur"]
    assert mine.decoded("DTSTART").isoformat() == "2026-11-24T22:00:00+01:00"
    assert str(mine["DTSTART"].params["TZID"]) == "Europe/Warsaw"
    assert mine["RRULE"].to_ical() == b"FREQ=WEEKLY;INTERVAL=2;BYDAY=TU"
    assert str(mine["SUMMARY"]) == "Okno serwisowe: aktualizacja bazy danych (Szpital A)"
    # a hospital, subscribed with user name and password as calendar programs do
    basic = base64.b64encode(f"szpital:{TOKENS['client-a']}".encode()).decode()
    r = api.get("/api/v1/calendar.ics", headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 200 and set(_events(r.content)) == {f"{a['id']}@dyzur"}
    wrong = base64.b64encode(b"szpital:nope").decode()
    r = api.get("/api/v1/calendar.ics", headers={"Authorization": f"Basic {wrong}"})
    assert r.status_code == 401
    assert api.get("/api/v1/calendar.ics").status_code == 401
    assert api.get("/api/v1/calendar.ics", headers=auth("agent")).status_code == 403


# --- times a datetime cannot hold in Warsaw, durations beyond reason: 422 naming the field -

AMMS = [
    {"id": "amms-a-test", "client": "szpital-a", "kind": "amms", "environment": "test"},
    {"id": "amms-a-prod", "client": "szpital-a", "kind": "amms", "environment": "prod"},
    {"id": "amms-b-prod", "client": "klinika-b", "kind": "amms", "environment": "prod"},
]


def config_with_amms(tmp_path: Path) -> LoadedConfig:
    """The tests' config with AMMS hosts and ssh settings, so that updates can be planned (their
    runbooks never run without the ticker)."""
    data = config_data()
    ssh = {"host": "127.0.0.1", "port": free_port()}
    data["assets"] += [{**asset, "ssh": ssh} for asset in AMMS]
    data["ssh"] = {"known_hosts": "known_hosts", "key_file": "id_ed25519"}
    (tmp_path / "id_ed25519").write_text("")
    return parse_config(data, "test.yaml", tmp_path)


@pytest.fixture
def amms_api(tmp_path, store, clock):
    from fastapi.testclient import TestClient

    from bridge.api import create_app
    from bridge.service import Bridge

    bridge = Bridge(config_with_amms(tmp_path), store=store, clock=clock)
    with TestClient(create_app(bridge, run_ticker=False)) as client:
        yield client
    bridge.close()


OUT_OF_REACH = [
    # Without an offset these are Warsaw times, which UTC cannot hold.
    ("0001-01-01T00:00:00", "0001-01-01T02:00:00"),
    ("9999-12-31T22:00:00", "9999-12-31T23:59:59"),
    ("9999-12-31T22:00:00+01:00", "9999-12-31T23:00:00+01:00"),
    ("1969-12-31T10:00:00Z", "1969-12-31T12:00:00Z"),
]


@pytest.mark.parametrize(("start", "end"), OUT_OF_REACH)
def test_a_window_in_year_1_or_9999_is_422_naming_the_field(api, start, end):
    r = api.post("/api/v1/windows", json={**WINDOW, "start": start}, headers=auth("engineer"))
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["body.start"]
    r = api.post(
        "/api/v1/windows", json={**WINDOW, "start": start, "end": end}, headers=auth("engineer")
    )
    assert [e["field"] for e in r.json()["errors"]] == ["body.start", "body.end"]
    assert api.get("/api/v1/windows", headers=auth("engineer")).json() == []
    ok = {**WINDOW, "start": "2999-12-31T20:00:00", "end": "2999-12-31T23:00:00"}
    r = api.post("/api/v1/windows", json=ok, headers=auth("engineer"))
    assert r.status_code == 201 and r.json()["end"] == "2999-12-31T23:00:00+01:00"


PLAN = {
    "client": "klinika-b",
    "target_version": "7.4.0",
    "prod_window": {"start": "2026-12-01T22:00:00", "end": "2026-12-02T02:00:00"},
    "runbook": {"update": ["true"]},
    "without_test_stage": True,
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        *[
            ({"prod_window": {"start": start, "end": end}}, "body.prod_window.start")
            for start, end in OUT_OF_REACH
        ],
        ({"soak": 1e300}, "body.soak"),
        ({"soak": "15d"}, "body.soak"),
        ({"runbook": {"update": [{"command": "true", "timeout": 1e300}]}}, "timeout"),
        ({"target_version": "7.4 final"}, "body.target_version"),
    ],
)
def test_an_update_out_of_reach_is_422_naming_the_field(amms_api, change, field):
    r = amms_api.post("/api/v1/updates", json={**PLAN, **change}, headers=auth("engineer"))
    assert r.status_code == 422, r.text
    assert field in r.json()["errors"][0]["field"]
    assert amms_api.get("/api/v1/updates", headers=auth("engineer")).json() == []
    r = amms_api.post("/api/v1/updates", json=PLAN, headers=auth("engineer"))
    assert r.status_code == 201, r.text
    assert r.json()["stages"][0]["end"] == "2026-12-02T02:00:00+01:00"


def test_an_update_overlapping_a_window_names_it(amms_api):
    window = {**WINDOW, "client": "klinika-b", "assets": ["amms-b-prod"]}
    w = amms_api.post("/api/v1/windows", json=window, headers=auth("engineer")).json()
    plan = {**PLAN, "prod_window": {"start": window["start"], "end": window["end"]}}
    r = amms_api.post("/api/v1/updates", json=plan, headers=auth("engineer"))
    assert r.status_code == 409
    assert r.json()["conflicts_with"] == w["id"] and w["id"] in r.json()["detail"]


# --- a recurring window's start, ended windows, the alerts recorded against a window ----------


def test_a_start_off_its_rrule_is_422_naming_the_rules_first_occurrence(api):
    # 24 November 2026 is a Tuesday; the rule says Wednesdays
    r = api.post(
        "/api/v1/windows",
        json={**WINDOW, "rrule": "FREQ=WEEKLY;BYDAY=WE"},
        headers=auth("engineer"),
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == (
        "start: Tuesday 2026-11-24T22:00:00+01:00 is not an occurrence of rrule "
        "FREQ=WEEKLY;BYDAY=WE; its first occurrence would be Wednesday "
        "2026-11-25T22:00:00+01:00 to 2026-11-26T02:00:00+01:00: plan that start and end, "
        "or change rrule"
    )
    assert api.get("/api/v1/windows", headers=auth("engineer")).json() == []
    # the Tuesday night stays free for a one-off window
    r = api.post("/api/v1/windows", json=WINDOW, headers=auth("engineer"))
    assert r.status_code == 201, r.text


def test_a_window_whose_last_occurrence_is_over_is_ended(api, clock):
    one_off = api.post("/api/v1/windows", json=WINDOW, headers=auth("engineer")).json()
    twice = {**WINDOW, "assets": ["srv-a2"], "rrule": "FREQ=WEEKLY;COUNT=2"}
    twice = api.post("/api/v1/windows", json=twice, headers=auth("engineer")).json()
    assert not one_off["ended"] and not twice["ended"]

    clock.set(datetime(2026, 11, 25, 1, 0, tzinfo=UTC))  # 02:00 in Warsaw: the first night over
    listed = {w["id"]: w for w in api.get("/api/v1/windows", headers=auth("engineer")).json()}
    assert listed[one_off["id"]]["ended"] and listed[one_off["id"]]["next_start"] is None
    assert not listed[twice["id"]]["ended"] and not listed[twice["id"]]["active"]
    assert listed[twice["id"]]["next_start"] == "2026-12-01T22:00:00+01:00"

    clock.set(datetime(2026, 12, 2, 1, 0, tzinfo=UTC))  # the second and last night over
    shown = api.get(f"/api/v1/windows/{twice['id']}", headers=auth("engineer")).json()
    assert shown["ended"] and shown["next_start"] is None


def test_the_alerts_recorded_against_a_window_show_their_labels(api, bridge):
    now = bridge.clock.now().astimezone(WARSAW).replace(tzinfo=None)
    body = {
        **WINDOW,
        "start": now.isoformat(),
        "end": (now + timedelta(hours=2)).isoformat(),
    }
    w = api.post("/api/v1/windows", json=body, headers=auth("engineer")).json()
    disk(bridge, 0.95, mountpoint="/var")
    disk(bridge, 0.97, mountpoint="/data")  # the same rule on the same host, another disk
    shown = api.get(f"/api/v1/windows/{w['id']}", headers=auth("engineer")).json()
    alerts = {a["labels"]["mountpoint"]: a for a in shown["alerts"]}
    assert set(alerts) == {"/var", "/data"}
    assert {a["rule"] for a in shown["alerts"]} == {"disk_usage"}
    assert {a["asset"] for a in shown["alerts"]} == {"srv-a1"}
    assert alerts["/data"]["value"] == 0.97 and alerts["/var"]["value"] == 0.95


def test_a_window_of_an_update_plan_is_cancelled_only_with_its_plan(amms_api):
    p = amms_api.post("/api/v1/updates", json=PLAN, headers=auth("engineer")).json()
    plan, window = p["id"], p["stages"][0]["window"]
    r = amms_api.post(f"/api/v1/windows/{window}/cancel", headers=auth("engineer"))
    assert r.status_code == 409 and r.json()["conflicts_with"] == plan
    assert r.json()["detail"] == (
        f"window {window} is a stage of update plan {plan}; cancel the plan instead: "
        f"dyzur update cancel {plan} --reason ... (POST /api/v1/updates/{plan}/cancel)"
    )
    shown = amms_api.get(f"/api/v1/windows/{window}", headers=auth("engineer")).json()
    assert shown["cancelled_at"] is None and shown["plan"] == plan
    r = amms_api.post(
        f"/api/v1/updates/{plan}/cancel", json={"reason": "dostawca wycofał wersję"},
        headers=auth("engineer"),
    )  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    shown = amms_api.get(f"/api/v1/windows/{window}", headers=auth("engineer")).json()
    assert shown["cancelled_by"] == "jan.kowalski"
