"""Forwarding audit events to SIEMs: syslog over UDP, TCP or TLS, in order, nothing lost.

The audit table is the outbox: an event is stored before anything is sent, and each
destination keeps a cursor of what it has delivered. A batch counts as delivered only once the
connection has stayed up for CONFIRM_AFTER seconds after it was written; if the SIEM went away
meanwhile, it is sent again (at least once: the event id in the structured data lets the SIEM
drop duplicates). A destination that stays away keeps at most ``max_queue`` events; the oldest
go, and one "siem.events_dropped" event with the count is written when it comes back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bridge.actions import Action
from bridge.clock import Clock
from bridge.delivery.siem_format import cef, octet_counted, rfc5424
from bridge.metrics import BridgeMetrics
from bridge.models import AuditEvent
from bridge.store import Store

log = logging.getLogger(__name__)

CONFIRM_AFTER = 1.0
BATCH = 500
LEASE_SECONDS = 30.0
MAX_BACKOFF = 30.0


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
    def from_url(cls, name: str, url: str, **settings) -> Destination:
        parts = urlsplit(url)
        if parts.scheme not in ("udp", "tcp", "tls") or not parts.hostname or not parts.port:
            raise ValueError("expected udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT")
        return cls(name, parts.scheme, parts.hostname, parts.port, **settings)


class Transport:
    """One destination's socket. ``send`` raises OSError (ssl.SSLError included) on failure."""

    def __init__(self, destination: Destination) -> None:
        self.destination = destination
        self._sock: socket.socket | None = None
        self._context: ssl.SSLContext | None = None
        if destination.scheme == "tls":
            context = ssl.create_default_context(
                cafile=str(destination.ca_file) if destination.ca_file else None
            )
            if destination.client_cert:
                context.load_cert_chain(
                    destination.client_cert,
                    destination.client_key if destination.client_key else None,
                )
            self._context = context

    def _connect(self) -> socket.socket:
        d = self.destination
        if d.scheme == "udp":
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.connect((d.host, d.port))
            return sock
        sock = socket.create_connection((d.host, d.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._context is not None:
            sock = self._context.wrap_socket(sock, server_hostname=d.host)
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


class DestinationWorker:
    def __init__(
        self,
        destination: Destination,
        store: Store,
        clock: Clock,
        metrics: BridgeMetrics,
        hostname: str,
        owner: str,
    ) -> None:
        self.destination = destination
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.owner = owner
        self.transport = Transport(destination)
        self._hostname = hostname
        self._failing = False
        self._attempt = 0
        self.committed, self.dropped = store.siem_cursor(destination.name)
        # (monotonic time written, last event id of the batch), oldest first
        self._unconfirmed: deque[tuple[float, int]] = deque()
        self.sent_id = self.committed

    def step(self) -> bool:
        """One round of work; True when there may be more to do at once."""
        d, store = self.destination, self.store
        if not store.lease(f"siem:{d.name}", self.owner, self.clock.time(), LEASE_SECONDS):
            return False  # another bridge worker forwards this destination
        self._confirm()
        backlog = store.audit_backlog(self.committed, d.clients)
        self.metrics.siem_backlog.labels(d.name).set(backlog)
        if backlog > d.max_queue:
            skip = backlog - d.max_queue
            self.committed = store.audit_skip(self.committed, skip, d.clients)
            self.sent_id = max(self.sent_id, self.committed)
            self.dropped += skip
            store.set_siem_cursor(d.name, self.committed, self.dropped)
            self.metrics.siem_dropped.labels(d.name).inc(skip)
        batch = store.audit_events(self.sent_id, BATCH, d.clients)
        if not batch:
            return False
        try:
            formatter = cef if d.format == "cef" else rfc5424
            self.transport.send([formatter(e, self._hostname) for e in batch])
        except OSError as exc:
            self._failed(exc)
            return False
        self.sent_id = batch[-1].id or self.sent_id
        self._unconfirmed.append((time.monotonic(), self.sent_id))
        self.metrics.siem_sent.labels(d.name).inc(len(batch))
        if self._failing:
            log.warning("SIEM %s reachable again", d.name)
            self._failing = False
        self._attempt = 0
        return True

    def _confirm(self) -> None:
        """Count batches written long enough ago as delivered, if the connection held."""
        if not self._unconfirmed:
            return
        if not self.transport.alive():
            self._failed(ConnectionError("the SIEM closed the connection"))
            return
        now = time.monotonic()
        last = None
        while self._unconfirmed and now - self._unconfirmed[0][0] >= CONFIRM_AFTER:
            last = self._unconfirmed.popleft()[1]
        if last is not None:
            self.committed = last
            self.store.set_siem_cursor(self.destination.name, last, self.dropped)
            self._report_drops()

    def _report_drops(self) -> None:
        if not self.dropped:
            return
        d = self.destination
        count, self.dropped = self.dropped, 0
        self.store.set_siem_cursor(d.name, self.committed, 0)
        client = min(d.clients) if d.clients else None
        self.store.append_audit(
            AuditEvent(
                self.clock.now(),
                "dyzur",
                Action.SIEM_EVENTS_DROPPED,
                "failure",
                client=client,
                detail={"destination": d.name, "dropped": count},
            )
        )

    def _failed(self, exc: BaseException) -> None:
        """Resend everything not yet confirmed, after a pause."""
        self.transport.close()
        self._unconfirmed.clear()
        self.sent_id = self.committed
        self.metrics.siem_failures.labels(self.destination.name).inc()
        if not self._failing:
            log.error("cannot send to SIEM %s: %s", self.destination.name, exc)
        self._failing = True
        self._attempt += 1

    def backoff(self) -> float:
        if not self._failing:
            return 0.0
        base = min(MAX_BACKOFF, 0.5 * 2 ** (self._attempt - 1))
        return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter

    def run(self, stop: threading.Event, wake: threading.Event) -> None:
        while not stop.is_set():
            try:
                busy = self.step()
            except Exception:  # a broken store must not end forwarding for good
                log.exception("SIEM %s: forwarding failed", self.destination.name)
                busy = False
            if self._failing:
                stop.wait(self.backoff())
            elif not busy:
                wake.wait(0.2 if self._unconfirmed else 1.0)
                wake.clear()
        self.transport.close()


class Forwarder:
    """One worker thread per destination."""

    def __init__(
        self, destinations: list[Destination], store: Store, clock: Clock, metrics: BridgeMetrics
    ) -> None:
        hostname = socket.gethostname()
        owner = f"{hostname}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.workers = [
            DestinationWorker(d, store, clock, metrics, hostname, owner) for d in destinations
        ]
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for worker in self.workers:
            thread = threading.Thread(
                target=worker.run,
                args=(self._stop, self.wake),
                name=f"siem-{worker.destination.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.wake.set()
        for thread in self._threads:
            thread.join(timeout)
