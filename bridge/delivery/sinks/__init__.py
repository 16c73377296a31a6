"""Helpdesk sinks: every change of a ticket reaches the service company's helpdesk.

A sink is an outbox consumer (``bridge.delivery.outbox``) named ``sink:<name>``, one module per
kind (``webhook``, ``email``, ``redmine``). It takes the changes of the tickets it covers
(``TICKET_CHANGES``: the ``ticket.*`` and ``sla.*`` audit events and ``window.alert_released``
of its ``clients``, every hospital's when None), in event id order and so in order per ticket,
at least once with the event's idempotency key. ``TicketSink.deliver`` hands them to the kind's
``send_group`` per ticket and records each outcome in the store (``SinkDeliveries``): the
helpdesk's own id for the ticket (kept, and given to every later ``send``), and ``delivered``,
``failed`` or ``waiting`` with the reason, which ``GET /api/v1/tickets/{number}`` shows.

``send`` raises the outbox's ``Retry`` (the helpdesk is away or busy: the change and everything
after it are offered again, in order) or ``Permanent`` (it refused this change for good).

Parked changes
    A refused change is parked by the sink itself: kept in the sink's parked list
    (``failed``, with the reason) with an ``outbox.delivery_failed`` audit event (the one the
    outbox writes for other consumers) in the same transaction. From then on the ticket's
    later changes to that sink are parked behind it (``waiting``, one ``sink.delivery_held``
    audit event each) instead of sent, so the helpdesk never sees a ticket's changes out of
    order; the other tickets of the batch and after it go on. ``dyzur sinks retry``
    (``request_retry``) appends a ``sink.retry_requested`` event per hospital with parked
    changes: the sink meets it in its own stream, reads the parked changes again and sends them,
    in order per ticket; a change refused again stays parked with the new reason.

May use: the store's tickets (read), sink deliveries, audit log and transactions. The kinds do
the network I/O.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from bridge.actions import Action, ticket_action
from bridge.clock import Clock
from bridge.delivery.outbox import Consumer, Permanent, Selection, idempotency_key
from bridge.metrics import BridgeMetrics
from bridge.models import AuditEvent, Ticket, TimelineEntry
from bridge.store.roles import (
    AuditLog,
    Coordination,
    ParkedChange,
    SinkDeliveries,
    SinkDelivery,
    TicketStore,
)

log = logging.getLogger(__name__)

TICKET_CHANGES = frozenset({"ticket.*", "sla.*", "window.alert_released"})
RETRY_REQUESTED = Action.SINK_RETRY_REQUESTED
DELIVERED = "delivered"
FAILED = "failed"  # refused by the helpdesk, parked
WAITING = "waiting"  # parked behind a failed change of the same ticket
# The outcomes of dyzur_sink_deliveries_total (retried: a failed attempt, offered again).
OUTCOMES = ("delivered", "retried", "failed", "held")
BATCH = 100


class SinkStore(TicketStore, SinkDeliveries, AuditLog, Coordination, Protocol):
    """The roles a sink uses: tickets (read), its deliveries, the audit log and transactions."""


def without_userinfo(url: str) -> str:
    """``url`` as errors, logs and audit events name it: without a user and password someone
    wrote into it."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))


def _id(event: AuditEvent) -> int:
    assert event.id is not None, "a ticket change is a stored audit event"
    return event.id


@dataclass(frozen=True, slots=True)
class TicketChange:
    """One change of a ticket as a sink sends it: the audit event, the ticket as it is now
    (None: not in the store), the timeline text written with the change ("" if none)."""

    event: AuditEvent
    number: str
    ticket: Ticket | None
    text: str

    @property
    def key(self) -> str:
        """The same for every delivery of this change, from every bridge."""
        return idempotency_key(self.event)


def _timeline_text(timeline: list[TimelineEntry], event: AuditEvent) -> str:
    """The timeline entry written in the change's transaction (same time, its action)."""
    same_time = [e for e in timeline if e.at == event.at]
    for entry in reversed(same_time):
        try:
            if ticket_action(entry.kind) == event.action:
                return entry.message
        except (KeyError, ValueError):  # a kind written without an audit event of its own
            if event.action == "window.alert_released" and entry.kind == "window_ended":
                return entry.message
    return ""


def _waiting(event_id: int, action: str) -> str:
    return f"waiting behind change {event_id} ({action}) that failed"


