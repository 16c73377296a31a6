"""On call end to end (issue 17): a real bridge process pages the engineer on duty through a
real SMTP server (aiosmtpd) and a real HTTP server standing in for the SMS gateway, both at
once with the same link, and the link acknowledges the ticket; an SMS the gateway refuses goes
by the fallback channel (a second gateway); a bridge SIGKILLed between the ticket and the page
pages once after its restart. The escalation's timing (minutes) runs in process, with the
bridge's clock controlled.

A process reads the real clock: its rota has a 24-hour shift around now, and the tickets are
Klinika B's, whose 24/7 contract pages at any hour.
"""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import yaml

from bridge.config import parse_config
from bridge.delivery.oncall.links import PageLinks
from bridge.store import open_store
from tests.conftest import auth, free_port
from tests.oncall_parts import (
    SMS_SECRET,
    forged,
    link_in,
    mail_server,
    oncall_config,
    pages_to,
    sms_gateway,
    sms_texts,
    token_of,
)
from tests.processes import RunningBridge, wait_for
from tests.test_sink_webhook import FAST, push, ticket_of

ANNA = "anna@serwis.example.pl"
ANNA_PHONE = "+48601000001"
JOHN = "john@serwis.example.pl"
HEAD = "ewa@serwis.example.pl"
STORE = "sqlite:///var/dyzur.db"


def real_bridge(
    tmp_path, smtp, gateway, backup_sms_url: str | None = None, **oncall
) -> tuple[RunningBridge, dict]:
    """A bridge process on a free port whose links point at itself, ticking every second."""
    port = free_port()
    now = datetime.now(UTC)
    data = oncall_config(
        tmp_path,
        smtp.url,
        gateway.url,
        now - timedelta(hours=1),
        store=STORE,
        public_url=f"http://127.0.0.1:{port}",
        escalate_after="1h",
        backup_sms_url=backup_sms_url,
    )
    data["tick_interval"] = "1s"
    data["oncall"].update(oncall)
    config = tmp_path / "dyzur.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True))
    return RunningBridge(config, port), data


def samples(value: float) -> dict:
    sample = {
        "metric": "dz_test_disk_used_ratio",
        "labels": {"asset": "srv-b1", "mountpoint": "/var"},
        "value": value,
    }
    return {"samples": [sample]}


def open_ticket(http: httpx.Client, bridge: RunningBridge) -> str:
    """An Awaria of Klinika B through the API, as an agent pushes it; its number."""
    r = http.post(f"{bridge.url}/api/v1/samples", json=samples(0.99), headers=auth("agent"))
    assert r.status_code == 200, r.text
    found = http.get(f"{bridge.url}/api/v1/tickets?client=klinika-b", headers=auth("admin"))
    [ticket] = found.json()
    assert ticket["category"] == "awaria"
    return ticket["number"]


def in_store(tmp_path, read):
    store = open_store(STORE, tmp_path)
    try:
        return read(store)
    finally:
        store.close()


