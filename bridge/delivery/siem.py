"""Forwarding audit events to SIEMs: syslog over UDP, TCP or TLS, in order, nothing lost.

Each SIEM destination is a consumer of the outbox (``bridge.delivery.outbox``), named
``siem:<destination>``, with its cursor and lease: an event is stored before anything is sent,
and the destination's cursor says what it has delivered. Syslog has no acknowledgement, so a
batch counts as delivered only once the connection has stayed up for CONFIRM_AFTER seconds
after it was written; if the SIEM went away meanwhile, it is sent again (at least once: the
event id and hash in the structured data let the SIEM drop duplicates). A destination that
stays away keeps at most ``max_queue`` events; the oldest go, and one "siem.events_dropped"
event with the count is written when it comes back.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bridge.actions import Action
from bridge.delivery.outbox import Consumer, Retry, Selection
from bridge.delivery.siem_format import cef, octet_counted, rfc5424
from bridge.metrics import BridgeMetrics
from bridge.models import AuditEvent

log = logging.getLogger(__name__)

CONFIRM_AFTER = 1.0
BATCH = 500


@dataclass(frozen=True)
class Destination:
    name: str
    scheme: str  # udp, tcp, tls
    host: str
    port: int
    format: str = "rfc5424"  # or cef
    clients: frozenset[str] | None = None  # None: every event (the service company's SIEM)
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    max_queue: int = 100_000

    @classmethod
    def from_url(cls, name: str, url: str, **settings: Any) -> Destination:
        parts = urlsplit(url)
        if parts.scheme not in ("udp", "tcp", "tls") or not parts.hostname or not parts.port:
            raise ValueError("expected udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT")
        return cls(name, parts.scheme, parts.hostname, parts.port, **settings)


class Transport:
    """One destination's socket. ``send`` raises OSError (ssl.SSLError included) on failure.
    Nothing is read or opened before the first ``send`` (the TLS files neither)."""

    def __init__(self, destination: Destination) -> None:
        self.destination = destination
        self._sock: socket.socket | None = None
        self._context: ssl.SSLContext | None = None

    def _tls_context(self) -> ssl.SSLContext:
        if self._context is None:
            d = self.destination
            context = ssl.create_default_context(cafile=str(d.ca_file) if d.ca_file else None)
            if d.client_cert:
                context.load_cert_chain(d.client_cert, d.client_key if d.client_key else None)
            self._context = context
        return self._context

    def _connect(self) -> socket.socket:
        d = self.destination
        if d.scheme == "udp":
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.connect((d.host, d.port))
            return sock
        sock = socket.create_connection((d.host, d.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if d.scheme == "tls":
            try:
                sock = self._tls_context().wrap_socket(sock, server_hostname=d.host)
            except BaseException:
                sock.close()
                raise
        return sock

    def send(self, messages: list[bytes]) -> None:
        if self._sock is None:
            self._sock = self._connect()
        if self.destination.scheme == "udp":
            for message in messages:  # RFC 5426: one message per datagram
                self._sock.send(message)
        else:  # RFC 6587 / RFC 5425: octet counting
            self._sock.sendall(b"".join(octet_counted(m) for m in messages))

    def alive(self) -> bool:
        """False when the SIEM closed or reset the connection (it never sends us data)."""
        sock = self._sock
        if sock is None:
            return False
        if self.destination.scheme == "udp":
            return True
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return True
            sock.setblocking(False)
            try:
                return sock.recv(1) != b""
            finally:
                sock.setblocking(True)
        except (ssl.SSLWantReadError, BlockingIOError):
            return True
        except OSError:
            return False

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


class SiemConsumer(Consumer):
    """The outbox consumer of one SIEM destination."""

    def __init__(
        self, destination: Destination, metrics: BridgeMetrics, hostname: str | None = None
    ) -> None:
        super().__init__(
            f"siem:{destination.name}",
            Selection(clients=destination.clients),
            batch_size=BATCH,
            confirm_after=CONFIRM_AFTER,
            max_queue=destination.max_queue,
        )
        self.destination = destination
        self.metrics = metrics
        self.transport = Transport(destination)
        self._hostname = hostname or socket.gethostname()
        self._format = cef if destination.format == "cef" else rfc5424

    def deliver(self, events: Sequence[AuditEvent]) -> None:
        try:
            self.transport.send([self._format(e, self._hostname) for e in events])
        except OSError as exc:  # ssl.SSLError included
            raise Retry(str(exc)) from exc

    def check_written(self) -> None:
        if not self.transport.alive():
            raise Retry("the SIEM closed the connection")

    def close(self) -> None:
        self.transport.close()

    def dropped_event(self, count: int, at: datetime) -> AuditEvent:
        d = self.destination
        return AuditEvent(
            at,
            "dyzur",
            Action.SIEM_EVENTS_DROPPED,
            "failure",
            client=min(d.clients) if d.clients else None,
            detail={"destination": d.name, "dropped": count},
        )

    def on_backlog(self, waiting: int) -> None:
        self.metrics.siem_backlog.labels(self.destination.name).set(waiting)

    def on_sent(self, count: int) -> None:
        self.metrics.siem_sent.labels(self.destination.name).inc(count)

    def on_dropped(self, count: int) -> None:
        self.metrics.siem_dropped.labels(self.destination.name).inc(count)

    def on_failure(self, error: Exception, attempt: int) -> None:
        self.metrics.siem_failures.labels(self.destination.name).inc()
        if attempt == 1:
            log.error("cannot send to SIEM %s: %s", self.destination.name, error)

    def on_recovered(self) -> None:
        log.warning("SIEM %s reachable again", self.destination.name)