class TicketSink(Consumer):
    """The outbox consumer of one helpdesk sink. Kinds implement ``send``."""

    kind = "sink"

    def __init__(
        self,
        name: str,
        store: SinkStore,
        clients: frozenset[str] | None = None,
        *,
        batch_size: int = BATCH,
    ) -> None:
        super().__init__(
            f"sink:{name}",
            Selection(clients=clients, actions=TICKET_CHANGES | {RETRY_REQUESTED}),
            batch_size=batch_size,
        )
        self.sink = name
        self.store = store
        self.clock = Clock()
        self.metrics: BridgeMetrics | None = None
        # The time of the oldest change this sink is handing over now (None: none waiting).
        self.undelivered_since: datetime | None = None

    def attach(self, clock: Clock, metrics: BridgeMetrics | None) -> None:
        """What the running bridge gives each sink once it is built from the config: its
        clock (when a change is parked, the audit events' time) and the metrics to count in."""
        self.clock, self.metrics = clock, metrics
        if metrics is not None:  # every series from the start, at 0
            for outcome in OUTCOMES:
                metrics.sink_deliveries.labels(self.sink, outcome)
            metrics.sink_backlog.labels(self.sink).set(0)

    @abstractmethod
    def send(self, change: TicketChange, remote_id: str | None) -> str | None:
        """Deliver one change; return the helpdesk's id for the ticket if it named one.
        ``remote_id``: the id it named before (None: none yet). Raise ``Retry``/``Permanent``."""

    def send_group(self, changes: list[TicketChange], remote_id: str | None) -> str | None:
        """Deliver several changes of one ticket, in order (a batch's, not yet delivered). The
        default sends them one by one; a kind that can coalesce (one Redmine note, not twenty)
        overrides it. Raising after some were taken is safe: those are recorded only by
        ``deliver`` once this returns, so all are offered again, and the kind must drop what
        it already took (by the changes' keys)."""
        for change in changes:
            try:
                remote_id = self.send(change, remote_id) or remote_id
            except Permanent as refusal:
                raise Permanent(refusal.reason, change.event.id) from refusal
            self._record(change.event, change.number, remote_id, DELIVERED, None)
        return remote_id

    def probe(self) -> str:
        """``dyzur sinks test NAME``: send a test message; return what the destination
        answered. Raise ``Retry`` or ``Permanent`` with the reason when it did not take it."""
        raise NotImplementedError(f"sink kind {self.kind} has no test message")

    def deliver(self, events: Sequence[AuditEvent]) -> None:
        """The batch in order: its ticket changes per ticket, and each retry request where it
        stands in the stream (after the changes before it, before the ones after it). A change
        the helpdesk refuses is parked here, not passed to the outbox as ``Permanent``: the
        batch's other tickets are sent all the same, and only ``Retry`` (or any other error)
        offers the batch again."""
        if events:
            self.undelivered_since = events[0].at
        changes: list[AuditEvent] = []
        for event in events:
            if event.action != RETRY_REQUESTED:
                changes.append(event)
                continue
            self._deliver_changes(changes)
            changes = []
            if event.detail.get("sink") == self.sink:
                self._retry(event)
        self._deliver_changes(changes)
        self.undelivered_since = None

    def _deliver_changes(self, events: Sequence[AuditEvent]) -> None:
        for number, group in self._by_ticket(events).items():
            known = self.store.sink_delivery(self.sink, number)
            if known is not None:  # a batch offered again: drop what this sink already took
                group = [e for e in group if _id(e) > known.event_id]
            if not group:
                continue
            parked = self.store.parked_changes(self.sink, ticket=number)
            if not parked:
                self._send(number, group, known)
                continue
            held = {p.event_id for p in parked}  # already: a batch offered again mid-retry
            group = [e for e in group if _id(e) not in held]
            if group:
                self._hold(number, group, parked[0])

    def _retry(self, request: AuditEvent) -> None:
        """Send again the parked changes of the tickets ``request`` names (those parked before
        it), in order per ticket."""
        tickets = request.detail.get("tickets")
        for number in tickets if isinstance(tickets, list) else []:
            parked = [
                p.event_id
                for p in self.store.parked_changes(self.sink, ticket=number)
                if p.event_id < _id(request)
            ]
            events = self.store.audit_events_by_id(parked)
            if events:
                self._send(number, events, self.store.sink_delivery(self.sink, number), request)
                log.warning(
                    "helpdesk sink %s: parked changes of %s sent again, as %s asked",
                    self.sink,
                    number,
                    request.actor,
                )

    def _send(
        self,
        number: str,
        events: list[AuditEvent],
        known: SinkDelivery | None,
        request: AuditEvent | None = None,
    ) -> None:
        """Send a ticket's changes: new ones, or (on a retry ``request``) its parked ones. A
        change the helpdesk refuses is parked with the ones after it behind it."""
        changes = self._changes(number, events)
        try:
            answered = self.send_group(changes, known.remote_id if known else None)
        except Permanent as refusal:
            refused = self._refused(changes, refusal)
            sent = [c.event for c in changes if _id(c.event) < refused]
            if sent:
                if request is not None:
                    self.store.unpark_changes(self.sink, [_id(e) for e in sent])
                self._record(sent[-1], number, None, DELIVERED, None)
                self._count("delivered", len(sent))
            rest = [c.event for c in changes if _id(c.event) >= refused]
            self._park_refused(number, rest, refusal.reason, request)
            return
        except Exception:
            self._count("delivered", self._taken_before_failure(number, changes))
            raise
        if request is not None:
            self.store.unpark_changes(self.sink, [_id(e) for e in events])
        self._record(events[-1], number, answered, DELIVERED, None)
        self._count("delivered", len(events))

    def _changes(self, number: str, events: Iterable[AuditEvent]) -> list[TicketChange]:
        ticket = self.store.get_ticket(number)
        timeline = self.store.timeline(number)
        return [TicketChange(e, number, ticket, _timeline_text(timeline, e)) for e in events]

    @staticmethod
    def _refused(changes: list[TicketChange], refusal: Permanent) -> int:
        """The event id of the change a ``Permanent`` names (None: the first)."""
        ids = [_id(c.event) for c in changes]
        named = refusal.event_id
        return named if named is not None and named in ids else ids[0]

    def _taken_before_failure(self, number: str, changes: list[TicketChange]) -> int:
        """How many of ``changes`` the kind recorded as delivered before it failed."""
        now = self.store.sink_delivery(self.sink, number)
        ids = [_id(c.event) for c in changes]
        if now is None or now.state != DELIVERED or now.event_id not in ids:
            return 0
        return sum(1 for i in ids if i <= now.event_id)

    # --- parking ----------------------------------------------------------------------------

    def _hold(self, number: str, events: list[AuditEvent], blocking: ParkedChange) -> None:
        """Park a ticket's new changes behind its failed one, with a ``sink.delivery_held``
        audit event each, in one transaction."""
        reason = _waiting(blocking.event_id, blocking.action)
        now = self.clock.now()
        with self.store.transaction():
            self.store.park_changes([self._parked(e, number, WAITING, reason) for e in events])
            self._record(events[-1], number, None, WAITING, reason)
            for event in events:
                self.store.append_audit(self._held(event, number, blocking.event_id, now))
        log.warning(
            "helpdesk sink %s: %d change(s) of %s held behind failed change %s",
            self.sink,
            len(events),
            number,
            blocking.event_id,
        )
        self._count("held", len(events))

    def _park_refused(
        self, number: str, events: list[AuditEvent], reason: str, request: AuditEvent | None
    ) -> None:
        """The first of ``events`` was refused: park it (``failed``) with its
        ``outbox.delivery_failed`` audit event, and the ones after it behind it, in one
        transaction. Sent again on a retry ``request``, the ones after it were parked (and
        audited as held) before: they only wait behind it now."""
        refused, behind = events[0], events[1:]
        waiting = _waiting(_id(refused), refused.action)
        now = self.clock.now()
        detail = {
            "consumer": self.name,
            "event": _id(refused),
            "action": refused.action,
            "reason": reason,
        }
        if request is not None:
            detail["retry"] = _id(request)
        failure = AuditEvent(
            now,
            "dyzur",
            Action.OUTBOX_DELIVERY_FAILED,
            "failure",
            refused.client,
            refused.asset,
            detail,
        )
        parked = [self._parked(refused, number, FAILED, reason)]
        parked += [self._parked(e, number, WAITING, waiting) for e in behind]
        with self.store.transaction():
            self.store.park_changes(parked)
            self._record(events[-1], number, None, parked[-1].state, parked[-1].reason)
            self.store.append_audit(failure)
            for event in behind if request is None else []:
                self.store.append_audit(self._held(event, number, _id(refused), now))
        log.error(
            "helpdesk sink %s refused change %s (%s) of %s for good%s: %s",
            self.sink,
            refused.id,
            refused.action,
            number,
            "" if request is None else " again",
            reason,
        )
        self._count("failed")
        if request is None:
            self._count("held", len(behind))

    def _parked(self, event: AuditEvent, number: str, state: str, reason: str) -> ParkedChange:
        return ParkedChange(
            self.sink,
            number,
            _id(event),
            event.client,
            event.action,
            state,
            reason,
            self.clock.now(),
        )

    def _held(self, event: AuditEvent, number: str, behind: int, now: datetime) -> AuditEvent:
        return AuditEvent(
            now,
            "dyzur",
            Action.SINK_DELIVERY_HELD,
            "failure",
            event.client,
            event.asset,
            {
                "consumer": self.name,
                "ticket": number,
                "event": _id(event),
                "action": event.action,
                "behind": behind,
            },
        )

    # --- bookkeeping ------------------------------------------------------------------------

    @staticmethod
    def _by_ticket(events: Sequence[AuditEvent]) -> dict[str, list[AuditEvent]]:
        """The batch's changes per ticket, each in id order; tickets in order of first change."""
        groups: dict[str, list[AuditEvent]] = {}
        for event in events:
            number = event.detail.get("ticket")
            if isinstance(number, str):  # not a window event of an alert without a ticket
                groups.setdefault(number, []).append(event)
        return groups

    def _record(
        self, event: AuditEvent, number: str, remote_id: str | None, state: str, reason: str | None
    ) -> None:
        self.store.record_delivery(
            SinkDelivery(self.sink, number, remote_id, state, reason, _id(event), event.at)
        )

    def _count(self, outcome: str, n: int = 1) -> None:
        if self.metrics is not None and n:
            self.metrics.sink_deliveries.labels(self.sink, outcome).inc(n)

    def undelivered_age(self, now: datetime) -> float:
        """Seconds since the oldest change this sink has not delivered yet was made (0: none
        waiting)."""
        since = self.undelivered_since
        return 0.0 if since is None else max(0.0, (now - since).total_seconds())

    def on_backlog(self, waiting: int) -> None:
        if self.metrics is not None:
            self.metrics.sink_backlog.labels(self.sink).set(waiting)
        if not waiting:
            self.undelivered_since = None

    def on_failure(self, error: Exception, attempt: int) -> None:
        self._count("retried")
        if attempt == 1:
            log.error("helpdesk sink %s: delivery failed: %s", self.sink, error)

    def on_recovered(self) -> None:
        log.warning("helpdesk sink %s: delivering again", self.sink)


