"""``kind: webhook``: each ticket change as a signed JSON POST (GLPI or iTop automation, a chat
channel, an SMS gateway).

The body is the change (``payload``); ``Idempotency-Key`` is the change's audit event hash (the
same on every repeat), and ``X-Dyzur-Signature: sha256=<hex>`` the HMAC-SHA256 of the exact
body bytes with the secret of ``secret_file`` (read at the first delivery; it never reaches a
log, an audit event or an error). The answer decides:

* 2xx: delivered; a JSON object with an ``id`` names the helpdesk's id for the ticket.
* 429, 503: busy; ``Retry-After`` (seconds or an HTTP date) is honoured, else the backoff.
* other 5xx, 408, a timeout, a refused or broken connection: retried with the backoff.
* any other 4xx (and a redirect): refused for good; the change is parked as failed.

``probe`` (``dyzur sinks test``) POSTs a test body the same way: ``{"test": true, ...}``, signed,
with an ``Idempotency-Key`` of its own (``test-<uuid>``), and reports the answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from bridge.clock import local_iso
from bridge.delivery.outbox import Permanent, Retry
from bridge.delivery.secret_file import SecretFile
from bridge.delivery.sinks import SinkStore, TicketChange, TicketSink, without_userinfo

TIMEOUT = 10.0
SIGNATURE_HEADER = "X-Dyzur-Signature"
BUSY = (429, 503)


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Dyzur-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or an HTTP date); None when
    absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return max(0.0, (at - (now or datetime.now(UTC))).total_seconds())


def payload(change: TicketChange, remote_id: str | None) -> dict[str, Any]:
    """What the receiver gets: the change and the ticket's fields as they are now."""
    event, ticket = change.event, change.ticket
    return {
        "ticket": change.number,
        "remote_id": remote_id,
        "client": event.client,
        "asset": event.asset,
        "category": ticket.category.value if ticket else event.detail.get("category"),
        "status": ticket.status.value if ticket else None,
        "title": ticket.title if ticket else None,
        "text": change.text,
        "action": event.action,
        "actor": event.actor,
        "at": local_iso(event.at),
        "reaction_due": local_iso(ticket.reaction_due) if ticket else None,
        "event_id": event.id,
    }


class WebhookSink(TicketSink):
    """POSTs each ticket change to ``url``."""

    kind = "webhook"

    def __init__(
        self,
        name: str,
        url: str,
        secret_file: Path,
        store: SinkStore,
        clients: frozenset[str] | None = None,
        *,
        timeout: float = TIMEOUT,
    ) -> None:
        super().__init__(name, store, clients)
        self.url = url
        # Named in errors and logs: without a user and password someone put in the URL.
        self.where = without_userinfo(url)
        self.secret_file = secret_file
        self.timeout = timeout
        self._secret = SecretFile(secret_file)
        self._http: httpx.Client | None = None

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=self.timeout, follow_redirects=False)
        return self._http

    def send(self, change: TicketChange, remote_id: str | None) -> str | None:
        answer = self._post(payload(change, remote_id), change.key)
        return _remote_id(answer) or remote_id

    def probe(self) -> str:
        test = {
            "test": True,
            "sink": self.sink,
            "text": "dyzur: test message, no ticket; nothing to do",
            "at": local_iso(self.clock.now()),
        }
        answer = self._post(test, f"test-{uuid.uuid4().hex}")
        return f"{self.where} answered {answer.status_code} {answer.reason_phrase}".strip() + (
            _excerpt(answer)
        )

    def _post(self, body_of: dict[str, Any], key: str) -> httpx.Response:
        """POST the JSON of ``body_of``, signed; the 2xx answer, else ``Retry``/``Permanent``."""
        body = json.dumps(body_of, ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": key,
            SIGNATURE_HEADER: signature(self._secret.read(), body),
            "User-Agent": "dyzur",
        }
        try:
            answer = self._client().post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:  # timeouts, refused and broken connections
            told = str(exc).replace(self.url, self.where)
            raise Retry(f"{self.where}: {type(exc).__name__}: {told}") from None
        return judge(answer, self.where)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


def judge(answer: httpx.Response, where: str) -> httpx.Response:
    """A 2xx ``answer`` of ``where``; else ``Retry`` (busy, honouring Retry-After; a server
    error, a timeout) or ``Permanent`` (any other answer: it refused the request)."""
    status = answer.status_code
    if 200 <= status < 300:
        return answer
    reason = f"{where} answered {status} {answer.reason_phrase}".strip()
    if status in BUSY:
        raise Retry(reason, retry_after(answer.headers.get("Retry-After")))
    if status >= 500 or status == 408:
        raise Retry(reason)
    raise Permanent(reason + _excerpt(answer))


def _remote_id(answer: httpx.Response) -> str | None:
    try:
        data = answer.json()
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("id"), str | int):
        return str(data["id"])
    return None


def _excerpt(answer: httpx.Response) -> str:
    text = " ".join(answer.text.split())[:200]
    return f": {text}" if text else ""
