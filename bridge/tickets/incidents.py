"""Incidents: one problem, one ticket.

Three ways an alert joins another ticket instead of opening its own, decided in the lifecycle's
transaction after maintenance windows (a muted alert is the window's business) and before a
new ticket is opened (README: Incidents and storms):

- **Dependency.** Assets have ``depends_on`` (any depth, one hospital). An alert of an asset
  whose ancestor has an open ticket of its own (the root cause) is *attached* to that ticket.
  An alert of an asset with ancestors but no root yet is *held* for the settle time, so a root
  that fires a little later claims it; a root whose collector is stale extends the hold (up to
  ``max_hold``). When the root's ticket resolves, its dependents still firing after ``grace``
  open tickets of their own, each saying it was part of the incident. A dependent's own ticket
  opened shortly before its root's is linked to the root's (``Ticket.incident``), not closed.
- **Group.** A rule's ``group``: the firing alerts of one asset in one group share one ticket
  (its key is the group's, ``group_key``), escalated in place to the highest category, listing
  each alert, resolved when the last one recovers.
- **Storm budget.** At most N new tickets per hospital in a sliding period; beyond it, new
  alerts are collected into the hospital's one storm Awaria, and each opens its own ticket only
  if it still fires when the storm ends (no new alert for ``quiet``) or an engineer splits it
  out. Such a ticket keeps the deadline it would have had (from the alert's first firing).

Every held or attached alert is an ``IncidentAlert`` row written in the same transaction as the
ticket change, so none is lost in a crash, and their recoveries are always processed. The
time-driven part (holds ending, dependents released after their root, storms ending) runs on
the ticker, one unit per alert, like the release of alerts at a window's end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bridge.actions import Action
from bridge.clock import local_iso, local_time
from bridge.config import IncidentSettings, StormBudget
from bridge.errors import Conflict, NotFound
from bridge.models import (
    Asset,
    AuditEvent,
    Category,
    Client,
    IncidentAlert,
    MemberReason,
    MemberState,
    Ticket,
    TicketStatus,
    TimelineEntry,
)
from bridge.store import Store
from bridge.tickets.changes import Attachment, Change
from bridge.tickets.texts import category_name, timeline_text
from collectors.durations import format_duration
from rules.model import Alert, Rule

if TYPE_CHECKING:
    from bridge.tickets.lifecycle import Prepared, TicketLifecycle

log = logging.getLogger(__name__)

STORM_RULE = "alert_storm"
FIRING = (MemberState.HELD, MemberState.ATTACHED)
# How many alerts a ticket's description lists before "... and N more".
LISTED = 50
# The description of a group's or storm's ticket: the rule's text, this mark, the alert list.
LIST_MARK = "\n\n—\n"


def group_key(client: str, asset: str, group: str) -> str:
    """The key of a group's ticket (in place of an alert's fingerprint)."""
    return f"group:{client}:{asset}:{group}"


def storm_key(client: str) -> str:
    return f"storm:{client}"


def is_shared_key(key: str) -> bool:
    """A ticket key that is no alert's fingerprint (a group's or a storm's ticket)."""
    return key.startswith(("group:", "storm:"))


class MemberNotFound(NotFound):
    """The ticket has no such firing attached alert (404)."""


class SplitRefused(Conflict):
    """The alert cannot have a ticket of its own now (409): its asset is in a window."""


class Topology:
    """The inventory's dependencies: ancestors (nearest first) and descendants of an asset."""

    def __init__(self, assets: Mapping[str, Asset]) -> None:
        self.assets = assets
        self._children: dict[str, list[str]] = {}
        for asset in assets.values():
            if asset.depends_on is not None:
                self._children.setdefault(asset.depends_on, []).append(asset.id)

    def ancestors(self, asset: str) -> list[str]:
        chain: list[str] = []
        at = self.assets.get(asset)
        while at is not None and at.depends_on is not None and at.depends_on not in chain:
            if at.depends_on == asset:
                break  # a cycle (refused by the config check; never loop)
            chain.append(at.depends_on)
            at = self.assets.get(at.depends_on)
        return chain

    def descendants(self, asset: str) -> set[str]:
        found: set[str] = set()
        todo = list(self._children.get(asset, ()))
        while todo:
            child = todo.pop()
            if child not in found and child != asset:
                found.add(child)
                todo.extend(self._children.get(child, ()))
        return found

    def depth(self, asset: str) -> int:
        return len(self.ancestors(asset))


