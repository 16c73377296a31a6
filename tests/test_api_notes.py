"""An engineer's note on a ticket (POST /api/v1/tickets/{number}/notes, and the optional note of
POST .../resolve), and the bridge's INFO lines for tickets and maintenance windows; in process,
on a real SQLite store with a fixed clock."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

import pytest

from bridge.errors import Invalid
from tests.conftest import auth
from tests.test_api import push, sample


@pytest.fixture
def number(api) -> str:
    """An open ticket of szpital-a."""
    assert push(api, [sample("srv-a1")]).status_code == 200
    [ticket] = api.get("/api/v1/tickets?client=szpital-a", headers=auth("engineer")).json()
    return ticket["number"]


def timeline(api, number: str) -> list[dict]:
    return api.get(f"/api/v1/tickets/{number}", headers=auth("engineer")).json()["timeline"]


def audit(api, action: str) -> list[dict]:
    return api.get(f"/api/v1/audit?action={action}", headers=auth("admin")).json()


def test_an_engineer_writes_a_note_on_the_timeline_audited_by_name(api, number):
    text = "Dzwoniłem do szpitala: dysk czyszczą w nocy — zostawiam otwarte."
    r = api.post(f"/api/v1/tickets/{number}/notes", json={"text": text}, headers=auth("engineer"))
    assert r.status_code == 201, r.text
    ticket = r.json()
    assert ticket["status"] == "open" and ticket["responded_at"] is None  # nothing else changes
    last = ticket["timeline"][-1]
    assert (last["kind"], last["message"], last["actor"]) == ("note", text, "jan.kowalski")
    assert timeline(api, number)[-1] == last
    [event] = audit(api, "ticket.note")
    assert event["actor"] == "jan.kowalski" and event["client"] == "szpital-a"
    assert event["asset"] == "srv-a1" and event["detail"]["ticket"] == number


@pytest.mark.parametrize(("who", "status"), [("client-a", 403), ("agent", 403), ("admin", 201)])
def test_who_may_write_a_note(api, number, who, status):
    before = timeline(api, number)
    r = api.post(f"/api/v1/tickets/{number}/notes", json={"text": "x"}, headers=auth(who))
    assert r.status_code == status, r.text
    if status == 403:
        assert timeline(api, number) == before
        assert audit(api, "ticket.note") == []


def test_a_note_without_a_token_or_on_a_missing_ticket(api, number):
    assert api.post(f"/api/v1/tickets/{number}/notes", json={"text": "x"}).status_code == 401
    r = api.post("/api/v1/tickets/DZ-2026-999999/notes", json={"text": "x"}, headers=auth("admin"))
    assert r.status_code == 404 and r.json()["detail"] == "no ticket DZ-2026-999999"


BAD_TEXT = {
    "empty": ("", "body.text"),
    "blank": ("   ", "body.text"),
    "a line break": ("pierwsza\nfałszywa linia osi czasu", "body.text"),
    "a carriage return": ("a\rb", "body.text"),
    "an escape": ("\x1b[31mczerwony", "body.text"),
    "a NUL": ("a\x00b", "body.text"),
    "a C1 control": ("a\x85b", "body.text"),
    "a bidi override": ("zapłacono \u202e321 zł", "body.text"),
    "too long": ("ż" * 2001, "body.text"),
    "not a string": (5, "body.text"),
}


@pytest.mark.parametrize("case", list(BAD_TEXT))
def test_a_refused_text_is_422_naming_body_text_and_writes_nothing(api, number, case):
    text, field = BAD_TEXT[case]
    before = timeline(api, number)
    r = api.post(f"/api/v1/tickets/{number}/notes", json={"text": text}, headers=auth("engineer"))
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert timeline(api, number) == before
    assert audit(api, "ticket.note") == []


def test_a_note_of_2000_characters_is_taken_and_other_bodies_are_refused(api, number):
    url = f"/api/v1/tickets/{number}/notes"
    r = api.post(url, json={"text": "ż" * 2000}, headers=auth("engineer"))
    assert r.status_code == 201 and r.json()["timeline"][-1]["message"] == "ż" * 2000
    r = api.post(url, json={"text": "x", "actor": "someone"}, headers=auth("engineer"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.actor"
    r = api.post(url, headers=auth("engineer"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body"


def test_the_desk_the_pages_call_refuses_the_same_texts(bridge, api, number):
    with pytest.raises(Invalid, match=r"^text: control character U\+000A at position 2"):
        bridge.tickets.note(number, "a\nb", "anna")
    ticket = bridge.tickets.note(number, "  z sesji  ", "anna")
    assert bridge.tickets.timeline(ticket.number)[-1].message == "z sesji"


def test_resolve_takes_an_optional_note_written_first(api, number):
    url = f"/api/v1/tickets/{number}/resolve"
    r = api.post(url, json={"note": "x\ny"}, headers=auth("engineer"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.note"
    assert api.get(f"/api/v1/tickets/{number}", headers=auth("engineer")).json()["status"] == "open"

    r = api.post(url, json={"note": "wymieniono dysk"}, headers=auth("engineer"))
    assert r.status_code == 200, r.text
    ticket = r.json()
    assert ticket["status"] == "resolved"
    kinds = [(e["kind"], e["actor"]) for e in ticket["timeline"][-2:]]
    assert kinds == [("note", "jan.kowalski"), ("resolved", "jan.kowalski")]
    assert ticket["timeline"][-2]["message"] == "wymieniono dysk"
    [resolved] = audit(api, "ticket.resolved")
    assert resolved["actor"] == "jan.kowalski"

    # Again, on the resolved ticket: the note is written, the resolution stays as it was.
    r = api.post(url, json={"note": "uzupełnienie"}, headers=auth("engineer"))
    assert r.status_code == 200
    assert r.json()["resolved_at"] == ticket["resolved_at"]
    assert [e["kind"] for e in r.json()["timeline"][-3:]] == ["note", "resolved", "note"]
    assert len(audit(api, "ticket.resolved")) == 1 and len(audit(api, "ticket.note")) == 2
    # Without a body, as before: nothing changes.
    r = api.post(url, headers=auth("engineer"))
    assert r.status_code == 200 and len(r.json()["timeline"]) == len(timeline(api, number))


def test_a_note_reaches_the_openapi_schema(api):
    spec = api.get("/openapi.json").json()
    post = spec["paths"]["/api/v1/tickets/{number}/notes"]["post"]
    assert "201" in post["responses"] and "422" in post["responses"]
    resolve = spec["paths"]["/api/v1/tickets/{number}/resolve"]["post"]
    assert resolve["requestBody"].get("required", False) is False


# --- the bridge's log: one INFO line per ticket opened, escalated, resolved ------------------

UTC_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def lines(caplog, logger: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == logger and r.levelno == logging.INFO
    ]


def utc(text: str) -> str:
    return datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_each_ticket_change_is_logged_once_with_utc_times(api, caplog):
    caplog.set_level(logging.INFO, logger="bridge.tickets")
    assert push(api, [sample("srv-a1", 0.95)]).status_code == 200
    [t] = api.get("/api/v1/tickets", headers=auth("engineer")).json()
    n = t["number"]
    assert lines(caplog, "bridge.tickets") == [
        f"ticket {n} opened: usterka, szpital-a srv-a1, rule disk_usage, "
        f"reaction due {utc(t['reaction_due'])}"
    ]
    assert push(api, [sample("srv-a1", 0.95)]).status_code == 200  # a re-fire: not logged
    assert push(api, [sample("srv-a1", 0.99)]).status_code == 200
    [t] = api.get("/api/v1/tickets", headers=auth("engineer")).json()
    assert lines(caplog, "bridge.tickets")[1:] == [
        f"ticket {n} escalated: awaria, szpital-a srv-a1, rule disk_usage, "
        f"reaction due {utc(t['reaction_due'])}"
    ]
    assert push(api, [sample("srv-a1", 0.5)]).status_code == 200
    [t] = api.get("/api/v1/tickets", headers=auth("engineer")).json()
    assert t["status"] == "resolved"
    assert lines(caplog, "bridge.tickets")[2:] == [
        f"ticket {n} resolved: awaria, szpital-a srv-a1, rule disk_usage, at {utc(t['resolved_at'])}"
    ]


def test_an_engineer_s_resolve_is_logged_and_counted_once(api, number, caplog):
    caplog.set_level(logging.INFO, logger="bridge.tickets")

    def resolved_count() -> float:
        text = api.get("/metrics", headers=auth("engineer")).text
        found = re.search(r'^dyzur_ticket_changes_total\{action="resolved"\} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    assert resolved_count() == 0
    for _ in range(2):  # the second changes nothing
        r = api.post(f"/api/v1/tickets/{number}/resolve", headers=auth("engineer"))
        assert r.status_code == 200
    resolved = [m for m in lines(caplog, "bridge.tickets") if " resolved: " in m]
    assert resolved == [
        f"ticket {number} resolved: usterka, szpital-a srv-a1, rule disk_usage, "
        f"at {utc(r.json()['resolved_at'])}"
    ]
    assert resolved_count() == 1


def test_windows_starting_and_ending_are_logged_once_each(api, bridge, clock, caplog):
    caplog.set_level(logging.INFO, logger="bridge.maintenance.planning")
    now = clock.now()

    def plan(minutes: int, length: int) -> dict:
        start, end = now + timedelta(minutes=minutes), now + timedelta(minutes=minutes + length)
        body = {"client": "szpital-a", "start": start.isoformat(), "end": end.isoformat()}
        body |= {"reason": "przegląd", "assets": ["srv-a1", "srv-a2"]}
        r = api.post("/api/v1/windows", json=body, headers=auth("engineer"))
        assert r.status_code == 201, r.text
        return r.json()

    running = plan(-5, 60)  # already running when the bridge first looks
    later = plan(120, 30)
    bridge.tick()
    span = f"szpital-a, 2 assets, {utc(running['start'])} - {utc(running['end'])}"
    assert lines(caplog, "bridge.maintenance.planning") == [
        f"window {running['id']} running: {span}"
    ]
    caplog.clear()
    clock.advance(60 * 60)  # running ends
    bridge.tick()
    bridge.tick()
    assert lines(caplog, "bridge.maintenance.planning") == [f"window {running['id']} ended: {span}"]
    caplog.clear()
    clock.advance(60 * 60)  # later starts
    bridge.tick()
    bridge.tick()
    span = f"szpital-a, 2 assets, {utc(later['start'])} - {utc(later['end'])}"
    assert lines(caplog, "bridge.maintenance.planning") == [f"window {later['id']} started: {span}"]
    caplog.clear()
    clock.advance(10 * 60)
    assert api.post(f"/api/v1/windows/{later['id']}/cancel", headers=auth("engineer")).is_success
    bridge.tick()
    bridge.tick()
    ended = lines(caplog, "bridge.maintenance.planning")
    assert ended == [f"window {later['id']} ended early at {utc(clock.now().isoformat())}: {span}"]
    assert all(re.search(UTC_TIME, line) for line in ended)
