"""``kind: email``: each ticket change as an e-mail to a helpdesk's mail intake (GLPI's mail
collector, Znuny/OTRS, Zammad, RT, Redmine's mail handler).

One thread per ticket. The first message of a ticket starts it, and its ``Message-ID`` is kept
as the helpdesk's id for the ticket (``remote_id``); every later change is a message with
``In-Reply-To`` and ``References`` to it. Every subject carries the ticket number in brackets
(``[DZ-2026-000123] Awaria: ...``), so a helpdesk threads by either.

A message's ``Message-ID`` is derived from its change's idempotency key and the sender's
domain: a change sent again (the bridge stopped between the server's 250 and recording it)
carries the same ``Message-ID``, so the helpdesk and the mail clients see a duplicate of one
message, never a second thread. Text in the contract's language (``message``), plain text.

The SMTP side (TLS, login, what is retried) is ``bridge.delivery.smtp``.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import format_datetime

from bridge.clock import WARSAW, Clock
from bridge.delivery.sinks import SinkStore, TicketChange, TicketSink
from bridge.delivery.sinks.message import body, language_of, subject
from bridge.delivery.smtp import Sent, SmtpClient, mailbox
from bridge.models import Asset, Client

log = logging.getLogger(__name__)

FOOTER = {
    "pl": "Wiadomość wysłana automatycznie przez dyzur; prosimy na nią nie odpowiadać. Numer "
    "zgłoszenia w temacie wiąże kolejne wiadomości z tym zgłoszeniem.",
    "en": "Sent automatically by dyzur; please do not reply. The ticket number in the subject "
    "ties later messages to this ticket.",
}
PROBE_SUBJECT = "[dyzur] Wiadomość testowa / test message: {sink}"
PROBE_BODY = (
    "Wiadomość testowa ujścia zgłoszeń {sink} (dyzur sinks test). Zgłoszenia dyzur będą "
    "przychodzić w ten sposób.\n\n"
    "A test message of the helpdesk sink {sink} (dyzur sinks test). dyzur's tickets will arrive "
    "this way.\n"
)


def message_id(key: str, sink: str, domain: str) -> str:
    """The ``Message-ID`` of the change whose idempotency key is ``key``, sent by ``sink``: the
    same on every send of the change, from every bridge; another sink's message of the same
    change (to another intake) has its own."""
    unique = hashlib.sha256(f"{sink}\0{key}".encode()).hexdigest()[:32]
    return f"<dyzur.{unique}@{domain}>"  # short: a Message-ID folded over two lines trips parsers


class EmailSink(TicketSink):
    """Sends each ticket change as an e-mail to ``to``, one thread per ticket."""

    kind = "email"

    def __init__(
        self,
        name: str,
        smtp: SmtpClient,
        sender: str,
        to: Sequence[str],
        store: SinkStore,
        clients: frozenset[str] | None = None,
        *,
        directory: Mapping[str, Client],
        assets: Mapping[str, Asset],
        public_url: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name, store, clients)
        self.smtp = smtp
        self.sender = sender  # as written in From:, possibly with a display name
        self.envelope_sender = mailbox(sender, "from")
        self.to = [mailbox(address, f"to.{i}") for i, address in enumerate(to)]
        self.domain = self.envelope_sender.rpartition("@")[2]
        self.directory = directory
        self.assets = assets
        self.public_url = public_url
        self.clock = clock or Clock()

    def message(self, change: TicketChange, remote_id: str | None) -> EmailMessage:
        """The e-mail of ``change``; ``remote_id``: the Message-ID that started its thread."""
        event = change.event
        client = self.directory.get(event.client) if event.client else None
        asset = self.assets.get(event.asset) if event.asset else None
        language = language_of(client)
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message["Date"] = format_datetime(event.at.astimezone(WARSAW))
        message["Subject"] = subject(change, language)
        message["Message-ID"] = message_id(change.key, self.sink, self.domain)
        if remote_id is not None:
            message["In-Reply-To"] = remote_id
            message["References"] = remote_id
        # RFC 3834: no autoresponder (helpdesk's "ticket received", out of office) answers it.
        message["Auto-Submitted"] = "auto-generated"
        message["X-Auto-Response-Suppress"] = "All"
        message["X-Dyzur-Ticket"] = change.number
        message["X-Dyzur-Change"] = event.action
        text = body(change, client, asset, self.public_url) + "\n-- \n" + FOOTER[language] + "\n"
        message.set_content(text, charset="utf-8", cte="quoted-printable")
        return message

    def send(self, change: TicketChange, remote_id: str | None) -> str | None:
        message = self.message(change, remote_id)
        self._told(change.number, self.smtp.send(message, self.envelope_sender, self.to))
        # The first message of the ticket's thread names it from now on.
        return remote_id or str(message["Message-ID"])

    def probe(self) -> str:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message["Date"] = format_datetime(self.clock.now().astimezone(WARSAW))
        message["Subject"] = PROBE_SUBJECT.format(sink=self.sink)
        message["Message-ID"] = f"<dyzur.test.{uuid.uuid4().hex}@{self.domain}>"
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(PROBE_BODY.format(sink=self.sink), charset="utf-8")
        try:
            sent = self.smtp.send(message, self.envelope_sender, self.to)
        finally:
            self.smtp.close()
        self._told("test", sent)
        refused = "".join(f"; refused {r}: {why}" for r, why in sent.refused.items())
        return f"{self.smtp.where} answered {sent.answer}{refused}"

    def _told(self, what: str, sent: Sent) -> None:
        for recipient, why in sent.refused.items():
            log.warning(
                "helpdesk sink %s: %s: %s refused %s: %s",
                self.sink,
                what,
                self.smtp.where,
                recipient,
                why,
            )

    def close(self) -> None:
        self.smtp.close()
