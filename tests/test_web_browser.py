"""The pages under /ui/ in Debian's Chromium (Playwright) against a real bridge process in real
time: real tickets pushed through the API, a real sshd running an update's test stage.

An engineer logs in through the form, sees the queue in deadline order, opens a ticket and
acknowledges it with the keyboard (the API says who), plans a window and sees the API's
conflict message for an overlapping one, and approves an update's gate. A hospital's user sees
its own hospital only and no action, and a POST it makes by hand with its session is 403; the
queue refreshes by itself (the pages' script, under Playwright's clock); the pages fit a
phone's screen and 1366x768; no page asks anything of another origin, and the browser reports
no error (a script or style the CSP refused would be one).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from bridge.clock import WARSAW
from tests.conftest import ARTIFACTS, auth, config_data, free_port
from tests.processes import RunningBridge, wait_for
from tests.test_updates import hosts, login, shared, sshd  # noqa: F401 (their fixtures)
from tests.test_web_pages import PASSWORD, USERS

pytest.importorskip("playwright")


def start(tmp_path: Path, data: dict) -> RunningBridge:
    data = {**data, "users": USERS, "tick_interval": "0.5s"}
    config = tmp_path / "dyzur.yaml"
    config.write_text(yaml.safe_dump(data))
    return RunningBridge(config, free_port())


@pytest.fixture
def running(tmp_path):
    bridge = start(tmp_path, config_data())
    yield bridge
    bridge.stop()


@pytest.fixture
def with_ssh(tmp_path, sshd, login):  # noqa: F811 (the imported fixtures)
    """A bridge whose update plans run their runbooks over SSH on tests/test_updates' hosts."""
    from tests.test_updates import _config

    data = _config(tmp_path, sshd.port, login)
    data["updates"] = {"soak": "10m", "settle": "0s"}
    bridge = start(tmp_path, data)
    yield bridge
    bridge.stop()


def push(bridge: RunningBridge, asset: str, mountpoint: str, value: float) -> None:
    sample = {
        "metric": "dz_test_disk_used_ratio",
        "labels": {"asset": asset, "mountpoint": mountpoint},
        "value": value,
    }
    r = httpx.post(
        f"{bridge.url}/api/v1/samples", json={"samples": [sample]}, headers=auth("agent")
    )
    assert r.status_code == 200, r.text


