"""The e-mail helpdesk sink against a real SMTP server (aiosmtpd on a free loopback port, with
STARTTLS or implicit TLS from trustme certificates), driven end to end through the bridge:
every ticket is one thread as a mail client reads it (the first message's Message-ID in every
later message's In-Reply-To and References, the number in brackets in every subject), in the
contract's language, in order, and nothing is lost while the server is away."""

from __future__ import annotations

import email
import email.policy
import logging
import ssl
import threading
from collections import defaultdict
from datetime import datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from bridge.config import ConfigError, parse_config
from bridge.delivery.outbox import Backoff, Permanent, Retry
from bridge.delivery.sinks import TicketChange
from bridge.delivery.smtp import SmtpClient
from tests.conftest import START, auth, config_data, free_port
from tests.processes import wait_for
from tests.test_sink_webhook import changes, count, push, start_delivery, ticket_of

SENDER = "dyzur@serwis.example.pl"
INTAKE = "zgloszenia@helpdesk.example.pl"
PASSWORD = "Pa55-smtp-secret"
PUBLIC_URL = "https://dyzur.example.pl"
WARSAW = ZoneInfo("Europe/Warsaw")
ROUND = Backoff(base=0.25, cap=0.25, jitter=0.0)


class Mailbox:
    """The helpdesk's mail intake: keeps every message it took (as bytes, with its envelope
    and whether the session was encrypted); answers DATA from ``script`` first; refuses the
    recipients in ``unknown``."""

    def __init__(self) -> None:
        self.taken: list[tuple[bytes, str, list[str], bool, int]] = []
        self.script: list[str] = []
        self.unknown: set[str] = set()
        self.sessions: set[int] = set()
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.unknown:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.script:
                return self.script.pop(0)
            self.taken.append(
                (
                    envelope.original_content or envelope.content,
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    server.transport.get_extra_info("ssl_object") is not None,
                    id(session),
                )
            )
            self.sessions.add(id(session))
            return f"250 OK queued as Q{len(self.taken)}"

    def messages(self) -> list[EmailMessage]:
        with self.lock:
            raw = [content for content, *_ in self.taken]
        return [email.message_from_bytes(r, policy=email.policy.default) for r in raw]

    def threads(self) -> dict[str, list[EmailMessage]]:
        """The messages per ticket (X-Dyzur-Ticket), in arrival order."""
        per: dict[str, list[EmailMessage]] = defaultdict(list)
        for message in self.messages():
            per[message["X-Dyzur-Ticket"]].append(message)
        return dict(per)


