"""The channels that reach a paged engineer: ``oncall.channels.NAME``.

``kind: email`` sends the page as an e-mail through the SMTP client of the e-mail sink
(``bridge.delivery.smtp``: STARTTLS required unless ``tls: none``, certificates verified, the
password from its owner-only file), to the person's ``email``, with a ``Message-ID`` derived from
the page's idempotency key (a page sent again after a crash is the same message).

``kind: webhook`` sends it as an SMS through a gateway's HTTP API: ``method`` to ``url`` with
the body rendered from the ``body`` template (Jinja2, sandboxed) with ``{{ phone }}`` (E.164),
``{{ text }}`` (at most 160 characters, in the person's language), ``{{ ticket }}``,
``{{ person }}``, ``{{ encoding }}`` (``gsm7``/``ucs2``) and ``{{ segments }}``. Each value is
escaped for the ``content_type``: JSON-escaped for a JSON body (write it inside quotes:
``{"to": "{{ phone }}", "message": "{{ text }}"}``), URL-encoded for a form. The secret of
``secret_file`` goes as a bearer token (``Authorization``) and as the HMAC-SHA256 key of
``X-Dyzur-Signature`` over the exact body; ``Idempotency-Key`` is the page's key. The answer is
judged as the webhook sink judges it (``sinks.webhook.judge``): 2xx sent; 429/503 (Retry-After
honoured), other 5xx, 408, timeouts and refused connections retried; any other answer refuses
the page for good.

Each ``send`` raises the outbox's ``Retry`` (nothing sent; the page and every later one of the
channel go again later, in order) or ``Permanent`` (this page will never go this way: no
address for the person, refused by the server). Secrets never reach an error or a log.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote_plus

import httpx
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from bridge.clock import WARSAW
from bridge.delivery.oncall.message import (
    PageMessage,
    body,
    sms_encoding,
    sms_segments,
    sms_text,
    subject,
)
from bridge.delivery.outbox import Permanent, Retry
from bridge.delivery.secret_file import SecretFile
from bridge.delivery.sinks import without_userinfo
from bridge.delivery.sinks.webhook import SIGNATURE_HEADER, judge, signature
from bridge.delivery.smtp import SmtpClient, mailbox

if TYPE_CHECKING:
    from bridge.config import EmailChannel, SmsGatewayChannel

TIMEOUT = 10.0
# What a body template is checked with when the channel is built.
SAMPLE = {
    "phone": "+48601234567",
    "text": 'DYŻUR Awaria DZ-2026-000001 "Szpital": dysk\\zajęty',
    "ticket": "DZ-2026-000001",
    "person": "jan",
    "encoding": "ucs2",
    "segments": 2,
}


class PageSender(Protocol):
    """One configured channel."""

    name: str
    kind: str

    def send(self, message: PageMessage) -> str:
        """Send the page; what the destination answered. ``Retry``/``Permanent`` otherwise."""
        ...

    def close(self) -> None: ...


def page_message_id(key: str, channel: str, domain: str) -> str:
    """The ``Message-ID`` of the page whose key is ``key``: the same on every send of it."""
    unique = hashlib.sha256(f"page\0{channel}\0{key}".encode()).hexdigest()[:32]
    return f"<dyzur.page.{unique}@{domain}>"


class EmailPager:
    """``kind: email``: a page as an e-mail to the person's address."""

    kind = "email"

    def __init__(self, name: str, smtp: SmtpClient, sender: str) -> None:
        self.name = name
        self.smtp = smtp
        self.sender = sender  # as written in From:, possibly with a display name
        self.envelope_sender = mailbox(sender, f"oncall.channels.{name}.from")
        self.domain = self.envelope_sender.rpartition("@")[2]

    def email(self, message: PageMessage) -> EmailMessage:
        if message.email is None:
            raise Permanent(f"person {message.person_id} has no e-mail address (oncall.people)")
        mail = EmailMessage()
        mail["From"] = self.sender
        address = mailbox(message.email, "email")
        local, _, domain = address.rpartition("@")
        mail["To"] = Address(message.name, local, domain)
        mail["Date"] = format_datetime(message.at.astimezone(WARSAW))
        mail["Subject"] = subject(message)
        mail["Message-ID"] = page_message_id(message.key, self.name, self.domain)
        mail["Auto-Submitted"] = "auto-generated"
        mail["X-Auto-Response-Suppress"] = "All"
        mail["Importance"] = "high"
        mail["X-Priority"] = "1"
        mail["X-Dyzur-Ticket"] = message.ticket.number
        mail["X-Dyzur-Page-Step"] = str(message.step + 1)
        mail.set_content(body(message), charset="utf-8", cte="quoted-printable")
        return mail

    def send(self, message: PageMessage) -> str:
        mail = self.email(message)
        sent = self.smtp.send(mail, self.envelope_sender, [mailbox(message.email or "", "email")])
        return f"{self.smtp.where} answered {sent.answer}"

    def close(self) -> None:
        self.smtp.close()