class Incidents:
    """The incident decisions (steps of the lifecycle's transaction) and the time-driven
    releases (units of their own, run by the ticker)."""

    def __init__(
        self,
        lifecycle: TicketLifecycle,
        store: Store,
        clients: Mapping[str, Client],
        assets: Mapping[str, Asset],
        settings: IncidentSettings,
        last_seen: Callable[[str], float | None] | None = None,
    ) -> None:
        self.lifecycle = lifecycle
        self.store = store
        self.clients = clients
        self.assets = assets
        self.settings = settings
        self.topology = Topology(assets)
        # When the rules engine last had a sample of an asset (None: not since the start).
        self.last_seen = last_seen or (lambda asset: None)
        self.started = lifecycle.clock.time()

    # --- inside the lifecycle's transaction ---------------------------------------------------

    def firing_member(self, fingerprint: str) -> IncidentAlert | None:
        found = self.store.incident_alerts(fingerprint=fingerprint, states=FIRING)
        return found[0] if found else None

    def route(self, prepared: Prepared) -> Attachment | None:
        """A firing alert without a ticket of its own, not muted by a window: attach it to its
        root's ticket, hold it for its root, or collect it into its hospital's storm; None: it
        opens (or reopens) its ticket."""
        alert, now, client = prepared.alert, prepared.now, prepared.client
        assert client is not None
        asset = alert.asset or ""
        root = self.root_ticket(asset)
        if root is not None:
            return self._attach(prepared, root, MemberReason.DEPENDENCY)
        ancestors = self.topology.ancestors(asset)
        if ancestors and prepared.hold:
            until = now + timedelta(seconds=self._settle(asset))
            record = self._new_member(prepared, MemberReason.DEPENDENCY, MemberState.HELD)
            record.until = until
            self.store.save_incident_alert(record)
            self._audit(Action.INCIDENT_ALERT_HELD, record, now, until=local_iso(until))
            return Attachment(record, "held")
        if prepared.budget and self._over_budget(client.id, now):
            return self._attach(prepared, self._storm_ticket(client, now), MemberReason.STORM)
        return None

    def refire(self, member: IncidentAlert, prepared: Prepared) -> Attachment:
        """A held or attached alert fired again or escalated: kept on its record."""
        alert = prepared.alert
        category = Category(alert.category)
        if category.severity > member.category.severity:
            member.category = category
            texts = prepared.texts.get(category)
            if texts is not None:
                member.title = texts[0]
        member.value = alert.value
        member.updated_at = prepared.now
        self.store.save_incident_alert(member)
        return Attachment(member, "refired")

    def recovered(self, member: IncidentAlert, value: float, now: datetime) -> Attachment:
        """A held or attached alert recovered: it opens nothing; its ticket says so."""
        member.state = MemberState.RECOVERED
        member.recovered_at = now
        member.updated_at = now
        member.value = value
        member.until = None
        self.store.save_incident_alert(member)
        if member.ticket is not None:
            ticket = self.store.get_ticket(member.ticket)
            if ticket is not None:
                lang = self._language(ticket.client)
                text = timeline_text(
                    lang, "incident_recovered", asset=member.asset, title=member.title
                )
                if member.reason is MemberReason.STORM:
                    self._describe(ticket)
                self.store.update_ticket(ticket, TimelineEntry(now, "incident_recovered", text))
        self._audit(Action.INCIDENT_ALERT_RECOVERED, member, now)
        return Attachment(member, "recovered")

    def join_group(self, ticket: Ticket, prepared: Prepared) -> bool:
        """Inside the group ticket's change: record the alert as one of the group's; True when
        it is new to the ticket (a line says so)."""
        alert, now = prepared.alert, prepared.now
        member = self.firing_member(alert.fingerprint)
        if member is not None and member.ticket == ticket.number:
            member.value = alert.value
            member.updated_at = now
            category = Category(alert.category)
            if category.severity > member.category.severity:
                member.category = category
            self.store.save_incident_alert(member)
            return False
        if member is not None:  # attached elsewhere (a storm): it joins its group instead
            member.state = MemberState.RELEASED
            member.own_ticket = ticket.number
            self.store.save_incident_alert(member)
        record = self._new_member(prepared, MemberReason.GROUP, MemberState.ATTACHED)
        record.ticket = ticket.number
        self.store.save_incident_alert(record)
        return True

    def group_recovered(
        self, member: IncidentAlert, ticket: Ticket, value: float, now: datetime
    ) -> list[IncidentAlert]:
        """One alert of a group recovered. Returns the alerts of the group still firing (the
        ticket resolves when none is)."""
        member.state = MemberState.RECOVERED
        member.recovered_at = now
        member.updated_at = now
        member.value = value
        self.store.save_incident_alert(member)
        return [
            m
            for m in self.store.incident_alerts(ticket=ticket.number, states=FIRING)
            if m.reason is MemberReason.GROUP
        ]

    def describe_group(self, ticket: Ticket) -> None:
        self._describe(ticket)

    def opened(self, ticket: Ticket, now: datetime) -> None:
        """A ticket of an asset opened or reopened: it is the root of its descendants' held
        alerts, storm alerts and recently opened tickets; alerts attached to it waiting for
        their release (it had resolved) stay attached."""
        if ticket.rule == STORM_RULE:
            return
        for member in self.store.incident_alerts(ticket=ticket.number, states=FIRING):
            if member.until is not None and member.reason is MemberReason.DEPENDENCY:
                member.until = None
                self.store.save_incident_alert(member)
        descendants = self.topology.descendants(ticket.asset)
        if not descendants:
            return
        for member in self.store.incident_alerts(client=ticket.client, states=FIRING):
            if member.asset not in descendants or member.reason is MemberReason.GROUP:
                continue
            self._move(member, ticket, now)
        since = now - timedelta(seconds=self.settings.link_period)
        for own in self.store.open_tickets_of_assets(descendants):
            if own.incident is not None or own.opened_at < since or own.rule == STORM_RULE:
                continue
            own.incident = ticket.number
            lang = self._language(own.client)
            self.store.update_ticket(
                own,
                TimelineEntry(
                    now,
                    "incident_linked",
                    timeline_text(
                        lang,
                        "incident_linked",
                        ticket=ticket.number,
                        root=ticket.asset,
                        asset=own.asset,
                    ),
                ),
            )
            self.store.update_ticket(
                ticket,
                TimelineEntry(
                    now,
                    "incident_explains",
                    timeline_text(
                        self._language(ticket.client),
                        "incident_explains",
                        ticket=own.number,
                        asset=own.asset,
                    ),
                ),
            )
            self.store.append_audit(
                AuditEvent(
                    now,
                    "dyzur",
                    Action.INCIDENT_TICKET_LINKED,
                    "success",
                    own.client,
                    own.asset,
                    {"ticket": own.number, "incident": ticket.number, "root": ticket.asset},
                )
            )

    def closed(self, ticket: Ticket, now: datetime) -> None:
        """A ticket resolved: its dependents still firing open their own tickets after the
        grace period, its storm alerts at once (the ticker), its group's alerts are done."""
        for member in self.store.incident_alerts(ticket=ticket.number, states=FIRING):
            if member.reason is MemberReason.GROUP:
                member.state = MemberState.RELEASED
                member.own_ticket = ticket.number
            elif member.reason is MemberReason.STORM:
                member.until = now
            else:
                member.until = now + timedelta(seconds=self.settings.grace)
            member.updated_at = now
            self.store.save_incident_alert(member)

    def root_ticket(self, asset: str) -> Ticket | None:
        """The open ticket of the nearest ancestor that has one (the highest category, then the
        oldest), or of the incident that ticket is part of."""
        ancestors = self.topology.ancestors(asset)
        if not ancestors:
            return None
        tickets = [t for t in self.store.open_tickets_of_assets(ancestors) if t.rule != STORM_RULE]
        if not tickets:
            return None
        rank = {a: i for i, a in enumerate(ancestors)}
        tickets.sort(key=lambda t: (rank[t.asset], -t.category.severity, t.opened_at))
        root = tickets[0]
        for _ in range(len(ancestors)):
            if root.incident is None:
                break
            above = self.store.get_ticket(root.incident)
            if above is None or not above.is_open:
                break
            root = above
        return root

    # --- units of their own, run by the ticker --------------------------------------------------

    def release_due(
        self, rule_of: Callable[[str], Rule | None], clients: Collection[str] | None = None
    ) -> list[Change | Attachment]:
        """Held alerts whose settle time ended, and dependents of a resolved root after the
        grace period: attached to a root now, held longer, or given tickets of their own; then
        storms that ended. One unit per alert. ``clients``: only these hospitals' (among
        several bridges, those whose series this one evaluates: it knows when their roots
        last reported)."""
        now = self.lifecycle.clock.now()
        changes: list[Change | Attachment] = []
        due = self.store.incident_alerts(states=FIRING, due_before=now)
        if clients is not None:
            due = [m for m in due if m.client in clients]
        due.sort(key=lambda m: (self.topology.depth(m.asset), m.id or 0))
        for member in due:
            changes += released(member, self._release(member, rule_of, now))
        changes += self._end_storms(rule_of, now, clients)
        return changes

    def _release(
        self,
        due: IncidentAlert,
        rule_of: Callable[[str], Rule | None],
        now: datetime,
        storm: str | None = None,
    ) -> Change | Attachment | None:
        """One unit: a held or attached alert whose time came (``storm``: an alert of that
        ending storm, whatever its ``until``)."""
        rule = rule_of(due.rule)
        prepared = None
        if rule is not None and due.asset in self.assets:
            # A held or storm alert keeps the deadline it would have had from its first
            # firing; a dependent of a recovered root is a problem of its own from now on.
            after_root = due.state is MemberState.ATTACHED and due.reason is MemberReason.DEPENDENCY
            start = now if after_root else due.fired_at
            prepared = self.lifecycle.prepare_release(alert_of(due), rule, now, start)
            prepared = replace(prepared, fired_at=due.fired_at)
        store = self.store
        with store.transaction():
            store.lock(f"alert:{due.fingerprint}")
            found = self.firing_member(due.fingerprint)
            if found is None:
                return None  # settled meanwhile
            ending = storm is not None and found.ticket == storm
            if not ending and (found.until is None or found.until > now):
                return None  # moved meanwhile
            member = found
            if member.state is MemberState.HELD:
                root = self.root_ticket(member.asset)
                if root is not None:
                    self._move(member, root, now)
                    return Attachment(member, "attached")
                extended = self._extended_hold(member, now)
                if extended is not None:
                    member.until = extended
                    store.save_incident_alert(member)
                    return None
            elif member.reason is MemberReason.DEPENDENCY:
                root = self.root_ticket(member.asset)
                if root is not None:
                    self._move(member, root, now)
                    return Attachment(member, "attached")
            if prepared is None:
                log.error("held alert %s of %s cannot open a ticket: rule or asset is gone",
                          member.rule, member.asset)  # fmt: skip
                member.state = MemberState.RELEASED
                store.save_incident_alert(member)
                return None
            return self._open_own(member, prepared, now)

    def _open_own(self, member: IncidentAlert, prepared: Prepared, now: datetime) -> Change | None:
        """Inside the transaction: the member's ticket of its own (a hold that ended, a root
        that recovered, a storm that ended)."""
        lang = self._language(member.client)
        since = local_time(member.fired_at)
        previous = member.ticket
        after: list[tuple[str, str]] = []
        incident = None
        if member.state is MemberState.HELD:
            parent = self.topology.ancestors(member.asset)[0]
            after.append(
                (
                    "incident_held",
                    timeline_text(
                        lang, "incident_held", since=since, until=local_time(now), parent=parent
                    ),
                )
            )
        elif member.reason is MemberReason.STORM:
            after.append(
                ("storm_part", timeline_text(lang, "storm_part", ticket=previous, since=since))
            )
        else:
            root = self.store.get_ticket(previous or "")
            incident = previous
            after.append(
                (
                    "incident_part",
                    timeline_text(
                        lang,
                        "incident_part",
                        ticket=previous,
                        root=root.asset if root is not None else "?",
                        since=since,
                    ),
                )
            )
        member.state = MemberState.RELEASED
        member.updated_at = now
        member.until = None
        self.store.save_incident_alert(member)
        storm = member.reason is MemberReason.STORM and previous is not None
        change = self.lifecycle.fire_released(
            replace(prepared, hold=False, budget=not storm), after, incident
        )
        if not isinstance(change, Change):  # attached again (the storm budget), or muted
            if isinstance(change, Attachment):
                member.own_ticket = change.alert.ticket
                self.store.save_incident_alert(member)
            return None
        member.own_ticket = change.ticket.number
        self.store.save_incident_alert(member)
        if previous is not None:
            old = self.store.get_ticket(previous)
            if old is not None:
                text = timeline_text(
                    self._language(old.client),
                    "incident_released",
                    asset=member.asset,
                    ticket=change.ticket.number,
                )
                if old.rule == STORM_RULE:
                    self._describe(old)
                self.store.update_ticket(old, TimelineEntry(now, "incident_released", text))
        self._audit(Action.INCIDENT_ALERT_RELEASED, member, now, own_ticket=change.ticket.number)
        return change

    def _extended_hold(self, member: IncidentAlert, now: datetime) -> datetime | None:
        """A later end of the hold while an ancestor is still unknown (its own alert held, its
        collector stale, or nothing heard of it since the bridge started), bounded by
        max_hold from the alert's firing; None: the hold ends now."""
        limit = member.fired_at + timedelta(seconds=self.settings.max_hold)
        if now >= limit:
            return None
        ancestors = self.topology.ancestors(member.asset)
        held = [
            m.until
            for m in self.store.incident_alerts(
                client=member.client, states=(MemberState.HELD,), assets=ancestors
            )
            if m.until is not None and m.until >= now
        ]
        if held:
            return min(max(held) + timedelta(seconds=1), limit)
        stale_after = self.settings.stale_after
        clock = now.timestamp()
        for asset in ancestors:
            seen = self.last_seen(asset)
            unknown = seen is None and clock - self.started < stale_after
            if unknown or (seen is not None and clock - seen > stale_after):
                return min(now + timedelta(seconds=self._settle(member.asset)), limit)
        return None

    def _end_storms(
        self, rule_of: Callable[[str], Rule | None], now: datetime, clients: Collection[str] | None
    ) -> list[Change | Attachment]:
        """Storms with no new alert for ``quiet``: their alerts still firing open tickets of
        their own (roots first, so they claim their dependents), then the storm resolves."""
        quiet = timedelta(seconds=self.settings.storm.quiet)
        changes: list[Change | Attachment] = []
        for client in self.clients if clients is None else sorted(clients):
            storm = self.store.latest_ticket_for_alert(storm_key(client))
            if storm is None or not storm.is_open:
                continue
            members = self.store.incident_alerts(ticket=storm.number)
            latest = max((m.fired_at for m in members), default=storm.opened_at)
            if now - max(latest, storm.opened_at) < quiet:
                continue
            firing = [m for m in members if m.is_firing]
            firing.sort(key=lambda m: (self.topology.depth(m.asset), m.id or 0))
            for member in firing:
                changes += released(member, self._release(member, rule_of, now, storm.number))
            with self.store.transaction():
                self.store.lock(f"alert:{storm.fingerprint}")
                ticket = self.store.get_ticket(storm.number)
                if ticket is None or not ticket.is_open:
                    continue
                if any(m.is_firing for m in self.store.incident_alerts(ticket=ticket.number)):
                    continue  # an alert joined meanwhile, or one could not be released
                done = self.store.incident_alerts(ticket=ticket.number)
                opened = sum(1 for m in done if m.state is MemberState.RELEASED)
                lang = self._language(ticket.client)
                text = timeline_text(
                    lang, "storm_ended", opened=opened, recovered=len(done) - opened
                )
                self.store.update_ticket(ticket, TimelineEntry(now, "storm_ended", text))
                ticket.status = TicketStatus.RESOLVED
                ticket.resolved_at = now
                ticket.updated_at = now
                changes.append(
                    self.lifecycle.record(ticket, "resolved", timeline_text(lang, "resolved"), now)
                )
                self.store.append_audit(
                    AuditEvent(
                        now,
                        "dyzur",
                        Action.INCIDENT_STORM_CLOSED,
                        "success",
                        ticket.client,
                        None,
                        {"ticket": ticket.number, "alerts": len(done), "opened": opened},
                    )
                )
        return changes

    # --- an engineer splits an alert out ----------------------------------------------------

    def split(
        self, number: str, fingerprint: str, actor: str, rule_of: Callable[[str], Rule | None]
    ) -> Ticket:
        """A unit of its own: an alert attached to ticket ``number`` (a storm's, a root's)
        gets a ticket of its own now, with the deadline it would have had."""
        now = self.lifecycle.clock.now()
        candidates = [
            m
            for m in self.store.incident_alerts(ticket=number, fingerprint=fingerprint)
            if m.is_firing and m.reason is not MemberReason.GROUP
        ]
        if not candidates:
            raise MemberNotFound(f"ticket {number} has no firing attached alert {fingerprint}")
        member = candidates[0]
        rule = rule_of(member.rule)
        if rule is None or member.asset not in self.assets:
            raise MemberNotFound(f"alert {fingerprint}: its rule or asset is no longer configured")
        prepared = self.lifecycle.prepare_release(alert_of(member), rule, now, member.fired_at)
        with self.store.transaction():
            self.store.lock(f"alert:{fingerprint}")
            found = self.firing_member(fingerprint)
            if found is None or found.ticket != number:
                raise MemberNotFound(f"ticket {number} has no firing attached alert {fingerprint}")
            lang = self._language(found.client)
            since = local_time(found.fired_at)
            found.state = MemberState.RELEASED
            found.updated_at = now
            found.until = None
            self.store.save_incident_alert(found)
            after = [
                (
                    "incident_split",
                    timeline_text(lang, "incident_split", actor=actor, ticket=number, since=since),
                )
            ]
            change = self.lifecycle.fire_released(
                replace(prepared, hold=False, budget=False, route=False), after, None
            )
            if not isinstance(change, Change):  # routing is off: only a window mutes it
                raise SplitRefused(
                    f"alert {fingerprint}: its asset is in a maintenance window now; it opens "
                    "its ticket when the window ends"
                )
            found.own_ticket = change.ticket.number
            self.store.save_incident_alert(found)
            old = self.store.get_ticket(number)
            if old is not None:
                if old.rule == STORM_RULE:
                    self._describe(old)
                text = timeline_text(
                    self._language(old.client),
                    "incident_split_out",
                    asset=found.asset,
                    title=found.title,
                    actor=actor,
                    ticket=change.ticket.number,
                )
                self.store.update_ticket(old, TimelineEntry(now, "incident_split_out", text, actor))
            self._audit(
                Action.INCIDENT_ALERT_SPLIT,
                found,
                now,
                actor=actor,
                own_ticket=change.ticket.number,
            )
            return change.ticket

    # --- reading -------------------------------------------------------------------------------

    def members(self, number: str) -> list[IncidentAlert]:
        return self.store.incident_alerts(ticket=number)

    def open_storms(self) -> set[str]:
        """The hospitals with an open storm ticket."""
        found = set()
        for client in self.clients:
            storm = self.store.latest_ticket_for_alert(storm_key(client))
            if storm is not None and storm.is_open:
                found.add(client)
        return found

    def firing(self) -> list[IncidentAlert]:
        return self.store.incident_alerts(states=FIRING)

    # --- helpers ---------------------------------------------------------------------------------

    def _settle(self, asset: str) -> float:
        ancestors = self.topology.ancestors(asset)
        parent = self.assets.get(ancestors[0]) if ancestors else None
        if parent is not None and parent.kind in self.settings.settle_by_kind:
            return self.settings.settle_by_kind[parent.kind]
        return self.settings.settle

    def budget(self, client: str) -> StormBudget:
        return self.settings.storm.clients.get(client, self.settings.storm)

    def _over_budget(self, client: str, now: datetime) -> bool:
        if not self.settings.storm.enabled:
            return False
        budget = self.budget(client)
        since = now - timedelta(seconds=budget.period)
        opened = self.store.count_tickets_opened(
            client, since, excluding_rule=STORM_RULE, up_to=budget.tickets
        )
        return opened >= budget.tickets

    def _storm_ticket(self, client: Client, now: datetime) -> Ticket:
        """The hospital's open storm ticket, or a new one (an Awaria)."""
        key = storm_key(client.id)
        self.store.lock(f"alert:{key}")
        latest = self.store.latest_ticket_for_alert(key)
        if latest is not None and latest.is_open:
            return latest
        lang = client.contract.language
        budget = self.budget(client.id)
        ticket = self.lifecycle.new_ticket(client.id, "", STORM_RULE, key, Category.AWARIA, now)
        ticket.title = timeline_text(lang, "storm_title", count=0, client=client.name)
        ticket.description = timeline_text(
            lang,
            "storm_description",
            client=client.name,
            tickets=budget.tickets,
            period=format_duration(budget.period),
            quiet=format_duration(self.settings.storm.quiet),
        )
        deadline = self.lifecycle.deadline(client.id, Category.AWARIA, now)
        self.lifecycle.start_clock(ticket, deadline)
        text = timeline_text(lang, "opened", rule=STORM_RULE, value=None)
        if ticket.reaction_due is not None:
            text += " " + timeline_text(lang, "due", due=local_time(ticket.reaction_due))
        self.lifecycle.record(ticket, "opened", text, now, new=True)
        self.store.append_audit(
            AuditEvent(
                now,
                "dyzur",
                Action.INCIDENT_STORM_OPENED,
                "success",
                client.id,
                None,
                {"ticket": ticket.number, "budget": budget.tickets, "period": budget.period},
            )
        )
        return ticket

    def _new_member(
        self, prepared: Prepared, reason: MemberReason, state: MemberState
    ) -> IncidentAlert:
        alert, client = prepared.alert, prepared.client
        assert client is not None
        category = Category(alert.category)
        texts = prepared.texts.get(category)
        return IncidentAlert(
            fingerprint=alert.fingerprint,
            client=client.id,
            asset=alert.asset or "",
            rule=alert.rule,
            category=category,
            labels=dict(alert.labels),
            value=alert.value,
            fired_at=prepared.fired_at or prepared.now,
            reason=reason,
            state=state,
            title=texts[0] if texts is not None else alert.rule,
            updated_at=prepared.now,
        )

    def _attach(self, prepared: Prepared, ticket: Ticket, reason: MemberReason) -> Attachment:
        record = self._new_member(prepared, reason, MemberState.ATTACHED)
        record.ticket = ticket.number
        self.store.save_incident_alert(record)
        self._attached(record, ticket, prepared.now)
        return Attachment(record, "attached")

    def _move(self, member: IncidentAlert, ticket: Ticket, now: datetime) -> None:
        """A held alert claimed by its root, or an attached one moving to another ticket."""
        previous = member.ticket
        member.state = MemberState.ATTACHED
        member.reason = MemberReason.DEPENDENCY
        member.ticket = ticket.number
        member.until = None
        member.updated_at = now
        self.store.save_incident_alert(member)
        if previous is not None and previous != ticket.number:
            old = self.store.get_ticket(previous)
            if old is not None and old.rule == STORM_RULE:
                self._describe(old)
                self.store.update_ticket(old)
        self._attached(member, ticket, now)

    def _attached(self, member: IncidentAlert, ticket: Ticket, now: datetime) -> None:
        lang = self._language(ticket.client)
        category = category_name(lang, member.category.value)
        storm = ticket.rule == STORM_RULE
        kind = "storm_attached" if storm else "incident_attached"
        text = timeline_text(lang, kind, asset=member.asset, title=member.title, category=category)
        ticket.updated_at = now
        if storm:
            self._describe(ticket)
        self.store.update_ticket(ticket, TimelineEntry(now, kind, text))
        self._audit(Action.INCIDENT_ALERT_ATTACHED, member, now)

    def _describe(self, ticket: Ticket) -> None:
        """The list of a group's or storm's alerts in its description (and a storm's count in
        its title), rewritten in place; the caller writes the ticket."""
        lang = self._language(ticket.client)
        # Counted, and the listed ones read, by the store: rewritten on each alert joining a
        # storm, it must not read every alert of the storm (a storm of 1,000 took 34 s to end).
        number = ticket.number
        count = self.store.count_incident_alerts(ticket=number)
        firing = self.store.count_incident_alerts(ticket=number, states=FIRING)
        lines = [timeline_text(lang, "members_heading", firing=firing, count=count)]
        shown = self.store.incident_alerts(ticket=number, states=FIRING, limit=LISTED)
        if len(shown) < LISTED:
            done = [s for s in MemberState if s not in FIRING]
            rest = LISTED - len(shown)
            shown += self.store.incident_alerts(ticket=number, states=done, limit=rest)
        for m in shown:
            state = "member_firing" if m.is_firing else (
                "member_recovered" if m.state is MemberState.RECOVERED else "member_released"
            )  # fmt: skip
            lines.append(
                f"- {m.asset}: {m.title} ({category_name(lang, m.category.value)}, "
                f"{timeline_text(lang, state)})"
            )
        if count > LISTED:
            lines.append(timeline_text(lang, "members_more", more=count - LISTED))
        base = ticket.description.split(LIST_MARK, 1)[0]
        ticket.description = base + LIST_MARK + "\n".join(lines)
        if ticket.rule == STORM_RULE:
            client = self.clients.get(ticket.client)
            name = client.name if client is not None else ticket.client
            ticket.title = timeline_text(lang, "storm_title", count=count, client=name)

    def _audit(self, action: Action, member: IncidentAlert, now: datetime, **extra: object) -> None:
        detail: dict[str, object] = {
            "rule": member.rule,
            "category": member.category.value,
            "reason": member.reason.value,
            "fired_at": local_iso(member.fired_at),
        }
        if member.ticket is not None:
            detail["ticket"] = member.ticket
        detail.update(extra)
        self.store.append_audit(
            # who asked (an engineer's split) or dyzur itself
            AuditEvent(
                now,
                str(extra.get("actor", "dyzur")),
                action,
                "success",
                member.client,
                member.asset,
                detail,
            )
        )

    def _language(self, client: str) -> str:
        found = self.clients.get(client)
        return found.contract.language if found is not None else "pl"


def released(
    member: IncidentAlert, change: Change | Attachment | None
) -> list[Change | Attachment]:
    """What one release did: the ticket the alert opened, counted as a release too."""
    if change is None:
        return []
    if isinstance(change, Change):
        return [change, Attachment(member, "released")]
    return [change]


def alert_of(member: IncidentAlert) -> Alert:
    """The firing alert a held or attached record stands for."""
    from bridge.tickets.lifecycle import firing_alert

    return firing_alert(
        member.rule, member.fingerprint, member.labels, member.category, member.value,
        member.fired_at,
    )  # fmt: skip
