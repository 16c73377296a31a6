"""The page behind the link in an on-call page (bridge/web), driven through the bridge with a
controlled clock: an Awaria at 03:00 on a 24/7 contract pages Anna through a real SMTP server
(aiosmtpd) and a real HTTP server standing in for the SMS gateway, by e-mail and SMS at once
with the same link; the link shows the ticket on GET and acknowledges it on POST only, once;
a forged, reused, expired or cross-site use changes nothing and is audited; the pages carry
their security headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.config import parse_config
from bridge.web.pages import SECURITY_HEADERS
from tests.conftest import auth
from tests.oncall_parts import (
    PUBLIC_URL,
    forged,
    link_in,
    oncall_config,
    pages_to,
    sms_texts,
    token_of,
)
from tests.processes import wait_for
from tests.test_sink_webhook import FAST, push, ticket_of

NIGHT = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # Tuesday 03:00 in Warsaw
ANNA = "anna@serwis.example.pl"
ANNA_PHONE = "+48601000001"
JOHN = "john@serwis.example.pl"


@pytest.fixture
def clock(clock):
    clock.set(NIGHT)
    return clock


@pytest.fixture
def loaded(tmp_path, smtp, gateway):
    data = oncall_config(tmp_path, smtp.url, gateway.url, NIGHT - timedelta(hours=6))
    return parse_config(data, "test.yaml", tmp_path)


@pytest.fixture
def paged(api, bridge, clock, smtp, gateway):
    """An Awaria of Klinika B (24/7) at 03:00, Anna paged by e-mail and SMS at once, both
    pages recorded as delivered: (ticket number, the link, the same in both)."""
    for worker in bridge.outbox.workers.values():
        worker.backoff = FAST
    bridge.outbox.start()
    push(api, "srv-b1", 0.99)
    number = ticket_of(api, "klinika-b")
    wait_for(
        lambda: [p.outcome for p in bridge.store.pages(number)] == ["delivered", "delivered"],
        timeout=20,
        what="Anna's e-mail and SMS pages delivered",
    )
    [page] = pages_to(smtp.mailbox, ANNA)
    [sms] = sms_texts(gateway, ANNA_PHONE)
    assert link_in(sms) == link_in(page.get_content())
    return number, link_in(page.get_content())


def path_of(link: str) -> str:
    assert link.startswith(PUBLIC_URL + "/oncall/ack/")
    return link[len(PUBLIC_URL) :]


def ticket(api, number):
    return api.get(f"/api/v1/tickets/{number}", headers=auth("admin")).json()


def actions(bridge, prefix="oncall.link"):
    return [e for e in bridge.store.audit_events(0, 10_000, None) if e.action.startswith(prefix)]


def test_opening_the_link_shows_the_ticket_and_changes_nothing(api, bridge, paged):
    number, link = paged
    before = ticket(api, number)
    assert before["category"] == "awaria" and before["responded_at"] is None
    for _ in range(2):  # a mail scanner, then Anna
        page = api.get(path_of(link))
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<html lang="pl">' in html
    for shown in (number, "Klinika B", "srv-b1", "Awaria", before["title"], "otwarte"):
        assert shown in html, shown
    # The reaction deadline in Warsaw time, as Polish writes it: 03:00 + 2 h (24/7).
    assert "24.11.2026 05:00 CET" in html
    assert '<form method="post">' in html and "<script" not in html
    for name, value in SECURITY_HEADERS.items():
        assert page.headers[name] == value
    assert "'self'" in page.headers["content-security-policy"]
    assert "script-src 'none'" in page.headers["content-security-policy"]
    # Nothing changed: no response, no timeline line, and the link still works.
    after = ticket(api, number)
    assert after["responded_at"] is None and after["timeline"] == before["timeline"]
    opened = actions(bridge, "oncall.link_opened")
    assert len(opened) == 2 and opened[0].actor == "oncall:anna"
    assert opened[0].detail["ticket"] == number and opened[0].client == "klinika-b"
    assert token_of(link) not in str([e.detail for e in bridge.store.audit_events()])


def test_the_post_acknowledges_as_the_person_and_stops_the_escalation(
    api, bridge, clock, smtp, gateway, paged
):
    number, link = paged
    clock.advance(300)
    done = api.post(path_of(link))
    assert done.status_code == 200, done.text
    assert "Potwierdzono" in done.text and "Anna Nowak" in done.text
    assert "<form" not in done.text
    shown = ticket(api, number)
    assert shown["responded_by"] == "oncall:anna"
    assert datetime.fromisoformat(shown["responded_at"]) == NIGHT + timedelta(seconds=300)
    assert shown["sla_state"] == "met"
    assert shown["timeline"][-1]["kind"] == "acknowledged"
    assert shown["timeline"][-1]["actor"] == "oncall:anna"
    [used] = actions(bridge, "oncall.link_used")
    assert used.actor == "oncall:anna" and used.detail["acknowledged"] is True
    # Nobody else is paged: the escalation to John (after 15 min) stopped.
    clock.advance(3600)
    bridge.pager.tick()
    bridge.outbox.notify()
    wait_for(lambda: bridge.store.paging(number).stopped_by, what="the paging stopped")
    assert bridge.store.paging(number).stopped_by == "acknowledged"
    assert not pages_to(smtp.mailbox, JOHN)
    assert not sms_texts(gateway, "+48601000002")


def test_a_used_link_changes_nothing(api, bridge, clock, paged):
    number, link = paged
    assert api.post(path_of(link)).status_code == 200
    first = ticket(api, number)
    clock.advance(60)
    again = api.post(path_of(link))
    assert again.status_code == 409
    assert "już użyty" in again.text and "already used" in again.text
    assert ticket(api, number) == first
    refused = actions(bridge, "oncall.link_refused")
    assert [e.detail["reason"] for e in refused] == ["used"]
    assert refused[0].outcome == "failure" and refused[0].detail["ticket"] == number


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_forged_link_changes_nothing_and_tells_nothing(api, bridge, paged, method):
    number, link = paged
    before = ticket(api, number)
    fake = path_of(link).replace(token_of(link), forged(token_of(link)))
    answer = api.request(method, fake)
    assert answer.status_code == 404
    assert "nieprawidłowy" in answer.text and "not valid" in answer.text
    for secret in (number, "Traceback", "signature", "HMAC", "srv-b1"):
        assert secret not in answer.text
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers[name] == value
    assert ticket(api, number) == before
    # Counted per source and minute like a refused token, and audited when the minute ends.
    bridge.refusals.flush(everything=True)
    [refused] = actions(bridge, "oncall.link_refused")
    assert refused.outcome == "failure" and refused.detail["reason"] == "forged"
    assert refused.detail["count"] == 1
    assert token_of(link) not in str(refused.detail)
    # The real link still works.
    assert api.post(path_of(link)).status_code == 200


@pytest.mark.parametrize("garbage", ["x", "A" * 300, "%00", "A" * 40 + ".json", "AAAA-_-_AAAA"])
def test_garbage_is_an_invalid_link(api, paged, garbage):
    answer = api.get(f"/oncall/ack/{garbage}")
    assert answer.status_code == 404
    assert "nieprawidłowy" in answer.text


def test_an_expired_link_changes_nothing_and_the_next_steps_link_works(
    api, bridge, clock, smtp, paged
):
    number, anna = paged
    # Nobody acknowledged within 15 minutes: John is paged, and Anna's link expires with it.
    clock.advance(15 * 60)
    bridge.pager.tick()
    wait_for(lambda: pages_to(smtp.mailbox, JOHN), timeout=20, what="John's e-mail page")
    answer = api.post(path_of(anna))
    assert answer.status_code == 410
    assert "wygasł" in answer.text and "expired" in answer.text
    assert ticket(api, number)["responded_at"] is None
    [refused] = actions(bridge, "oncall.link_refused")
    assert refused.detail["reason"] == "expired" and refused.detail["person"] == "anna"
    # John's page is in English, and his link acknowledges as him.
    [page] = pages_to(smtp.mailbox, JOHN)
    john = link_in(page.get_content())
    shown = api.get(path_of(john))
    assert shown.status_code == 200 and '<html lang="en">' in shown.text
    assert "Acknowledge" in shown.text and "Outage (Awaria)" in shown.text
    assert "2026-11-24 05:00 CET" in shown.text
    assert api.post(path_of(john)).status_code == 200
    assert ticket(api, number)["responded_by"] == "oncall:john"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example.com"},
        {"Origin": "https://dyzur.example.pl.evil.example.com"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_a_form_posted_from_another_site_is_refused(api, bridge, paged, headers):
    number, link = paged
    answer = api.post(path_of(link), headers=headers)
    assert answer.status_code == 403
    assert "innej strony" in answer.text and "another site" in answer.text
    assert ticket(api, number)["responded_at"] is None
    bridge.refusals.flush(everything=True)
    [refused] = actions(bridge, "oncall.link_refused")
    assert refused.detail["reason"] == "foreign"
    # The link was not used up: Anna's own click still acknowledges.
    assert api.post(path_of(link)).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": PUBLIC_URL},  # through the public address
        {"Origin": "http://testserver"},  # the address it was reached at
        # The bridge's own form: its no-referrer policy makes browsers send Origin: null.
        {"Origin": "null", "Sec-Fetch-Site": "same-origin"},
        {},  # no browser at all
    ],
)
def test_the_bridges_own_form_is_taken(api, paged, headers):
    number, link = paged
    assert api.post(path_of(link), headers=headers).status_code == 200
    assert ticket(api, number)["responded_by"] == "oncall:anna"


def test_a_ticket_acknowledged_elsewhere_first_shows_who_and_uses_the_link(api, bridge, paged):
    number, link = paged
    assert api.post(f"/api/v1/tickets/{number}/ack", headers=auth("engineer")).status_code == 200
    shown = api.get(path_of(link))
    assert shown.status_code == 200
    assert "jan.kowalski" in shown.text and "<form" not in shown.text
    answer = api.post(path_of(link))
    assert answer.status_code == 200 and "było już potwierdzone" in answer.text
    assert ticket(api, number)["responded_by"] == "jan.kowalski"
    [used] = actions(bridge, "oncall.link_used")
    assert used.detail["acknowledged"] is False


def test_the_links_are_counted_by_outcome(api, paged):
    _, link = paged
    api.get(path_of(link))
    api.post(path_of(link))
    api.post(path_of(link))
    api.get("/oncall/ack/nonsense")
    metrics = api.get("/metrics", headers=auth("admin")).text
    assert 'dyzur_oncall_links_total{outcome="opened"} 1.0' in metrics
    assert 'dyzur_oncall_links_total{outcome="acknowledged"} 1.0' in metrics
    assert 'dyzur_oncall_links_total{outcome="used"} 1.0' in metrics
    assert 'dyzur_oncall_links_total{outcome="invalid"} 1.0' in metrics
    assert 'dyzur_oncall_links_total{outcome="expired"} 0.0' in metrics


def test_the_stylesheet_is_served_by_the_bridge_with_the_same_headers(api):
    css = api.get("/static/dyzur.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert css.headers["x-frame-options"] == "DENY"


def test_the_api_keeps_its_own_headers(api):
    assert "content-security-policy" not in api.get("/healthz").headers
