"""Paging: the engineer on duty is woken for an Awaria, and the next one when nobody answers.

What pages
    The outbox consumer ``oncall`` reads the ticket changes. A change that pages — a ticket
    opened or reopened, escalated, released from a maintenance window, or warned as SLA at risk —
    of a ticket whose category is in ``oncall.page`` (default ``awaria``) pages the person on
    duty in the rota ``primary`` for the ticket's hospital and asset kind (``Rota.on_duty``),
    when the hospital's service hours cover the moment of the change (the SLA clock's
    ``ServiceCalendar.covers``: a 24/7 contract always, a standard one Mon–Fri 07:00–15:00
    without holidays, unless the hospital is in ``page_outside_service_hours``). A standard
    contract's Awaria at night pages nobody; its SLA at-risk warning in the morning does. A
    ticket already paging, acknowledged or resolved pages nobody; a resolved ticket that
    reopens (without a response) pages anew (a new ``round``).

Pages go through the outbox too
    Deciding a page writes, in one transaction, the ticket's paging state (``OncallPages``) and
    one ``oncall.page`` audit event per person and channel: every one of the person's
    ``channels`` at once (the SMS wakes, the e-mail carries the detail; one link for both).
    Each channel is an outbox consumer of its own, ``page:<channel>``, that builds the text
    (``message``) and sends it (``channels``): a channel that is down is retried, in order,
    and loses nothing; a page whose ticket was acknowledged or resolved before it went is
    skipped. A bridge killed between the ticket and the page pages once after its restart:
    the ``oncall`` consumer's cursor had not passed the ticket's change, and a change offered
    again is applied once (``Paging.last_event``).

The ticker (``tick``, under the lease ``oncall:ticker``: one bridge of several)
    * Escalation: a ticket paged at step k and not acknowledged within
      ``oncall.escalation[k].after`` pages ``escalation[k].then`` (person ids, or ``rota:NAME``:
      who is on duty in that rota for the ticket's hospital and kind), with the earlier pages'
      times in the message. A step with nobody to page is recorded (``oncall.nobody_on_duty``)
      and the next step is paged at once. A person is paged at most once per step. Outside a
      standard contract's service hours the escalation waits for their start. An
      acknowledgment (the API, the CLI, the link in a page, a helpdesk's response) stops it:
      the ticker reads the ticket itself before each step.
    * Fallback: a page its channel has not delivered ``fallback_after`` after it was decided,
      or that its channel refused for good, is also sent through the person's next
      ``fallback_channels`` entry not used at that step yet (a new ``oncall.page`` event).

Seen from outside
    The ticket's timeline shows each page as it was sent (who, channel, step), a page that
    failed, an escalation and a step with nobody on duty; metrics count pages by channel and
    outcome, escalations by step, and the time from a ticket's opening to its first response
    by category and hour of day.

May use: the store's tickets (read), paging, audit log and coordination; the lifecycle for
timeline lines; the rota. The channels do the network I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from bridge.actions import Action
from bridge.clock import WARSAW, Clock, local_iso, local_time
from bridge.delivery.oncall.channels import PageSender
from bridge.delivery.oncall.links import PageLinks
from bridge.delivery.oncall.message import EarlierPage, PageMessage
from bridge.delivery.outbox import Consumer, Permanent, Selection, idempotency_key
from bridge.metrics import BridgeMetrics
from bridge.models import Asset, AuditEvent, Category, Client, Ticket
from bridge.store.roles import AuditLog, Coordination, OncallPages, Page, Paging, TicketStore
from bridge.tickets.sla import ServiceCalendar
from bridge.tickets.texts import timeline_text

if TYPE_CHECKING:
    from bridge.config import OncallPerson, OncallSettings
    from bridge.delivery.oncall.rota import Duty

log = logging.getLogger(__name__)

PRIMARY = "primary"
ROTA_PREFIX = "rota:"
# The changes that page a ticket of a paging category, and those that end its paging.
PAGING_CHANGES = frozenset(
    {"ticket.opened", "ticket.reopened", "ticket.escalated", "sla.at_risk", "window.alert_released"}
)
STOPPING = {"ticket.acknowledged": "acknowledged", "ticket.resolved": "resolved"}
LAST_STEP_LINK = timedelta(hours=24)  # the link of the last step's page is valid this long
LEASE = "oncall:ticker"
LEASE_SECONDS = 60.0
LATE = timedelta(minutes=1)  # a page sent later than this after it was decided says so
DELIVERED, FAILED, SKIPPED = "delivered", "failed", "skipped"
OUTCOMES = (DELIVERED, "retried", FAILED, SKIPPED)


class Roster(Protocol):
    """What the pager asks of the rota (``bridge.delivery.oncall.rota.Rota``)."""

    def on_duty(self, rota: str, client: str, kind: str, at: datetime) -> Duty | None: ...

    def person(self, id: str) -> OncallPerson: ...


class Remarks(Protocol):
    """The lifecycle's way to write a timeline line inside the caller's transaction."""

    def remark_within(self, number: str, kind: str, text: str, actor: str) -> Ticket: ...


class PagerStore(TicketStore, OncallPages, AuditLog, Coordination, Protocol):
    """The roles the pager uses."""


@dataclass(frozen=True, slots=True)
class StepPlan:
    """Whom one escalation step pages (``people``), and the rotas or people of the step that
    gave nobody (``missing``)."""

    step: int
    people: list[OncallPerson]
    missing: list[str]


def duration_text(seconds: float) -> str:
    """``15 min``, ``1 h``, ``1 h 30 min``: a duration as a person reads it."""
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    parts = ([f"{hours} h"] if hours else []) + ([f"{minutes} min"] if minutes else [])
    return " ".join(parts) or f"{round(seconds)} s"


def _ticket_open(ticket: Ticket | None) -> bool:
    """Whether the ticket still wants someone: open and without a response."""
    return ticket is not None and ticket.is_open and ticket.responded_at is None


def _stop_reason(ticket: Ticket | None) -> str:
    if ticket is not None and ticket.responded_at is not None:
        return "acknowledged"
    return "resolved"


class Pager:
    """Decides the pages, escalates and falls back; records what the channels sent."""

    def __init__(
        self,
        settings: OncallSettings,
        roster: Roster,
        store: PagerStore,
        lifecycle: Remarks,
        calendar: Callable[[str], ServiceCalendar],
        clients: Mapping[str, Client],
        assets: Mapping[str, Asset],
        clock: Clock,
        senders: Mapping[str, PageSender],
        *,
        links: PageLinks | None = None,
        metrics: BridgeMetrics | None = None,
        owner: str = "dyzur",
        notify: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.roster = roster
        self.store = store
        self.lifecycle = lifecycle
        self.calendar = calendar
        self.clients = clients
        self.assets = assets
        self.clock = clock
        self.senders = senders
        self.links = links
        self.metrics = metrics
        self.owner = owner
        self.notify = notify
        self.categories = frozenset(Category(c) for c in settings.page)
        self.outside_hours = frozenset(settings.page_outside_service_hours)
        self.fallback_after = timedelta(seconds=settings.fallback_after)
        if metrics is not None:  # every series from the start, at 0
            for channel in senders:
                for outcome in OUTCOMES:
                    metrics.oncall_pages.labels(channel, outcome)
            for step in range(1, len(settings.escalation) + 1):
                metrics.oncall_escalations.labels(str(step))

    def consumers(self) -> list[Consumer]:
        """The outbox consumers: ``oncall`` (what pages) and one ``page:<channel>`` each."""
        return [PagingConsumer(self), *(ChannelConsumer(self, s) for s in self.senders.values())]

    # --- what pages ------------------------------------------------------------------------

    def covers(self, client: str, at: datetime) -> bool:
        """Whether a ticket of ``client`` pages at ``at``: in its contract's service hours, or
        always for a hospital paged outside them."""
        return client in self.outside_hours or self.calendar(client).covers(at)

    def _kind(self, asset: str) -> str:
        found = self.assets.get(asset)
        return found.kind if found is not None else "server"

    def _pages(self, ticket: Ticket, event: AuditEvent) -> bool:
        """Whether the change ``event`` of ``ticket`` pages (before any paging state)."""
        recorded = event.detail.get("category")
        category = recorded if isinstance(recorded, str) else ticket.category.value
        if category not in self.categories or not _ticket_open(ticket):
            return False
        if not self.covers(ticket.client, event.at):
            log.info(
                "%s (%s) of %s pages nobody: outside the service hours of %s",
                ticket.number,
                event.action,
                local_time(event.at),
                ticket.client,
            )
            return False
        return True

    def apply(self, event: AuditEvent) -> bool:
        """One ticket change, in order; True when it wrote something to deliver."""
        number = event.detail.get("ticket")
        if not isinstance(number, str) or event.id is None:
            return False
        if event.action == "ticket.acknowledged":
            self._observe_response(number)
        stop = STOPPING.get(event.action)
        if stop is not None:
            self._stop(number, event.id, event.at, stop)
            return False
        if event.action in PAGING_CHANGES:
            return self._start(number, event)
        return False

    @staticmethod
    def _applied(paging: Paging | None, event_id: int) -> bool:
        """The change was applied before (offered again after a crash), or the ticket is
        paging already."""
        return paging is not None and (paging.last_event >= event_id or paging.stopped_at is None)

    def _start(self, number: str, event: AuditEvent) -> bool:
        assert event.id is not None
        ticket = self.store.get_ticket(number)
        if ticket is None or self._applied(self.store.paging(number), event.id):
            return False
        if not self._pages(ticket, event):
            return False
        now = self.clock.now()
        plans = self._plan(ticket, 0, now)  # the rota's recurrences: before the transaction
        with self.store.transaction():
            self.store.lock(f"oncall:{number}")
            paging = self.store.paging(number)
            if self._applied(paging, event.id):
                return False
            ticket = self.store.get_ticket(number)
            if ticket is None or not _ticket_open(ticket):
                return False
            rounds = paging.round + 1 if paging is not None else 1
            self._write_steps(ticket, rounds, plans, now, event.id)
        return True

    def _stop(self, number: str, event_id: int, at: datetime, reason: str) -> None:
        with self.store.transaction():
            self.store.lock(f"oncall:{number}")
            paging = self.store.paging(number)
            if paging is None or paging.last_event >= event_id:
                return
            if paging.stopped_at is None:
                paging = replace(paging, stopped_at=at, stopped_by=reason)
                log.info("%s: paging stopped (%s)", number, reason)
            self.store.save_paging(replace(paging, last_event=event_id))

    def _observe_response(self, number: str) -> None:
        ticket = self.store.get_ticket(number)
        if self.metrics is None or ticket is None or ticket.responded_at is None:
            return
        taken = (ticket.responded_at - ticket.opened_at).total_seconds()
        hour = f"{ticket.opened_at.astimezone(WARSAW).hour:02d}"
        self.metrics.time_to_acknowledge.labels(ticket.category.value, hour).observe(
            max(taken, 0.0)
        )

    # --- steps -----------------------------------------------------------------------------

    def _step_names(self, step: int) -> list[str]:
        if step == 0:
            return [ROTA_PREFIX + PRIMARY]
        return list(self.settings.escalation[step - 1].then)

    def _targets(self, step: int, ticket: Ticket, at: datetime) -> StepPlan:
        """Whom ``step`` pages for ``ticket`` at ``at``: each person once."""
        people: list[OncallPerson] = []
        missing: list[str] = []
        for name in self._step_names(step):
            if name.startswith(ROTA_PREFIX):
                duty = self.roster.on_duty(
                    name[len(ROTA_PREFIX) :], ticket.client, self._kind(ticket.asset), at
                )
                person = duty.person if duty is not None else None
            else:
                try:
                    person = self.roster.person(name)
                except KeyError:
                    person = None
            if person is None:
                missing.append(name)
            elif all(p.id != person.id for p in people):
                people.append(person)
        return StepPlan(step, people, missing)

    def _plan(self, ticket: Ticket, first: int, at: datetime) -> list[StepPlan]:
        """The steps from ``first`` up to the first one that pages someone (all the remaining
        ones if none does): a step with nobody on duty passes on to the next at once."""
        plans = []
        for step in range(first, len(self.settings.escalation) + 1):
            plans.append(self._targets(step, ticket, at))
            if plans[-1].people:
                break
        return plans

    def _next_at(self, step: int, at: datetime) -> datetime | None:
        """When the step after ``step``, paged at ``at``, is due (None: ``step`` is the last)."""
        if step >= len(self.settings.escalation):
            return None
        return at + timedelta(seconds=self.settings.escalation[step].after)

    def _channels(self, person: OncallPerson) -> list[str]:
        """The channels that page ``person`` at once (those configured)."""
        return [c for c in person.channels if c in self.senders]

    def _write_steps(
        self,
        ticket: Ticket,
        rounds: int,
        plans: Sequence[StepPlan],
        now: datetime,
        last_event: int,
    ) -> None:
        """Inside the transaction: record ``plans`` (steps without anybody, then the one that
        pages), their audit events and timeline lines, and the paging state after them."""
        language = self._language(ticket.client)
        step = 0
        for plan in plans:
            step = plan.step
            if plan.step > 0:
                after = self.settings.escalation[plan.step - 1].after
                names = ", ".join(p.name for p in plan.people) or "—"
                self._audit(
                    ticket,
                    Action.ONCALL_ESCALATED,
                    now,
                    "success",
                    round=rounds,
                    step=plan.step,
                    after=after,
                    people=[p.id for p in plan.people],
                )
                text = timeline_text(
                    language,
                    "oncall_escalated",
                    after=duration_text(after),
                    step=plan.step + 1,
                    people=names,
                )
                self.lifecycle.remark_within(ticket.number, "oncall_escalated", text, "dyzur")
                if self.metrics is not None:
                    self.metrics.oncall_escalations.labels(str(plan.step)).inc()
            if not plan.people:
                self._audit(
                    ticket,
                    Action.ONCALL_NOBODY_ON_DUTY,
                    now,
                    "failure",
                    round=rounds,
                    step=plan.step,
                    missing=plan.missing,
                )
                text = timeline_text(
                    language, "nobody_on_duty", step=plan.step + 1, who=", ".join(plan.missing)
                )
                self.lifecycle.remark_within(ticket.number, "nobody_on_duty", text, "dyzur")
                log.error(
                    "%s: step %d of the escalation pages nobody (%s)",
                    ticket.number,
                    plan.step + 1,
                    ", ".join(plan.missing),
                )
        next_at = self._next_at(step, now)
        expires = next_at or now + LAST_STEP_LINK
        last = plans[-1] if plans else None
        for person in last.people if last is not None else []:
            channels = self._channels(person)
            if not channels:
                log.error("%s: person %s has no configured channel", ticket.number, person.id)
            for channel in channels:
                self._write_page(ticket, rounds, step, person.id, channel, now, expires)
        self.store.save_paging(
            Paging(
                ticket=ticket.number,
                client=ticket.client,
                asset=ticket.asset,
                round=rounds,
                step=step,
                stepped_at=now,
                next_at=next_at,
                last_event=last_event,
            )
        )

    def _write_page(
        self,
        ticket: Ticket,
        rounds: int,
        step: int,
        person: str,
        channel: str,
        now: datetime,
        expires: datetime,
        fallback_for: int | None = None,
    ) -> None:
        detail: dict[str, object] = {
            "round": rounds,
            "step": step,
            "person": person,
            "channel": channel,
            "category": ticket.category.value,
            "expires": local_iso(expires),
        }
        if fallback_for is not None:
            detail["fallback_for"] = fallback_for
        event = self._audit(ticket, Action.ONCALL_PAGE, now, "success", **detail)
        assert event.id is not None
        self.store.add_page(
            Page(event.id, ticket.number, rounds, step, person, channel, now, expires, fallback_for)
        )

    def _audit(
        self, ticket: Ticket, action: str, now: datetime, outcome: str, **detail: object
    ) -> AuditEvent:
        return self.store.append_audit(
            AuditEvent(
                now,
                "dyzur",
                action,
                outcome,
                ticket.client,
                ticket.asset,
                {"ticket": ticket.number, **detail},
            )
        )

    def _language(self, client: str) -> str:
        found = self.clients.get(client)
        return found.contract.language if found is not None else "pl"

    # --- the ticker ------------------------------------------------------------------------

    def tick(self) -> bool:
        """Escalate the tickets due and send waiting pages by the next channel, under the
        lease (another bridge holding it does it); True when something was written."""
        if self.store.lease(LEASE, self.owner, LEASE_SECONDS, self.clock.time()) is None:
            return False
        now = self.clock.now()
        wrote = self.escalate(now)
        wrote = self.fall_back(now) or wrote
        if wrote:
            self.notify()
        return wrote

    def escalate(self, now: datetime) -> bool:
        """Page the next step of every ticket nobody acknowledged in time; a unit per ticket."""
        wrote = False
        for due in self.store.pagings_due(now):
            ticket = self.store.get_ticket(due.ticket)
            plans: list[StepPlan] = []
            resume: datetime | None = None
            if _ticket_open(ticket):
                assert ticket is not None
                if self.covers(ticket.client, now):
                    plans = self._plan(ticket, due.step + 1, now)
                else:  # a standard contract's night: the escalation waits for the morning
                    resume = self.calendar(ticket.client).add(now, timedelta(0)).astimezone(UTC)
            with self.store.transaction():
                self.store.lock(f"oncall:{due.ticket}")
                paging = self.store.paging(due.ticket)
                if paging != due:
                    continue  # stopped, or escalated by another worker meanwhile
                ticket = self.store.get_ticket(due.ticket)
                if not _ticket_open(ticket):
                    self.store.save_paging(
                        replace(paging, stopped_at=now, stopped_by=_stop_reason(ticket))
                    )
                    continue
                assert ticket is not None
                if resume is not None:
                    self.store.save_paging(replace(paging, next_at=resume))
                    log.info("%s: escalation waits for service hours (%s)", due.ticket, resume)
                    continue
                if not plans:  # the ticket reopened unanswered after the rota check
                    continue
                self._write_steps(ticket, paging.round, plans, now, paging.last_event)
                wrote = True
        return wrote

    def fall_back(self, now: datetime) -> bool:
        """Send each page its channel has not delivered ``fallback_after`` after it was
        decided, or refused, through the person's next fallback channel too; a unit per page."""
        wrote = False
        for waiting in self.store.pages_waiting(now - self.fallback_after):
            try:
                person = self.roster.person(waiting.person)
            except KeyError:
                continue
            fallbacks = [c for c in person.fallback_channels if c in self.senders]
            if not fallbacks:
                continue  # no other way to reach the person: the page keeps trying
            with self.store.transaction():
                self.store.lock(f"oncall:{waiting.ticket}")
                page = self.store.page(waiting.event_id)
                ticket = self.store.get_ticket(waiting.ticket)
                pages = self.store.pages(waiting.ticket)
                taken = any(p.fallback_for == waiting.event_id for p in pages)
                if page is None or page.outcome not in (None, FAILED) or taken:
                    continue
                # The next fallback channel this person was not paged by at this step yet.
                used = {
                    p.channel
                    for p in pages
                    if (p.round, p.step, p.person) == (page.round, page.step, page.person)
                }
                following = [c for c in fallbacks if c not in used]
                if not following:
                    continue
                if not _ticket_open(ticket):
                    continue
                assert ticket is not None
                self._write_page(
                    ticket,
                    page.round,
                    page.step,
                    page.person,
                    following[0],
                    now,
                    page.expires,
                    fallback_for=page.event_id,
                )
                text = timeline_text(
                    self._language(ticket.client),
                    "page_fallback",
                    person=person.name,
                    channel=page.channel,
                    since=local_time(page.at),
                    fallback=following[0],
                )
                self.lifecycle.remark_within(ticket.number, "page_fallback", text, "dyzur")
                wrote = True
            log.warning(
                "%s: page to %s by %s not delivered since %s: sent by %s too",
                waiting.ticket,
                waiting.person,
                waiting.channel,
                local_time(waiting.at),
                following[0],
            )
        return wrote

    # --- the channels ----------------------------------------------------------------------

    def message(self, event: AuditEvent, page: Page, ticket: Ticket) -> PageMessage:
        """What the channel sends for ``page``: the text is built now, from the ticket as it
        is, in the person's language."""
        person = self.roster.person(page.person)
        # One line per person and step, naming every channel it went by (the SMS and the
        # e-mail page at once), at the first page's time.
        earlier: dict[tuple[int, str], EarlierPage] = {}
        for other in self.store.pages(page.ticket):
            if other.round == page.round and other.step < page.step:
                seen = earlier.get((other.step, other.person))
                if seen is not None:
                    channels = f"{seen.channel}, {other.channel}"
                    earlier[other.step, other.person] = replace(seen, channel=channels)
                    continue
                try:
                    name = self.roster.person(other.person).name
                except KeyError:
                    name = other.person
                earlier[other.step, other.person] = EarlierPage(name, other.channel, other.at)
        link = None
        if self.links is not None:
            link = self.links.url(ticket.number, person.id, page.step, page.expires)
        return PageMessage(
            key=idempotency_key(event),
            at=page.at,
            ticket=ticket,
            client=self.clients.get(ticket.client),
            asset=self.assets.get(ticket.asset),
            person_id=person.id,
            name=person.name,
            language=person.language,
            email=person.email,
            phone=person.phone,
            step=page.step,
            link=link,
            expires=page.expires,
            earlier=list(earlier.values()),
        )

    def deliver(self, event: AuditEvent, sender: PageSender) -> None:
        """Send one page through ``sender`` and record how it went; ``Retry`` (any other
        error too) leaves it to be sent again."""
        assert event.id is not None
        page = self.store.page(event.id)
        if page is None or page.outcome is not None:
            return  # sent before (offered again after a crash), or not a page of this store
        ticket = self.store.get_ticket(page.ticket)
        if not _ticket_open(ticket):
            self._record(page, SKIPPED, None, "")
            log.info("%s: page to %s skipped: %s", page.ticket, page.person, _stop_reason(ticket))
            return
        assert ticket is not None
        try:
            answer = sender.send(self.message(event, page, ticket))
        except Permanent as refusal:
            self._record(page, FAILED, refusal.reason, ticket.client, event)
            log.error(
                "%s: page to %s by %s refused for good: %s",
                page.ticket,
                page.person,
                page.channel,
                refusal.reason,
            )
            return
        self._record(page, DELIVERED, None, ticket.client)
        log.info("%s: page to %s by %s sent: %s", page.ticket, page.person, page.channel, answer)

    def _record(
        self,
        page: Page,
        outcome: str,
        reason: str | None,
        client: str,
        event: AuditEvent | None = None,
    ) -> None:
        """The page's outcome, with its timeline line (and, when refused, the
        ``outbox.delivery_failed`` event), in one transaction."""
        now = self.clock.now()
        language = self._language(client)
        try:
            name = self.roster.person(page.person).name
        except KeyError:
            name = page.person
        with self.store.transaction():
            self.store.lock(f"oncall:{page.ticket}")
            self.store.set_page_outcome(page.event_id, outcome, now, reason)
            if outcome == DELIVERED:
                late = ""
                if now - page.at > LATE:
                    late = timeline_text(language, "page_late", at=local_time(page.at))
                text = timeline_text(
                    language,
                    "paged",
                    person=name,
                    channel=page.channel,
                    step=page.step + 1,
                    late=late,
                )
                self.lifecycle.remark_within(page.ticket, "paged", text, "dyzur")
            elif outcome == FAILED and event is not None:
                text = timeline_text(
                    language,
                    "page_failed",
                    person=name,
                    channel=page.channel,
                    step=page.step + 1,
                    reason=reason,
                )
                self.lifecycle.remark_within(page.ticket, "page_failed", text, "dyzur")
                self.store.append_audit(
                    AuditEvent(
                        now,
                        "dyzur",
                        Action.OUTBOX_DELIVERY_FAILED,
                        "failure",
                        event.client,
                        event.asset,
                        {
                            "consumer": f"page:{page.channel}",
                            "event": page.event_id,
                            "action": event.action,
                            "ticket": page.ticket,
                            "reason": reason,
                        },
                    )
                )
        self.count(page.channel, outcome)

    def count(self, channel: str, outcome: str) -> None:
        """Count a page of ``channel`` by its outcome (dyzur_oncall_pages)."""
        if self.metrics is not None:
            self.metrics.oncall_pages.labels(channel, outcome).inc()


