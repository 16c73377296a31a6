"""The soak judgement: what the test assets went through from the end of the test stage until a
moment, read from the tickets and the alerts muted in windows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from bridge.clock import local_time
from bridge.maintenance.windows import covered_assets
from bridge.models import (
    Asset,
    Category,
    SuppressedState,
    Ticket,
    TicketStatus,
    TimelineEntry,
    UpdatePlan,
    UpdateStage,
)
from bridge.store import Store, TicketFilter
from bridge.tickets.texts import finding_text

GATE_CATEGORIES = (Category.AWARIA, Category.USTERKA)
# What a ticket's timeline says happened to it, for the soak judgement.
TICKET_EVENTS = ("opened", "reopened", "refired", "escalated", "recovered", "resolved")


@dataclass(frozen=True)
class Finding:
    """One thing the soak judgement found on a test asset: a ticket (``ticket``) or an alert
    muted in a window (``window``), with what happened to it: (kind, when) in order."""

    asset: str
    rule: str
    category: Category
    ticket: str | None
    window: str | None
    events: tuple[tuple[str, datetime], ...]

    def text(self, language: str) -> str:
        return finding_text(
            language,
            ticket=self.ticket,
            rule=self.rule,
            asset=self.asset,
            category=self.category.value,
            window=self.window,
            events=[(kind, local_time(at)) for kind, at in self.events],
        )


def findings_text(findings: list[Finding], language: str) -> str:
    return "; ".join(f.text(language) for f in findings)


def own_tickets(plan: UpdatePlan) -> set[str]:
    """The tickets the plan opened itself: its aktualizacja, its failed stages', its gate's."""
    numbers = {plan.ticket, *(s.failure_ticket for s in plan.stages if s.failure_ticket)}
    if plan.gate_ticket is not None:
        numbers.add(plan.gate_ticket)
    return numbers


def soak_findings(
    store: Store,
    assets: Mapping[str, Asset],
    plan: UpdatePlan,
    test: UpdateStage,
    until: datetime,
) -> list[Finding]:
    """What the test assets went through from the end of the test stage to ``until``: every
    awaria or usterka ticket open at some moment of it (opened before or during it, fired
    again, escalated, reopened, resolved in it), and every such alert muted in a window that
    was firing in it. The plan's own tickets do not count."""
    assert test.finished_at is not None
    since = test.finished_at
    own = own_tickets(plan)
    found: list[Finding] = []
    for asset_id in test.assets:
        tickets: dict[str, Ticket] = {}
        for query in (
            TicketFilter(asset=asset_id, status=TicketStatus.OPEN, limit=1000),
            TicketFilter(asset=asset_id, limit=1000),
        ):
            tickets.update((t.number, t) for t in store.list_tickets(query))
        for ticket in sorted(tickets.values(), key=lambda t: (t.opened_at, t.number)):
            if ticket.number in own or ticket.opened_at > until:
                continue
            if ticket.category not in GATE_CATEGORIES:
                continue
            events = ticket_events(store.timeline(ticket.number), since, until)
            if events:
                found.append(
                    Finding(asset_id, ticket.rule, ticket.category, ticket.number, None, events)
                )
    watched = set(test.assets)
    for window in store.windows(plan.client):
        if not watched.intersection(covered_assets(window, assets)):
            continue
        for record in store.suppressed_alerts(window=window.id):
            if (
                record.asset not in watched
                or record.category not in GATE_CATEGORIES
                or record.state is SuppressedState.RELEASED  # its ticket is judged above
                or record.fired_at > until
                or (record.recovered_at is not None and record.recovered_at <= since)
            ):
                continue
            muted = [("firing_since" if record.fired_at < since else "fired", record.fired_at)]
            if record.recovered_at is not None and record.recovered_at <= until:
                muted.append(("recovered", record.recovered_at))
            found.append(
                Finding(record.asset, record.rule, record.category, None, window.id, tuple(muted))
            )
    return found


def ticket_events(
    timeline: Iterable[TimelineEntry], since: datetime, until: datetime
) -> tuple[tuple[str, datetime], ...]:
    """What a ticket did in [since, until], with "open since" first when it was open as the
    period began; empty when it was closed all along."""
    open_at_since, opened_last = False, None
    events: list[tuple[str, datetime]] = []
    for entry in timeline:
        if entry.kind not in TICKET_EVENTS or entry.at > until:
            continue
        if entry.at < since:
            if entry.kind in ("opened", "reopened"):
                open_at_since, opened_last = True, entry.at
            elif entry.kind == "resolved":
                open_at_since = False
            continue
        events.append((entry.kind, entry.at))
    if open_at_since and opened_last is not None:
        events.insert(0, ("open_since", opened_last))
    return tuple(events)
