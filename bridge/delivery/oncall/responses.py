"""A paged person's answer through the link in the page: look at the ticket, acknowledge it.

Opening the link (``look``) changes nothing — mail scanners and link previews open links —
and only records that the page was opened. Acknowledging (``acknowledge``) verifies the link
again, uses it once (``OncallPages.use_page_link``) and records the person as the ticket's
first responder (``oncall:<person id>``) through the lifecycle, all in one transaction: the
link is used exactly when the acknowledgment was committed. The pager sees the response and
pages nobody further.

Every use is audited: ``oncall.link_opened`` and ``oncall.link_used`` for a good link,
``oncall.link_refused`` for one that is not accepted. A link whose signature holds (used,
expired) is one event with its ticket and person; a malformed or forged one, or a form posted
from another site, says nothing trustworthy and is counted per source and minute like a
refused token (``RefusalAudit``), so a flood cannot fill the trail. Nothing of the token
itself is ever recorded: its id only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from bridge.actions import Action
from bridge.clock import Clock, local_iso
from bridge.config import OncallPerson
from bridge.delivery.oncall.links import EXPIRED, LinkClaim, LinkRefused, PageLinks
from bridge.metrics import BridgeMetrics
from bridge.models import AuditEvent, Ticket
from bridge.store.roles import AuditLog, Coordination, OncallPages, TicketStore
from bridge.tickets.lifecycle import TicketLifecycle

# What a refusal names: never the token.
OPEN_REQUEST = "GET /oncall/ack"
ACK_REQUEST = "POST /oncall/ack"
EPOCH = datetime.fromtimestamp(0, UTC)


class Refusal(StrEnum):
    """Why a link was not accepted, as the page tells the reader."""

    INVALID = "invalid"  # malformed, forged, or naming a ticket or person unknown here
    EXPIRED = "expired"  # the next escalation step was due
    USED = "used"  # it acknowledged once already
    FOREIGN = "foreign"  # posted from a page of another site


# The outcomes of dyzur_oncall_links.
OUTCOMES = ("opened", "acknowledged", *(r.value for r in Refusal))


class LinkNotAccepted(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.value)
        self.refusal = refusal


class ResponseStore(TicketStore, OncallPages, AuditLog, Coordination, Protocol):
    """The store roles a link's use needs: the ticket, the link's one use, the audit log."""


@dataclass(frozen=True, slots=True)
class LinkView:
    """What the link shows: the ticket as it is now, to whom it was paged, at which step."""

    ticket: Ticket
    person: OncallPerson
    step: int
    expires: datetime


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """The link was used: ``first`` when this use was the ticket's first response (else the
    ticket already had one, from someone else or elsewhere)."""

    ticket: Ticket
    person: OncallPerson
    first: bool


def responder(person: str) -> str:
    """The actor of an acknowledgment from a page: ``oncall:<person id>``."""
    return f"oncall:{person}"


class PageResponses:
    def __init__(
        self,
        links: PageLinks,
        store: ResponseStore,
        lifecycle: TicketLifecycle,
        people: Mapping[str, OncallPerson],
        clock: Clock,
        *,
        responded: Callable[[Ticket], None],
        notify: Callable[[], None],
        refused: Callable[..., None],
        metrics: BridgeMetrics | None = None,
    ) -> None:
        """``people``: the oncall section's, by id; ``responded``: counts a first response in
        the metrics (``TicketDesk.responded``); ``notify``: wakes the outbox; ``refused``: the
        bridge's refusal audit, aggregated per source and minute (``Bridge.refused``)."""
        self.links = links
        self.store = store
        self.lifecycle = lifecycle
        self.people = people
        self.clock = clock
        self._responded = responded
        self._notify = notify
        self._refused = refused
        self._metrics = metrics
        if metrics is not None:  # every series from the start, at 0
            for outcome in OUTCOMES:
                metrics.oncall_links.labels(outcome)

    def look(self, token: str, source: str) -> LinkView:
        """The ticket behind a link, for the page that offers to acknowledge it; changes
        nothing but the audit trail (``oncall.link_opened``). LinkNotAccepted otherwise."""
        claim, person, ticket = self._claim(token, source, OPEN_REQUEST)
        self._audit(Action.ONCALL_LINK_OPENED, "success", claim, ticket)
        self._notify()
        self._count("opened")
        return LinkView(ticket, person, claim.step, claim.expires)

    def acknowledge(self, token: str, source: str) -> Acknowledged:
        """Use the link once and acknowledge its ticket as its person, in one transaction.
        LinkNotAccepted (nothing changed) for a link that is not valid now, or used."""
        claim, person, ticket = self._claim(token, source, ACK_REQUEST)
        first = False
        with self.store.transaction():
            used = not self.store.use_page_link(claim.token_id, self.clock.now())
            if not used:
                ticket, first = self.lifecycle.acknowledge_within(
                    claim.ticket, responder(claim.person)
                )
                self._audit(Action.ONCALL_LINK_USED, "success", claim, ticket, acknowledged=first)
        if used:
            self._audit(Action.ONCALL_LINK_REFUSED, "failure", claim, ticket, reason="used")
        elif first:
            self._responded(ticket)
        self._notify()
        if used:
            self._count(Refusal.USED)
            raise LinkNotAccepted(Refusal.USED)
        self._count("acknowledged")
        return Acknowledged(ticket, person, first)

    def foreign_form(self, source: str) -> None:
        """A POST from a page of another site was refused: counted like a refused token."""
        self._refused(Action.ONCALL_LINK_REFUSED, source, ACK_REQUEST, reason=Refusal.FOREIGN.value)
        self._count(Refusal.FOREIGN)

    # --- the claim --------------------------------------------------------------------------

    def _claim(
        self, token: str, source: str, request: str
    ) -> tuple[LinkClaim, OncallPerson, Ticket]:
        """The link's claim, person and ticket; LinkNotAccepted (audited) when it is not
        valid now."""
        try:
            claim = self.links.verify(token, self.clock.now())
        except LinkRefused as refused:
            if refused.reason != EXPIRED:
                raise self._invalid(source, request, refused.reason) from None
            # Signed here, so its claim holds (read as of the epoch, when it had not expired
            # yet): one event naming the ticket and the person.
            claim = self.links.verify(token, EPOCH)
            expired = self.store.get_ticket(claim.ticket)
            if expired is not None:
                self._audit(Action.ONCALL_LINK_REFUSED, "failure", claim, expired, reason="expired")
                self._notify()
            self._count(Refusal.EXPIRED)
            raise LinkNotAccepted(Refusal.EXPIRED) from None
        person = self.people.get(claim.person)
        if person is None:  # signed, but for someone no longer in the oncall section
            raise self._invalid(source, request, "unknown person")
        ticket = self.store.get_ticket(claim.ticket)
        if ticket is None:  # signed, but not for a ticket of this store
            raise self._invalid(source, request, "unknown ticket")
        return claim, person, ticket

    def _invalid(self, source: str, request: str, why: str) -> LinkNotAccepted:
        self._refused(Action.ONCALL_LINK_REFUSED, source, request, reason=why)
        self._count(Refusal.INVALID)
        return LinkNotAccepted(Refusal.INVALID)

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.oncall_links.labels(str(outcome)).inc()

    def _audit(
        self, action: Action, outcome: str, claim: LinkClaim, ticket: Ticket, **detail: object
    ) -> None:
        """One event of an authentic link (its signature holds): never the token, its id."""
        self.store.append_audit(
            AuditEvent(
                self.clock.now(),
                responder(claim.person),
                action,
                outcome,
                ticket.client,
                ticket.asset,
                {
                    "ticket": claim.ticket,
                    "person": claim.person,
                    "step": claim.step,
                    "link": claim.token_id,
                    "expires": local_iso(claim.expires),
                    **detail,
                },
            )
        )
