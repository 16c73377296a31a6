"""Real parts for the on-call tests: an SMTP server that receives the e-mail pages, the HTTP
server standing in for the SMS gateway (tests/sms_gateway.py), and a bridge configuration with
an oncall section that pages through both."""

from __future__ import annotations

import base64
import os
import re
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from bridge.clock import WARSAW
from tests.conftest import config_data
from tests.sms_gateway import SmsGatewayServer
from tests.test_sink_email import Mailbox, SmtpServer

PUBLIC_URL = "https://dyzur.example.pl"
SMS_SECRET = "sms-gateway-token-0123456789"
LINK = re.compile(r"https?://[^\s/]+(?:/[^\s/]+)*/oncall/ack/[A-Za-z0-9_-]+")
SMS_BODY = '{"to": "{{ phone }}", "message": "{{ text }}", "ref": "{{ ticket }}"}'


def sms_gateway() -> SmsGatewayServer:
    """The HTTP server standing in for the SMS gateway (tests/sms_gateway.py), listening."""
    gateway = SmsGatewayServer()
    gateway.up()
    return gateway


def sms_texts(gateway: SmsGatewayServer, phone: str | None = None) -> list[str]:
    """The SMS texts the gateway took (to ``phone``), in arrival order."""
    return [m["message"] for m in gateway.messages() if phone in (None, m["to"])]


class GatedMailbox(Mailbox):
    """The mail server's mailbox, answering 451 (try again later) while ``closed``."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self.refused = 0

    async def handle_DATA(self, server, session, envelope):
        if self.closed:
            self.refused += 1
            return "451 4.3.0 Mailbox busy, try again later"
        return await super().handle_DATA(server, session, envelope)


def mail_server() -> SmtpServer:
    """aiosmtpd on a free loopback port, plain SMTP (the channel says ``tls: none``), its
    mailbox open until a test closes it."""
    server = SmtpServer(GatedMailbox(), None, "plain")  # type: ignore[arg-type]
    server.up()
    return server


def pages_to(mailbox: Mailbox, address: str) -> list[EmailMessage]:
    return [m for m in mailbox.messages() if address in str(m["To"])]


def link_in(text: str) -> str:
    """The acknowledgment link in a page's text."""
    found = LINK.search(text)
    assert found is not None, f"no link in: {text!r}"
    return found.group(0)


def token_of(link: str) -> str:
    return link.rsplit("/", 1)[1]


def forged(token: str) -> str:
    """The token with one byte of its claim changed (the expiry's lowest byte)."""
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[4] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def secret(path: Path, content: str) -> str:
    path.write_text(content + "\n")
    os.chmod(path, 0o600)
    return path.name


def wall_clock(at: datetime) -> str:
    """A naive Europe/Warsaw wall-clock time, as shifts are written."""
    return at.astimezone(WARSAW).replace(tzinfo=None).isoformat(timespec="minutes")


def oncall_config(
    tmp_path: Path,
    smtp_url: str,
    sms_url: str,
    shift_start: datetime,
    *,
    store: str = "sqlite:///dyzur.db",
    public_url: str = PUBLIC_URL,
    escalate_after: str = "15m",
    backup_sms_url: str | None = None,
) -> dict:
    """The test configuration with an oncall section: Anna (Polish) on duty in a 24-hour
    shift from ``shift_start`` (aware) for every hospital, John (English) the second line
    after ``escalate_after``; both paged by e-mail and SMS at once, and with
    ``backup_sms_url`` by a second SMS gateway (``sms-backup``) when one of those fails."""
    data = config_data(store)
    data["public_url"] = public_url
    data["clients"][1]["name"] = "Klinika B"
    data["oncall"] = {
        "link_key_file": secret(tmp_path / "oncall-link.key", "k" * 32),
        "people": [
            {
                "id": "anna",
                "name": "Anna Nowak",
                "email": "anna@serwis.example.pl",
                "phone": "+48601000001",
                "language": "pl",
                "channels": ["mail", "sms"],
            },
            {
                "id": "john",
                "name": "John Smith",
                "email": "john@serwis.example.pl",
                "phone": "+48601000002",
                "language": "en",
                "channels": ["mail", "sms"],
            },
        ],
        "shifts": [
            {"person": "anna", "start": wall_clock(shift_start), "duration": "24h"},
        ],
        "escalation": [{"after": escalate_after, "then": ["john"]}],
        "channels": {
            "mail": {
                "kind": "email",
                "url": smtp_url,
                "tls": "none",
                "from": "Dyżur <dyzur@serwis.example.pl>",
            },
            "sms": {
                "kind": "webhook",
                "url": sms_url,
                "body": SMS_BODY,
                "secret_file": secret(tmp_path / "sms.secret", SMS_SECRET),
            },
        },
    }
    if backup_sms_url is not None:
        data["oncall"]["channels"]["sms-backup"] = {
            **data["oncall"]["channels"]["sms"],
            "url": backup_sms_url,
        }
        for person in data["oncall"]["people"]:
            person["fallback_channels"] = ["sms-backup"]
    return data