class PagingConsumer(Consumer):
    """``oncall``: the ticket changes that page, or end a ticket's paging."""

    def __init__(self, pager: Pager) -> None:
        super().__init__(
            "oncall", Selection(actions=PAGING_CHANGES | frozenset(STOPPING)), batch_size=100
        )
        self.pager = pager

    def deliver(self, events: Sequence[AuditEvent]) -> None:
        wrote = False
        for event in events:
            wrote = self.pager.apply(event) or wrote
        if wrote:
            self.pager.notify()


class ChannelConsumer(Consumer):
    """``page:<channel>``: the pages of one channel, in order."""

    def __init__(self, pager: Pager, sender: PageSender) -> None:
        super().__init__(
            f"page:{sender.name}", Selection(actions=frozenset({Action.ONCALL_PAGE.value}))
        )
        self.pager = pager
        self.sender = sender

    def deliver(self, events: Sequence[AuditEvent]) -> None:
        for event in events:
            if event.detail.get("channel") == self.sender.name:
                self.pager.deliver(event, self.sender)

    def close(self) -> None:
        self.sender.close()

    def on_failure(self, error: Exception, attempt: int) -> None:
        self.pager.count(self.sender.name, "retried")
        if attempt == 1:
            log.error("on-call channel %s: page not sent: %s", self.sender.name, error)

    def on_recovered(self) -> None:
        log.warning("on-call channel %s: sending again", self.sender.name)
