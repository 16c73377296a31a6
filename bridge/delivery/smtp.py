"""A small SMTP client for what dyzur sends by e-mail (helpdesk sinks; on-call pages next).

``smtp://HOST[:PORT]`` (port 25) talks plain SMTP and, with ``tls="required"`` (the default),
switches to TLS with STARTTLS before anything else: a server that does not offer STARTTLS is
refused, and nothing is sent in clear text unless ``tls="none"`` was set on purpose (a relay on
the same host; then STARTTLS is not tried either). ``smtps://HOST[:PORT]`` (port 465) is TLS
from the first byte. The server's certificate is always verified, against ``ca_file`` or the
system's CAs, with its host name checked. With ``username``, the client logs in with the
password read from ``password_file`` (owner-only) when it first connects (and again after the
server refused it, so a fixed file needs no restart); the password never reaches a log, an
audit event or an error.

One connection is kept open across messages (a batch of 100 changes is one TLS handshake and
one login); a connection the server closed while it lay idle is opened again before the message
goes. ``close()`` lets it go.

What the server answers decides, as the outbox reads it (``Retry``: nothing counts as sent,
the message and everything after it are sent again later, in order; ``Permanent``: the server
will never take this message, the next go on):

* a refused or broken connection, a timeout, any 4xx reply (421 closing, 450/451/452 busy or
  full): ``Retry``.
* a 5xx reply to the message itself (after its content was sent: 552 too large, 554 rejected
  as spam): ``Permanent``; only that message is refused.
* a 5xx reply before the content (550 or 553 for the sender or for every recipient, 530
  authentication required), a refused login (535), a server without STARTTLS, a certificate
  that does not verify: ``Retry`` with the reason. These refuse every message alike until the
  configuration (or the server) is fixed; retrying keeps the order and loses nothing, where
  parking each message as failed would break the helpdesk's threads.
* some recipients refused and at least one accepted: sent; ``Sent.refused`` names the others.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import parseaddr
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from bridge.delivery.outbox import Permanent, Retry

TIMEOUT = 30.0
PORTS = {"smtp": 25, "smtps": 465}
TlsMode = Literal["required", "none"]


@dataclass(frozen=True, slots=True)
class Sent:
    """The server took the message: its answer to the content (``250 OK queued as 4F2A``) and
    the recipients it refused, each with its reply."""

    answer: str
    refused: dict[str, str] = field(default_factory=dict)


class _Stale(Exception):
    """A kept connection the server closed meanwhile, found before anything was accepted."""


def mailbox(value: str, setting: str) -> str:
    """The address of ``Name <user@host>`` or ``user@host``; ValueError naming ``setting``."""
    address = parseaddr(value)[1]
    local, at, domain = address.rpartition("@")
    if not (local and at and domain) or any(c.isspace() for c in address):
        raise ValueError(f"{setting}: {value!r} is not an e-mail address")
    return address


class SmtpClient:
    """Sends messages to one SMTP server (``url``), over one kept connection."""

    def __init__(
        self,
        url: str,
        *,
        tls: TlsMode = "required",
        ca_file: Path | None = None,
        username: str | None = None,
        password_file: Path | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in PORTS or not parts.hostname:
            raise ValueError(
                f"url: expected smtp://HOST[:PORT] or smtps://HOST[:PORT], not {url!r}"
            )
        if parts.username is not None or parts.password is not None:
            raise ValueError("url: set the user in username and the password in password_file")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"url: an SMTP server has no path: {parts.scheme}://HOST[:PORT]")
        try:
            port = parts.port or PORTS[parts.scheme]
        except ValueError:
            raise ValueError("url: the port must be a number from 1 to 65535") from None
        if (username is None) != (password_file is None):
            raise ValueError("username and password_file go together")
        self.host = parts.hostname
        self.port = port
        self.implicit_tls = parts.scheme == "smtps"
        self.tls = tls
        self.ca_file = ca_file
        self.username = username
        self.password_file = password_file
        self.timeout = timeout
        # Named in errors and logs.
        self.where = f"{parts.scheme}://{self.host}:{port}"
        self._password: str | None = None
        self._smtp: smtplib.SMTP | None = None

    # --- sending -------------------------------------------------------------------------

    def send(self, message: EmailMessage, sender: str, recipients: Sequence[str]) -> Sent:
        """Send ``message`` from the envelope ``sender`` to ``recipients``. Raise ``Retry``
        or ``Permanent`` (see the module) when the server did not take it."""
        content = message.as_bytes(policy=SMTP_POLICY)
        kept = self._smtp is not None
        try:
            try:
                return self._transaction(self._connection(), sender, recipients, content)
            except _Stale:
                if not kept:
                    raise
                self._drop()  # closed while idle: once more on a new connection
                return self._transaction(self._connection(), sender, recipients, content)
        except Permanent:
            raise  # the server refused the message; the connection is fine for the next
        except _Stale:
            self._drop()
            raise Retry(f"{self.where} closed the connection") from None
        except Retry:
            self._drop()
            raise
        except Exception as exc:
            self._drop()
            raise Retry(self._reason(exc)) from None

    def _transaction(
        self, smtp: smtplib.SMTP, sender: str, recipients: Sequence[str], content: bytes
    ) -> Sent:
        try:
            code, reply = smtp.mail(sender)
        except (smtplib.SMTPServerDisconnected, OSError):
            raise _Stale from None
        if code == 421:
            raise _Stale
        if code != 250:
            raise Retry(f"{self.where} refused the sender {sender}: {_told(code, reply)}")
        refused: dict[str, str] = {}
        for recipient in recipients:
            code, reply = smtp.rcpt(recipient)
            if code not in (250, 251):
                refused[recipient] = _told(code, reply)
        if len(refused) == len(recipients):
            told = "; ".join(f"{r}: {why}" for r, why in refused.items())
            raise Retry(f"{self.where} refused every recipient: {told}")
        try:
            code, reply = smtp.data(content)
        except smtplib.SMTPDataError as refusal:  # DATA itself refused: not the content
            told = _told(refusal.smtp_code, refusal.smtp_error)
            raise Retry(f"{self.where} refused DATA: {told}") from None
        answer = _told(code, reply)
        if code == 250:
            return Sent(answer, refused)
        if 500 <= code < 600:
            raise Permanent(f"{self.where} refused the message: {answer}")
        raise Retry(f"{self.where} did not take the message: {answer}")

    # --- the connection ------------------------------------------------------------------

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            self._smtp = self._connect()
        return self._smtp

    def _connect(self) -> smtplib.SMTP:
        local = socket.getfqdn()
        smtp: smtplib.SMTP
        if self.implicit_tls:
            smtp = smtplib.SMTP_SSL(
                self.host, self.port, local, timeout=self.timeout, context=self._context()
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, local, timeout=self.timeout)
        try:
            smtp.ehlo_or_helo_if_needed()
            if not self.implicit_tls and self.tls == "required":
                if not smtp.has_extn("starttls"):
                    raise Retry(
                        f"{self.where} does not offer STARTTLS: refusing to send in clear text "
                        "(use smtps://, or set tls: none for a relay on this host)"
                    )
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if self.username is not None:
                self._login(smtp, self.username)
        except BaseException:
            _close(smtp)
            raise
        return smtp

    def _context(self) -> ssl.SSLContext:
        cafile = str(self.ca_file) if self.ca_file is not None else None
        context = ssl.create_default_context(cafile=cafile)  # verifies, host name checked
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def _login(self, smtp: smtplib.SMTP, username: str) -> None:
        if not smtp.has_extn("auth"):
            raise Retry(f"{self.where} offers no login (AUTH) for username {username}")
        try:
            smtp.login(username, self._secret())
        except smtplib.SMTPAuthenticationError as refusal:
            self._password = None  # read the file again next time: it may have been fixed
            raise Retry(
                f"{self.where} refused the login as {username}: "
                f"{_told(refusal.smtp_code, refusal.smtp_error)}"
            ) from None

    def _secret(self) -> str:
        if self._password is None:
            assert self.password_file is not None
            try:
                password = self.password_file.read_text(encoding="utf-8").strip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:  # named by file, never by content
                why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise Retry(f"cannot read password_file {self.password_file}: {why}") from None
            if not password:
                raise Retry(f"password_file {self.password_file} is empty")
            self._password = password
        return self._password

    def _drop(self) -> None:
        if self._smtp is not None:
            _close(self._smtp)
            self._smtp = None

    def close(self) -> None:
        """Say goodbye to the server (QUIT) and let the connection go."""
        if self._smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._smtp.quit()
            self._drop()

    def _reason(self, exc: Exception) -> str:
        """Why the server could not be reached or talked to, for the log and the audit trail."""
        where = self.where
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (
                f"{where}: the server's certificate did not verify ({exc.verify_message}); "
                "set ca_file to the CA that signed it, or fix the server's certificate"
            )
        if isinstance(exc, ssl.SSLError):
            return f"{where}: TLS failed: {exc.reason or exc}"
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return f"{where}: {exc}"
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return f"{where} closed the connection"
        if isinstance(exc, smtplib.SMTPResponseException):
            return f"{where} answered {_told(exc.smtp_code, exc.smtp_error)}"
        if isinstance(exc, TimeoutError | socket.timeout):
            return f"{where}: no answer within {self.timeout:g} s"
        if isinstance(exc, ConnectionRefusedError):
            return f"{where}: connection refused"
        if isinstance(exc, socket.gaierror):
            return f"{where}: unknown host {self.host}"
        if isinstance(exc, OSError):
            return f"{where}: {exc.strerror or type(exc).__name__}"
        return f"{where}: {type(exc).__name__}: {exc}"


def _told(code: int, reply: bytes | str) -> str:
    """A server's reply as one line: ``550 5.1.1 No such mailbox``."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(f"{code} {text}".split())[:300]


def _close(smtp: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        smtp.close()
