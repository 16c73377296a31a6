"""Paging through the bridge with a controlled clock, against a real SMTP server (aiosmtpd with
STARTTLS) and a real HTTP server standing in for an SMS gateway (tests/sms_gateway.py): who is
paged for which ticket and when (by all of a person's channels at once), escalation when nobody
acknowledges, a fallback channel (a second SMS gateway) when a channel is down or refuses, and
nothing for what must not page."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta

import pytest

from bridge.config import parse_config
from bridge.delivery.oncall.links import PageLinks
from bridge.delivery.outbox import Backoff
from bridge.maintenance.planning import WindowRequest
from bridge.store.roles import OncallOverride
from tests.conftest import START, auth, config_data
from tests.processes import wait_for
from tests.sms_gateway import SmsGatewayServer
from tests.test_sink_email import Certs, Mailbox, SmtpServer
from tests.test_sink_webhook import push, ticket_of

PUBLIC_URL = "https://dyzur.example.pl"
LINK_KEY = b"a-link-key-for-the-tests-0123456789"
SMS_SECRET = "sms-gateway-token-0123"
SENDER = "dyzur@serwis.example.pl"
NIGHT = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # a Tuesday, 03:00 in Warsaw
FAST = Backoff(base=0.02, cap=0.1, jitter=0.0)
SMS_BODY = (
    '{"to": "{{ phone }}", "message": "{{ text }}", "encoding": "{{ encoding }}", '
    '"parts": {{ segments }}}'
)
JAN, EWA, OLEK = "+48601000001", "+48601000002", "+48601000003"
JAN_MAIL, EWA_MAIL = "jan@serwis.example.pl", "ewa@serwis.example.pl"


@pytest.fixture
def gateway():
    g = SmsGatewayServer()
    g.up()
    yield g
    g.down()


@pytest.fixture
def backup():
    """A second SMS gateway: Jan's fallback channel."""
    g = SmsGatewayServer()
    g.up()
    yield g
    g.down()


@pytest.fixture
def mailbox():
    return Mailbox()


@pytest.fixture
def smtp(mailbox, tmp_path):
    server = SmtpServer(mailbox, Certs(tmp_path), "starttls")
    server.up()
    yield server
    server.down()


@pytest.fixture
def oncall_settings():
    """What a test changes in the oncall section."""
    return {}


@pytest.fixture
def loaded(tmp_path, smtp, gateway, backup, oncall_settings):
    """Klinika B (24/7, English) and Szpital A (standard hours, Polish); Jan on duty in the
    primary rota every day (SMS and e-mail, a second SMS gateway as his fallback), Ewa in the
    secondary one (e-mail and SMS), Olek the last step (SMS)."""
    (tmp_path / "link.key").write_bytes(LINK_KEY)
    (tmp_path / "link.key").chmod(0o600)
    (tmp_path / "sms.secret").write_text(SMS_SECRET + "\n")
    (tmp_path / "sms.secret").chmod(0o600)
    data = config_data()
    data["public_url"] = PUBLIC_URL
    data["clients"][0]["name"] = "Szpital Wojewódzki A"
    for asset in data["assets"]:  # no agent_silent Awaria when the clock jumps an hour
        asset["reports"] = False
    data["oncall"] = {
        "people": [
            {
                "id": "jan",
                "name": "Jan Kowalski",
                "email": "jan@serwis.example.pl",
                "phone": JAN,
                "channels": ["sms", "email"],
                "fallback_channels": ["sms-backup"],
            },
            {
                "id": "ewa",
                "name": "Ewa Nowak",
                "email": "ewa@serwis.example.pl",
                "phone": EWA,
                "language": "en",
                "channels": ["email", "sms"],
            },
            {"id": "olek", "name": "Olek Wiśniewski", "phone": OLEK, "channels": ["sms"]},
        ],
        "shifts": [
            {
                "person": "jan",
                "start": "2026-11-20T08:00",
                "duration": "24h",
                "rrule": "FREQ=DAILY",
            },
            {
                "person": "ewa",
                "start": "2026-11-20T08:00",
                "duration": "24h",
                "rrule": "FREQ=DAILY",
                "rota": "secondary",
            },
        ],
        "channels": {
            "email": {
                "kind": "email",
                "url": smtp.url,
                "ca_file": smtp.certs.ca_file.name,
                "from": f"Dyżur <{SENDER}>",
            },
            "sms": {
                "kind": "webhook",
                "url": gateway.url,
                "body": SMS_BODY,
                "secret_file": "sms.secret",
            },
            "sms-backup": {
                "kind": "webhook",
                "url": backup.url,
                "body": SMS_BODY,
                "secret_file": "sms.secret",
            },
        },
        "escalation": [
            {"after": "15m", "then": ["rota:secondary"]},
            {"after": "15m", "then": ["olek"]},
        ],
        "fallback_after": "5m",
        "link_key_file": "link.key",
    }
    data["oncall"].update(oncall_settings)
    return parse_config(data, "test.yaml", tmp_path)


