"""The ticket lifecycle: one alert, one ticket; re-fires, escalation, recovery and reopening.

Plain Python over the store roles, so tests drive it directly. Every decision for an alert is
taken inside a store transaction holding the alert's lock (``lock("alert:<fingerprint>")``):
two workers firing the same alert at the same moment serialise there, and the second one finds
the first one's ticket.

Transactions do not nest, so the caller that owns the unit of work opens it, once. The
lifecycle's methods are of two kinds, and each says which it is:

- units of their own, which open a transaction per change and must be called outside one:
  ``acknowledge`` and ``resolve`` (an engineer, through the API), ``check_deadlines`` and
  ``release_windows`` (the ticker: one transaction per ticket or alert);
- steps of the caller's unit, which open none and need the caller's transaction (StoreError
  without one): ``apply``/``apply_all`` (ingest's batch, the ticker's retries),
  ``apply_notified`` (one Alertmanager alert), ``open_ticket``, ``note`` and ``resolve_within``
  (an update plan's step), ``acknowledge_within``, ``remark_within`` and ``resolve_within``
  (a response made in a helpdesk, brought back).

Nothing slow runs inside the transaction: ``prepare`` and ``prepare_notified``, called before
it, render the ticket's texts, ask the muter whether the alert is muted and work out the
reaction deadline; ``apply`` and ``apply_notified`` then only read and write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bridge.actions import ticket_action
from bridge.clock import WARSAW, Clock, local_iso, local_time
from bridge.config import IncidentSettings
from bridge.errors import NotFound
from bridge.maintenance.windows import Muting
from bridge.models import (
    Asset,
    AuditEvent,
    Category,
    Client,
    Contract,
    MemberReason,
    SlaState,
    SuppressedAlert,
    SuppressedState,
    Ticket,
    TicketStatus,
    TimelineEntry,
    ticket_number,
)
from bridge.store import Store
from bridge.tickets.changes import Attachment, Change, Stale, Suppression
from bridge.tickets.incidents import Incidents, group_key, is_shared_key
from bridge.tickets.sla import ServiceCalendar, reaction_time
from bridge.tickets.texts import category_name, timeline_text
from rules.model import Alert, AlertState, Rule, Transition
from rules.templates import TemplateRenderError, render, try_render, uses_category

log = logging.getLogger(__name__)


class LifecycleError(Exception):
    """A transition that cannot become a ticket (for example an asset not in the inventory)."""


class TicketNotFound(NotFound):
    def __init__(self, number: str) -> None:
        super().__init__(f"no ticket {number}")
        self.number = number


class Muter(Protocol):
    """Whatever mutes alerts answers one question, and knows nothing of tickets."""

    def muting(self, asset: str, at: datetime) -> Muting | None: ...


@dataclass(frozen=True, slots=True)
class Deadline:
    """A reaction deadline (UTC) and the moment it is at risk, worked out before the
    transaction (``TicketLifecycle.deadline``)."""

    due: datetime
    at_risk: datetime


@dataclass(frozen=True, slots=True)
class Prepared:
    """One alert's change with everything slow done before the transaction: the ticket's
    title and description for each category its ticket may have (the alert's, or a higher one
    kept from an earlier escalation), whether a window mutes the alert at ``now``, and the
    reaction deadline of the alert's category from ``now``. ``client`` is None only for a
    recovery of an asset no longer in the inventory (its ticket is resolved all the same)."""

    alert: Alert
    rule: Rule
    client: Client | None
    now: datetime
    firing: bool  # False: the alert recovered
    escalated: bool = False
    texts: Mapping[Category, tuple[str, str]] = field(default_factory=dict)
    muting: Muting | None = None
    deadline: Deadline | None = None
    # Incidents: the ticket key of the rule's group (None: the alert's own fingerprint), when
    # the alert first fired (a release keeps it), and which incident steps apply to it.
    group_key: str | None = None
    fired_at: datetime | None = None
    hold: bool = True  # may be held for its root cause
    budget: bool = True  # counts against the storm budget
    route: bool = True  # dependency, hold and budget apply at all (not for a split)

    @property
    def key(self) -> str:
        """The key of the alert's ticket: its group's, or its own fingerprint."""
        return self.group_key or self.alert.fingerprint


class TicketLifecycle:
    def __init__(
        self,
        store: Store,
        clients: Mapping[str, Client],
        assets: Mapping[str, Asset],
        clock: Clock,
        reopen_period: float = 3600.0,
        at_risk_share: float = 0.75,
        *,
        muter: Muter,
        incidents: IncidentSettings | None = None,
        last_seen: Callable[[str], float | None] | None = None,
    ) -> None:
        self.store = store
        self.clients = clients
        self.assets = assets
        self.clock = clock
        self.reopen_period = timedelta(seconds=reopen_period)
        self.at_risk_share = at_risk_share
        self._calendars: dict[str, ServiceCalendar] = {}
        # What mutes an alert (maintenance windows): asked before a ticket is opened.
        self.muter = muter
        # Root cause by dependency, groups and the storm budget: asked after the muter.
        self.incidents = Incidents(
            self, store, clients, assets, incidents or IncidentSettings(), last_seen
        )

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
        action = ticket_action(kind)  # an explicit table (bridge/actions.py); before writing
        entry = TimelineEntry(now, kind, text, actor)
        if new:
            self.store.insert_ticket(ticket, entry)
        else:
            self.store.update_ticket(ticket, entry)
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

    record = _record  # for the incidents' own tickets (a storm's)

    # --- the SLA clock ---------------------------------------------------------------------

    def deadline(self, client_id: str, category: Category, start: datetime) -> Deadline | None:
        """The reaction deadline of a ticket of ``category`` opened (or escalated) at ``start``,
        in the service hours of the client's contract; None where no clock runs. Service
        calendar arithmetic: call it before the transaction."""
        reaction = reaction_time(self._contract(client_id), category)
        if reaction is None:
            return None
        calendar = self.calendar(client_id)
        # Kept in UTC: Warsaw-zoned datetimes compare by wall clock in the repeated DST hour.
        return Deadline(
            calendar.add(start, reaction).astimezone(UTC),
            calendar.add(start, reaction * self.at_risk_share).astimezone(UTC),
        )

    def calendar(self, client_id: str) -> ServiceCalendar:
        calendar = self._calendars.get(client_id)
        if calendar is None:
            calendar = ServiceCalendar.for_contract(self._contract(client_id))
            self._calendars[client_id] = calendar
        return calendar

    def _contract(self, client_id: str) -> Contract:
        client = self.clients.get(client_id)
        return client.contract if client is not None else Contract()

    @staticmethod
    def _start_clock(ticket: Ticket, deadline: Deadline | None) -> None:
        """Put the deadline worked out for the ticket's category on it; an earlier deadline
        already on the ticket (before an escalation) is kept, and an answered ticket has none."""
        if deadline is None or ticket.responded_at is not None:
            return
        if ticket.reaction_due is not None and ticket.reaction_due <= deadline.due:
            return
        ticket.reaction_due = deadline.due
        ticket.sla_at_risk_at = deadline.at_risk
        if ticket.sla_state is SlaState.NONE:
            ticket.sla_state = SlaState.RUNNING

    # --- alerts -> tickets -----------------------------------------------------------------

    def prepare(self, transition: Transition, rule: Rule, now: datetime) -> Prepared | None:
        """Before the transaction: what ``apply`` needs for one engine transition; None for a
        transition that is no ticket business (pending, or a pending alert that cleared).
        LifecycleError for a firing alert of an asset not in the inventory."""
        if transition.state is AlertState.FIRING:
            return self._prepare(transition.alert, rule, now, True, transition.escalated)
        if transition.state is AlertState.RESOLVED and transition.previous is AlertState.FIRING:
            return self._prepare(transition.alert, rule, now, False)
        return None

    def _prepare(
        self, alert: Alert, rule: Rule, now: datetime, firing: bool, escalated: bool = False
    ) -> Prepared:
        if not firing:
            asset = self.assets.get(alert.asset or "")
            client = self.clients.get(asset.client) if asset is not None else None
            group = None
            if rule.group is not None and asset is not None:
                group = group_key(asset.client, asset.id, rule.group)
            return Prepared(alert, rule, client, now, False, group_key=group)
        prepared = self._prepare_firing(alert, rule, now, escalated)
        if rule.group is not None and prepared.client is not None:
            key = group_key(prepared.client.id, alert.asset or "", rule.group)
            prepared = replace(prepared, group_key=key)
        return prepared

    def prepare_release(
        self, alert: Alert, rule: Rule, now: datetime, fired_at: datetime
    ) -> Prepared:
        """Before the transaction: an alert held or attached since ``fired_at`` that opens a
        ticket of its own now, with the deadline from ``fired_at`` (the one it would have had
        from its first firing, or from now)."""
        prepared = self._prepare(alert, rule, now, True)
        client = prepared.client
        assert client is not None
        return replace(
            prepared,
            fired_at=fired_at,
            deadline=self.deadline(client.id, Category(alert.category), fired_at),
        )

    def fire_released(
        self, prepared: Prepared, after: Sequence[tuple[str, str]], incident: str | None
    ) -> Change | Suppression | Attachment:
        """Inside the caller's transaction (the incidents' release): the alert's own ticket,
        with the lines that say where it comes from and the incident it was part of."""
        change = self._fire(prepared, False)
        if isinstance(change, Change) and change.action in ("opened", "reopened"):
            ticket = change.ticket
            if incident is not None and ticket.incident is None:
                ticket.incident = incident
            for kind, text in after:
                self.store.update_ticket(ticket, TimelineEntry(prepared.now, kind, text))
        return change

    def _prepare_firing(self, alert: Alert, rule: Rule, now: datetime, escalated: bool) -> Prepared:
        client = self._client_of(alert)
        category = Category(alert.category)
        muting = self.muter.muting(alert.asset or "", now)
        if muting is not None:
            latest = self.store.latest_ticket_for_alert(alert.fingerprint)
            if latest is None or not latest.is_open:
                # Recorded against its window, no ticket to write: neither texts nor a
                # deadline (an alert storm inside a window). Should a ticket open meanwhile,
                # ``_fire`` works them out then (``_completed``).
                return Prepared(alert, rule, client, now, True, escalated, muting=muting)
        return Prepared(
            alert,
            rule,
            client,
            now,
            True,
            escalated,
            self._texts(rule, alert, client.contract.language),
            muting,
            self.deadline(client.id, category, now),
        )

    def _completed(self, prepared: Prepared) -> Prepared:
        """A prepared firing with its texts and deadline (rare: an alert prepared as muted
        without a ticket whose ticket was opened by another worker before its transaction)."""
        if prepared.texts or prepared.client is None:
            return prepared
        alert, client = prepared.alert, prepared.client
        return replace(
            prepared,
            texts=self._texts(prepared.rule, alert, client.contract.language),
            deadline=self.deadline(client.id, Category(alert.category), prepared.now),
        )

    @staticmethod
    def _texts(rule: Rule, alert: Alert, lang: str) -> dict[Category, tuple[str, str]]:
        """The rule's templates rendered with this alert's values in its category and in each
        higher-ranked one (an open or reopened ticket keeps a higher category it had)."""
        category = Category(alert.category)
        higher = [other for other in Category if other.severity > category.severity]
        if not uses_category(rule):  # the same texts in every category: render them once
            try:
                same = try_render(rule, alert, lang)
            except TemplateRenderError:
                pass  # the fallback text names the category: render it per category below
            else:
                return dict.fromkeys([category, *higher], same)
        texts = {category: render(rule, alert, lang)}
        for other in higher:
            texts[other] = render(rule, replace(alert, category=other.value), lang)
        return texts

    def apply(self, prepared: Prepared) -> Change | Suppression | Attachment | None:
        """Inside the caller's transaction: act on one prepared transition under its alert's
        lock; returns what changed, or None when nothing did."""
        self.store.lock(f"alert:{prepared.alert.fingerprint}")
        self.store.lock(f"alert:{prepared.key}")
        if prepared.firing:
            return self._fire(prepared, prepared.escalated)
        return self._recovered(prepared)

    def apply_all(self, prepared: Sequence[Prepared]) -> list[Change | Suppression | Attachment]:
        """Inside the caller's transaction: the alerts' locks in fingerprint order (the lock
        order), then each change in the order given."""
        keys = {p.alert.fingerprint for p in prepared} | {p.key for p in prepared}
        for key in sorted(keys):
            self.store.lock(f"alert:{key}")
        changes: list[Change | Suppression | Attachment] = []
        for p in prepared:
            change = self.apply(p)
            if change is not None:
                changes.append(change)
        return changes

    def _client_of(self, alert: Alert) -> Client:
        asset = self.assets.get(alert.asset or "")
        if asset is None:
            raise LifecycleError(f"alert {alert.rule} names unknown asset {alert.asset!r}")
        return self.clients[asset.client]

    def prepare_notified(self, alert: Alert, rule: Rule) -> Prepared:
        """Before the transaction: what ``apply_notified`` needs for one notified alert (at
        the clock's now). LifecycleError for a firing alert of an asset not in the inventory."""
        return self._prepare(alert, rule, self.clock.now(), alert.state is not AlertState.RESOLVED)

    def apply_notified(
        self, prepared: Prepared
    ) -> Change | Suppression | Attachment | Stale | None:
        """Inside the caller's transaction: an alert another system evaluates (Alertmanager)
        and notifies again and again while it fires. Only what changes — a new firing, a higher
        category, the resolution — reaches the ticket; a repeated notification changes nothing,
        and a firing that started before the alert's recorded resolution (``fired_at``: its
        start) is stale."""
        alert = prepared.alert
        self.store.lock(f"alert:{alert.fingerprint}")
        self.store.lock(f"alert:{prepared.key}")
        if not prepared.firing:
            return self._recovered(prepared)
        category = Category(alert.category)
        latest = self.store.latest_ticket_for_alert(prepared.key)
        is_open = latest is not None and latest.is_open
        member = self.incidents.firing_member(alert.fingerprint)
        if member is not None:
            if category.severity <= member.category.severity:
                return None  # told again
        elif (
            prepared.group_key is None and is_open and category.severity <= latest.category.severity  # type: ignore[union-attr]
        ):
            return None
        muted = self.store.suppressed_alerts(
            fingerprint=alert.fingerprint, state=SuppressedState.FIRING
        )
        if muted and category.severity <= muted[0].category.severity:
            return None
        if not is_open and not muted and member is None and alert.fired_at is not None:
            # Not firing now: a firing that started before the recorded resolution (of the
            # ticket, or inside a window) is that resolved one, told again.
            ends = [
                r.recovered_at
                for r in self.store.suppressed_alerts(
                    fingerprint=alert.fingerprint, state=SuppressedState.RECOVERED
                )
                if r.recovered_at is not None
            ]
            ends += [
                r.recovered_at
                for r in self.store.incident_alerts(fingerprint=alert.fingerprint)
                if r.recovered_at is not None
            ]
            if latest is not None and latest.resolved_at is not None:
                ends.append(latest.resolved_at)
            if ends and alert.fired_at <= max(ends).timestamp():
                return self._stale(prepared, latest, max(ends))
        return self._fire(prepared, is_open)

    def _stale(self, prepared: Prepared, latest: Ticket | None, resolved_at: datetime) -> Stale:
        alert, now, client = prepared.alert, prepared.now, prepared.client
        assert client is not None  # a firing alert's
        since = datetime.fromtimestamp(alert.fired_at or 0.0, UTC)
        log.info(
            "stale notification of %s on %s ignored: firing since %s, resolved at %s",
            alert.rule,
            alert.asset,
            since.isoformat(),
            resolved_at.isoformat(),
        )
        if latest is not None:
            text = timeline_text(
                client.contract.language,
                "stale",
                since=local_time(since),
                resolved=local_time(resolved_at),
            )
            self.store.update_ticket(latest, TimelineEntry(now, "stale", text))
        return Stale(client.id, latest, resolved_at)

    def _fire(self, prepared: Prepared, escalated: bool) -> Change | Suppression | Attachment:
        """Inside the alert's lock: refire or escalate its open ticket; else, if its asset is
        in a maintenance window, record it against the window; else reopen or open a ticket.
        The ticket's title and description are the rule's templates rendered with this alert
        (before the transaction), so a ticket that fires again or reopens tells the value of
        now, not that of its first firing."""
        alert, rule, now, client = prepared.alert, prepared.rule, prepared.now, prepared.client
        assert client is not None  # a firing alert's
        lang = client.contract.language
        category = Category(alert.category)
        value = alert.value
        incidents = self.incidents
        latest = self.store.latest_ticket_for_alert(prepared.key)
        if latest is not None and latest.is_open:
            prepared = self._completed(prepared)
            if prepared.group_key is not None and incidents.join_group(latest, prepared):
                # Another alert of the group: a line on its ticket, the ticket's list.
                texts = prepared.texts[category]
                text = timeline_text(
                    lang,
                    "group_joined",
                    title=texts[0],
                    category=category_name(lang, category),
                    value=value,
                )
                incidents.describe_group(latest)
                self.store.update_ticket(latest, TimelineEntry(now, "group_joined", text))
            latest.fire_count += 0 if escalated else 1
            latest.last_value = alert.value
            latest.updated_at = now
            if category.severity > latest.category.severity:
                old = latest.category
                latest.category = category
                self._start_clock(latest, prepared.deadline)
                self._retitle(latest, prepared)
                if prepared.group_key is not None:
                    incidents.describe_group(latest)
                text = timeline_text(
                    lang,
                    "escalated",
                    old=category_name(lang, old),
                    new=category_name(lang, category),
                    value=value,
                )
                return self._record(latest, "escalated", text, now)
            if prepared.group_key is None:
                self._retitle(latest, prepared)
            text = timeline_text(lang, "refired", count=latest.fire_count, value=value)
            return self._record(latest, "refired", text, now)
        member = incidents.firing_member(alert.fingerprint)
        if member is not None and member.reason is not MemberReason.GROUP:
            return incidents.refire(member, self._completed(prepared))
        if prepared.muting is not None:
            return self._suppress(alert, client, category, prepared.muting, now)
        if prepared.route:
            attachment = incidents.route(self._completed(prepared))
            if attachment is not None:
                return attachment
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
                self._start_clock(latest, prepared.deadline)
            self._retitle(latest, prepared)
            text = timeline_text(lang, "reopened", value=value)
            change = self._record(latest, "reopened", text, now)
        else:
            ticket = self._new_ticket(
                client.id, alert.asset or "", alert.rule, prepared.key, category, now
            )
            self._retitle(ticket, prepared)
            ticket.labels = dict(alert.labels)
            ticket.last_value = alert.value
            self._start_clock(ticket, prepared.deadline)
            text = timeline_text(lang, "opened", rule=rule.name, value=value)
            if ticket.reaction_due is not None:
                text += " " + timeline_text(lang, "due", due=local_time(ticket.reaction_due))
            change = self._record(ticket, "opened", text, now, new=True)
        if prepared.group_key is not None:
            incidents.join_group(change.ticket, prepared)
            incidents.describe_group(change.ticket)
            self.store.update_ticket(change.ticket)
        incidents.opened(change.ticket, now)
        self._release_suppressed(change.ticket, lang, now)
        if alert.fired_at is not None:
            change = Change(change.ticket, change.action, now.timestamp() - alert.fired_at)
        return change

    @staticmethod
    def _retitle(ticket: Ticket, prepared: Prepared) -> None:
        """Title and description from the rule's templates with this alert's values, in the
        ticket's category (kept when the alert fires again below an earlier escalation). A
        ticket whose category is neither the alert's nor ranked above it (a rule whose
        category was changed in its file) takes the alert's category's texts."""
        texts = prepared.texts
        found = texts.get(ticket.category)
        ticket.title, ticket.description = (
            found if found is not None else texts[Category(prepared.alert.category)]
        )

    def _new_ticket(
        self,
        client: str,
        asset: str,
        rule: str,
        fingerprint: str,
        category: Category,
        now: datetime,
    ) -> Ticket:
        year = now.astimezone(WARSAW).year  # numbers follow the hospitals' calendar
        return Ticket(
            number=ticket_number(year, self.store.next_sequence(f"ticket-{year}")),
            client=client,
            asset=asset,
            rule=rule,
            fingerprint=fingerprint,
            category=category,
            status=TicketStatus.OPEN,
            title="",
            description="",
            opened_at=now,
            updated_at=now,
        )

    new_ticket = _new_ticket  # for the incidents' own tickets (a storm's)
    start_clock = _start_clock

    # --- maintenance windows ---------------------------------------------------------------

    def _suppress(
        self, alert: Alert, client: Client, category: Category, muting: Muting, now: datetime
    ) -> Suppression:
        """Record the alert against the window instead of opening a ticket."""
        found = self.store.suppressed_alerts(
            fingerprint=alert.fingerprint, state=SuppressedState.FIRING
        )
        if found:  # escalated, or fired again, while still muted
            record = found[0]
            if category.severity > record.category.severity:
                record.category = category
            record.value = alert.value
            record.window, record.until = muting.window, muting.until
            self.store.save_suppressed(record)
            return Suppression(record, "suppressed")
        record = self.store.save_suppressed(
            SuppressedAlert(
                fingerprint=alert.fingerprint,
                window=muting.window,
                client=client.id,
                asset=alert.asset or "",
                rule=alert.rule,
                category=category,
                labels=dict(alert.labels),
                value=alert.value,
                fired_at=now,
                until=muting.until,
            )
        )
        self._audit_suppressed("window.alert_suppressed", record, now)
        return Suppression(record, "suppressed")

    def _audit_suppressed(self, action: str, record: SuppressedAlert, now: datetime) -> None:
        detail = {
            "window": record.window,
            "rule": record.rule,
            "category": record.category.value,
            "fired_at": local_iso(record.fired_at),
        }
        if record.ticket:
            detail["ticket"] = record.ticket
        self.store.append_audit(
            AuditEvent(now, "dyzur", action, "success", record.client, record.asset, detail)
        )

    def _release_suppressed(self, ticket: Ticket, lang: str, now: datetime) -> None:
        """The alert now has its ticket: its record in a window is settled, and the ticket
        says since when the alert has been firing."""
        for record in self.store.suppressed_alerts(
            fingerprint=ticket.fingerprint, state=SuppressedState.FIRING
        ):
            record.state = SuppressedState.RELEASED
            record.ticket = ticket.number
            self.store.save_suppressed(record)
            text = timeline_text(
                lang, "window_ended", window=record.window, since=local_time(record.fired_at)
            )
            self.store.update_ticket(ticket, TimelineEntry(now, "window_ended", text))
            self._audit_suppressed("window.alert_released", record, now)

    def release_windows(self, rule_of: Callable[[str], Rule | None]) -> list[Change]:
        """A unit per alert, run by the ticker outside a transaction: alerts still firing when
        their window ended open their tickets now. An alert whose asset went straight into
        another window moves to it."""
        now = self.clock.now()
        changes = []
        for due in self.store.suppressed_alerts(state=SuppressedState.FIRING, until_before=now):
            # Before the transaction: the muting question, the texts and the deadline.
            rule = rule_of(due.rule)
            prepared = None
            if rule is not None and due.asset in self.assets:
                prepared = self._prepare(_alert_of(due), rule, now, True)
            muting = prepared.muting if prepared is not None else self.muter.muting(due.asset, now)
            with self.store.transaction():
                self.store.lock(f"alert:{due.fingerprint}")
                found = self.store.suppressed_alerts(
                    fingerprint=due.fingerprint, state=SuppressedState.FIRING
                )
                if not found or found[0].until > now:
                    continue  # settled or moved meanwhile
                record = found[0]
                if muting is not None:
                    record.window, record.until = muting.window, muting.until
                    self.store.save_suppressed(record)
                    continue
                if prepared is None:
                    log.error(
                        "alert %s of window %s cannot open a ticket: rule or asset is gone",
                        record.rule,
                        record.window,
                    )
                    record.state = SuppressedState.RELEASED
                    self.store.save_suppressed(record)
                    self._audit_suppressed("window.alert_dropped", record, now)
                    continue
                change = self._fire(replace(prepared, alert=_alert_of(record)), False)
                if isinstance(change, Change):
                    changes.append(change)
        return changes

    def _recovered(self, prepared: Prepared) -> Change | Suppression | Attachment | None:
        alert, now = prepared.alert, prepared.now
        incidents = self.incidents
        member = incidents.firing_member(alert.fingerprint)
        if member is not None and member.reason is not MemberReason.GROUP:
            return incidents.recovered(member, alert.value, now)
        ticket = self.store.latest_ticket_for_alert(prepared.key)
        if member is not None:  # one alert of a group
            if ticket is None or not ticket.is_open or ticket.number != member.ticket:
                return incidents.recovered(member, alert.value, now)
            remaining = incidents.group_recovered(member, ticket, alert.value, now)
            incidents.describe_group(ticket)
            if remaining:
                lang = self._language(ticket.client)
                text = timeline_text(
                    lang,
                    "group_recovered",
                    title=member.title,
                    remaining=", ".join(m.title for m in remaining),
                )
                ticket.updated_at = now
                self.store.update_ticket(ticket, TimelineEntry(now, "group_recovered", text))
                return Attachment(member, "recovered")
        elif prepared.group_key is not None and ticket is not None and ticket.is_open:
            return None  # not one of the group's firing alerts: the group's ticket stays
        if ticket is None or not ticket.is_open:
            return self._recovered_in_window(alert, now)
        lang = self._language(ticket.client)
        ticket.last_value = alert.value
        ticket.updated_at = now
        text = timeline_text(lang, "recovered", value=alert.value)
        change = self._record(ticket, "recovered", text, now)
        if prepared.rule.keep_open:
            self._record(ticket, "left_open", timeline_text(lang, "left_open"), now)
            return change
        ticket.status = TicketStatus.RESOLVED
        ticket.resolved_at = now
        resolved = self._record(ticket, "resolved", timeline_text(lang, "resolved"), now)
        incidents.closed(ticket, now)
        return resolved

    def _recovered_in_window(self, alert: Alert, now: datetime) -> Suppression | None:
        """An alert that fired and recovered inside its window is only logged."""
        found = self.store.suppressed_alerts(
            fingerprint=alert.fingerprint, state=SuppressedState.FIRING
        )
        if not found:
            return None
        record = found[0]
        record.state = SuppressedState.RECOVERED
        record.recovered_at = now
        record.value = alert.value
        self.store.save_suppressed(record)
        log.info(
            "alert %s on %s fired and recovered inside window %s: no ticket",
            record.rule,
            record.asset,
            record.window,
        )
        self._audit_suppressed("window.alert_recovered", record, now)
        return Suppression(record, "recovered")

    def _language(self, client_id: str) -> str:
        return self._contract(client_id).language

    # --- engineers -------------------------------------------------------------------------

    def acknowledge(self, number: str, actor: str) -> tuple[Ticket, bool]:
        """A unit of its own: an engineer's first response stops the clock. Idempotent: the
        first one counts; returns the ticket and whether this call was that first response."""
        with self.store.transaction():
            return self.acknowledge_within(number, actor)

    def acknowledge_within(
        self, number: str, actor: str, at: datetime | None = None
    ) -> tuple[Ticket, bool]:
        """Inside the caller's transaction: ``acknowledge``. ``at``: when the response was
        made, if not now (a helpdesk's journal, on its own clock): kept between the ticket's
        opening and now, and what the SLA clock judges."""
        ticket = self._locked(number)
        if ticket.responded_at is not None:
            return ticket, False
        now = self.clock.now()
        responded = now if at is None else max(ticket.opened_at, min(at, now))
        ticket.responded_at = responded
        ticket.responded_by = actor
        ticket.updated_at = now
        if ticket.reaction_due is not None:
            in_time = responded <= ticket.reaction_due
            ticket.sla_state = SlaState.MET if in_time else SlaState.BREACHED
        text = timeline_text(self._language(ticket.client), "acknowledged", actor=actor)
        self._record(ticket, "acknowledged", text, now, actor)
        return ticket, True

    def remark_within(self, number: str, kind: str, text: str, actor: str) -> Ticket:
        """Inside the caller's transaction: a line on the ticket's timeline that changes
        nothing else and so has no audit event of its own (what a helpdesk said about it)."""
        ticket = self._locked(number)
        self.store.update_ticket(ticket, TimelineEntry(self.clock.now(), kind, text, actor))
        return ticket

    def resolve(self, number: str, actor: str) -> Ticket:
        """A unit of its own: an engineer closes a ticket (for example one a keep_open rule
        left open). Inside a caller's transaction, ``resolve_within``."""
        with self.store.transaction():
            return self.resolve_within(number, actor)

    def resolve_within(self, number: str, actor: str) -> Ticket:
        """Inside the caller's transaction: close a ticket (an update plan that ended); a
        resolved ticket is left as it is."""
        ticket = self._locked(number)
        if not ticket.is_open:
            return ticket
        now = self.clock.now()
        ticket.status = TicketStatus.RESOLVED
        ticket.resolved_at = now
        ticket.updated_at = now
        text = timeline_text(self._language(ticket.client), "resolved_by", actor=actor)
        self._record(ticket, "resolved", text, now, actor)
        self.incidents.closed(ticket, now)
        return ticket

    def open_ticket(
        self,
        *,
        client: str,
        asset: str,
        rule: str,
        fingerprint: str,
        category: Category,
        title: str,
        description: str,
        text: str,
        actor: str = "dyzur",
        labels: Mapping[str, str] | None = None,
        due: datetime | None = None,
        deadline: Deadline | None = None,
    ) -> Ticket:
        """Inside the caller's transaction: a ticket that no alert opened (an update plan, a
        failed update stage). ``due`` replaces the contract's reaction clock (aktualizacja:
        the agreed start); otherwise the ticket gets ``deadline``, worked out by the caller
        before its transaction (``deadline()``), or, without one, the contract's deadline
        from now, worked out here (service-calendar arithmetic inside the transaction: pass
        ``deadline`` where it matters)."""
        self.store.lock(f"alert:{fingerprint}")
        now = self.clock.now()
        ticket = self._new_ticket(client, asset, rule, fingerprint, category, now)
        ticket.title, ticket.description = title, description
        ticket.labels = dict(labels or {})
        if due is not None:
            ticket.reaction_due = due.astimezone(UTC)
        else:
            self._start_clock(ticket, deadline or self.deadline(client, category, now))
        if ticket.reaction_due is not None:
            text += " " + timeline_text(
                self._language(client), "due", due=local_time(ticket.reaction_due)
            )
        self._record(ticket, "opened", text, now, actor, new=True)
        return ticket

    def note(self, number: str, kind: str, text: str, actor: str = "dyzur") -> Ticket:
        """Inside the caller's transaction: add a line to a ticket's timeline (an update
        plan's progress)."""
        ticket = self._locked(number)
        now = self.clock.now()
        ticket.updated_at = now
        self._record(ticket, kind, text, now, actor)
        return ticket

    def check_deadlines(self) -> list[Change]:
        """A unit per ticket, run periodically by the bridge outside a transaction: warn once
        when a ticket without response reaches its at-risk time, and once when its deadline
        passes."""
        now = self.clock.now()
        changes = []
        for candidate in self.store.open_tickets():
            if self._sla_step(candidate, now) is None:
                continue
            with self.store.transaction():
                ticket = self._locked(candidate.number)
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

    def _locked(self, number: str) -> Ticket:
        """Inside a transaction: the ticket, read again once its alert's lock is held."""
        self.store.lock(f"alert:{self._get(number).fingerprint}")
        return self._get(number)

    locked = _locked  # for the desk (a resolve with a note)

    # --- restart ---------------------------------------------------------------------------

    def firing_alerts(self) -> list[Alert]:
        """The alerts behind open tickets and those firing inside a window, to put back into
        the engine after a restart (so a recovery is seen, and no second firing is)."""
        muted = [
            firing_alert(r.rule, r.fingerprint, r.labels, r.category, r.value, r.fired_at)
            for r in self.store.suppressed_alerts(state=SuppressedState.FIRING)
        ]
        # Held and attached alerts, and the alerts of groups' tickets (whose key is the
        # group's, not an alert's).
        members = [
            firing_alert(m.rule, m.fingerprint, m.labels, m.category, m.value, m.fired_at)
            for m in self.incidents.firing()
        ]
        return (
            muted
            + members
            + [
                firing_alert(t.rule, t.fingerprint, t.labels, t.category, t.last_value, t.opened_at)
                for t in self.store.open_tickets()
                if not is_shared_key(t.fingerprint)
            ]
        )


def _alert_of(record: SuppressedAlert) -> Alert:
    """The firing alert an alert recorded against a window stands for."""
    return firing_alert(
        record.rule, record.fingerprint, record.labels, record.category, record.value,
        record.fired_at,
    )  # fmt: skip


def firing_alert(
    rule: str,
    fingerprint: str,
    labels: Mapping[str, str],
    category: Category,
    value: float | None,
    since: datetime,
) -> Alert:
    """A firing alert rebuilt from what the store kept of it."""
    return Alert(
        rule=rule,
        fingerprint=fingerprint,
        labels=dict(labels),
        state=AlertState.FIRING,
        category=category.value,
        value=value if value is not None else float("nan"),
        active_since=since.timestamp(),
        fired_at=since.timestamp(),
    )
