"""The persistence roles: small protocols, one per concern. A consumer takes only the roles it
uses (the lifecycle takes tickets, audit log, windows and coordination; the SIEM forwarder the
audit log and coordination), and every store implementation provides all of them.

Each role has its own contract test module under ``tests/store/`` that every implementation
joins by one parameter (``tests/store/conftest.py``).

Transactions and locks
----------------------
``Coordination.transaction()`` is one atomic unit: everything written inside it is kept
together or not at all (an exception rolls it back). It is NOT re-entrant: opening a
transaction inside another raises ``StoreError``; the caller that owns the unit of work opens
it, and the methods of every role called inside it join it (called outside one, each method is
its own unit). Nothing slow runs inside a transaction: no network I/O, no template rendering,
no recurrence expansion; compute first, then open the transaction to read and write.

``Coordination.lock(name)`` is a named mutex taken inside a transaction and held until that
transaction ends (SQLite: the database's write lock already serialises every writer, so it is
free; PostgreSQL: a transaction-level advisory lock). Lock order, to never deadlock: a plan
(``plan:<id>``) before the planning lock (``planning``) before an alert (``alert:<fingerprint>``),
and alerts in fingerprint order when a unit takes several.

``Coordination.lease(name, owner, ttl, now)`` gives one worker of several the right to do one
job (deliver to one outbox consumer, drive one update plan) for ``ttl`` seconds; it returns a
fencing token that grows every time the lease changes hands, so a worker that lost its lease
while it was paused cannot overwrite the new holder's progress (``Cursors.set_cursor`` refuses
an older token).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bridge.models import (
    AgentStream,
    AuditEvent,
    MaintenanceWindow,
    PlanStatus,
    StepRecord,
    SuppressedAlert,
    SuppressedState,
    Ticket,
    TimelineEntry,
    UpdatePlan,
)
from bridge.store.base import AuditFilter, BatchClaim, BatchRecord, TicketFilter


@dataclass(frozen=True, slots=True)
class Cursor:
    """How far one outbox consumer got: the last audit event id it delivered, and what it had
    to drop (a SIEM's full queue) and has not reported yet."""

    last_id: int = 0
    dropped: int = 0


class Coordination(Protocol):
    def transaction(self) -> AbstractContextManager[None]:
        """One atomic unit; not re-entrant (see the module's docstring)."""
        ...

    def lock(self, name: str) -> AbstractContextManager[None]:
        """A named mutex held until the enclosing transaction ends."""
        ...

    def lease(self, name: str, owner: str, ttl: float, now: float) -> int | None:
        """Take or extend the lease ``name`` for ``owner`` until ``now + ttl``; the fencing
        token while ``owner`` holds it, None while another owner does."""
        ...

    def release_lease(self, name: str, owner: str) -> None: ...

    def next_sequence(self, name: str) -> int:
        """The next number of a named sequence (``ticket-2026``, ``window-2026``): 1, 2, 3, ...
        never reused, gap-free only as far as the transactions that took them committed."""
        ...


class TicketStore(Protocol):
    def latest_ticket_for_alert(self, fingerprint: str) -> Ticket | None: ...

    def insert_ticket(self, ticket: Ticket, entry: TimelineEntry) -> None: ...

    def update_ticket(self, ticket: Ticket, entry: TimelineEntry | None = None) -> None:
        """Save the ticket's fields and append ``entry`` to its timeline."""
        ...

    def get_ticket(self, number: str) -> Ticket | None: ...

    def list_tickets(self, query: TicketFilter) -> list[Ticket]:
        """Tickets matching ``query``, newest first."""
        ...

    def timeline(self, number: str) -> list[TimelineEntry]:
        """The ticket's timeline, oldest first."""
        ...

    def open_tickets(self) -> Iterator[Ticket]: ...

    def sla_counts(self) -> dict[tuple[str, str, str], int]: ...

    def ticket_counts(self) -> dict[tuple[str, str, str], int]: ...

    def tickets_opened_between(
        self, client: str, start: datetime, end: datetime
    ) -> list[Ticket]: ...


class AuditLog(Protocol):
    """The append-only, hash-chained audit trail; it is also the outbox that every consumer
    (SIEMs, helpdesks, pages) reads with a cursor of its own."""

    def append_audit(self, event: AuditEvent) -> AuditEvent: ...

    def audit_events(
        self, after_id: int = 0, limit: int = 1000, clients: frozenset[str] | None = None
    ) -> list[AuditEvent]: ...

    def list_audit(self, query: AuditFilter) -> list[AuditEvent]: ...

    def audit_high_water(self) -> int:
        """The highest event id ever given (to notice the newest events deleted)."""
        ...

    def audit_backlog(self, after_id: int, clients: frozenset[str] | None) -> int: ...

    def audit_skip(self, after_id: int, count: int, clients: frozenset[str] | None) -> int: ...


class Cursors(Protocol):
    """Outbox cursors, one per consumer (``siem:company-soc``, ``sink:redmine``)."""

    def cursor(self, consumer: str) -> Cursor: ...

    def set_cursor(self, consumer: str, cursor: Cursor, fencing_token: int) -> bool:
        """Move the consumer's cursor; False (and nothing changed) when ``fencing_token`` is
        older than the lease token that moved it last."""
        ...


class WindowStore(Protocol):
    def save_window(self, window: MaintenanceWindow) -> None: ...

    def windows(self, client: str | None = None) -> list[MaintenanceWindow]: ...

    def save_suppressed(self, alert: SuppressedAlert) -> SuppressedAlert: ...

    def suppressed_alerts(
        self,
        *,
        fingerprint: str | None = None,
        window: str | None = None,
        state: SuppressedState | None = None,
        until_before: datetime | None = None,
    ) -> list[SuppressedAlert]: ...


class PlanStore(Protocol):
    def save_plan(self, plan: UpdatePlan) -> None: ...

    def get_plan(self, plan_id: str) -> UpdatePlan | None: ...

    def plans(
        self, client: str | None = None, status: PlanStatus | None = None
    ) -> list[UpdatePlan]: ...

    def append_step(self, step: StepRecord) -> None: ...

    def steps(self, plan: str) -> list[StepRecord]: ...


class AgentStreams(Protocol):
    def record_batch(self, batch: BatchRecord, max_gap: int) -> BatchClaim: ...

    def agent_streams(self) -> list[AgentStream]: ...


class AssetFacts(Protocol):
    """What dyzur learnt about an asset (the deployed AMMS version), latest value per key."""

    def set_asset_fact(self, asset: str, key: str, value: str, at: datetime) -> bool: ...

    def asset_facts(self) -> dict[str, dict[str, str]]: ...


class Housekeeping(Protocol):
    """Upgrading, checking and closing a store."""

    def migrate(self) -> None: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...


class Store(
    Housekeeping,
    Coordination,
    TicketStore,
    AuditLog,
    Cursors,
    WindowStore,
    PlanStore,
    AgentStreams,
    AssetFacts,
    Protocol,
):
    """Every role: what one store implementation provides (``open_store`` returns it)."""
