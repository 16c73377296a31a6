"""The ticket lifecycle: one alert, one ticket; re-fires, escalation, recovery and reopening.

Plain Python over the Store interface, so tests drive it directly. Every decision for an alert
is taken inside ``store.alert_lock(fingerprint)``: two workers firing the same alert at the same
moment serialise there, and the second one finds the first one's ticket.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bridge.clock import WARSAW, Clock, local_iso, local_time
from bridge.models import (
    Asset,
    AuditEvent,
    Category,
    Client,
    Contract,
    SlaState,
    Ticket,
    TicketStatus,
    TimelineEntry,
    ticket_number,
)
from bridge.sla import ServiceCalendar, reaction_time
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
        at_risk_share: float = 0.75,
    ) -> None:
        self.store = store
        self.clients = clients
        self.assets = assets
        self.clock = clock
        self.reopen_period = timedelta(seconds=reopen_period)
        self.at_risk_share = at_risk_share
        self._calendars: dict[str, ServiceCalendar] = {}

    # --- the record of a change: ticket, timeline and audit event in one transaction ------

    def _record(
        self,
        ticket: Ticket,
        kind: str,
        text: str,
        now: datetime,
        actor: str = "dyzur",
        new: bool = False,
    ) -> Change:
        entry = TimelineEntry(now, kind, text, actor)
        if new:
            self.store.insert_ticket(ticket, entry)
        else:
            self.store.update_ticket(ticket, entry)
        action = f"sla.{kind.removeprefix('sla_')}" if kind.startswith("sla_") else f"ticket.{kind}"
        detail = {
            "ticket": ticket.number,
            "category": ticket.category.value,
            "rule": ticket.rule,
            "reaction_due": local_iso(ticket.reaction_due),
        }
        self.store.append_audit(
            AuditEvent(now, actor, action, "success", ticket.client, ticket.asset, detail)
        )
        return Change(ticket, kind)

    # --- the SLA clock ---------------------------------------------------------------------

    def calendar(self, client_id: str) -> ServiceCalendar:
        calendar = self._calendars.get(client_id)
        if calendar is None:
            calendar = ServiceCalendar.for_contract(self._contract(client_id))
            self._calendars[client_id] = calendar
        return calendar

    def _contract(self, client_id: str) -> Contract:
        client = self.clients.get(client_id)
        return client.contract if client is not None else Contract()

    def _start_clock(self, ticket: Ticket, start: datetime) -> None:
        """Set the deadline for the ticket's category from ``start``; an earlier deadline
        already on the ticket (before an escalation) is kept."""
        reaction = reaction_time(self._contract(ticket.client), ticket.category)
        if reaction is None or ticket.responded_at is not None:
            return
        calendar = self.calendar(ticket.client)
        # Kept in UTC: Warsaw-zoned datetimes compare by wall clock in the repeated DST hour.
        due = calendar.add(start, reaction).astimezone(UTC)
        if ticket.reaction_due is not None and ticket.reaction_due <= due:
            return
        ticket.reaction_due = due
        ticket.sla_at_risk_at = calendar.add(start, reaction * self.at_risk_share).astimezone(UTC)
        if ticket.sla_state is SlaState.NONE:
            ticket.sla_state = SlaState.RUNNING

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
                    self._start_clock(latest, now)
                    text = timeline_text(
                        lang,
                        "escalated",
                        old=category_name(lang, old),
                        new=category_name(lang, category),
                        value=value,
                    )
                    return self._record(latest, "escalated", text, now)
                text = timeline_text(lang, "refired", count=latest.fire_count, value=value)
                return self._record(latest, "refired", text, now)
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
                    self._start_clock(latest, now)
                text = timeline_text(lang, "reopened", value=value)
                return self._record(latest, "reopened", text, now)
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
            self._start_clock(ticket, now)
            text = timeline_text(lang, "opened", rule=rule.name, value=value)
            if ticket.reaction_due is not None:
                text += " " + timeline_text(lang, "due", due=local_time(ticket.reaction_due))
            return self._record(ticket, "opened", text, now, new=True)

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
            text = timeline_text(lang, "recovered", value=format_value(alert.value))
            change = self._record(ticket, "recovered", text, now)
            if rule.keep_open:
                self._record(ticket, "left_open", timeline_text(lang, "left_open"), now)
                return change
            ticket.status = TicketStatus.RESOLVED
            ticket.resolved_at = now
            return self._record(ticket, "resolved", timeline_text(lang, "resolved"), now)

    def _language(self, client_id: str) -> str:
        return self._contract(client_id).language

    # --- engineers -------------------------------------------------------------------------

    def acknowledge(self, number: str, actor: str) -> tuple[Ticket, bool]:
        """An engineer's first response stops the clock. Idempotent: the first one counts;
        returns the ticket and whether this call was that first response."""
        ticket = self._get(number)
        with self.store.alert_lock(ticket.fingerprint):
            ticket = self._get(number)
            if ticket.responded_at is not None:
                return ticket, False
            now = self.clock.now()
            ticket.responded_at = now
            ticket.responded_by = actor
            ticket.updated_at = now
            if ticket.reaction_due is not None:
                in_time = now <= ticket.reaction_due
                ticket.sla_state = SlaState.MET if in_time else SlaState.BREACHED
            text = timeline_text(self._language(ticket.client), "acknowledged", actor=actor)
            self._record(ticket, "acknowledged", text, now, actor)
            return ticket, True

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
            self._record(ticket, "resolved", text, now, actor)
            return ticket

    def check_deadlines(self) -> list[Change]:
        """Warn once when a ticket without response reaches its at-risk time, and once when
        its deadline passes. Run periodically by the bridge."""
        now = self.clock.now()
        changes = []
        for candidate in self.store.open_tickets():
            if self._sla_step(candidate, now) is None:
                continue
            with self.store.alert_lock(candidate.fingerprint):
                ticket = self._get(candidate.number)
                state = self._sla_step(ticket, now)
                if state is None:
                    continue  # answered meanwhile, or another worker was first
                ticket.sla_state = state
                ticket.updated_at = now
                kind = "sla_breached" if state is SlaState.BREACHED else "sla_at_risk"
                due = local_time(ticket.reaction_due)
                text = timeline_text(self._language(ticket.client), kind, due=due)
                changes.append(self._record(ticket, kind, text, now))
        return changes

    @staticmethod
    def _sla_step(ticket: Ticket, now: datetime) -> SlaState | None:
        """The SLA state the ticket must move to now, or None."""
        if ticket.responded_at is not None or ticket.reaction_due is None or not ticket.is_open:
            return None
        if ticket.sla_state in (SlaState.RUNNING, SlaState.AT_RISK) and now >= ticket.reaction_due:
            return SlaState.BREACHED
        at_risk = ticket.sla_at_risk_at
        if ticket.sla_state is SlaState.RUNNING and at_risk is not None and now >= at_risk:
            return SlaState.AT_RISK
        return None

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