class FailedDeliveries:
    """What ``GET /api/v1/deliveries?state=failed`` reads: the changes the sinks parked."""

    def __init__(self, store: SinkDeliveries) -> None:
        self._store = store

    def parked(
        self,
        sink: str | None,
        clients: frozenset[str] | None,
        limit: int,
        offset: int = 0,
    ) -> list[ParkedChange]:
        return self._store.parked_changes(sink, clients=clients, limit=limit, offset=offset)


class RetryStore(SinkDeliveries, AuditLog, Coordination, Protocol):
    """The roles ``request_retry`` uses."""


def request_retry(
    store: RetryStore, sink: str, actor: str, now: datetime, ticket: str | None = None
) -> list[ParkedChange]:
    """Ask ``sink`` to send its parked changes again (of ``ticket``, else all): one
    ``sink.retry_requested`` audit event per hospital with parked changes, so the sink meets it
    in its own stream (a running bridge, another process on the same store too) and sends them
    in order. Returns the changes queued (none: nothing was written)."""
    with store.transaction():
        parked = store.parked_changes(sink, ticket=ticket)
        by_client: dict[str | None, list[ParkedChange]] = {}
        for change in parked:
            by_client.setdefault(change.client, []).append(change)
        for client, changes in by_client.items():
            store.append_audit(
                AuditEvent(
                    now,
                    actor,
                    RETRY_REQUESTED,
                    "success",
                    client,
                    None,
                    {
                        "sink": sink,
                        "consumer": f"sink:{sink}",
                        "tickets": list(dict.fromkeys(c.ticket for c in changes)),
                        "events": [c.event_id for c in changes],
                    },
                )
            )
    return parked