def _is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _escaper(content_type: str) -> Callable[[object], str]:
    """How a value is written into a body of ``content_type``."""
    if _is_json(content_type):
        return lambda value: json.dumps(str(value), ensure_ascii=False)[1:-1]
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        return lambda value: quote_plus(str(value))
    return str


class SmsGateway:
    """``kind: webhook``: a page as an SMS, through a gateway's HTTP API."""

    kind = "webhook"

    def __init__(
        self,
        name: str,
        url: str,
        secret_file: Path,
        body_template: str,
        *,
        method: str = "POST",
        content_type: str = "application/json",
        timeout: float = TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.where = without_userinfo(url)  # named in errors and logs
        self.secret_file = secret_file
        self.method = method
        self.content_type = content_type
        self.timeout = timeout
        self._transport = transport
        field = f"oncall.channels.{name}.body"
        environment = SandboxedEnvironment(
            undefined=StrictUndefined, autoescape=False, finalize=_escaper(content_type)
        )
        try:
            self.template = environment.from_string(body_template)
            sample = self.template.render(**SAMPLE)
        except TemplateError as exc:
            raise ValueError(f"{field}: {exc}") from None
        if _is_json(content_type):
            try:
                json.loads(sample)
            except ValueError as exc:
                raise ValueError(
                    f"{field}: not JSON once rendered ({exc}); write the values inside quotes: "
                    '"{{ text }}"'
                ) from None
        self._secret = SecretFile(secret_file)
        self._http: httpx.Client | None = None

    def render(self, message: PageMessage) -> tuple[str, bytes]:
        """The SMS text and the request body for ``message``."""
        if message.phone is None:
            raise Permanent(f"person {message.person_id} has no phone number (oncall.people)")
        text = sms_text(message)
        rendered = self.template.render(
            phone=message.phone,
            text=text,
            ticket=message.ticket.number,
            person=message.person_id,
            encoding=sms_encoding(text),
            segments=sms_segments(text),
        )
        return text, rendered.encode()

    def send(self, message: PageMessage) -> str:
        _, content = self.render(message)
        key = self._secret.read()
        try:
            bearer = key.decode()
        except UnicodeDecodeError:
            raise Retry(f"secret_file {self.secret_file} is not UTF-8 text") from None
        headers = {
            "Content-Type": self.content_type,
            "Authorization": f"Bearer {bearer}",
            "Idempotency-Key": message.key,
            SIGNATURE_HEADER: signature(key, content),
            "User-Agent": "dyzur",
        }
        if self._http is None:
            self._http = httpx.Client(
                timeout=self.timeout, follow_redirects=False, transport=self._transport
            )
        try:
            answer = self._http.request(self.method, self.url, content=content, headers=headers)
        except httpx.HTTPError as exc:  # timeouts, refused and broken connections
            told = str(exc).replace(self.url, self.where)
            raise Retry(f"{self.where}: {type(exc).__name__}: {told}") from None
        judge(answer, self.where)
        return f"{self.where} answered {answer.status_code} {answer.reason_phrase}".strip()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


def build_channel(
    name: str, channel: EmailChannel | SmsGatewayChannel, base_dir: Path
) -> PageSender:
    """The sender of one configured channel (ValueError naming the field when it cannot be)."""
    if channel.kind == "email":
        field = f"oncall.channels.{name}"
        try:
            smtp = SmtpClient(
                channel.url,
                tls=channel.tls,
                ca_file=base_dir / channel.ca_file if channel.ca_file else None,
                username=channel.username,
                password_file=base_dir / channel.password_file if channel.password_file else None,
            )
        except ValueError as exc:
            raise ValueError(f"{field}.{exc}") from None
        return EmailPager(name, smtp, channel.sender)
    return SmsGateway(
        name,
        channel.url,
        base_dir / channel.secret_file,
        channel.body,
        method=channel.method,
        content_type=channel.content_type,
    )


def body_problem(name: str, channel: SmsGatewayChannel) -> str | None:
    """Why the body template of the SMS channel ``name`` cannot be used, naming the field
    (``oncall.channels.NAME.body: ...``); None when it can. For ``dyzur check-config``: reads
    no file and sends nothing."""
    try:
        SmsGateway(
            name,
            channel.url,
            Path("unused"),
            channel.body,
            method=channel.method,
            content_type=channel.content_type,
        )
    except ValueError as exc:
        return str(exc)
    return None
