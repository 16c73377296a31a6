"""The store interface: everything the bridge keeps, behind one contract.

Every store passes the same contract suite (tests/test_store_contract.py); a new store joins by
being added to that suite's parameter list.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from bridge.models import (
    AgentStream,
    AuditEvent,
    Category,
    MaintenanceWindow,
    PlanStatus,
    StepRecord,
    SuppressedAlert,
    SuppressedState,
    Ticket,
    TicketStatus,
    TimelineEntry,
    UpdatePlan,
)

if TYPE_CHECKING:  # roles imports this module
    from bridge.store.roles import Cursor


class BatchClaim(StrEnum):
    TAKEN = "taken"
    DUPLICATE = "duplicate"
    FOREIGN = "foreign"  # the stream belongs to another token
    ANOMALY = "anomaly"  # taken, but the sequence jumped too far to advance the stream


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One numbered batch as the store keeps count of it."""

    agent_id: str
    owner: str  # the name of the token that sent it
    asset: str
    seq: int
    samples: int
    dropped: int
    at: datetime


class StoreError(Exception):
    """The store could not do what was asked (bad URL, unreadable file, newer schema)."""


@dataclass(frozen=True, slots=True)
class TicketFilter:
    """Which tickets to list, newest first (``opened_at``, then insertion order).

    ``before`` is a keyset cursor: the number of the last ticket of the previous page; the
    list continues right after it in that order, whatever was opened meanwhile. A cursor
    ticket that does not match ``client`` gives an empty list (a cursor never reaches another
    client's tickets). ``offset`` still skips rows after the cursor, if both are given.
    """

    client: str | None = None
    status: TicketStatus | None = None
    category: Category | None = None
    asset: str | None = None
    limit: int = 100
    offset: int = 0
    before: str | None = None


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which audit events to list, in the order they were recorded (by id): oldest first, or
    newest first with ``newest_first``.

    Every field that is not None narrows the list: ``client`` (exact), ``action`` (exact, or
    a prefix when it ends in ``*``: ``ticket.*``), ``actor``, ``asset``, ``since`` (events
    that happened at or after it). ``after`` is the id of the last event of the previous
    page: the list continues right after it in its order.
    """

    client: str | None = None
    action: str | None = None
    actor: str | None = None
    asset: str | None = None
    since: datetime | None = None
    after: int | None = None
    newest_first: bool = False
    limit: int = 100


class Store(ABC):
    """Tickets, their timelines and ticket numbers.

    ``alert_lock(fingerprint)`` serialises everything done for one alert across threads and
    processes: the lifecycle reads the alert's latest ticket and writes its change inside it,
    which is what makes "never two tickets for one alert" hold with several bridge workers.
    """

    @abstractmethod
    def migrate(self) -> None:
        """Create or upgrade the schema; safe to call at every start."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def ping(self) -> None:
        """Raise StoreError when the store does not answer (for /healthz)."""

    @abstractmethod
    def alert_lock(self, fingerprint: str) -> AbstractContextManager[None]: ...

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """One atomic unit: everything written inside it is kept together or not at all (an
        exception rolls it back). Writes made inside it by the other methods join it."""

    @abstractmethod
    def next_ticket_sequence(self, year: int) -> int:
        """The next ticket sequence number of ``year``: 1, 2, 3, ... never reused."""

    @abstractmethod
    def latest_ticket_for_alert(self, fingerprint: str) -> Ticket | None: ...

    @abstractmethod
    def insert_ticket(self, ticket: Ticket, entry: TimelineEntry) -> None: ...

    @abstractmethod
    def update_ticket(self, ticket: Ticket, entry: TimelineEntry | None = None) -> None:
        """Save the ticket's fields and append ``entry`` to its timeline."""

    @abstractmethod
    def get_ticket(self, number: str) -> Ticket | None: ...

    @abstractmethod
    def list_tickets(self, query: TicketFilter) -> list[Ticket]:
        """Tickets matching ``query``, newest first."""

    @abstractmethod
    def timeline(self, number: str) -> list[TimelineEntry]:
        """The ticket's timeline, oldest first."""

    @abstractmethod
    def open_tickets(self) -> Iterator[Ticket]:
        """Every open ticket, for restoring alert state at start."""

    @abstractmethod
    def record_batch(self, batch: BatchRecord, max_gap: int) -> BatchClaim:
        """Claim an agent's numbered batch (atomic across workers; call it inside the
        transaction that applies the batch, so that a claim never outlives a failed apply).

        The first batch of a stream binds it to ``batch.owner`` (the token's name); another
        owner gets FOREIGN and changes nothing. A batch at or below the last one taken is a
        DUPLICATE. A jump of more than ``max_gap`` batches is an ANOMALY: the batch is taken
        but the stream does not advance, unless the jump is confirmed by a batch that carries
        on from it (an agent that really dropped that many batches from a full spool)."""

    @abstractmethod
    def agent_streams(self) -> list[AgentStream]:
        """Every agent stream, by agent id."""

    @abstractmethod
    def append_audit(self, event: AuditEvent) -> AuditEvent:
        """Append an event to the chain (setting its id, prev_hash and hash) and return it.
        Events are never changed or removed."""

    @abstractmethod
    def audit_events(
        self, after_id: int = 0, limit: int = 1000, clients: frozenset[str] | None = None
    ) -> list[AuditEvent]:
        """Events with an id above ``after_id``, oldest first; only these clients' if given."""

    @abstractmethod
    def list_audit(self, query: AuditFilter) -> list[AuditEvent]:
        """Events as ``query`` selects them (for people: GET /api/v1/audit)."""

    @abstractmethod
    def audit_high_water(self) -> int:
        """The highest audit event id ever given (to notice the newest events deleted)."""

    @abstractmethod
    def audit_backlog(self, after_id: int, clients: frozenset[str] | None) -> int:
        """How many events (of these clients, if given) come after ``after_id``."""

    @abstractmethod
    def audit_skip(self, after_id: int, count: int, clients: frozenset[str] | None) -> int:
        """The id of the ``count``-th event after ``after_id`` (to drop a full queue's oldest)."""

    @abstractmethod
    def cursor(self, consumer: str) -> Cursor:
        """How far an outbox consumer got (``siem:<destination>``); zero when never moved."""

    @abstractmethod
    def set_cursor(self, consumer: str, cursor: Cursor, fencing_token: int) -> bool:
        """Move an outbox consumer's cursor; False (nothing changed) when ``fencing_token`` is
        older than the lease token that moved it last."""

    @abstractmethod
    def sla_counts(self) -> dict[tuple[str, str, str], int]:
        """Open tickets at risk or breached: (client, category, sla_state) -> count."""

    @abstractmethod
    def ticket_counts(self) -> dict[tuple[str, str, str], int]:
        """(client, category, status) -> number of tickets."""

    @abstractmethod
    def tickets_opened_between(self, client: str, start: datetime, end: datetime) -> list[Ticket]:
        """A client's tickets opened in [start, end), oldest first (for reports)."""

    @abstractmethod
    def set_asset_fact(self, asset: str, key: str, value: str, at: datetime) -> bool:
        """Keep the latest value of a fact about an asset; True when it changed."""

    @abstractmethod
    def asset_facts(self) -> dict[str, dict[str, str]]:
        """asset -> {key: value}."""

    @abstractmethod
    def next_sequence(self, name: str) -> int:
        """The next number of a named counter (window and plan ids): 1, 2, 3, ... never reused."""

    @abstractmethod
    def lease(self, name: str, owner: str, now: float, seconds: float) -> bool:
        """Take or extend the right to do one job (forward to a SIEM, run an update plan), so
        that of several bridge workers only one does it. True while ``owner`` holds it."""

    @abstractmethod
    def release_lease(self, name: str, owner: str) -> None: ...

    @abstractmethod
    def save_window(self, window: MaintenanceWindow) -> None:
        """Insert or replace a maintenance window (windows are cancelled, never deleted)."""

    @abstractmethod
    def windows(self, client: str | None = None) -> list[MaintenanceWindow]:
        """Every window (of one client, if given), by start."""

    @abstractmethod
    def save_suppressed(self, alert: SuppressedAlert) -> SuppressedAlert:
        """Insert (setting ``id``) or update an alert recorded against a window."""

    @abstractmethod
    def suppressed_alerts(
        self,
        *,
        fingerprint: str | None = None,
        window: str | None = None,
        state: SuppressedState | None = None,
        until_before: datetime | None = None,
    ) -> list[SuppressedAlert]:
        """Alerts recorded against windows, oldest first, filtered by what is given."""

    @abstractmethod
    def save_plan(self, plan: UpdatePlan) -> None: ...

    @abstractmethod
    def get_plan(self, plan_id: str) -> UpdatePlan | None: ...

    @abstractmethod
    def plans(
        self, client: str | None = None, status: PlanStatus | None = None
    ) -> list[UpdatePlan]:
        """Update plans by id, filtered by what is given."""

    @abstractmethod
    def append_step(self, step: StepRecord) -> None:
        """Keep what one runbook command did."""

    @abstractmethod
    def steps(self, plan: str) -> list[StepRecord]:
        """A plan's runbook steps in the order they ran."""