def test_a_real_bridge_pages_by_email_and_sms_at_once_and_the_link_acknowledges_once(
    tmp_path, smtp, gateway
):
    # Anna's channels page at once: the SMS wakes her, the e-mail carries the detail.
    bridge, _ = real_bridge(tmp_path, smtp, gateway)
    try:
        with httpx.Client(timeout=30) as http:
            number = open_ticket(http, bridge)
            wait_for(lambda: sms_texts(gateway, ANNA_PHONE), timeout=60, what="the SMS to Anna")
            wait_for(lambda: pages_to(smtp.mailbox, ANNA), timeout=60, what="Anna's e-mail")
            [sms] = sms_texts(gateway, ANNA_PHONE)
            [mail] = pages_to(smtp.mailbox, ANNA)
            assert len(sms) <= 160 and number in sms and number in mail["Subject"]
            headers, _, _ = gateway.requests[0]
            assert headers["authorization"] == f"Bearer {SMS_SECRET}"
            link = link_in(mail.get_content())
            assert link.startswith(f"{bridge.url}/oncall/ack/")
            assert link_in(sms) == link  # one page: the same one-time link by both channels

            # GET shows the ticket and changes nothing (a mail scanner opens links).
            for _ in range(2):
                page = http.get(link)
                assert page.status_code == 200 and number in page.text
                assert page.headers["x-frame-options"] == "DENY"
            shown = http.get(f"{bridge.url}/api/v1/tickets/{number}", headers=auth("admin"))
            assert shown.json()["responded_at"] is None

            # POST acknowledges as Anna.
            done = http.post(link)
            assert done.status_code == 200 and "Potwierdzono" in done.text
            shown = http.get(f"{bridge.url}/api/v1/tickets/{number}", headers=auth("admin"))
            ticket = shown.json()
            assert ticket["responded_by"] == "oncall:anna" and ticket["responded_at"]
            kinds = [line["kind"] for line in ticket["timeline"]]
            assert "acknowledged" in kinds and "paged" in kinds

            # Reused, forged (one byte changed) and expired links change nothing.
            assert http.post(link).status_code == 409
            fake = link.replace(token_of(link), forged(token_of(link)))
            assert http.post(fake).status_code == 404
            key = (tmp_path / "oncall-link.key").read_bytes().strip()
            expired = PageLinks(key, bridge.url).url(
                number, "anna", 0, datetime.now(UTC) - timedelta(seconds=1)
            )
            assert http.post(expired).status_code == 410
            again = http.get(f"{bridge.url}/api/v1/tickets/{number}", headers=auth("admin"))
            assert again.json() == ticket
    finally:
        bridge.stop()
    # The escalation stopped, and each channel paged Anna once.
    paging = in_store(tmp_path, lambda store: store.paging(number))
    assert paging.stopped_by == "acknowledged"
    assert len(sms_texts(gateway)) == 1 and len(smtp.mailbox.taken) == 1
    assert len(gateway.requests) == 1 and smtp.mailbox.refused == 0
    pages = in_store(tmp_path, lambda store: store.pages(number))
    assert sorted((p.person, p.channel, p.outcome) for p in pages) == [
        ("anna", "mail", "delivered"),
        ("anna", "sms", "delivered"),
    ]
    assert token_of(link) not in bridge.output()


def test_a_real_bridge_sends_an_sms_the_gateway_refuses_by_the_fallback_gateway(
    tmp_path, smtp, gateway
):
    gateway.script = [(400, {})]  # the first gateway will not send this one
    backup = sms_gateway()
    bridge, _ = real_bridge(tmp_path, smtp, gateway, backup_sms_url=backup.url)
    try:
        with httpx.Client(timeout=30) as http:
            number = open_ticket(http, bridge)
            wait_for(lambda: sms_texts(backup, ANNA_PHONE), timeout=60, what="the fallback SMS")
            wait_for(lambda: pages_to(smtp.mailbox, ANNA), timeout=60, what="Anna's e-mail")
            [sms] = sms_texts(backup, ANNA_PHONE)
            [mail] = pages_to(smtp.mailbox, ANNA)
            assert number in sms and link_in(sms) == link_in(mail.get_content())
    finally:
        bridge.stop()
        backup.down()
    assert len(gateway.requests) == 1 and sms_texts(gateway) == []
    assert len(backup.requests) == 1 and len(smtp.mailbox.taken) == 1
    pages = in_store(tmp_path, lambda store: store.pages(number))
    assert [(p.channel, p.outcome) for p in pages] == [
        ("mail", "delivered"),
        ("sms", "failed"),
        ("sms-backup", "delivered"),
    ]


