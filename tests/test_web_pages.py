"""The pages under /ui/ in process: a real bridge (SQLite, a controlled clock) behind the real
app, people logged in through the real login form with their own cookies, and what they see
and do checked against the API and the audit trail.

The queue's order by reaction deadline and its colours; a hospital's user sees its own
hospital only and no action anywhere, and a POST it makes by hand with its own session and
token is 403 and changes nothing; acknowledging, resolving and a note from the ticket page are
the user's (the API and the audit say so); a window planned from the page, its conflict
message the API's own; a gate held and approved from the update page (over SSH, a real sshd).
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from markupsafe import escape

from bridge.config import parse_config
from bridge.web.pages import UI_SECURITY_HEADERS
from tests.conftest import START, auth, config_data
from tests.test_lifecycle import disk
from tests.test_updates import hosts, login, shared, sshd  # noqa: F401 (their fixtures)

PASSWORD = "correct horse battery staple"
# A real argon2id hash, but cheap (1 MiB, one pass): the default's 0.6 s per login is spent
# on purpose, and these tests log in some twenty times.
PASSWORD_HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
USERS = [
    {"name": "anna.nowak", "role": "engineer", "password": PASSWORD_HASH, "language": "pl"},
    {"name": "john.smith", "role": "admin", "password": PASSWORD_HASH, "language": "en"},
    {"name": "kasia", "role": "client:szpital-a", "password": PASSWORD_HASH, "language": "pl"},
    {"name": "bob", "role": "client:klinika-b", "password": PASSWORD_HASH, "language": "en"},
]


def with_users(data: dict) -> dict:
    return {**data, "users": USERS}


@pytest.fixture
def loaded(tmp_path):
    return parse_config(with_users(config_data()), "test.yaml", tmp_path)


@pytest.fixture
def app(bridge):
    from bridge.api import create_app

    return create_app(bridge, run_ticker=False)


@pytest.fixture
def api(app):
    with TestClient(app) as client:
        yield client


@pytest.fixture
def person(app, api):
    """``person(name) -> (client, csrf)``: a browser of its own, logged in through the form."""

    def log_in(name: str) -> tuple[TestClient, str]:
        client = TestClient(app)
        r = client.post(
            "/login",
            data={"name": name, "password": PASSWORD, "next": "/ui/"},
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        assert r.headers["location"] == "/ui/"
        return client, csrf_of(client.get("/ui/").text)

    return log_in


def csrf_of(page: str) -> str:
    [token] = set(re.findall(r'name="csrf" value="([^"]+)"', page))
    return token


def rows(page: str) -> list[str]:
    """The ticket numbers of the queue's rows, in order."""
    return re.findall(r'<tr class="sla-[a-z_]+" data-ticket="([^"]+)"', page)


def row_of(page: str, number: str) -> str:
    return re.search(rf'<tr class="[^"]+" data-ticket="{number}">.*?</tr>', page, re.S)[0]


def forms(page: str) -> list[str]:
    """The addresses the page's forms POST to (the logout form aside)."""
    found = re.findall(r'<form method="post" action="([^"]+)"', page)
    return [a for a in found if a != "/logout"]


def ticket(api, number: str) -> dict:
    return api.get(f"/api/v1/tickets/{number}", headers=auth("admin")).json()


def numbers(api, **query) -> dict[tuple[str, str], str]:
    """(asset, mountpoint) -> ticket number of every ticket."""
    found = api.get("/api/v1/tickets", params=query, headers=auth("admin")).json()
    return {(t["asset"], t["labels"].get("mountpoint", "")): t["number"] for t in found}


@pytest.fixture
def four(bridge, clock, api):
    """Four tickets opened in an order other than their deadlines': Monday 10:00 in Warsaw,
    Szpital A on standard hours (7-15 on weekdays), Klinika B 24/7 in English.

    - srv-a1 /var usterka (8 h of service time): Tuesday 10:00
    - srv-b1 /var awaria (2 h): 12:10
    - srv-a2 /data awaria: 12:20
    - srv-b1 /data usterka (8 h, 24/7): 18:30
    """
    disk(bridge, 0.95, "srv-a1", "/var")
    clock.advance(600)
    disk(bridge, 0.99, "srv-b1", "/var")
    clock.advance(600)
    disk(bridge, 0.99, "srv-a2", "/data")
    clock.advance(600)
    disk(bridge, 0.95, "srv-b1", "/data")
    n = numbers(api)
    return [
        n[("srv-b1", "/var")],
        n[("srv-a2", "/data")],
        n[("srv-b1", "/data")],
        n[("srv-a1", "/var")],
    ]


