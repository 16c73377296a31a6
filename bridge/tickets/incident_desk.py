"""Incidents as people see them: the open incidents per hospital, the alerts held for a root
cause, and an engineer splitting an alert out of a ticket. The API's incident routes and
``dyzur incidents`` read through this and nothing else (bridge.tickets.incidents decides).

An incident is an open ticket that

- is a hospital's storm ticket (``storm``),
- has alerts of dependent assets attached to it, or explains other tickets (tickets whose
  ``incident`` names it: opened shortly before it and linked, or released after it)
  (``dependency``; its ``root`` is the ticket's asset),
- or is a group's ticket with more than one alert of its group (``group``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from bridge.config import IncidentSettings
from bridge.models import (
    Asset,
    IncidentAlert,
    MemberReason,
    MemberState,
    Ticket,
    TicketStatus,
)
from bridge.store import TicketFilter
from bridge.store.roles import IncidentStore, TicketStore
from bridge.tickets.incidents import STORM_RULE, Incidents, Topology
from rules.model import Rule

# Open tickets and a descendant's tickets are read in pages of this many.
PAGE = 500


class IncidentKind(StrEnum):
    DEPENDENCY = "dependency"  # a root cause's ticket: dependents attached, or tickets it explains
    STORM = "storm"  # a hospital's storm ticket, the alerts beyond its storm budget
    GROUP = "group"  # one asset's group ticket with more than one alert of its group


@dataclass(frozen=True, slots=True)
class IncidentView:
    """An open incident: its ticket, what kind, its root asset (None for a storm), every alert
    recorded against the ticket (oldest first) and the tickets it explains."""

    ticket: Ticket
    kind: IncidentKind
    root: str | None
    attached: list[IncidentAlert]
    explains: list[str]

    def count(self, *states: MemberState) -> int:
        return sum(1 for m in self.attached if m.state in states)

    @property
    def firing(self) -> int:
        return self.count(MemberState.HELD, MemberState.ATTACHED)

    @property
    def recovered(self) -> int:
        return self.count(MemberState.RECOVERED)

    @property
    def released(self) -> int:
        return self.count(MemberState.RELEASED)


@dataclass(frozen=True, slots=True)
class HeldView:
    """An alert held for its root cause (no ticket yet), with the assets it waits for,
    nearest first."""

    alert: IncidentAlert
    waiting_for: list[str]


class IncidentDesk:
    def __init__(
        self,
        tickets: TicketStore,
        alerts: IncidentStore,
        assets: Mapping[str, Asset],
        settings: IncidentSettings,
        incidents: Incidents | None = None,
        rule_of: Callable[[str], Rule | None] | None = None,
    ) -> None:
        """``incidents`` and ``rule_of``: the running bridge's, to split alerts out; without
        them the desk only reads (the CLI)."""
        self.tickets = tickets
        self.alerts = alerts
        self.topology = Topology(assets)
        self.settings = settings
        self._incidents = incidents
        self._rule_of = rule_of

    def open_incidents(self, client: str | None = None) -> list[IncidentView]:
        """The open incidents, one client's or every client's, by client and then oldest
        first."""
        found: list[IncidentView] = []
        for ticket in self._open_tickets(client):
            view = self._view(ticket)
            if view is not None:
                found.append(view)
        found.sort(key=lambda v: (v.ticket.client, v.ticket.opened_at, v.ticket.number))
        return found

    def held(self, client: str | None = None) -> list[HeldView]:
        """Alerts held for their root cause, one client's or every client's, by client and
        then oldest first."""
        held = self.alerts.incident_alerts(client=client, states=(MemberState.HELD,))
        held.sort(key=lambda m: (m.client, m.fired_at, m.id or 0))
        return [HeldView(m, self.topology.ancestors(m.asset)) for m in held]

    def split(self, number: str, fingerprint: str, actor: str) -> Ticket:
        """An alert attached to ticket ``number`` gets a ticket of its own now, with the
        deadline it would have had (``MemberNotFound`` when the ticket has no such firing
        alert)."""
        if self._incidents is None or self._rule_of is None:
            raise RuntimeError("this incident desk only reads")
        return self._incidents.split(number, fingerprint, actor, self._rule_of)

    # --- reading -------------------------------------------------------------------------------

    def _open_tickets(self, client: str | None) -> list[Ticket]:
        tickets: list[Ticket] = []
        before = None
        while True:
            page = self.tickets.list_tickets(
                TicketFilter(client, TicketStatus.OPEN, limit=PAGE, before=before)
            )
            tickets += page
            if len(page) < PAGE:
                return tickets
            before = page[-1].number

    def _view(self, ticket: Ticket) -> IncidentView | None:
        attached = self.alerts.incident_alerts(ticket=ticket.number)
        if ticket.rule == STORM_RULE:
            return IncidentView(ticket, IncidentKind.STORM, None, attached, [])
        explains = self._explains(ticket)
        if explains or any(m.reason is MemberReason.DEPENDENCY for m in attached):
            return IncidentView(ticket, IncidentKind.DEPENDENCY, ticket.asset, attached, explains)
        if sum(1 for m in attached if m.reason is MemberReason.GROUP) > 1:
            return IncidentView(ticket, IncidentKind.GROUP, ticket.asset, attached, [])
        return None

    def _explains(self, root: Ticket) -> list[str]:
        """The tickets whose ``incident`` names ``root``: tickets of its asset's descendants
        linked to it (opened at most ``link_period`` before it, or before it reopened) or
        released after it; open or resolved since."""
        descendants = self.topology.descendants(root.asset)
        if not descendants:
            return []
        # Every explained ticket opened after this (a reopened root links from its reopening).
        since = root.opened_at - timedelta(seconds=self.settings.link_period)
        found: list[Ticket] = []
        for asset in sorted(descendants):
            before = None
            while True:
                page = self.tickets.list_tickets(
                    TicketFilter(root.client, asset=asset, limit=PAGE, before=before)
                )
                found += [t for t in page if t.incident == root.number]
                if len(page) < PAGE or page[-1].opened_at < since:
                    break
                before = page[-1].number
        found.sort(key=lambda t: (t.opened_at, t.number))
        return [t.number for t in found]
