"""Helpdesk sinks: every change of a ticket reaches the service company's helpdesk.

A sink is an outbox consumer (``bridge.delivery.outbox``) named ``sink:<name>``, one module per
kind (``webhook``; e-mail and Redmine come next). It takes the changes of the tickets it covers
(``TICKET_CHANGES``: the ``ticket.*`` and ``sla.*`` audit events and ``window.alert_released``
of its ``clients``, every hospital's when None), in event id order and so in order per ticket,
at least once with the event's idempotency key. ``TicketSink.deliver`` hands them to the kind's
``send`` one by one and records each outcome in the store (``SinkDeliveries``): the helpdesk's
own id for the ticket (kept, and given to every later ``send``), and ``delivered`` or
``failed`` with the reason, which ``GET /api/v1/tickets/{number}`` shows.

``send`` raises the outbox's ``Retry`` (the helpdesk is away or busy: the change and everything
after it are offered again, in order) or ``Permanent`` (it refused this change for good: the
change is recorded as failed here and parked by the outbox with an ``outbox.delivery_failed``
audit event, and the next changes go on).

May use: the store's tickets (read) and sink deliveries. The kinds do the network I/O.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bridge.actions import ticket_action
from bridge.delivery.outbox import Consumer, Permanent, Selection, idempotency_key
from bridge.models import AuditEvent, Ticket, TimelineEntry
from bridge.store.roles import SinkDeliveries, SinkDelivery, TicketStore

log = logging.getLogger(__name__)

TICKET_CHANGES = frozenset({"ticket.*", "sla.*", "window.alert_released"})
DELIVERED = "delivered"
FAILED = "failed"
BATCH = 100


class SinkStore(TicketStore, SinkDeliveries, Protocol):
    """The roles a sink uses: tickets (read) and its deliveries."""


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
            Selection(clients=clients, actions=TICKET_CHANGES),
            batch_size=batch_size,
        )
        self.sink = name
        self.store = store

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
        for number, group in self._by_ticket(events).items():
            known = self.store.sink_delivery(self.sink, number)
            if known is not None:  # a batch offered again: drop what this sink already took
                group = [e for e in group if e.id is not None and e.id > known.event_id]
            if not group:
                continue
            ticket = self.store.get_ticket(number)
            timeline = self.store.timeline(number)
            changes = [TicketChange(e, number, ticket, _timeline_text(timeline, e)) for e in group]
            remote_id = known.remote_id if known else None
            try:
                answered = self.send_group(changes, remote_id)
            except Permanent as refusal:
                refused = next((c for c in changes if c.event.id == refusal.event_id), changes[0])
                self._record(refused.event, number, None, FAILED, refusal.reason)
                raise Permanent(refusal.reason, refused.event.id) from refusal
            self._record(group[-1], number, answered, DELIVERED, None)

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
        assert event.id is not None
        self.store.record_delivery(
            SinkDelivery(self.sink, number, remote_id, state, reason, event.id, event.at)
        )

    def on_failure(self, error: Exception, attempt: int) -> None:
        if attempt == 1:
            log.error("helpdesk sink %s: delivery failed: %s", self.sink, error)

    def on_recovered(self) -> None:
        log.warning("helpdesk sink %s: delivering again", self.sink)