# --- the queue -------------------------------------------------------------------------------


def test_the_queue_lists_open_tickets_by_deadline_with_the_time_left(person, four, clock):
    anna, _ = person("anna.nowak")
    page = anna.get("/ui/")
    assert page.status_code == 200
    assert rows(page.text) == four  # opened a1, b1, a2, b1/data: shown by deadline
    for name, value in UI_SECURITY_HEADERS.items():
        assert page.headers[name] == value
    assert "script-src 'self'" in page.headers["content-security-policy"]
    text = page.text
    assert '<html lang="pl">' in text and "Kolejka zgłoszeń" in text
    assert '<script src="/static/dyzur.js" defer></script>' in text
    # Deadlines in Warsaw time, as Polish writes them; the time left in service time.
    first = row_of(text, four[0])
    assert "23.11.2026 12:10" in first and "1 godz. 40 min" in first and "Awaria" in first
    assert "Klinika B" in first and "srv-b1" in first
    last = row_of(text, four[3])
    # Szpital A's clock counts 7-15 on weekdays: 8 h from Monday 10:00 is Tuesday 10:00,
    # and from 10:30 that leaves 7 h 30 min of service time.
    assert "24.11.2026 10:00" in last and "7 godz. 30 min" in last
    # At 12:15 Klinika B's Awaria passed its deadline (red), Szpital A's is at risk.
    clock.advance(105 * 60)
    anna, _ = person("anna.nowak")  # the session's idle expiry passed meanwhile
    text = anna.get("/ui/").text
    assert 'class="sla-breached" data-ticket="' + four[0] in text
    assert "termin przekroczony" in row_of(text, four[0])
    assert 'class="sla-at_risk" data-ticket="' + four[1] in text
    assert "zagrożony" in row_of(text, four[1])
    # The table alone, as the script re-fetches it, in the same order.
    table = anna.get("/ui/queue/table")
    assert table.status_code == 200 and "<html" not in table.text
    assert rows(table.text) == four


def test_the_queue_filters_by_hospital_category_status_and_asset(person, api, four):
    anna, _ = person("anna.nowak")
    assert rows(anna.get("/ui/?client=klinika-b").text) == [four[0], four[2]]
    assert rows(anna.get("/ui/?category=awaria").text) == [four[0], four[1]]
    assert rows(anna.get("/ui/?asset=srv-b1&category=usterka").text) == [four[2]]
    assert rows(anna.get("/ui/?status=resolved").text) == []
    assert rows(anna.get("/ui/?category=nonsense&page=x").text) == four  # dropped, not a 500
    r = api.post(f"/api/v1/tickets/{four[2]}/resolve", headers=auth("engineer"))
    assert r.status_code == 200
    assert rows(anna.get("/ui/?status=resolved").text) == [four[2]]
    assert four[2] not in rows(anna.get("/ui/").text)


def test_an_acknowledged_ticket_goes_after_those_still_waiting(person, api, four):
    anna, _ = person("anna.nowak")
    assert api.post(f"/api/v1/tickets/{four[0]}/ack", headers=auth("engineer")).status_code == 200
    text = anna.get("/ui/").text
    assert rows(text) == [*four[1:], four[0]]
    assert "potwierdzone: jan.kowalski" in row_of(text, four[0])


def test_a_page_without_a_session_sends_to_the_login_form(app, api):
    anonymous = TestClient(app)
    for path in ("/ui/", "/ui/tickets/DZ-2026-000001", "/ui/maintenance", "/ui/updates"):
        r = anonymous.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    # The script's refresh asks with HX-Request: 401 and where to log in.
    r = anonymous.get("/ui/queue/table", headers={"HX-Request": "true"})
    assert r.status_code == 401 and r.headers["HX-Redirect"].startswith("/login?next=")


