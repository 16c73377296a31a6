"""The rota through the real app (a real SQLite store): who is on duty, overrides (audited, 422
naming the field), a hospital token seeing its own hospital only, and a person's calendar feed
parsed back as a calendar program reads it."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

import pytest
from icalendar import Calendar

from bridge.clock import WARSAW
from bridge.config import parse_config
from tests.conftest import TOKENS, auth, config_data

# START is Monday 2026-11-23 10:00 in Warsaw.
PEOPLE = [
    {"id": "anna", "name": "Anna Nowak", "email": "anna@example.pl", "channels": ["mail"]},
    {"id": "bartek", "name": "Bartek Wiśniewski", "email": "b@example.pl", "channels": ["mail"]},
    {"id": "celina", "name": "Celina Zając", "email": "c@example.pl", "channels": ["mail"]},
    {
        "id": "ewa",
        "name": "Ewa Kowalczyk",
        "email": "ewa@example.pl",
        "language": "en",
        "channels": ["mail"],
    },
    {"id": "darek", "name": "Darek Lis", "email": "d@example.pl", "channels": ["mail"]},
]


def oncall_section() -> dict:
    weekly = "FREQ=WEEKLY;INTERVAL=3"
    return {
        "channels": {
            "mail": {
                "kind": "email",
                "url": "smtp://127.0.0.1:2525",
                "tls": "none",
                "from": "dyzur@example.pl",
            }
        },
        "people": PEOPLE,
        "shifts": [
            # A week each, Monday 08:00 to Monday 08:00, rotating among three.
            {"person": "anna", "start": "2026-11-23T08:00", "duration": "7d", "rrule": weekly},
            {"person": "bartek", "start": "2026-11-30T08:00", "duration": "7d", "rrule": weekly},
            {"person": "celina", "start": "2026-12-07T08:00", "duration": "7d", "rrule": weekly},
            # The AMMS specialist over the rotation for AMMS hosts.
            {
                "person": "ewa",
                "start": "2026-11-23T08:00",
                "duration": "7d",
                "rrule": "FREQ=WEEKLY",
                "kinds": ["amms"],
                "priority": 10,
            },
            # Second line, nights only, for Klinika B.
            {
                "person": "darek",
                "start": "2026-11-01T20:00",
                "duration": "12h",
                "rrule": "FREQ=DAILY",
                "rota": "secondary",
                "clients": ["klinika-b"],
            },
        ],
        "escalation": [{"after": "15m", "then": ["rota:secondary"]}],
    }


@pytest.fixture
def loaded(tmp_path):
    data = config_data()
    data["assets"].append({"id": "amms-b1", "client": "klinika-b", "kind": "amms"})
    data["oncall"] = oncall_section()
    return parse_config(data, "test.yaml", tmp_path)


def on_duty(api, who="engineer", **params):
    r = api.get("/api/v1/oncall", params=params, headers=auth(who))
    assert r.status_code == 200, r.text
    return {(d["rota"], d["client"], d["kind"]): d for d in r.json()}


def person(row) -> str | None:
    return None if row["person"] is None else row["person"]["id"]


def test_who_is_on_duty_per_rota_hospital_and_kind(api):
    rows = on_duty(api, at="2026-11-24T03:00", client="klinika-b")
    assert {k: person(v) for k, v in rows.items()} == {
        ("primary", "klinika-b", "server"): "anna",
        ("primary", "klinika-b", "ups"): "anna",
        ("primary", "klinika-b", "amms"): "ewa",
        ("secondary", "klinika-b", "server"): "darek",
        ("secondary", "klinika-b", "ups"): "darek",
        ("secondary", "klinika-b", "amms"): "darek",
    }
    anna = rows[("primary", "klinika-b", "server")]
    assert anna["person"] == {"id": "anna", "name": "Anna Nowak"}
    assert (anna["start"], anna["end"]) == (
        "2026-11-23T08:00:00+01:00",
        "2026-11-30T08:00:00+01:00",
    )
    assert anna["override"] is False
    # Nobody on the second line at noon; a row says so.
    noon = on_duty(api, at="2026-11-24T12:00:00+01:00", client="klinika-b", kind="server")
    assert person(noon[("secondary", "klinika-b", "server")]) is None
    assert noon[("secondary", "klinika-b", "server")]["start"] is None
    # Without at: now (the bridge's clock), in week one of the rotation.
    assert person(on_duty(api, client="szpital-a")[("primary", "szpital-a", "server")]) == "anna"


def test_a_hospital_token_sees_its_own_hospital_only(api):
    rows = on_duty(api, "client-a", at="2026-12-01T03:00")
    assert {client for _, client, _ in rows} == {"szpital-a"}
    assert person(rows[("primary", "szpital-a", "server")]) == "bartek"
    r = api.get("/api/v1/oncall", params={"client": "klinika-b"}, headers=auth("client-a"))
    assert r.status_code == 403


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"client": "szpital-x"}, "client: unknown client 'szpital-x'"),
        ({"kind": "toaster"}, "query.kind"),
        ({"at": "jutro"}, "query.at"),
    ],
)
def test_a_bad_question_is_422_naming_the_field(api, params, field):
    r = api.get("/api/v1/oncall", params=params, headers=auth("engineer"))
    assert r.status_code == 422
    assert field in r.json()["detail"]


SWAP = {
    "shift_person": "anna",
    "person": "celina",
    "start": "2026-11-24T20:00",
    "end": "2026-11-25T08:00",
    "reason": "Anna chora (L4)",
}


def test_an_override_moves_the_duty_and_is_audited_with_who_and_why(api):
    r = api.post("/api/v1/oncall/overrides", json=SWAP, headers=auth("engineer"))
    assert r.status_code == 201, r.text
    kept = r.json()
    assert kept["created_by"] == "jan.kowalski" and kept["rota"] == "primary"
    assert (kept["start"], kept["end"]) == (
        "2026-11-24T20:00:00+01:00",
        "2026-11-25T08:00:00+01:00",
    )
    night = on_duty(api, at="2026-11-25T03:00")
    for client in ("szpital-a", "klinika-b"):
        row = night[("primary", client, "server")]
        assert person(row) == "celina" and row["override"] is True
        assert (row["start"], row["end"]) == (kept["start"], kept["end"])
    # AMMS hosts stay with ewa: the override hands anna's duty, not ewa's.
    assert person(night[("primary", "klinika-b", "amms")]) == "ewa"
    assert person(on_duty(api, at="2026-11-25T08:00")[("primary", "szpital-a", "server")]) == "anna"

    r = api.get("/api/v1/audit", params={"action": "oncall.override"}, headers=auth("admin"))
    [event] = r.json()
    assert event["actor"] == "jan.kowalski"
    assert event["detail"] == {
        "override": kept["id"],
        "rota": "primary",
        "shift_person": "anna",
        "person": "celina",
        "start": "2026-11-24T20:00:00+01:00",
        "end": "2026-11-25T08:00:00+01:00",
        "reason": "Anna chora (L4)",
    }


def test_a_swap_by_mistake_is_undone_by_handing_the_duty_back(api):
    """The later override wins: anna taking her own duty back for the period undoes the swap
    (a mistaken swap would otherwise page celina all night)."""
    r = api.post("/api/v1/oncall/overrides", json=SWAP, headers=auth("engineer"))
    assert r.status_code == 201, r.text
    back = {**SWAP, "person": "anna", "reason": "pomyłka: Anna jednak dyżuruje"}
    r = api.post("/api/v1/oncall/overrides", json=back, headers=auth("engineer"))
    assert r.status_code == 201, r.text
    night = on_duty(api, at="2026-11-25T03:00")
    for client in ("szpital-a", "klinika-b"):
        assert person(night[("primary", client, "server")]) == "anna"
    r = api.get("/api/v1/audit", params={"action": "oncall.override"}, headers=auth("admin"))
    assert [e["detail"]["person"] for e in r.json()] == ["anna", "celina"]  # newest first


def test_an_override_for_one_hospital_leaves_the_others(api):
    body = {**SWAP, "client": "klinika-b"}
    r = api.post("/api/v1/oncall/overrides", json=body, headers=auth("admin"))
    assert r.status_code == 201, r.text
    night = on_duty(api, at="2026-11-25T03:00")
    assert person(night[("primary", "klinika-b", "server")]) == "celina"
    assert person(night[("primary", "szpital-a", "server")]) == "anna"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"person": "zenon"}, "person: unknown person 'zenon'"),
        ({"shift_person": "zenon"}, "shift_person: unknown person 'zenon'"),
        ({"end": "2026-11-24T19:00"}, "end: must be after start"),
        ({"start": "2026-11-20T08:00", "end": "2026-11-21T08:00"}, "end: 2026-11-21 08:00 is"),
        ({"end": "2027-03-24T20:00"}, "end: an override lasts at most 92 days"),
        ({"client": "szpital-x"}, "client: unknown client 'szpital-x'"),
        ({"rota": "third"}, "rota: no shift is in rota 'third' (rotas: primary, secondary)"),
        ({"reason": "   "}, "reason: say why"),
        # Bartek's week begins on 30 November: nothing of his to hand over on the 24th.
        (
            {"shift_person": "bartek", "person": "anna"},
            "shift_person: 'bartek' has no shift in rota primary from 2026-11-24 20:00 to "
            "2026-11-25 08:00; nothing to hand over",
        ),
        ({"start": "2026-11-24T20:00", "extra": 1}, "body.extra"),
        ({"start": "3026-11-24T20:00"}, "body.start"),
    ],
)
def test_a_refused_override_is_422_naming_the_field_and_changes_nothing(api, change, expected):
    r = api.post("/api/v1/oncall/overrides", json={**SWAP, **change}, headers=auth("engineer"))
    assert r.status_code == 422, r.text
    assert expected in r.json()["detail"]
    assert person(on_duty(api, at="2026-11-25T03:00")[("primary", "szpital-a", "server")]) == "anna"
    r = api.get("/api/v1/audit", params={"action": "oncall.override"}, headers=auth("admin"))
    assert r.json() == []


def test_only_engineers_and_admins_hand_shifts_over(api):
    r = api.post("/api/v1/oncall/overrides", json=SWAP, headers=auth("client-a"))
    assert r.status_code == 403
    assert person(on_duty(api, at="2026-11-25T03:00")[("primary", "szpital-a", "server")]) == "anna"


def basic(who: str) -> dict[str, str]:
    token = base64.b64encode(f"calendar:{TOKENS[who]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def events(body: bytes) -> list:
    return sorted(Calendar.from_ical(body).walk("VEVENT"), key=lambda e: e.decoded("DTSTART"))


def test_a_persons_calendar_feed_shows_their_duty_with_overrides(api):
    r = api.post("/api/v1/oncall/overrides", json=SWAP, headers=auth("engineer"))
    assert r.status_code == 201
    r = api.get("/api/v1/oncall/celina.ics", headers=basic("engineer"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/calendar")
    found = events(r.content)
    # The override first, then her own weeks every three weeks, 08:00 Warsaw wall-clock time.
    first = found[0]
    assert first.decoded("DTSTART") == datetime(2026, 11, 24, 20, 0, tzinfo=WARSAW)
    assert first.decoded("DTEND") == datetime(2026, 11, 25, 8, 0, tzinfo=WARSAW)
    assert first["DTSTART"].params["TZID"] == "Europe/Warsaw"
    assert "Anna chora (L4)" in str(first["DESCRIPTION"])
    assert "anna" in str(first["DESCRIPTION"])
    weeks = [e.decoded("DTSTART") for e in found[1:]]
    assert weeks[:3] == [
        datetime(2026, 12, 7, 8, 0, tzinfo=WARSAW),
        datetime(2026, 12, 28, 8, 0, tzinfo=WARSAW),
        datetime(2027, 1, 18, 8, 0, tzinfo=WARSAW),
    ]
    assert str(found[1]["SUMMARY"]) == "Dyżur (primary): wszyscy klienci"
    # Anna's week shows without the night she handed over.
    anna = events(api.get("/api/v1/oncall/anna.ics", headers=auth("engineer")).content)
    assert [(e.decoded("DTSTART"), e.decoded("DTEND")) for e in anna[:2]] == [
        (
            datetime(2026, 11, 23, 8, 0, tzinfo=WARSAW),
            datetime(2026, 11, 24, 20, 0, tzinfo=WARSAW),
        ),
        (
            datetime(2026, 11, 25, 8, 0, tzinfo=WARSAW),
            datetime(2026, 11, 30, 8, 0, tzinfo=WARSAW),
        ),
    ]


def test_the_feed_is_in_the_persons_language_and_names_the_coverage(api):
    r = api.get("/api/v1/oncall/ewa.ics", headers=auth("admin"))
    [first, *_] = events(r.content)
    assert str(first["SUMMARY"]) == "On call (primary): all clients; asset kinds: amms"
    darek = events(api.get("/api/v1/oncall/darek.ics", headers=auth("admin")).content)
    assert str(darek[0]["SUMMARY"]) == "Dyżur (secondary): Klinika B"
    start, end = darek[0].decoded("DTSTART"), darek[0].decoded("DTEND")
    assert end - start == timedelta(hours=12)
    # Nights from two weeks before the clock (10:00 on 2026-11-23) to four months after it.
    assert start == datetime(2026, 11, 9, 20, 0, tzinfo=WARSAW)
    assert darek[-1].decoded("DTSTART") == datetime(2027, 3, 22, 20, 0, tzinfo=WARSAW)
    assert len(darek) == 134


def test_the_feed_is_for_engineers_and_names_only_known_people(api):
    assert api.get("/api/v1/oncall/anna.ics", headers=basic("client-a")).status_code == 403
    assert api.get("/api/v1/oncall/anna.ics").status_code == 401
    r = api.get("/api/v1/oncall/zenon.ics", headers=auth("engineer"))
    assert r.status_code == 404
    assert "zenon" in r.json()["detail"]