def test_a_bridge_killed_between_the_ticket_and_the_page_pages_once_after_restart(
    tmp_path, smtp, gateway
):
    # Nothing can be delivered before the kill: the mail server says 451 and the SMS gateway
    # is down until then.
    smtp.mailbox.closed = True
    gateway.down()
    bridge, _ = real_bridge(tmp_path, smtp, gateway, fallback_after="1h")
    config = tmp_path / "dyzur.yaml"
    port = int(bridge.url.rsplit(":", 1)[1])
    try:
        with httpx.Client(timeout=30) as http:
            r = http.post(f"{bridge.url}/api/v1/samples", json=samples(0.99), headers=auth("agent"))
            assert r.status_code == 200, r.text
            bridge.stop(signal.SIGKILL)  # right after the sample push was answered
            smtp.mailbox.closed = False
            gateway.up()  # on the same port
            bridge = RunningBridge(config, port)
            number = ticket_of_process(http, bridge)
            # The killed process's outbox leases run out (30 s), then the pages go, once.
            wait_for(lambda: pages_to(smtp.mailbox, ANNA), timeout=90, what="Anna's e-mail")
            wait_for(lambda: sms_texts(gateway, ANNA_PHONE), timeout=90, what="Anna's SMS")
            time.sleep(3)  # a second page, if any, would come right after the first
            wait_for(
                lambda: all(p.outcome for p in in_store(tmp_path, lambda s: s.pages(number))),
                timeout=30,
                what="the pages' outcomes recorded",
            )
    finally:
        bridge.stop()
    [mail] = pages_to(smtp.mailbox, ANNA)
    [sms] = sms_texts(gateway, ANNA_PHONE)
    assert number in mail["Subject"] and number in sms
    assert len(smtp.mailbox.taken) == 1 and len(gateway.requests) == 1
    pages = in_store(tmp_path, lambda store: store.pages(number))
    assert sorted((p.person, p.channel, p.outcome) for p in pages) == [
        ("anna", "mail", "delivered"),
        ("anna", "sms", "delivered"),
    ]


def ticket_of_process(http: httpx.Client, bridge: RunningBridge) -> str:
    found = http.get(f"{bridge.url}/api/v1/tickets?client=klinika-b", headers=auth("admin"))
    [ticket] = found.json()
    return ticket["number"]


# --- the escalation's timing, in process with the clock controlled --------------------------

NIGHT = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # Tuesday 03:00 in Warsaw


@pytest.fixture
def mail():
    server = mail_server()
    yield server
    server.down()


@pytest.fixture
def loaded(tmp_path, mail, gateway):
    data = oncall_config(tmp_path, mail.url, gateway.url, NIGHT - timedelta(hours=6))
    data["oncall"]["people"].append(
        {
            "id": "ewa",
            "name": "Ewa Wiśniewska",
            "email": HEAD,
            "language": "pl",
            "channels": ["mail"],
        }
    )
    data["oncall"]["escalation"].append({"after": "30m", "then": ["ewa"]})
    return parse_config(data, "test.yaml", tmp_path)


def test_at_night_nobody_answering_pages_the_next_step_whose_link_stops_the_escalation(
    api, bridge, clock, mail
):
    clock.set(NIGHT)
    for worker in bridge.outbox.workers.values():
        worker.backoff = FAST
    bridge.outbox.start()
    push(api, "srv-b1", 0.99)
    number = ticket_of(api, "klinika-b")
    wait_for(lambda: pages_to(mail.mailbox, ANNA), timeout=20, what="Anna's page")
    [anna] = pages_to(mail.mailbox, ANNA)
    # 14 minutes: still Anna's turn.
    clock.advance(14 * 60)
    bridge.pager.tick()
    assert not pages_to(mail.mailbox, JOHN)
    # 15 minutes without an acknowledgment: John, with Anna's page and its time in his.
    clock.advance(60)
    bridge.pager.tick()
    wait_for(lambda: pages_to(mail.mailbox, JOHN), timeout=20, what="John's page")
    [john] = pages_to(mail.mailbox, JOHN)
    assert "Anna Nowak" in john.get_content() and "03:00" in john.get_content()
    # Anna's link expired with John's page; John's acknowledges.
    anna_link, john_link = link_in(anna.get_content()), link_in(john.get_content())
    path = lambda link: link[link.index("/oncall/") :]  # noqa: E731
    assert api.post(path(anna_link)).status_code == 410
    assert (
        api.get(f"/api/v1/tickets/{number}", headers=auth("admin")).json()["responded_at"] is None
    )
    clock.advance(60)
    assert api.post(path(john_link)).status_code == 200
    # The head of service (after 30 more minutes) is never paged.
    clock.advance(3600)
    bridge.pager.tick()
    bridge.outbox.notify()
    wait_for(lambda: bridge.store.paging(number).stopped_by, what="the paging stopped")
    assert not pages_to(mail.mailbox, HEAD)
    shown = api.get(f"/api/v1/tickets/{number}", headers=auth("admin")).json()
    assert shown["responded_by"] == "oncall:john"
    assert [(p.person, p.channel) for p in bridge.store.pages(number)] == [
        ("anna", "mail"),
        ("anna", "sms"),
        ("john", "mail"),
        ("john", "sms"),
    ]