# --- a hospital's user ----------------------------------------------------------------------


def test_a_hospital_user_sees_only_its_hospital_and_no_action(person, api, bridge, four):
    bob, _ = person("bob")  # Klinika B, English
    text = bob.get("/ui/").text
    assert '<html lang="en">' in text and "Ticket queue" in text
    assert rows(text) == [four[0], four[2]]
    assert "Szpital A" not in text and "srv-a" not in text
    # Asking for the other hospital shows its own all the same.
    assert rows(bob.get("/ui/?client=szpital-a").text) == [four[0], four[2]]
    # Another hospital's ticket is missing, as in the API.
    r = bob.get(f"/ui/tickets/{four[1]}")
    assert r.status_code == 404 and "srv-a2" not in r.text
    # Its own ticket: everything to read, nothing to do.
    r = bob.get(f"/ui/tickets/{four[0]}")
    assert r.status_code == 200 and "Timeline" in r.text
    assert forms(r.text) == []
    for path in ("/ui/maintenance", "/ui/updates", "/ui/agents", "/ui/incidents"):
        page = bob.get(path)
        assert page.status_code == 200, path
        assert forms(page.text) == [], path
        assert "Szpital A" not in page.text, path


def test_a_hospital_users_hand_made_post_is_403_and_changes_nothing(person, api, bridge, four):
    kasia, csrf = person("kasia")
    number = four[1]  # Szpital A's own ticket
    before = ticket(api, number)
    for path, data in [
        (f"/ui/tickets/{number}/ack", {}),
        (f"/ui/tickets/{number}/resolve", {"text": "zamykam"}),
        (f"/ui/tickets/{number}/note", {"text": "notatka"}),
        ("/ui/maintenance/windows", {"client": "szpital-a", "start": "2026-11-24T22:00",
                                     "end": "2026-11-25T02:00", "reason": "x", "assets": "srv-a1"}),
        ("/ui/updates/AK-2026-0001/approve", {"reason": "ok"}),
    ]:  # fmt: skip
        r = kasia.post(path, data={**data, "csrf": csrf}, follow_redirects=False)
        assert r.status_code == 403, (path, r.text)
    after = ticket(api, number)
    assert after["responded_at"] is None and after["status"] == "open"
    assert after["timeline"] == before["timeline"]
    assert api.get("/api/v1/windows", headers=auth("admin")).json() == []
    bridge.refusals.flush(everything=True)  # refusals are audited counted per minute
    refused = [e for e in bridge.store.audit_events() if e.action == "role.refused"]
    assert refused and refused[0].actor == "kasia"


def test_a_post_without_the_csrf_token_is_403(person, api, four):
    anna, csrf = person("anna.nowak")
    r = anna.post(f"/ui/tickets/{four[0]}/ack", data={}, follow_redirects=False)
    assert r.status_code == 403
    r = anna.post(f"/ui/tickets/{four[0]}/ack", data={"csrf": csrf + "x"}, follow_redirects=False)
    assert r.status_code == 403
    assert ticket(api, four[0])["responded_at"] is None


# --- a ticket --------------------------------------------------------------------------------