class SmtpServer:
    """aiosmtpd on a fixed free port, stoppable and started again on the same port.
    ``mode``: starttls (required by the server), implicit (smtps), plain (no TLS at all)."""

    def __init__(self, mailbox: Mailbox, certs: Certs, mode: str, *, logins=None, **kwargs):
        self.mailbox = mailbox
        self.mode = mode
        self.port = free_port()  # aiosmtpd's Controller cannot take port 0
        self.logins = logins  # {user: password}: AUTH required
        self.kwargs = kwargs
        self.certs = certs
        self.controller: Controller | None = None

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.logins.get(auth_data.login.decode()) == auth_data.password.decode()
        )
        return AuthResult(success=ok, handled=False)

    def up(self) -> None:
        settings = dict(self.kwargs)
        if self.mode == "starttls":
            settings.update(tls_context=self.certs.server_context(), require_starttls=True)
        elif self.mode == "implicit":
            settings.update(ssl_context=self.certs.server_context())
        if self.logins is not None:
            settings.update(authenticator=self._authenticate, auth_required=True)
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port, **settings)
        self.controller.start()

    def down(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def url(self) -> str:
        scheme = "smtps" if self.mode == "implicit" else "smtp"
        return f"{scheme}://127.0.0.1:{self.port}"


class Certs:
    """A CA the sink trusts (ca_file) and the server's certificate for 127.0.0.1 from it."""

    def __init__(self, tmp_path) -> None:
        self.ca = trustme.CA()
        self.server = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = tmp_path / "helpdesk-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server.configure_cert(context)
        return context


@pytest.fixture
def certs(tmp_path):
    return Certs(tmp_path)


@pytest.fixture
def mailbox():
    return Mailbox()


@pytest.fixture
def mode():
    return "starttls"


@pytest.fixture
def logins():
    return None


@pytest.fixture
def server(mailbox, certs, mode, logins):
    s = SmtpServer(mailbox, certs, mode, logins=logins)
    s.up()
    yield s
    s.down()


@pytest.fixture
def settings():
    """What a test changes in the sink's configuration."""
    return {}


@pytest.fixture
def loaded(tmp_path, server, certs, settings):
    """The test configuration with one e-mail sink for every hospital's tickets."""
    data = config_data()
    data["public_url"] = PUBLIC_URL
    data["clients"][0]["name"] = "Szpital Wojewódzki A"
    data["assets"][0]["name"] = "Serwer HIS"
    sink = {
        "name": "helpdesk",
        "kind": "email",
        "url": server.url,
        "ca_file": certs.ca_file.name,
        "from": f"Dyżur <{SENDER}>",
        "to": [INTAKE],
    }
    sink.update(settings)
    if "password_file" in settings:
        password_file(tmp_path)
    data["sinks"] = [{k: v for k, v in sink.items() if v is not None}]
    return parse_config(data, "test.yaml", tmp_path)


def password_file(tmp_path, content: str = PASSWORD):
    path = tmp_path / "smtp.password"
    path.write_text(content + "\n")
    path.chmod(0o600)
    return path


def life(api, clock, asset="srv-a1"):
    """One ticket's life: opened (usterka), escalated (awaria), acknowledged, resolved."""
    push(api, asset, 0.95)
    clock.advance(60)
    push(api, asset, 0.99)
    clock.advance(60)
    client = "szpital-a" if asset.startswith("srv-a") else "klinika-b"
    number = ticket_of(api, client)
    assert api.post(f"/api/v1/tickets/{number}/ack", headers=auth("engineer")).status_code == 200
    clock.advance(60)
    push(api, asset, 0.5)
    clock.advance(60)
    return number


def actions(bridge) -> dict[str, list[str]]:
    """The ticket changes in the audit log as actions, per ticket in order."""
    by_id = {e.id: e for e in bridge.store.audit_events(0, 10_000, None)}
    return {n: [by_id[i].action for i in ids] for n, ids in changes(bridge).items()}


def all_delivered(bridge, mailbox):
    total = count(changes(bridge))
    wait_for(lambda: len(mailbox.taken) >= total, timeout=20, what="every change mailed")
    return total


def ids(header) -> list[str]:
    """The message ids of an In-Reply-To or References header, as a mail client reads them
    (folded or not)."""
    return str(header).split() if header is not None else []


def body_of(message: EmailMessage) -> str:
    return message.get_content()


def warsaw(iso: str, pattern: str) -> str:
    return datetime.fromisoformat(iso).astimezone(WARSAW).strftime(pattern)


def test_each_ticket_is_one_thread_in_the_contracts_language(api, bridge, clock, mailbox):
    number_a = life(api, clock, "srv-a1")
    number_b = life(api, clock, "srv-b1")
    start_delivery(bridge)
    all_delivered(bridge, mailbox)
    threads = mailbox.threads()
    expected = actions(bridge)
    assert set(threads) == {number_a, number_b}
    for number, thread in threads.items():
        # In order, each change once.
        assert [m["X-Dyzur-Change"] for m in thread] == expected[number]
        assert expected[number][:2] == ["ticket.opened", "ticket.escalated"]
        assert "ticket.acknowledged" in expected[number] and "ticket.resolved" in expected[number]
        # One thread: the first message starts it, every later one answers it.
        first = thread[0]["Message-ID"]
        assert first.startswith("<") and first.endswith("@serwis.example.pl>")
        assert thread[0]["In-Reply-To"] is None and thread[0]["References"] is None
        for later in thread[1:]:
            assert ids(later["In-Reply-To"]) == ids(later["References"]) == [first]
        assert len({m["Message-ID"] for m in thread}) == len(thread)
        for message in thread:
            assert message["Subject"].startswith(f"[{number}] ")
            assert message["Auto-Submitted"] == "auto-generated"
            assert message["From"].addresses[0].addr_spec == SENDER
            assert message["From"].addresses[0].display_name == "Dyżur"
            assert [a.addr_spec for a in message["To"].addresses] == [INTAKE]
            assert message.get_content_type() == "text/plain"
            assert message.get_content_charset() == "utf-8"
            assert f"{PUBLIC_URL}/api/v1/tickets/{number}" in body_of(message)
        # The thread's deliveries: the first Message-ID is the helpdesk's id of the ticket.
        shown = api.get(f"/api/v1/tickets/{number}", headers=auth("admin")).json()
        assert [(d["sink"], d["remote_id"], d["state"]) for d in shown["deliveries"]] == [
            ("helpdesk", first, "delivered")
        ]
    # Every message went in one encrypted session from the configured sender to the intake.
    assert {(s, tuple(r), tls) for _, s, r, tls, _ in mailbox.taken} == {(SENDER, (INTAKE,), True)}
    assert len(mailbox.sessions) == 1

    # Szpital A's contract is Polish: the subject and body as its engineers read them.
    polish = threads[number_a]
    ticket_a = api.get(f"/api/v1/tickets/{number_a}", headers=auth("admin")).json()
    assert polish[0]["Subject"] == f"[{number_a}] Usterka: {ticket_a['title']}"
    assert polish[1]["Subject"] == f"[{number_a}] Awaria: {ticket_a['title']}"
    opening = body_of(polish[0])
    assert "Zgłoszenie otwarte" in opening
    assert "Szpital:          Szpital Wojewódzki A (szpital-a)" in opening
    assert "Zasób:            srv-a1 (Serwer HIS)" in opening
    assert "Kategoria:        Usterka" in opening
    assert "Status:           otwarte" in opening
    assert "Czas zmiany:      23.11.2026 10:00 CET" in opening  # 09:00 UTC
    assert "Ostatnia wartość:" in opening and "Reguła:           disk_usage" in opening
    assert "mountpoint=/var" in opening
    escalated = body_of(polish[1])
    assert "Kategoria:        Awaria" in escalated
    due = warsaw(ticket_a["reaction_due"], "%d.%m.%Y %H:%M")
    assert f"Termin reakcji:   {due}" in escalated
    assert "Pierwsza reakcja" in body_of(polish[2]) and "jan.kowalski" in body_of(polish[2])
    resolved = body_of(polish[-1])
    assert "Status:           rozwiązane" in resolved
    assert "Wiadomość wysłana automatycznie przez dyzur" in resolved
    # Dates: the change's time, as the audit trail has it.
    trail = {e.id: e for e in bridge.store.audit_events(0, 10_000, None)}
    for message, event_id in zip(polish, changes(bridge)[number_a], strict=True):
        assert parsedate_to_datetime(message["Date"]) == trail[event_id].at

    # Klinika B's contract is English.
    english = threads[number_b]
    ticket_b = api.get(f"/api/v1/tickets/{number_b}", headers=auth("admin")).json()
    assert english[0]["Subject"] == f"[{number_b}] Fault (Usterka): {ticket_b['title']}"
    assert english[1]["Subject"] == f"[{number_b}] Outage (Awaria): {ticket_b['title']}"
    opening = body_of(english[0])
    assert "Ticket opened" in opening and "Hospital:          Klinika B (klinika-b)" in opening
    assert "Changed at:        2026-11-23 10:04 CET" in opening
    due = warsaw(ticket_b["reaction_due"], "%Y-%m-%d %H:%M")
    assert f"Reaction deadline: {due}" in body_of(english[1])
    assert "Zgłoszenie" not in opening and "Sent automatically by dyzur" in opening


def test_values_are_written_as_the_language_writes_numbers(api, bridge, clock, mailbox):
    push(api, "srv-a1", 0.9512)
    push(api, "srv-b1", 0.9512)
    start_delivery(bridge)
    all_delivered(bridge, mailbox)
    threads = mailbox.threads()
    polish = body_of(threads[ticket_of(api, "szpital-a")][0])
    english = body_of(threads[ticket_of(api, "klinika-b")][0])
    assert "Ostatnia wartość: 0,9512" in polish
    assert "Last value:        0.9512" in english


def test_a_change_sent_again_after_a_crash_keeps_its_message_id(api, bridge, clock, mailbox):
    """The bridge stops after the server took the messages and before it recorded them: the
    next bridge sends them again, each with the same Message-ID and the same thread."""
    life(api, clock, "srv-a1")
    sink = bridge.outbox.workers["sink:helpdesk"].consumer
    events = [e for e in bridge.store.audit_events(0, 10_000, None) if sink.selection.takes(e)]
    real = sink.store

    class Crashing:
        """The bridge's store, except that what the sink took is never recorded: as after a
        crash between the server's 250 and the record (a stand-in for a killed process)."""

        def __getattr__(self, name):
            return getattr(real, name)

        def record_delivery(self, delivery):
            pass

    sink.store = Crashing()
    sink.deliver(events)
    sink.close()
    sink.store = real
    before = mailbox.messages()
    assert len(before) == len(events)
    start_delivery(bridge)  # the cursor never moved: everything is offered again
    wait_for(lambda: len(mailbox.taken) >= 2 * len(events), timeout=20, what="sent again")
    again = mailbox.messages()[len(before) :]
    assert [m["Message-ID"] for m in again] == [m["Message-ID"] for m in before]
    assert [m["In-Reply-To"] for m in again] == [m["In-Reply-To"] for m in before]
    assert [m["Subject"] for m in again] == [m["Subject"] for m in before]
    number = ticket_of(api, "szpital-a")
    shown = api.get(f"/api/v1/tickets/{number}", headers=auth("admin")).json()["deliveries"]
    assert shown[0]["remote_id"] == before[0]["Message-ID"]


def test_the_server_away_loses_nothing_and_the_order_holds(api, bridge, clock, mailbox, server):
    push(api, "srv-a1", 0.95)
    start_delivery(bridge)
    wait_for(lambda: len(mailbox.taken) == 1, timeout=20, what="the first message")
    server.down()
    clock.advance(60)
    push(api, "srv-a1", 0.99)
    push(api, "srv-b1", 0.95)
    clock.advance(60)
    number_b = ticket_of(api, "klinika-b")
    assert api.post(f"/api/v1/tickets/{number_b}/ack", headers=auth("engineer")).status_code == 200
    push(api, "srv-a1", 0.5)
    worker = bridge.outbox.workers["sink:helpdesk"]
    wait_for(lambda: worker.failures >= 2, timeout=20, what="deliveries failing")
    assert len(mailbox.taken) == 1
    server.up()  # on the same port
    all_delivered(bridge, mailbox)
    expected = actions(bridge)
    threads = mailbox.threads()
    assert {n: [m["X-Dyzur-Change"] for m in t] for n, t in threads.items()} == expected
    for thread in threads.values():
        assert all(ids(m["In-Reply-To"]) == [thread[0]["Message-ID"]] for m in thread[1:])
    assert len(mailbox.taken) == count(changes(bridge))  # nothing twice


def test_a_batch_goes_over_one_connection_and_an_idle_one_is_opened_again(
    api, bridge, clock, mailbox, server
):
    server.down()
    server.kwargs["timeout"] = 0.5  # the server hangs up on a client idle that long
    server.up()
    worker = bridge.outbox.workers["sink:helpdesk"]
    for i in range(20):
        push(api, "srv-a1", 0.95 if i % 2 == 0 else 0.5)
        clock.advance(60)
    assert worker.step() == 0.0
    assert len(mailbox.taken) == count(changes(bridge)) >= 20
    assert len(mailbox.sessions) == 1
    threading.Event().wait(1.0)  # the server closes the kept connection meanwhile
    push(api, "srv-a1", 0.95)
    assert worker.step() == 0.0  # no failed round: the message went on a new connection
    assert worker.failures == 0
    assert len(mailbox.taken) == count(changes(bridge))
    assert len(mailbox.sessions) == 2


@pytest.mark.parametrize("mode", ["implicit"])
def test_smtps_is_tls_from_the_first_byte(api, bridge, clock, mailbox, server):
    assert server.url.startswith("smtps://")
    number = life(api, clock)
    start_delivery(bridge)
    all_delivered(bridge, mailbox)
    assert all(tls for *_, tls, _ in mailbox.taken)
    thread = mailbox.threads()[number]
    assert all(ids(m["In-Reply-To"]) == [thread[0]["Message-ID"]] for m in thread[1:])


@pytest.mark.parametrize("mode", ["plain"])
def test_a_server_without_starttls_is_refused(api, bridge, clock, mailbox, caplog):
    push(api, "srv-a1", 0.95)
    worker = bridge.outbox.workers["sink:helpdesk"]
    worker.backoff = ROUND
    with caplog.at_level(logging.ERROR):
        assert worker.step() == 0.25
        assert worker.step() == 0.25
    assert mailbox.taken == []
    assert "does not offer STARTTLS" in caplog.text and "tls: none" in caplog.text
    number = ticket_of(api, "szpital-a")
    assert api.get(f"/api/v1/tickets/{number}", headers=auth("admin")).json()["deliveries"] == []


@pytest.mark.parametrize(("mode", "settings"), [("plain", {"tls": "none", "ca_file": None})])
def test_tls_none_sends_in_clear_text_on_purpose(api, bridge, clock, mailbox):
    push(api, "srv-a1", 0.95)
    assert bridge.outbox.workers["sink:helpdesk"].step() == 0.0
    assert [tls for *_, tls, _ in mailbox.taken] == [False]


@pytest.fixture
def other_ca(tmp_path):
    path = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path.name


@pytest.mark.parametrize("settings", [{"ca_file": "other-ca.pem"}, {"ca_file": None}])
def test_a_certificate_from_an_untrusted_ca_is_refused(
    tmp_path, other_ca, api, bridge, clock, mailbox, caplog
):
    push(api, "srv-a1", 0.95)
    worker = bridge.outbox.workers["sink:helpdesk"]
    worker.backoff = ROUND
    with caplog.at_level(logging.ERROR):
        assert worker.step() == 0.25
    assert mailbox.taken == []
    assert "certificate did not verify" in caplog.text and "ca_file" in caplog.text


@pytest.mark.parametrize(
    ("logins", "settings"),
    [({"dyzur": PASSWORD}, {"username": "dyzur", "password_file": "smtp.password"})],
)
def test_login_with_the_password_from_its_file(tmp_path, api, bridge, clock, mailbox, caplog):
    password_file(tmp_path, "wrong-" + PASSWORD)  # read when the sink first connects
    push(api, "srv-a1", 0.95)
    worker = bridge.outbox.workers["sink:helpdesk"]
    worker.backoff = ROUND
    with caplog.at_level(logging.DEBUG):
        assert worker.step() == 0.25  # the server refused the login
        assert mailbox.taken == []
        assert "refused the login as dyzur: 535" in caplog.text
        password_file(tmp_path)  # fixed, without a restart
        assert worker.step() == 0.0
    assert len(mailbox.taken) == 1 and mailbox.taken[0][3]  # over TLS
    trail = repr(bridge.store.audit_events(0, 10_000, None))
    number = ticket_of(api, "szpital-a")
    shown = api.get(f"/api/v1/tickets/{number}", headers=auth("admin")).text
    for text in (caplog.text, trail, shown):
        assert "wrong-" not in text and PASSWORD not in text


def test_some_recipients_refused_is_still_delivered_every_one_refused_is_not(
    tmp_path, server, certs, mailbox, caplog
):
    sink = email_sink(tmp_path, server, certs, to=[INTAKE, "nikt@helpdesk.example.pl"])
    mailbox.unknown = {"nikt@helpdesk.example.pl"}
    with caplog.at_level(logging.WARNING):
        assert sink.send(change(1, "ticket.opened"), None)
    assert [r for _, _, r, *_ in mailbox.taken] == [[INTAKE]]
    assert "refused nikt@helpdesk.example.pl: 550 5.1.1 No such mailbox" in caplog.text
    mailbox.unknown.add(INTAKE)
    with pytest.raises(Retry) as refused:
        sink.send(change(2, "ticket.escalated"), "<first@x>")
    assert "refused every recipient" in str(refused.value)
    assert len(mailbox.taken) == 1
    sink.close()


def test_a_busy_server_is_retried_and_a_refused_message_is_parked(api, bridge, clock, mailbox):
    """451 (busy) is tried again; 554 to the message itself parks that one change as failed,
    and the other ticket's change goes on."""
    mailbox.script = ["451 4.3.0 Try again later", "554 5.7.1 Rejected as spam"]
    push(api, "srv-a1", 0.95)
    push(api, "srv-b1", 0.95)
    number_a, number_b = ticket_of(api, "szpital-a"), ticket_of(api, "klinika-b")
    worker = bridge.outbox.workers["sink:helpdesk"]
    worker.backoff = ROUND
    assert worker.step() == 0.25  # 451: nothing counts as sent
    for _ in range(5):  # 554: the first opening parked, then the rest
        if worker.step() != 0.0:
            break
    assert [m["X-Dyzur-Ticket"] for m in mailbox.messages()] == [number_b]
    trail = api.get("/api/v1/audit?action=outbox.delivery_failed", headers=auth("admin")).json()
    events = trail if isinstance(trail, list) else trail["events"]
    assert [e["detail"]["consumer"] for e in events] == ["sink:helpdesk"]
    assert "554 5.7.1 Rejected as spam" in events[0]["detail"]["reason"]
    shown = api.get(f"/api/v1/tickets/{number_a}", headers=auth("admin")).json()["deliveries"]
    assert [(d["state"], d["remote_id"]) for d in shown] == [("failed", None)]
    assert "554 5.7.1 Rejected as spam" in shown[0]["reason"]


def test_the_test_message_reports_what_the_server_answered(tmp_path, server, certs, mailbox):
    sink = email_sink(tmp_path, server, certs)
    answered = sink.probe()
    assert answered == f"{server.url} answered 250 OK queued as Q1"
    [message] = mailbox.messages()
    assert message["Subject"] == "[dyzur] Wiadomość testowa / test message: helpdesk"
    assert "dyzur sinks test" in message.get_content()


def test_an_smtp_url_with_a_password_is_refused_without_naming_it():
    with pytest.raises(ValueError) as refused:
        SmtpClient("smtp://dyzur:pa55-word@mail.example.pl:587")
    assert "pa55-word" not in str(refused.value) and "password_file" in str(refused.value)
    with pytest.raises(ValueError, match="username and password_file go together"):
        SmtpClient("smtp://mail.example.pl", username="dyzur")


# --- a sink without a bridge, for what the bridge cannot easily provoke ------------------


def email_sink(tmp_path, server, certs, to=(INTAKE,)):
    from bridge.delivery.sinks.email import EmailSink

    smtp = SmtpClient(server.url, ca_file=certs.ca_file)
    return EmailSink(
        "helpdesk",
        smtp,
        SENDER,
        list(to),
        store=None,  # type: ignore[arg-type]  # send() and probe() do not touch it
        directory={},
        assets={},
    )


def change(event_id: int, action: str) -> TicketChange:
    from bridge.models import AuditEvent

    event = AuditEvent(START, "dyzur", action, "success", "szpital-a", "srv-a1", {})
    event.id, event.hash = event_id, f"{event_id:064x}"
    return TicketChange(event, "DZ-2026-000001", None, "")


def test_parked_change_is_permanent_only_for_the_message_itself(tmp_path, server, certs, mailbox):
    sink = email_sink(tmp_path, server, certs)
    mailbox.script = ["552 5.3.4 Message too big"]
    with pytest.raises(Permanent):
        sink.send(change(1, "ticket.opened"), None)
    assert sink.send(change(2, "ticket.escalated"), None)  # the same connection goes on
    assert len(mailbox.sessions) == 1
    sink.close()


def test_sigkill_during_delivery_never_breaks_a_thread(tmp_path, certs, mailbox):
    """The real bridge process SIGKILLed at random moments while it mails a storm of changes
    (and the server away for a while): every change arrives, in order per ticket, each with
    one Message-ID (a repeat of a change carries the same), every ticket one thread."""
    import random
    import signal

    import httpx
    import yaml

    from bridge.delivery.sinks.email import message_id
    from bridge.store import open_store
    from tests.processes import RunningBridge
    from tests.test_sink_outage import samples

    tickets = 8
    server = SmtpServer(mailbox, certs, "starttls")
    server.up()
    data = config_data("sqlite:///var/dyzur.db")
    data["sinks"] = [
        {
            "name": "helpdesk",
            "kind": "email",
            "url": server.url,
            "ca_file": certs.ca_file.name,
            "from": SENDER,
            "to": [INTAKE],
        }
    ]
    config = tmp_path / "dyzur.yaml"
    config.write_text(yaml.safe_dump(data))
    port = free_port()
    rng = random.Random(20261130)
    bridge = RunningBridge(config, port)
    kills = 0

    def post(http: httpx.Client, path: str, body: dict | None = None) -> None:
        nonlocal bridge, kills
        while True:
            try:
                who = "agent" if body is not None else "engineer"
                r = http.post(f"{bridge.url}{path}", json=body, headers=auth(who))
            except httpx.TransportError:
                continue
            if r.status_code != 503:
                assert r.status_code in (200, 409), r.text
                break
        threading.Event().wait(rng.uniform(0.0, 0.3))
        if rng.random() < 0.15:  # killed while it delivers what came before
            bridge.stop(signal.SIGKILL)
            kills += 1
            bridge = RunningBridge(config, port)

    try:
        with httpx.Client(timeout=30) as http:
            for step, value in enumerate((0.95, 0.99, 0.5)):
                for i in range(tickets):
                    post(http, "/api/v1/samples", samples(value, i, i + 1))
                if step == 0:
                    server.down()
                    while True:
                        try:
                            found = http.get(
                                f"{bridge.url}/api/v1/tickets?client=szpital-a",
                                headers=auth("admin"),
                            )
                        except httpx.TransportError:
                            continue
                        if found.status_code == 200:
                            break
                    for number in [t["number"] for t in found.json()][::2]:
                        post(http, f"/api/v1/tickets/{number}/ack")
                    server.up()
        store = open_store("sqlite:///var/dyzur.db", tmp_path)
        try:
            trail = store.audit_events(0, 100_000, None)
        finally:
            store.close()
        expected: dict[str, list[str]] = defaultdict(list)
        for event in trail:
            if event.action.startswith(("ticket.", "sla.")) and "ticket" in event.detail:
                expected[event.detail["ticket"]].append(
                    message_id(event.hash, "helpdesk", "serwis.example.pl")
                )
        total = sum(map(len, expected.values()))
        wait_for(
            lambda: len({m["Message-ID"] for m in mailbox.messages()}) >= total,
            timeout=120,
            what=f"{total} changes mailed",
        )
    finally:
        bridge.stop()
        server.down()
    assert kills >= 3 and len(expected) == tickets and total >= 3 * tickets
    for number, thread in mailbox.threads().items():
        arrived = list(dict.fromkeys(m["Message-ID"] for m in thread))  # first arrival order
        assert arrived == expected[number]
        assert all(
            ids(m["In-Reply-To"]) == [arrived[0]] for m in thread if m["Message-ID"] != arrived[0]
        )


@pytest.mark.parametrize(
    ("sink", "problem"),
    [
        ({"from": "not-an-address"}, "sinks.0.from: 'not-an-address' is not an e-mail address"),
        ({"to": ["ok@x.pl", "bad"]}, "sinks.0.to.1: 'bad' is not an e-mail address"),
        ({"url": "smtp://user:pw@mail.example.pl"}, "sinks.0.url: set the user in username"),
        ({"username": "dyzur"}, "sinks.0.username and password_file go together"),
    ],
)
def test_check_config_names_a_bad_address_or_server_setting(tmp_path, sink, problem):
    """Caught by check-config, not first when the bridge starts; no password echoed."""
    data = config_data()
    data["sinks"] = [
        {
            "name": "mail",
            "kind": "email",
            "url": "smtp://mail.example.pl",
            "from": "dyzur@serwis.example.pl",
            "to": ["helpdesk@serwis.example.pl"],
            **sink,
        }
    ]
    with pytest.raises(ConfigError) as error:
        parse_config(data, "test.yaml", tmp_path)
    assert any(p.startswith(problem) for p in error.value.problems), error.value.problems
    assert "pw" not in str(error.value)