def api(bridge: RunningBridge, path: str, who: str = "admin"):
    r = httpx.get(f"{bridge.url}{path}", headers=auth(who), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def by_deadline(bridge: RunningBridge, **query) -> list[str]:
    """The open tickets as the queue orders them: by deadline, then opened, then number."""
    found = api(bridge, "/api/v1/tickets?status=open", **query)
    found.sort(key=lambda t: (t["reaction_due"], t["opened_at"], t["number"]))
    return [t["number"] for t in found]


def log_in(seen, bridge: RunningBridge, name: str) -> None:
    page = seen.page
    page.goto(f"{bridge.url}/ui/")  # no session: the login form, and back here after
    page.get_by_label(re.compile("Nazwa użytkownika|User name")).fill(name)
    page.get_by_label(re.compile("Hasło|Password")).fill(PASSWORD)
    page.get_by_role("button", name=re.compile("Zaloguj|Log in")).click()
    page.wait_for_url(f"{bridge.url}/ui/")


def queue_rows(page) -> list[str]:
    return page.locator("table.queue tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.ticket)"
    )


def fits(page) -> bool:
    """Nothing wider than the window: no sideways scrolling."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def own_origin_only(seen, bridge: RunningBridge, *answered: int) -> None:
    """Every request went to the bridge, and the browser reports no error but the pages
    answered with a status in ``answered`` (a refused form's 409)."""
    assert seen.elsewhere(bridge.url) == []
    expected = {f"console: Failed to load resource: the server responded with a status of {s} "
                for s in answered}  # fmt: skip
    assert [e for e in seen.errors if not any(e.startswith(x) for x in expected)] == []


def warsaw(day: datetime, hour: int) -> str:
    return day.replace(hour=hour, minute=0, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M")


def test_an_engineer_works_through_the_pages(with_ssh, open_page, hosts):  # noqa: F811
    from playwright.sync_api import expect

    bridge = with_ssh
    for asset, mountpoint, value in [
        ("srv-a1", "/var", 0.95),  # Szpital A, standard hours: usterka, 8 h of 7-15
        ("srv-b1", "/var", 0.99),  # Klinika B, 24/7: awaria, 2 h
        ("srv-a2", "/data", 0.99),  # Szpital A: awaria
        ("srv-b1", "/data", 0.95),  # Klinika B: usterka
    ]:
        push(bridge, asset, mountpoint, value)
    expected = by_deadline(bridge)
    assert len(expected) == 4

    seen = open_page(locale="pl-PL")
    page = seen.page
    log_in(seen, bridge, "anna.nowak")
    expect(page.get_by_role("heading", level=1)).to_have_text("Kolejka zgłoszeń")
    assert queue_rows(page) == expected
    assert fits(page)
    # The picture of the queue README shows (copied from there once, by hand).
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "queue-1366x768.png")

    # The most urgent ticket, acknowledged with the keyboard.
    first = expected[0]
    page.locator(f'tr[data-ticket="{first}"] a').click()
    page.wait_for_url(f"{bridge.url}/ui/tickets/{first}")
    button = page.get_by_role("button", name="Potwierdź — przyjmuję zgłoszenie")
    button.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Zgłoszenie potwierdzone.")
    expect(button).to_have_count(0)
    shown = api(bridge, f"/api/v1/tickets/{first}")
    assert shown["responded_by"] == "anna.nowak" and shown["sla_state"] == "met"
    # The queue now has it after those still waiting.
    page.get_by_role("link", name="Kolejka", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Kolejka zgłoszeń")
    assert queue_rows(page) == [*expected[1:], first]

    # A window planned from the form, then one that overlaps it.
    tomorrow = datetime.now(WARSAW) + timedelta(days=1)
    page.get_by_role("link", name="Okna serwisowe").click()
    page.get_by_label("Szpital", exact=True).last.select_option("szpital-a")
    page.get_by_label("Początek").fill(warsaw(tomorrow, 20))
    page.get_by_label("Koniec").fill(warsaw(tomorrow, 23))
    page.get_by_label("Powód").fill("przegląd serwera")
    page.get_by_label("Zasoby").fill("srv-a1")
    page.get_by_role("button", name="Zaplanuj okno").click()
    expect(page.get_by_role("status")).to_contain_text("Zaplanowano okno OS-")
    [window] = api(bridge, "/api/v1/windows")
    assert window["created_by"] == "anna.nowak"
    expect(page.locator(".calendar .entry.window").first).to_contain_text("przegląd serwera")
    page.get_by_label("Szpital", exact=True).last.select_option("szpital-a")
    page.get_by_label("Początek").fill(warsaw(tomorrow, 22))
    page.get_by_label("Koniec").fill(warsaw(tomorrow + timedelta(days=1), 1))
    page.get_by_label("Powód").fill("drugie okno")
    page.get_by_label("Zasoby").fill("srv-a1")
    page.get_by_role("button", name="Zaplanuj okno").click()
    expect(page.get_by_role("alert")).to_contain_text(f"overlaps window {window['id']}")
    expect(page.get_by_label("Powód")).to_have_value("drugie okno")  # the form kept
    assert len(api(bridge, "/api/v1/windows")) == 1

    # An update whose test stage runs over SSH in a few seconds; its gate approved here.
    now = datetime.now(UTC)
    plan = {
        "client": "szpital-a",
        "target_version": "5.2.1",
        "test_window": {"start": (now + timedelta(seconds=2)).isoformat(),
                        "end": (now + timedelta(hours=1)).isoformat()},
        "prod_window": {"start": (now + timedelta(hours=2)).isoformat(),
                        "end": (now + timedelta(hours=3)).isoformat()},
        "runbook": {"update": [f"echo {{version}} > {hosts}/{{asset}}/version"]},
    }  # fmt: skip
    r = httpx.post(f"{bridge.url}/api/v1/updates", json=plan, headers=auth("engineer"))
    assert r.status_code == 201, r.text
    plan_id = r.json()["id"]
    wait_for(
        lambda: api(bridge, f"/api/v1/updates/{plan_id}")["stages"][0]["state"] == "succeeded",
        timeout=60,
        what="the test stage to succeed over SSH",
    )
    page.get_by_role("link", name="Aktualizacje").click()
    page.get_by_role("link", name=plan_id).click()
    expect(
        page.get_by_role("heading", level=2, name=re.compile("Bramka produkcji"))
    ).to_contain_text("trwa obserwacja")
    page.locator("#approve-reason").fill("test przeszedł, szpital zgadza się")
    page.get_by_role("button", name="Zatwierdź produkcję").click()
    expect(page.get_by_role("status")).to_have_text("Bramka zatwierdzona.")
    shown = api(bridge, f"/api/v1/updates/{plan_id}")
    assert shown["gate"] == "passed" and shown["gate_by"] == "anna.nowak"

    # Every page of the visit: the bridge's own origin only, and no error in the browser.
    own_origin_only(seen, bridge, 409)  # the overlapping window's answer
    assert any(u.endswith("/static/dyzur.js") for u in seen.requests)


def test_a_hospital_user_the_refresh_and_a_phone(running, open_page):
    from playwright.sync_api import expect

    bridge = running
    push(bridge, "srv-b1", "/var", 0.99)
    push(bridge, "srv-a1", "/var", 0.95)
    [own] = by_deadline(bridge, who="client-b")

    seen = open_page(locale="en-GB")
    page = seen.page
    page.clock.install()  # the page's timers run when the test says
    log_in(seen, bridge, "bob")  # Klinika B, English
    expect(page.get_by_role("heading", level=1)).to_have_text("Ticket queue")
    assert queue_rows(page) == [own]
    expect(page.locator("main")).not_to_contain_text("Szpital A")
    assert page.locator("main form[method=post]").count() == 0
    page.locator(f'tr[data-ticket="{own}"] a').click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(own)
    assert page.locator("main form[method=post]").count() == 0
    assert page.get_by_role("button").count() == 1  # logging out, and nothing else
    for path in ("/ui/maintenance", "/ui/updates", "/ui/agents", "/ui/incidents"):
        page.goto(f"{bridge.url}{path}")
        assert page.locator("main form[method=post]").count() == 0, path
    # A POST made by hand, with the session and its CSRF token: refused, nothing changed.
    csrf = page.locator('input[name="csrf"]').first.get_attribute("value")
    r = page.request.post(f"{bridge.url}/ui/tickets/{own}/ack", form={"csrf": csrf})
    assert r.status == 403
    assert api(bridge, f"/api/v1/tickets/{own}")["responded_at"] is None

    # The queue refreshes itself: a new ticket appears without reloading the page.
    page.goto(f"{bridge.url}/ui/")
    assert queue_rows(page) == [own]
    push(bridge, "srv-b1", "/data", 0.99)
    newer = [n for n in by_deadline(bridge, who="client-b") if n != own]
    page.clock.run_for("00:31")
    expect(page.locator(f'tr[data-ticket="{newer[0]}"]')).to_be_visible()
    assert sorted(queue_rows(page)) == sorted([own, *newer])
    own_origin_only(seen, bridge)

    # On a phone: the queue and a ticket fit the screen; the rows are cards.
    phone = open_page(viewport={"width": 390, "height": 844}, locale="pl-PL")
    log_in(phone, bridge, "anna.nowak")
    assert fits(phone.page)
    assert phone.page.locator("table.queue thead").is_hidden()
    phone.page.locator("table.queue tbody tr a").first.click()
    # The click only starts the navigation: measured before the ticket page has loaded,
    # the document can be the one being torn down (documentElement null).
    phone.page.wait_for_url(re.compile(r".*/ui/tickets/[^/]+$"))
    phone.page.wait_for_load_state()
    assert fits(phone.page)
    phone.page.goto(f"{bridge.url}/ui/maintenance")
    assert fits(phone.page)
    own_origin_only(phone, bridge)


def test_the_first_tab_reaches_the_skip_link_and_every_control_has_a_name(running, browser_page):
    seen = browser_page
    log_in(seen, running, "anna.nowak")
    page = seen.page
    for path in ("/ui/", "/ui/maintenance"):
        page.goto(f"{running.url}{path}")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip"
        unnamed = page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                   .filter(e => !e.labels || e.labels.length === 0).map(e => e.name)"""
        )
        assert unnamed == [], (path, unnamed)


def test_a_post_without_the_csrf_token_is_refused_and_logout_ends_the_session(
    running, browser_page
):
    from playwright.sync_api import expect

    bridge = running
    push(bridge, "srv-a1", "/var", 0.95)
    [number] = by_deadline(bridge)
    seen = browser_page
    log_in(seen, bridge, "anna.nowak")
    page = seen.page
    # The engineer's own session, but a form without its CSRF token: 403, nothing changed.
    r = page.request.post(f"{bridge.url}/ui/tickets/{number}/ack", form={"csrf": "forged"})
    assert r.status == 403
    r = page.request.post(f"{bridge.url}/ui/tickets/{number}/ack", form={})
    assert r.status == 403
    assert api(bridge, f"/api/v1/tickets/{number}")["responded_at"] is None
    cookies = seen.context.cookies()
    # Logging out ends the session on the server: the old cookie no longer opens a page.
    page.get_by_role("button", name=re.compile("Wyloguj|Log out")).click()
    page.wait_for_url(re.compile(r"/login"))
    [session] = [c for c in cookies if c["name"] == "dyzur_session"]
    r = httpx.get(
        f"{bridge.url}/ui/",
        cookies={"dyzur_session": session["value"]},
        follow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 303 and "/login" in r.headers["location"]
    page.goto(f"{bridge.url}/ui/")
    expect(page.get_by_role("button", name=re.compile("Zaloguj|Log in"))).to_be_visible()
    own_origin_only(seen, bridge, 403)
