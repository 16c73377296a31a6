"""The ticket desk: what people do with tickets — find and list them, read their timelines,
acknowledge and resolve them. The API's ticket routes use this and nothing else."""

from __future__ import annotations

from bridge.metrics import BridgeMetrics
from bridge.models import Ticket, TimelineEntry
from bridge.store import TicketFilter
from bridge.store.roles import SinkDeliveries, SinkDelivery, TicketStore
from bridge.tickets.lifecycle import TicketLifecycle


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

    def resolve(self, number: str, actor: str) -> Ticket:
        """Close a ticket by hand (for example one a keep_open rule left open)."""
        return self.lifecycle.resolve(number, actor)