def test_acknowledging_from_the_ticket_page_shows_in_the_api(person, api, bridge, four):
    anna, csrf = person("anna.nowak")
    number = four[0]
    page = anna.get(f"/ui/tickets/{number}")
    assert page.status_code == 200
    assert forms(page.text) == [f"/ui/tickets/{number}/{a}" for a in ("ack", "resolve", "note")]
    r = anna.post(f"/ui/tickets/{number}/ack", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/ui/tickets/{number}?done=ack"
    shown = ticket(api, number)
    assert shown["responded_by"] == "anna.nowak" and shown["responded_at"] is not None
    assert shown["sla_state"] == "met"
    [event] = [e for e in bridge.store.audit_events() if e.action == "ticket.acknowledged"]
    assert event.actor == "anna.nowak"
    page = anna.get(r.headers["location"]).text
    assert "Zgłoszenie potwierdzone." in page
    assert f"/ui/tickets/{number}/ack" not in forms(page)  # nothing left to acknowledge
    assert "anna.nowak" in page


def test_a_note_and_a_resolve_from_the_ticket_page_are_the_users(person, api, bridge, four):
    john, csrf = person("john.smith")  # an admin, in English
    number = four[3]
    r = john.post(
        f"/ui/tickets/{number}/note",
        data={"csrf": csrf, "text": "Called the hospital <b>IT</b>"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = john.get(f"/ui/tickets/{number}").text
    assert "Called the hospital &lt;b&gt;IT&lt;/b&gt;" in page  # escaped, not markup
    # A blank note is refused with the desk's own words; the page keeps the form.
    r = john.post(f"/ui/tickets/{number}/note", data={"csrf": csrf, "text": "   "})
    assert r.status_code == 422 and "a note needs some text" in r.text
    r = john.post(
        f"/ui/tickets/{number}/resolve",
        data={"csrf": csrf, "text": "disk cleaned"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    shown = ticket(api, number)
    assert shown["status"] == "resolved"
    kinds = [(e["kind"], e["actor"]) for e in shown["timeline"]][-3:]
    assert kinds == [("note", "john.smith"), ("note", "john.smith"), ("resolved", "john.smith")]
    actions = [(e.action, e.actor) for e in bridge.store.audit_events() if e.action in
               ("ticket.note", "ticket.resolved")]  # fmt: skip
    assert actions == [
        ("ticket.note", "john.smith"),
        ("ticket.note", "john.smith"),
        ("ticket.resolved", "john.smith"),
    ]
    page = john.get(f"/ui/tickets/{number}").text
    assert f"/ui/tickets/{number}/resolve" not in forms(page)


def test_the_ticket_page_shows_fields_labels_timeline_and_attached_alerts(person, four):
    anna, _ = person("anna.nowak")
    text = anna.get(f"/ui/tickets/{four[3]}").text
    for shown in ("srv-a1", "Szpital A (szpital-a)", "Usterka", "disk_usage", "mountpoint",
                  "/var", "0,95", "Historia", "23.11.2026 10:00:00"):  # fmt: skip
        assert shown in text, shown
    assert anna.get("/ui/tickets/DZ-2099-999999").status_code == 404


# --- maintenance ------------------------------------------------------------------------------

WINDOW = {
    "client": "szpital-a",
    "start": "2026-11-24T22:00",
    "end": "2026-11-25T02:00",
    "reason": "aktualizacja bazy danych",
    "assets": "srv-a1",
}


def test_a_window_planned_from_the_page_and_a_conflict_says_what_the_api_says(person, api, bridge):
    anna, csrf = person("anna.nowak")
    r = anna.post("/ui/maintenance/windows", data={**WINDOW, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/ui/maintenance?at=2026-11-24&done=planned&id=OS-2026-0001"
    [window] = api.get("/api/v1/windows", headers=auth("admin")).json()
    assert window["id"] == "OS-2026-0001" and window["created_by"] == "anna.nowak"
    assert window["start"] == "2026-11-24T22:00:00+01:00"  # the form's time is Warsaw's
    page = anna.get(r.headers["location"]).text
    assert "Zaplanowano okno OS-2026-0001." in page
    # In the week's calendar: Tuesday 22:00-24:00 and Wednesday 00:00-02:00, in Szpital A's row.
    assert "22:00–24:00</span> aktualizacja bazy danych (OS-2026-0001)" in page
    assert "00:00–02:00</span> aktualizacja bazy danych (OS-2026-0001)" in page
    # An overlapping one: 409 and the API's own words, the form filled in again.
    again = {**WINDOW, "start": "2026-11-25T01:00", "end": "2026-11-25T03:00"}
    r = anna.post("/ui/maintenance/windows", data={**again, "csrf": csrf})
    assert r.status_code == 409
    body = {**again, "assets": ["srv-a1"]}
    refused = api.post("/api/v1/windows", json=body, headers=auth("engineer"))
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert detail.startswith("overlaps window OS-2026-0001")
    assert str(escape(detail)) in r.text
    assert 'value="2026-11-25T01:00"' in r.text
    # A field the API refuses is named as the API names it.
    r = anna.post(
        "/ui/maintenance/windows", data={**WINDOW, "end": "2026-11-24T21:00", "csrf": csrf}
    )
    assert r.status_code == 422 and "end: the window ends before it starts" in r.text
    r = anna.post("/ui/maintenance/windows", data={**WINDOW, "start": "jutro", "csrf": csrf})
    assert r.status_code == 422 and "start: " in r.text
    assert len(api.get("/api/v1/windows", headers=auth("admin")).json()) == 1


def test_a_window_cancelled_from_the_page(person, api):
    anna, csrf = person("anna.nowak")
    anna.post("/ui/maintenance/windows", data={**WINDOW, "csrf": csrf})
    page = anna.get("/ui/maintenance?at=2026-11-24").text
    assert "/ui/maintenance/windows/OS-2026-0001/cancel" in forms(page)
    r = anna.post(
        "/ui/maintenance/windows/OS-2026-0001/cancel", data={"csrf": csrf}, follow_redirects=False
    )
    assert r.status_code == 303
    shown = api.get("/api/v1/windows/OS-2026-0001", headers=auth("admin")).json()
    assert shown["cancelled_by"] == "anna.nowak"
    page = anna.get("/ui/maintenance?at=2026-11-24&view=month").text
    assert "OS-2026-0001" not in page


def test_the_month_calendar_shows_a_recurring_window_on_each_of_its_days(person, api):
    anna, csrf = person("anna.nowak")
    weekly = {**WINDOW, "rrule": "FREQ=WEEKLY;BYDAY=TU", "reason": "kopie zapasowe"}
    r = anna.post("/ui/maintenance/windows", data={**weekly, "csrf": csrf})
    assert r.status_code == 200, r.text
    page = anna.get("/ui/maintenance?view=month&at=2026-12-01").text
    assert "grudzień 2026" in page
    # Tuesdays of December 2026 (and the grid's first, 1 December): 1, 8, 15, 22, 29.
    assert page.count("22:00–24:00</span> Szpital A: kopie zapasowe") == 5


# --- updates (a real sshd runs the runbook) --------------------------------------------------


class TestGate:
    """The update page against a plan whose test stage ran over SSH (tests/test_updates.py's
    sshd and hosts)."""

    @pytest.fixture
    def loaded(self, tmp_path, sshd, login):  # noqa: F811 (the imported fixtures)
        from tests.test_updates import _config

        return parse_config(with_users(_config(tmp_path, sshd.port, login)), "t.yaml", tmp_path)

    def test_a_gate_held_and_approved_from_the_page(
        self,
        person,
        api,
        bridge,
        clock,
        hosts,  # noqa: F811 (the imported fixture)
    ):
        from tests.test_updates import TEST_WINDOW, at, plan

        p = plan(bridge, hosts)
        anna, csrf = person("anna.nowak")
        page = anna.get(f"/ui/updates/{p.id}").text
        assert "5.2.1" in page and p.ticket in page
        assert forms(page) == [f"/ui/updates/{p.id}/approve", f"/ui/updates/{p.id}/hold"]
        # Approving before the test stage ran is refused with the service's words.
        r = anna.post(f"/ui/updates/{p.id}/approve", data={"csrf": csrf, "reason": "już"})
        assert r.status_code == 409 and "the test stage is planned, not succeeded" in r.text
        r = anna.post(
            f"/ui/updates/{p.id}/hold",
            data={"csrf": csrf, "reason": "czekamy na szpital"},
            follow_redirects=False,
        )
        assert r.status_code == 303
        at(bridge, clock, TEST_WINDOW.start)  # the test stage runs over SSH
        anna, csrf = person("anna.nowak")  # an hour later: a new session
        page = anna.get(f"/ui/updates/{p.id}").text
        assert "wstrzymana" in page and "czekamy na szpital" in page
        assert "udany" in page and "updated amms-a-test" in page  # a step's output
        r = anna.post(
            f"/ui/updates/{p.id}/approve",
            data={"csrf": csrf, "reason": "szpital potwierdził"},
            follow_redirects=False,
        )
        assert r.status_code == 303
        shown = api.get(f"/api/v1/updates/{p.id}", headers=auth("admin")).json()
        assert shown["gate"] == "passed" and shown["gate_by"] == "anna.nowak"
        assert shown["gate_reason"] == "szpital potwierdził"
        actions = [(e.action, e.actor) for e in bridge.store.audit_events()
                   if e.action.startswith("update.gate")]  # fmt: skip
        assert actions == [
            ("update.gate_held", "anna.nowak"),
            ("update.gate_approved", "anna.nowak"),
        ]
        page = anna.get(f"/ui/updates/{p.id}?done=approve").text
        assert "Bramka zatwierdzona." in page and forms(page) == []
        # The hospital's user reads the plan and has nothing to press.
        kasia, _ = person("kasia")
        page = kasia.get(f"/ui/updates/{p.id}").text
        assert "otwarta" in page and forms(page) == []
        assert p.id in kasia.get("/ui/updates").text


# --- agents and incidents -----------------------------------------------------------------------


def test_the_agents_page_lists_streams_and_silent_assets(person, api, bridge, clock):
    batch = {
        "agent": {"id": "agent-srv-a1", "seq": 1, "dropped": 3},
        "samples": [
            {"metric": "dz_test_disk_used_ratio", "labels": {"asset": "srv-a1",
             "mountpoint": "/var"}, "value": 0.5},
        ],
    }  # fmt: skip
    r = api.post("/api/v1/samples", json=batch, headers=auth("agent"))
    assert r.status_code == 200, r.text
    clock.advance(600)  # srv-a2 and srv-b1 never reported, srv-a1 stopped: silent (5 min)
    bridge.tick()
    anna, _ = person("anna.nowak")
    text = anna.get("/ui/agents").text
    assert "agent-srv-a1" in text and "10 min temu" in text
    silent = text.split("Strumienie agentów")[0]
    for asset in ("srv-a1", "srv-a2", "srv-b1"):
        assert asset in silent, asset
    kasia, _ = person("kasia")
    text = kasia.get("/ui/agents").text
    assert "agent-srv-a1" in text and "srv-b1" not in text


def test_every_page_answers_in_both_languages(person, four):
    for name in ("anna.nowak", "john.smith"):
        client, _ = person(name)
        for path in ("/ui/", f"/ui/tickets/{four[0]}", "/ui/maintenance",
                     "/ui/maintenance?view=month", "/ui/updates", "/ui/agents", "/ui/incidents",
                     "/ui/?lang=en", "/ui/?lang=pl"):  # fmt: skip
            r = client.get(path)
            assert r.status_code == 200, (name, path, r.text[:500])
            assert 'aria-current="page"' in r.text


def test_the_queue_of_a_deadline_far_off_and_a_weekend_pause(person, bridge, clock):
    # Friday 14:30 in Warsaw: an Usterka of Szpital A (8 h of 7-15 weekdays) is due Monday
    # 14:30; on Saturday the clock stands: the time left says so.
    clock.set(START + timedelta(days=4, hours=4, minutes=30))
    disk(bridge, 0.95, "srv-a1", "/var")
    clock.advance(86400)
    anna, _ = person("anna.nowak")
    text = anna.get("/ui/").text
    assert "30.11.2026 14:30" in text
    assert "7 godz. 30 min (zegar stoi poza godzinami serwisu)" in text


def test_the_package_ships_every_template_and_static_file_of_the_pages():
    """pyproject's package data covers the templates, the stylesheet, the script and the
    icon: an installed bridge serves the same pages."""
    import fnmatch
    import tomllib

    from tests.processes import ROOT

    web = ROOT / "bridge" / "web"
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["bridge.web"]
    files = [*(web / "templates").glob("*.html"), *(web / "static").glob("*.*")]
    assert {"dyzur.js", "favicon.svg", "queue.html", "ticket.html"} <= {f.name for f in files}
    for path in files:
        name = path.relative_to(web).as_posix()
        assert any(fnmatch.fnmatch(name, g) for g in globs), name
