"""The ticket desk: what people do with tickets — find and list them, read their timelines,
acknowledge and resolve them, write a note on them. The API's ticket routes and the ticket
pages use this and nothing else."""

from __future__ import annotations

import unicodedata

from bridge.actions import Event
from bridge.errors import Invalid
from bridge.metrics import BridgeMetrics
from bridge.models import Ticket, TimelineEntry
from bridge.store import TicketFilter
from bridge.store.roles import SinkDeliveries, SinkDelivery, TicketStore
from bridge.tickets.changes import Change
from bridge.tickets.lifecycle import TicketLifecycle

NOTE_MAX = 2000  # characters of a note
# Bidirectional embeddings, overrides and isolates: they make a line read other than it is.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def note_problem(text: str) -> str | None:
    """Why ``text`` cannot be a note on a ticket (None: it can): blank, longer than
    ``NOTE_MAX`` characters, or with a control character (a line break, an escape, a
    bidirectional override) that would forge or garble a timeline line, a log or a helpdesk
    message."""
    if not text.strip():
        return "a note needs some text"
    if len(text) > NOTE_MAX:
        return f"at most {NOTE_MAX} characters ({len(text)} given)"
    for i, char in enumerate(text):
        if unicodedata.category(char) == "Cc" or char in BIDI_CONTROLS:
            return f"control character U+{ord(char):04X} at position {i + 1} is not allowed"
    return None


class NoteRefused(Invalid):
    def __init__(self, problem: str) -> None:
        super().__init__(f"text: {problem}")


class TicketDesk:
    def __init__(
        self,
        tickets: TicketStore,
        lifecycle: TicketLifecycle,
        metrics: BridgeMetrics,
        deliveries: SinkDeliveries | None = None,
    ) -> None:
        self.tickets = tickets
        self._deliveries = deliveries
        self.lifecycle = lifecycle
        self.metrics = metrics

    def find(self, number: str) -> Ticket | None:
        return self.tickets.get_ticket(number)

    def matching(self, query: TicketFilter) -> list[Ticket]:
        """Tickets matching ``query``, newest first."""
        return self.tickets.list_tickets(query)

    def timeline(self, number: str) -> list[TimelineEntry]:
        """The ticket's timeline, oldest first."""
        return self.tickets.timeline(number)

    def deliveries(self, number: str) -> list[SinkDelivery]:
        """Where the ticket was delivered: per helpdesk sink, its id there and the state."""
        return [] if self._deliveries is None else self._deliveries.sink_deliveries(number)

    def acknowledge(self, number: str, actor: str) -> Ticket:
        """An engineer's first response, timed in service hours for the metrics; repeating it
        changes nothing."""
        ticket, first = self.lifecycle.acknowledge(number, actor)
        if first:
            self.responded(ticket)
        return ticket

    def responded(self, ticket: Ticket) -> None:
        """Count a ticket's first response (here, or in a helpdesk) in the metrics: the time
        it took in service hours."""
        if ticket.responded_at is not None:
            calendar = self.lifecycle.calendar(ticket.client)
            taken = calendar.between(ticket.opened_at, ticket.responded_at)
            self.metrics.first_response.labels(ticket.category.value).observe(taken.total_seconds())

    def resolve(self, number: str, actor: str, note: str | None = None) -> Ticket:
        """Close a ticket by hand (for example one a keep_open rule left open), with the
        engineer's ``note`` on its timeline first, in the same transaction. A resolved ticket
        stays as it is (the note is still written: it is what the engineer said)."""
        if note is not None:
            self._check(note)
        with self.lifecycle.store.transaction():
            was_open = self.lifecycle.locked(number).is_open
            if note is not None:
                self.lifecycle.note(number, Event.NOTE, note.strip(), actor)
            ticket = self.lifecycle.resolve_within(number, actor)
        if was_open:
            self.metrics.count_change(Change(ticket, "resolved"))
        return ticket

    def note(self, number: str, text: str, actor: str) -> Ticket:
        """An engineer's note on the ticket's timeline (audited ``ticket.note``, by
        ``actor``), open or resolved; ``text`` as ``note_problem`` allows (else
        ``NoteRefused``, naming the field ``text``)."""
        self._check(text)
        with self.lifecycle.store.transaction():
            return self.lifecycle.note(number, Event.NOTE, text.strip(), actor)

    @staticmethod
    def _check(text: str) -> None:
        problem = note_problem(text)
        if problem is not None:
            raise NoteRefused(problem)
