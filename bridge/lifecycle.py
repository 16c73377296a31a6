"""The ticket lifecycle: one alert, one ticket; re-fires, escalation, recovery and reopening.

Plain Python over the Store interface, so tests drive it directly. Every decision for an alert
is taken inside ``store.alert_lock(fingerprint)``: two workers firing the same alert at the same
moment serialise there, and the second one finds the first one's ticket.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from bridge.clock import WARSAW, Clock
from bridge.models import (
    Asset,
    Category,
    Client,
    Ticket,
    TicketStatus,
    TimelineEntry,
    ticket_number,
)
from bridge.store import Store
from bridge.texts import category_name, format_value, timeline_text
from rules.model import Alert, AlertState, Rule, Transition
from rules.templates import render

log = logging.getLogger(__name__)


class LifecycleError(Exception):
    """A transition that cannot become a ticket (for example an asset not in the inventory)."""


class TicketNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Change:
    """What the lifecycle did with a transition: the ticket and the action taken on it."""

    ticket: Ticket
    action: str  # opened, refired, reopened, escalated, recovered, resolved


class TicketLifecycle:
    def __init__(
        self,
        store: Store,
        clients: Mapping[str, Client],
        assets: Mapping[str, Asset],
        clock: Clock,
        reopen_period: float = 3600.0,
    ) -> None:
        self.store = store
        self.clients = clients
        self.assets = assets
        self.clock = clock
        self.reopen_period = timedelta(seconds=reopen_period)

    # --- alerts -> tickets -----------------------------------------------------------------

    def apply(self, transition: Transition, rule: Rule) -> Change | None:
        """Act on one engine transition; returns what changed, or None when nothing did."""
        if transition.state is AlertState.FIRING:
            return self._on_firing(transition, rule)
        if transition.state is AlertState.RESOLVED and transition.previous is AlertState.FIRING:
            return self._on_recovered(transition, rule)
        return None  # pending, or a pending alert that cleared: no ticket business

    def _client_of(self, alert: Alert) -> Client:
        asset = self.assets.get(alert.asset or "")
        if asset is None:
            raise LifecycleError(f"alert {alert.rule} names unknown asset {alert.asset!r}")
        return self.clients[asset.client]

    def _on_firing(self, transition: Transition, rule: Rule) -> Change:
        alert = transition.alert
        client = self._client_of(alert)
        lang = client.contract.language
        category = Category(alert.category)
        now = self.clock.now()
        value = format_value(alert.value)
        with self.store.alert_lock(alert.fingerprint):
            latest = self.store.latest_ticket_for_alert(alert.fingerprint)
            if latest is not None and latest.is_open:
                latest.fire_count += 0 if transition.escalated else 1
                latest.last_value = alert.value
                latest.updated_at = now
                if category.severity > latest.category.severity:
                    old = latest.category
                    latest.category = category
                    text = timeline_text(
                        lang,
                        "escalated",
                        old=category_name(lang, old),
                        new=category_name(lang, category),
                        value=value,
                    )
                    self.store.update_ticket(latest, TimelineEntry(now, "escalated", text))
                    return Change(latest, "escalated")
                text = timeline_text(lang, "refired", count=latest.fire_count, value=value)
                self.store.update_ticket(latest, TimelineEntry(now, "refired", text))
                return Change(latest, "refired")
            if (
                latest is not None
                and latest.resolved_at is not None
                and now - latest.resolved_at <= self.reopen_period
            ):
                latest.status = TicketStatus.OPEN
                latest.resolved_at = None
                latest.fire_count += 1
                latest.last_value = alert.value
                latest.updated_at = now
                if category.severity > latest.category.severity:
                    latest.category = category
                text = timeline_text(lang, "reopened", value=value)
                self.store.update_ticket(latest, TimelineEntry(now, "reopened", text))
                return Change(latest, "reopened")
            title, description = render(rule, alert, lang)
            year = now.astimezone(WARSAW).year  # numbers follow the hospitals' calendar
            ticket = Ticket(
                number=ticket_number(year, self.store.next_ticket_sequence(year)),
                client=client.id,
                asset=alert.asset or "",
                rule=alert.rule,
                fingerprint=alert.fingerprint,
                category=category,
                status=TicketStatus.OPEN,
                title=title,
                description=description,
                opened_at=now,
                updated_at=now,
                labels=dict(alert.labels),
                last_value=alert.value,
            )
            text = timeline_text(lang, "opened", rule=rule.name, value=value)
            self.store.insert_ticket(ticket, TimelineEntry(now, "opened", text))
            return Change(ticket, "opened")

    def _on_recovered(self, transition: Transition, rule: Rule) -> Change | None:
        alert = transition.alert
        now = self.clock.now()
        with self.store.alert_lock(alert.fingerprint):
            ticket = self.store.latest_ticket_for_alert(alert.fingerprint)
            if ticket is None or not ticket.is_open:
                return None
            lang = self._language(ticket.client)
            ticket.last_value = alert.value
            ticket.updated_at = now
            recovered = TimelineEntry(
                now, "recovered", timeline_text(lang, "recovered", value=format_value(alert.value))
            )
            if rule.keep_open:
                self.store.update_ticket(ticket, recovered)
                self.store.update_ticket(
                    ticket, TimelineEntry(now, "left_open", timeline_text(lang, "left_open"))
                )
                return Change(ticket, "recovered")
            self.store.update_ticket(ticket, recovered)
            ticket.status = TicketStatus.RESOLVED
            ticket.resolved_at = now
            self.store.update_ticket(
                ticket, TimelineEntry(now, "resolved", timeline_text(lang, "resolved"))
            )
            return Change(ticket, "resolved")

    def _language(self, client_id: str) -> str:
        client = self.clients.get(client_id)
        return client.contract.language if client is not None else "pl"

    # --- engineers -------------------------------------------------------------------------

    def acknowledge(self, number: str, actor: str) -> Ticket:
        """An engineer's first response. Idempotent: the first response time is kept."""
        ticket = self._get(number)
        with self.store.alert_lock(ticket.fingerprint):
            ticket = self._get(number)
            if ticket.responded_at is not None:
                return ticket
            now = self.clock.now()
            ticket.responded_at = now
            ticket.responded_by = actor
            ticket.updated_at = now
            text = timeline_text(self._language(ticket.client), "acknowledged", actor=actor)
            self.store.update_ticket(ticket, TimelineEntry(now, "acknowledged", text, actor))
            return ticket

    def resolve(self, number: str, actor: str) -> Ticket:
        """An engineer closes a ticket (for example one a keep_open rule left open)."""
        ticket = self._get(number)
        with self.store.alert_lock(ticket.fingerprint):
            ticket = self._get(number)
            if not ticket.is_open:
                return ticket
            now = self.clock.now()
            ticket.status = TicketStatus.RESOLVED
            ticket.resolved_at = now
            ticket.updated_at = now
            text = timeline_text(self._language(ticket.client), "resolved_by", actor=actor)
            self.store.update_ticket(ticket, TimelineEntry(now, "resolved", text, actor))
            return ticket

    def _get(self, number: str) -> Ticket:
        ticket = self.store.get_ticket(number)
        if ticket is None:
            raise TicketNotFound(number)
        return ticket

    # --- restart ---------------------------------------------------------------------------

    def firing_alerts(self) -> list[Alert]:
        """The alerts behind open tickets, to put back into the engine after a restart."""
        return [
            Alert(
                rule=t.rule,
                fingerprint=t.fingerprint,
                labels=dict(t.labels),
                state=AlertState.FIRING,
                category=t.category.value,
                value=t.last_value if t.last_value is not None else float("nan"),
                active_since=t.opened_at.timestamp(),
                fired_at=t.opened_at.timestamp(),
            )
            for t in self.store.open_tickets()
        ]