def start_delivery(bridge):
    for worker in bridge.outbox.workers.values():
        worker.backoff = FAST
    bridge.outbox.start()


def settled(bridge, but: tuple[str, ...] = ()) -> None:
    """Wait until every outbox consumer (but those named) has taken everything written."""

    def done() -> bool:
        high = bridge.store.audit_high_water()
        return all(
            bridge.store.cursor(name).last_id >= high
            for name in bridge.outbox.workers
            if name not in but
        )

    wait_for(done, timeout=20, what="the outbox consumers to catch up")


def awaria(api, asset: str) -> str:
    push(api, asset, 0.99)
    client = "szpital-a" if asset.startswith("srv-a") else "klinika-b"
    number = ticket_of(api, client)
    shown = api.get(f"/api/v1/tickets/{number}", headers=auth("admin")).json()
    assert shown["category"] == "awaria"
    return number


def timeline(bridge, number: str, *kinds: str) -> list[str]:
    return [e.message for e in bridge.store.timeline(number) if e.kind in kinds]


def page_events(bridge, number: str | None = None):
    return [
        e
        for e in bridge.store.audit_events(0, 10_000, None)
        if e.action == "oncall.page" and (number is None or e.detail["ticket"] == number)
    ]


def metric(bridge, name: str, **labels: str) -> float:
    return bridge.metrics.registry.get_sample_value(name, labels) or 0.0


def sms_to(gateway, phone: str) -> list[dict]:
    return [m for m in gateway.messages() if m["to"] == phone]


def mails(mailbox, address: str | None = None) -> list[email.message.EmailMessage]:
    """The e-mails the SMTP server took (to ``address``)."""
    return [
        m
        for m in mailbox.messages()
        if address is None or address in [a.addr_spec for a in m["To"].addresses]
    ]


def link_in(text: str) -> str:
    found = re.search(rf"{re.escape(PUBLIC_URL)}/oncall/ack/([A-Za-z0-9_-]+)", text)
    assert found, text
    return found[1]


def test_a_night_awaria_on_a_24_7_contract_pages_the_person_on_duty_by_email_and_sms(
    api, bridge, clock, gateway, backup, mailbox
):
    clock.set(NIGHT)
    number = awaria(api, "srv-b1")
    start_delivery(bridge)
    # Both of Jan's channels page at once: the SMS wakes him, the e-mail carries the detail.
    wait_for(lambda: sms_to(gateway, JAN), timeout=20, what="the SMS to Jan")
    wait_for(lambda: mails(mailbox, JAN_MAIL), timeout=20, what="the e-mail to Jan")
    settled(bridge)
    [sms] = gateway.messages()
    # The SMS: Polish (Jan's language), within 160 characters, with the ticket and the link.
    text = sms["message"]
    assert len(text) <= 160
    assert text.startswith(f"DYŻUR Awaria {number} Klinika B: ")
    assert "Potwierdź: " in text
    # Polish letters: UCS-2, 70 characters in one part, 67 per part of a longer one.
    assert sms["encoding"] == "ucs2"
    assert sms["parts"] == (1 if len(text) <= 70 else -(-len(text) // 67))
    claim = PageLinks(LINK_KEY, PUBLIC_URL).verify(link_in(text), clock.now())
    assert (claim.ticket, claim.person, claim.step) == (number, "jan", 0)
    assert claim.expires == NIGHT + timedelta(minutes=15)  # when the next step would page
    # As the gateway sees it: the bearer token, the signature of the exact body, the key.
    [(headers, body, status)] = gateway.requests
    assert status == 200 and headers[":method"] == "POST"
    assert headers["authorization"] == f"Bearer {SMS_SECRET}"
    mac = hmac.new(SMS_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["x-dyzur-signature"] == f"sha256={mac}"
    # The e-mail: to Jan, in Polish, with the ticket and the same one-time link as the SMS.
    [mail] = mails(mailbox)
    assert [a.addr_spec for a in mail["To"].addresses] == [JAN_MAIL]
    assert mail["Subject"].startswith(f"[{number}] DYŻUR: Awaria – Klinika B: ")
    assert link_in(mail.get_content()) == link_in(text)
    sms_page, mail_page = page_events(bridge, number)
    assert headers["idempotency-key"] == sms_page.hash
    assert {sms_page.detail["ticket"], mail_page.detail["ticket"]} == {number}
    assert [
        (p.detail["person"], p.detail["channel"], p.detail["step"]) for p in (sms_page, mail_page)
    ] == [
        ("jan", "sms", 0),
        ("jan", "email", 0),
    ]
    # Nobody else, and no fallback: both channels delivered.
    assert backup.requests == [] and len(gateway.requests) == 1 and len(mails(mailbox)) == 1
    # The ticket says who was paged (Klinika B reads English).
    assert sorted(timeline(bridge, number, "paged")) == [
        "On-call page sent: Jan Kowalski, email (step 1).",
        "On-call page sent: Jan Kowalski, sms (step 1).",
    ]
    assert metric(bridge, "dyzur_oncall_pages_total", channel="sms", outcome="delivered") == 1
    assert metric(bridge, "dyzur_oncall_pages_total", channel="email", outcome="delivered") == 1
    assert bridge.store.paging(number).next_at == NIGHT + timedelta(minutes=15)


def test_nobody_acknowledging_pages_the_next_steps_naming_the_earlier_pages(
    api, bridge, clock, gateway, mailbox
):
    clock.set(NIGHT)
    number = awaria(api, "srv-b1")
    start_delivery(bridge)
    wait_for(lambda: sms_to(gateway, JAN), timeout=20, what="the SMS to Jan")
    wait_for(lambda: mails(mailbox, JAN_MAIL), timeout=20, what="the e-mail to Jan")
    clock.advance(14 * 60)
    bridge.tick()
    settled(bridge)
    assert mails(mailbox, EWA_MAIL) == [] and sms_to(gateway, EWA) == []  # not yet
    clock.advance(60)
    bridge.tick()
    # Step 2: Ewa, on duty in the secondary rota, by e-mail and SMS at once, in English.
    wait_for(lambda: mails(mailbox, EWA_MAIL), timeout=20, what="the e-mail to Ewa")
    wait_for(lambda: sms_to(gateway, EWA), timeout=20, what="the SMS to Ewa")
    settled(bridge)
    [mail] = mails(mailbox, EWA_MAIL)
    assert mail["Subject"].startswith(f"[{number}] ON CALL (escalated, step 2): Outage (Awaria)")
    assert mail["Importance"] == "high" and mail["Auto-Submitted"] == "auto-generated"
    text = mail.get_content()
    assert "Escalation, step 2: nobody acknowledged the earlier pages." in text
    assert "Paged before: Jan Kowalski 2026-11-24 03:00 CET (sms, email)" in text.splitlines()
    assert "valid until 2026-11-24 03:30 CET" in text
    claim = PageLinks(LINK_KEY, PUBLIC_URL).verify(link_in(text), clock.now())
    assert (claim.ticket, claim.person, claim.step) == (number, "ewa", 1)
    [ewa] = sms_to(gateway, EWA)
    assert ewa["message"].startswith(f"ON CALL Outage {number} (2) ")
    assert link_in(ewa["message"]) == link_in(text)
    # Jan is not paged again at this step.
    assert len(sms_to(gateway, JAN)) == 1 and len(mails(mailbox, JAN_MAIL)) == 1
    # Step 3: Olek by SMS, naming both earlier pages' times.
    clock.advance(15 * 60)
    bridge.tick()
    wait_for(lambda: sms_to(gateway, OLEK), timeout=20, what="the SMS to Olek")
    [olek] = sms_to(gateway, OLEK)
    assert "(3)" in olek["message"] and "Wcześniej: 03:00, 03:15." in olek["message"]
    assert len(olek["message"]) <= 160
    # The last step: nothing more, however long nobody answers.
    clock.advance(3600)
    bridge.tick()
    settled(bridge)
    assert [(e.detail["person"], e.detail["channel"]) for e in page_events(bridge, number)] == [
        ("jan", "sms"),
        ("jan", "email"),
        ("ewa", "email"),
        ("ewa", "sms"),
        ("olek", "sms"),
    ]
    assert [e.detail["step"] for e in bridge.store.audit_events(0, 10_000, None)
            if e.action == "oncall.escalated"] == [1, 2]  # fmt: skip
    assert timeline(bridge, number, "oncall_escalated") == [
        "No acknowledgment within 15 min: escalated to step 2, paging: Ewa Nowak.",
        "No acknowledgment within 15 min: escalated to step 3, paging: Olek Wiśniewski.",
    ]
    assert sorted(timeline(bridge, number, "paged")) == [
        "On-call page sent: Ewa Nowak, email (step 2).",
        "On-call page sent: Ewa Nowak, sms (step 2).",
        "On-call page sent: Jan Kowalski, email (step 1).",
        "On-call page sent: Jan Kowalski, sms (step 1).",
        "On-call page sent: Olek Wiśniewski, sms (step 3).",
    ]
    assert metric(bridge, "dyzur_oncall_escalations_total", step="1") == 1
    assert metric(bridge, "dyzur_oncall_escalations_total", step="2") == 1


def test_an_acknowledgment_stops_the_escalation_at_once(api, bridge, clock, gateway, mailbox):
    clock.set(NIGHT)
    number = awaria(api, "srv-b1")
    start_delivery(bridge)
    wait_for(lambda: sms_to(gateway, JAN), timeout=20, what="the SMS to Jan")
    wait_for(lambda: mails(mailbox, JAN_MAIL), timeout=20, what="the e-mail to Jan")
    clock.advance(10 * 60)
    r = api.post(f"/api/v1/tickets/{number}/ack", headers=auth("engineer"))
    assert r.status_code == 200
    # The ticker reads the ticket itself: the step due now is not paged, whether or not the
    # pager has read the acknowledgment yet.
    clock.advance(5 * 60)
    bridge.tick()
    clock.advance(3600)
    bridge.tick()
    settled(bridge)
    assert [e.detail["person"] for e in page_events(bridge, number)] == ["jan", "jan"]
    assert len(mails(mailbox)) == 1 and len(gateway.messages()) == 1
    paging = bridge.store.paging(number)
    assert paging.stopped_by == "acknowledged" and paging.step == 0
    # Time from the ticket to its acknowledgment, by category and the hour it opened (03).
    count = "dyzur_time_to_acknowledge_seconds_count"
    assert metric(bridge, count, category="awaria", hour="03") == 1
    assert metric(bridge, "dyzur_time_to_acknowledge_seconds_sum", category="awaria", hour="03")


def test_a_standard_contracts_awaria_pages_in_service_hours_only(
    api, bridge, clock, gateway, mailbox
):
    clock.set(NIGHT)  # 03:00: Szpital A's standard hours are Mon-Fri 07:00-15:00
    night = awaria(api, "srv-a1")
    start_delivery(bridge)
    settled(bridge)
    assert page_events(bridge) == [] and gateway.messages() == []
    # 10:00 the same day: an Awaria of Szpital A pages at once.
    clock.set(NIGHT + timedelta(hours=7))
    day = awaria(api, "srv-a2")
    wait_for(lambda: sms_to(gateway, JAN), timeout=20, what="the SMS of the day's Awaria")
    wait_for(lambda: mails(mailbox, JAN_MAIL), timeout=20, what="the e-mail of the day's Awaria")
    settled(bridge)
    assert [e.detail["ticket"] for e in page_events(bridge)] == [day, day]
    [sms] = gateway.messages()
    assert f"DYŻUR Awaria {day} Szpital Wojewódzki A: " in sms["message"]
    [mail] = mails(mailbox)
    assert mail["Subject"].startswith(f"[{day}] DYŻUR: Awaria – Szpital Wojewódzki A: ")
    assert sorted(timeline(bridge, day, "paged")) == [
        "Powiadomienie dyżurnego wysłane: Jan Kowalski, email (krok 1).",
        "Powiadomienie dyżurnego wysłane: Jan Kowalski, sms (krok 1).",
    ]
    assert bridge.store.paging(night) is None


def test_a_night_awaria_of_a_standard_contract_pages_when_its_deadline_is_at_risk(
    api, bridge, clock, gateway
):
    """Its reaction clock starts at 07:00: 2 h to 09:00, at risk at 08:30, in service hours."""
    clock.set(NIGHT)
    number = awaria(api, "srv-a1")
    start_delivery(bridge)
    bridge.tick()
    settled(bridge)
    assert gateway.messages() == []
    clock.set(datetime(2026, 11, 24, 7, 30, tzinfo=UTC))  # 08:30 in Warsaw
    bridge.tick()
    wait_for(lambda: sms_to(gateway, JAN), timeout=20, what="the at-risk page")
    events = page_events(bridge, number)
    assert [e.detail["channel"] for e in events] == ["sms", "email"]
    assert {e.at for e in events} == {clock.now()}


@pytest.mark.parametrize("oncall_settings", [{"page_outside_service_hours": ["szpital-a"]}])
def test_a_hospital_paged_outside_its_service_hours(api, bridge, clock, gateway):
    clock.set(NIGHT)
    number = awaria(api, "srv-a1")
    start_delivery(bridge)
    wait_for(lambda: sms_to(gateway, JAN), timeout=20, what="the night SMS")
    assert [e.detail["ticket"] for e in page_events(bridge)] == [number, number]


def test_an_override_moves_the_page(api, bridge, clock, gateway):
    bridge.store.add_oncall_override(
        OncallOverride(
            rota="primary",
            shift_person="jan",
            person="olek",
            start=NIGHT - timedelta(hours=1),
            end=NIGHT + timedelta(hours=2),
            client=None,
            reason="Jan chory",
            created_by="admin",
            created_at=START,
        )
    )
    clock.set(NIGHT)
    number = awaria(api, "srv-b1")
    start_delivery(bridge)
    wait_for(lambda: sms_to(gateway, OLEK), timeout=20, what="the SMS to Olek")
    settled(bridge)
    assert sms_to(gateway, JAN) == []
    assert [e.detail["person"] for e in page_events(bridge, number)] == ["olek"]


def test_a_channel_down_for_an_hour_delivers_late_but_once_and_the_fallback_channel_meanwhile(
    api, bridge, clock, gateway, backup, mailbox
):
    gateway.down()
    clock.set(NIGHT)
    number = awaria(api, "srv-b1")
    start_delivery(bridge)
    # The e-mail pages at once; the SMS gateway is down.
    wait_for(lambda: mails(mailbox, JAN_MAIL), timeout=20, what="the e-mail to Jan")
    wait_for(
        lambda: metric(bridge, "dyzur_oncall_pages_total", channel="sms", outcome="retried"),
        timeout=20,
        what="the SMS to fail",
    )
    clock.advance(4 * 60)
    bridge.tick()
    settled(bridge, but=("page:sms",))
    assert backup.requests == []  # not yet: fallback_after is 5 min
    clock.advance(60)
    bridge.tick()
    # The same page by Jan's fallback channel, the second SMS gateway, with the same link.
    wait_for(lambda: sms_to(backup, JAN), timeout=20, what="the SMS standing in for the SMS")
    [sms] = sms_to(backup, JAN)
    assert sms["message"].startswith(f"DYŻUR Awaria {number} Klinika B: ")
    [mail] = mails(mailbox)
    assert link_in(sms["message"]) == link_in(mail.get_content())
    sms_page, mail_page, backup_page = page_events(bridge, number)
    assert [p.detail["channel"] for p in (sms_page, mail_page, backup_page)] == [
        "sms",
        "email",
        "sms-backup",
    ]
    assert backup_page.detail["fallback_for"] == sms_page.id
    assert "fallback_for" not in mail_page.detail or mail_page.detail["fallback_for"] is None
    claim = PageLinks(LINK_KEY, PUBLIC_URL).verify(link_in(sms["message"]), clock.now())
    assert (claim.person, claim.step) == ("jan", 0)
    # An hour later the gateway is back: the SMS goes, once; nothing else is sent again.
    clock.advance(55 * 60)
    gateway.up()
    wait_for(lambda: sms_to(gateway, JAN), timeout=20, what="the late SMS")
    settled(bridge)
    assert len(gateway.messages()) == 1 and len(gateway.requests) == 1
    assert len(backup.requests) == 1 and len(mails(mailbox)) == 1
    assert len(page_events(bridge, number)) == 3
    assert timeline(bridge, number, "page_fallback") == [
        "The page to Jan Kowalski by sms not delivered since 2026-11-24 03:00:00: sent by "
        "sms-backup too."
    ]
    assert timeline(bridge, number, "paged") == [
        "On-call page sent: Jan Kowalski, email (step 1).",
        "On-call page sent: Jan Kowalski, sms-backup (step 1).",
        "On-call page sent: Jan Kowalski, sms (step 1, due since 2026-11-24 03:00:00).",
    ]
    assert metric(bridge, "dyzur_oncall_pages_total", channel="sms", outcome="delivered") == 1


def test_a_ticket_resolved_before_its_page_is_decided_pages_nobody(api, bridge, clock, gateway):
    clock.set(NIGHT)
    number = awaria(api, "srv-b1")
    clock.advance(30)
    push(api, "srv-b1", 0.5)  # recovered: the ticket is resolved
    start_delivery(bridge)
    settled(bridge)
    assert page_events(bridge) == [] and gateway.messages() == []
    assert bridge.store.paging(number) is None


def test_a_page_waiting_for_its_channel_is_skipped_once_the_ticket_is_resolved(
    api, bridge, clock, gateway
):
    gateway.down()
    clock.set(NIGHT)
    number = awaria(api, "srv-b1")
    start_delivery(bridge)
    settled(bridge, but=("page:sms",))
    assert [e.detail["channel"] for e in page_events(bridge, number)] == ["sms", "email"]
    clock.advance(60)
    push(api, "srv-b1", 0.5)
    [page] = [p for p in bridge.store.pages(number) if p.channel == "sms"]
    wait_for(
        lambda: bridge.store.page(page.event_id).outcome == "skipped",
        timeout=20,
        what="the waiting page to be skipped",
    )
    gateway.up()
    settled(bridge)
    assert gateway.requests == []
    assert metric(bridge, "dyzur_oncall_pages_total", channel="sms", outcome="skipped") == 1
    assert bridge.store.paging(number).stopped_by == "resolved"


def test_a_usterka_does_not_page_until_it_is_escalated_to_awaria(api, bridge, clock, gateway):
    clock.set(NIGHT)
    push(api, "srv-b1", 0.95)
    number = ticket_of(api, "klinika-b")
    start_delivery(bridge)
    settled(bridge)
    assert page_events(bridge) == []
    clock.advance(60)
    push(api, "srv-b1", 0.99)  # escalated to Awaria
    wait_for(lambda: sms_to(gateway, JAN), timeout=20, what="the page of the escalated ticket")
    settled(bridge)
    assert [e.detail["ticket"] for e in page_events(bridge)] == [number, number]


def test_an_awaria_released_from_a_maintenance_window_pages_like_a_new_one(
    api, bridge, clock, gateway, mailbox
):
    """Held by a window at night, the Awaria pages nobody while the window runs; still firing
    when it ends, its ticket opens then and pages the person on duty as a new one would."""
    window = bridge.maintenance.plan(
        WindowRequest(
            client="klinika-b",
            start=NIGHT,
            end=NIGHT + timedelta(hours=1),
            reason="aktualizacja systemu",
            assets=["srv-b1"],
        ),
        "jan.kowalski",
    )
    clock.set(NIGHT)
    push(api, "srv-b1", 0.99)
    start_delivery(bridge)
    bridge.tick()
    settled(bridge)
    assert api.get("/api/v1/tickets?client=klinika-b", headers=auth("admin")).json() == []
    assert page_events(bridge) == [] and gateway.messages() == []
    clock.set(window.end)
    bridge.tick()  # the window ends with the alert still firing: its ticket opens now
    number = ticket_of(api, "klinika-b")
    assert timeline(bridge, number, "window_ended")
    wait_for(lambda: sms_to(gateway, JAN), timeout=20, what="the page of the released Awaria")
    wait_for(lambda: mails(mailbox, JAN_MAIL), timeout=20, what="the e-mail of the page")
    settled(bridge)
    events = page_events(bridge, number)
    assert [(e.detail["person"], e.detail["channel"], e.detail["step"]) for e in events] == [
        ("jan", "sms", 0),
        ("jan", "email", 0),
    ]
    assert {e.at for e in events} == {window.end}
    assert bridge.store.paging(number).next_at == window.end + timedelta(minutes=15)
    assert len(gateway.requests) == 1 and len(mails(mailbox)) == 1  # paged once, not twice


def test_a_page_offered_again_after_a_crash_is_decided_once(api, bridge, clock, gateway, mailbox):
    """The pager's cursor did not move past the ticket's change (the bridge died after the
    page was decided): the change read again pages nobody a second time."""
    clock.set(NIGHT)
    number = awaria(api, "srv-b1")
    [opened] = [
        e for e in bridge.store.audit_events(0, 10_000, None) if e.action == "ticket.opened"
    ]
    pager = bridge.pager
    assert pager.apply(opened) is True
    assert pager.apply(opened) is False  # the same change again
    assert len(page_events(bridge, number)) == 2  # Jan's SMS and e-mail
    start_delivery(bridge)  # the pager's cursor starts before the change: offered again
    wait_for(lambda: sms_to(gateway, JAN), timeout=20, what="the SMS")
    settled(bridge)
    assert len(page_events(bridge, number)) == 2 and len(gateway.requests) == 1
    assert len(mailbox.taken) == 1


def test_a_page_the_gateway_refuses_goes_by_the_fallback_channel_at_once(
    api, bridge, clock, gateway, backup, mailbox
):
    gateway.script = [(400, {})]  # say, a number the gateway will not send to
    clock.set(NIGHT)
    number = awaria(api, "srv-b1")
    start_delivery(bridge)
    wait_for(lambda: gateway.requests, timeout=20, what="the refused SMS")
    settled(bridge)
    [line] = timeline(bridge, number, "page_failed")
    assert line.startswith(
        f"The page to Jan Kowalski (sms, step 1) could not be delivered: {gateway.url} "
        "answered 400 Bad Request"
    )
    [failed] = [
        e
        for e in bridge.store.audit_events(0, 10_000, None)
        if e.action == "outbox.delivery_failed"
    ]
    assert failed.detail["consumer"] == "page:sms" and failed.outcome == "failure"
    assert metric(bridge, "dyzur_oncall_pages_total", channel="sms", outcome="failed") == 1
    bridge.tick()  # at once: no need to wait fallback_after for a refusal
    wait_for(lambda: sms_to(backup, JAN), timeout=20, what="the SMS by the second gateway")
    settled(bridge)
    [sms] = sms_to(backup, JAN)
    [mail] = mails(mailbox)  # the e-mail went at once anyway, and only once
    assert [a.addr_spec for a in mail["To"].addresses] == [JAN_MAIL]
    assert mail["To"].addresses[0].display_name == "Jan Kowalski"
    assert link_in(sms["message"]) == link_in(mail.get_content())
    assert len(gateway.requests) == 1 and len(backup.requests) == 1
