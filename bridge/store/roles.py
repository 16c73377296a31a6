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
no recurrence expansion, no service-calendar arithmetic; compute first, then open the
transaction to read and write.

``Coordination.lock(name)`` is a named mutex taken inside a transaction and held until that
transaction ends; called outside one it raises ``StoreError``. Taking a lock the transaction
already holds is a no-op. (SQLite: the transaction holds the database's write lock from its
first statement, ``BEGIN IMMEDIATE``, so every writer is already serialised and ``lock`` only
checks that a transaction is open; PostgreSQL: a transaction-level advisory lock.) Lock order,
to never deadlock: a plan (``plan:<id>``) before the planning lock (``planning``) before an
alert (``alert:<fingerprint>``), and alerts in fingerprint order when a unit takes several.

``Coordination.lease(name, owner, ttl, now)`` gives one worker of several the right to do one
job (deliver to one outbox consumer, drive one update plan) for ``ttl`` seconds; it returns a
fencing token that grows every time the lease changes hands, so a worker that lost its lease
while it was paused cannot overwrite the new holder's progress (``Cursors.set_cursor`` refuses
an older token).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bridge.models import (
    AgentStream,
    AuditEvent,
    IncidentAlert,
    MaintenanceWindow,
    MemberReason,
    MemberState,
    PlanStatus,
    StepRecord,
    SuppressedAlert,
    SuppressedState,
    Ticket,
    TimelineEntry,
    UpdatePlan,
)
from bridge.store.base import AuditFilter, BatchClaim, BatchRecord, TicketFilter
from rules.model import Alert


@dataclass(frozen=True, slots=True)
class Cursor:
    """How far one outbox consumer got: the last audit event id it delivered, and what it had
    to drop (a SIEM's full queue) and has not reported yet."""

    last_id: int = 0
    dropped: int = 0


class Leases(Protocol):
    """Leases kept outside the store (``bridge.store.redis_coordination``)."""

    def lease(self, name: str, owner: str, ttl: float, now: float) -> int | None: ...

    def release_lease(self, name: str, owner: str) -> None: ...


class Coordination(Protocol):
    def transaction(self) -> AbstractContextManager[None]:
        """One atomic unit; not re-entrant: StoreError inside another (see the module's
        docstring). Every method of every role called inside it joins it."""
        ...

    def lock(self, name: str) -> AbstractContextManager[None]:
        """Take the named mutex ``name`` for the enclosing transaction: taken when called, held
        until the transaction ends (leaving the ``with`` block releases nothing); StoreError
        outside a transaction. Taking it again in the same transaction is a no-op."""
        ...

    def lease(self, name: str, owner: str, ttl: float, now: float) -> int | None:
        """Take or extend the lease ``name`` for ``owner`` until ``now + ttl``: the fencing
        token while ``owner`` holds it, None while another owner does (its lease runs past
        ``now``). The token is the same while one owner keeps extending its lease, and grows
        each time the lease is taken by an owner that was not its last holder (or after a
        release), never going back."""
        ...

    def release_lease(self, name: str, owner: str) -> None:
        """Let go of the lease if ``owner`` holds it (another owner's lease is left alone)."""
        ...

    def use_leases(self, leases: Leases) -> None:
        """Keep the leases in ``leases`` (Redis, between bridges) from now on; their fencing
        tokens still come from this store's sequences ``lease:<name>``."""
        ...

    def check_fence(self, name: str, token: int) -> None:
        """Inside a writer's transaction: refuse (``StaleLease``) the write of a holder of lease
        ``name`` with ``token`` when a newer token was given for it since (the lease moved to
        another worker while this one was paused). Until the transaction ends, no newer token
        can be given. Tokens come from the sequence ``lease:<name>``, wherever the lease is."""
        ...

    def next_sequence(self, name: str) -> int:
        """The next number of a named sequence (``ticket-2026``, ``window-2026``): 1, 2, 3, ...
        Inside a transaction the number is taken only if the transaction commits (a rolled
        back one gives it again); a committed number is never given twice, whatever the
        threads or processes asking."""
        ...


class PendingAlerts(Protocol):
    """The alerts whose rule's ``for:`` is still running, per hospital: the bridge that takes
    a hospital's series over goes on with their timers."""

    def save_pending(self, changes: Mapping[str, tuple[str, Alert] | None]) -> None:
        """Per fingerprint: (the hospital, the pending alert) to keep, or None to forget it
        (it fired or resolved)."""
        ...

    def pending_alerts(self, client: str | None = None) -> list[Alert]:
        """The pending alerts kept (of one hospital), state PENDING, their timers' starts."""
        ...


class TicketStore(Protocol):
    def latest_ticket_for_alert(self, fingerprint: str) -> Ticket | None:
        """The alert's most recently opened ticket, open or not."""
        ...

    def insert_ticket(self, ticket: Ticket, entry: TimelineEntry) -> None:
        """A new ticket and the first entry of its timeline. At most one ticket per alert
        (fingerprint) is open: a second open one raises."""
        ...

    def update_ticket(self, ticket: Ticket, entry: TimelineEntry | None = None) -> None:
        """Save the ticket's fields and append ``entry`` to its timeline; StoreError when the
        ticket does not exist."""
        ...

    def get_ticket(self, number: str) -> Ticket | None: ...

    def list_tickets(self, query: TicketFilter) -> list[Ticket]:
        """Tickets matching ``query``, newest first."""
        ...

    def timeline(self, number: str) -> list[TimelineEntry]:
        """The ticket's timeline, oldest first."""
        ...

    def open_tickets(self) -> Iterator[Ticket]:
        """Every open ticket (to restore alert state at start, to check deadlines)."""
        ...

    def sla_counts(self) -> dict[tuple[str, str, str], int]:
        """Open tickets at risk or breached: (client, category, sla_state) -> count."""
        ...

    def ticket_counts(self) -> dict[tuple[str, str, str], int]:
        """(client, category, status) -> number of tickets."""
        ...

    def tickets_opened_between(self, client: str, start: datetime, end: datetime) -> list[Ticket]:
        """A client's tickets opened in [start, end), oldest first (for reports)."""
        ...


class AuditLog(Protocol):
    """The append-only, hash-chained audit trail; it is also the outbox that every consumer
    (SIEMs, helpdesks, pages) reads with a cursor of its own."""

    def append_audit(self, event: AuditEvent) -> AuditEvent:
        """Append an event to the chain (setting its id, prev_hash and hash) and return it.
        Events are never changed or removed."""
        ...

    def audit_events(
        self, after_id: int = 0, limit: int = 1000, clients: frozenset[str] | None = None
    ) -> list[AuditEvent]:
        """Events with an id above ``after_id``, oldest first; only these clients' if given."""
        ...

    def list_audit(self, query: AuditFilter) -> list[AuditEvent]:
        """Events as ``query`` selects them (for people: GET /api/v1/audit)."""
        ...

    def audit_high_water(self) -> int:
        """The highest event id ever given (to notice the newest events deleted)."""
        ...

    def audit_backlog(self, after_id: int, clients: frozenset[str] | None) -> int:
        """How many events (of these clients, if given) come after ``after_id``."""
        ...

    def audit_skip(self, after_id: int, count: int, clients: frozenset[str] | None) -> int:
        """The id of the ``count``-th event after ``after_id`` (to drop a full queue's oldest)."""
        ...

    def audit_events_by_id(self, ids: Collection[int]) -> list[AuditEvent]:
        """The events with these ids, oldest first (an id never given out is left out): the
        changes a helpdesk sink parked, read again to send them once more."""
        ...

    def watch_appends(self, watcher: Callable[[], None]) -> None:
        """Call ``watcher`` (no arguments; it must return at once) on the writing thread after
        each committed transaction that appended events, never after a rolled-back one: the
        outbox's consumers look at once instead of at their next poll."""
        ...


class Cursors(Protocol):
    """Outbox cursors, one per consumer (``siem:company-soc``, ``sink:redmine``)."""

    def cursor(self, consumer: str) -> Cursor: ...

    def set_cursor(self, consumer: str, cursor: Cursor, fencing_token: int) -> bool:
        """Move the consumer's cursor; False (and nothing changed) when ``fencing_token`` is
        older than the lease token that moved it last."""
        ...


@dataclass(frozen=True, slots=True)
class SinkDelivery:
    """Where one ticket went in one helpdesk sink: the helpdesk's own id for it (None until
    the helpdesk named one), the state of its last change (``delivered`` or ``failed``, with
    the reason), and the audit event of that change with its time."""

    sink: str
    ticket: str
    remote_id: str | None
    state: str
    reason: str | None
    event_id: int
    at: datetime


@dataclass(frozen=True, slots=True)
class ParkedChange:
    """A ticket change a helpdesk sink did not deliver and keeps for ``dyzur sinks retry``:
    ``failed`` (the helpdesk refused it, ``reason`` its answer) or ``waiting`` (a later change
    of the same ticket, held behind a failed one so the helpdesk never sees them out of order).
    ``at``: when it was parked (or refused again)."""

    sink: str
    ticket: str
    event_id: int
    client: str | None
    action: str
    state: str
    reason: str
    at: datetime


class SinkDeliveries(Protocol):
    """Helpdesk sinks (``bridge.delivery.sinks``): the mapping of dyzur's ticket number to the
    helpdesk's id, the state of each ticket's delivery, per sink, and the changes each sink
    parked (a list per sink, in change order)."""

    def record_delivery(self, delivery: SinkDelivery) -> None:
        """Keep the latest delivery of a ticket to a sink; a ``remote_id`` of None keeps the
        one recorded before. A change recorded ``delivered`` leaves the sink's parked list."""
        ...

    def sink_deliveries(self, ticket: str) -> list[SinkDelivery]:
        """Where the ticket was delivered, by sink name."""
        ...

    def sink_delivery(self, sink: str, ticket: str) -> SinkDelivery | None: ...

    def park_changes(self, changes: Sequence[ParkedChange]) -> None:
        """Add changes to their sinks' parked lists; a change parked again (refused again
        when sent once more) keeps its place with the new state, reason and time."""
        ...

    def parked_changes(
        self,
        sink: str | None = None,
        *,
        ticket: str | None = None,
        clients: frozenset[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ParkedChange]:
        """Parked changes (of this sink, ticket, these clients, if given), oldest change
        first (event id, then sink)."""
        ...

    def unpark_changes(self, sink: str, event_ids: Collection[int]) -> None:
        """Take changes off the sink's parked list (they were delivered)."""
        ...

    def parked_counts(self) -> dict[str, int]:
        """Parked changes per sink (sinks without any left out)."""
        ...


@dataclass(frozen=True, slots=True)
class OncallOverride:
    """A period of on-call duty handed from the person whose shift it is (``shift_person``) to
    another (``person``): in ``rota``, for one hospital (``client``) or all of the shift's
    coverage (None), from ``start`` to ``end`` (aware). Who asked and why are kept with it."""

    rota: str
    shift_person: str
    person: str
    start: datetime
    end: datetime
    client: str | None
    reason: str
    created_by: str
    created_at: datetime
    id: int = 0  # given by the store


class OncallOverrides(Protocol):
    """On-call overrides (``bridge.delivery.oncall.rota``); never changed once added."""

    def add_oncall_override(self, override: OncallOverride) -> OncallOverride:
        """Keep an override; returns it with its id (later overrides get higher ids)."""
        ...

    def oncall_overrides(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[OncallOverride]:
        """The overrides whose period overlaps [start, end) (open-ended where None), by id."""
        ...


@dataclass(frozen=True, slots=True)
class Paging:
    """The paging of one ticket (``bridge.delivery.oncall.pager``): the escalation step paged
    last (0: the person on duty) and when, when the next step is due if nobody acknowledges
    (None: no further step), and whether it is over (``stopped_by``: acknowledged, resolved).
    ``round`` counts the times the ticket started paging (a resolved ticket reopened pages
    anew); ``last_event`` is the last ticket change the pager applied (its audit event id), so
    a change offered again after a crash is not applied twice."""

    ticket: str
    client: str
    asset: str
    round: int
    step: int
    stepped_at: datetime
    next_at: datetime | None
    last_event: int
    stopped_at: datetime | None = None
    stopped_by: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page: ``person`` paged for ``ticket`` at escalation ``step`` (of paging ``round``)
    through ``channel``, decided at ``at``; ``event_id`` is its ``oncall.page`` audit event,
    the outbox entry the channel delivers. ``expires``: until when its link acknowledges.
    ``fallback_for``: the page (event id) whose channel did not deliver in time, that this one
    stands in for. ``outcome``: delivered, failed (refused for good, ``reason``) or skipped
    (the ticket was acknowledged or resolved before it went); None while it waits."""

    event_id: int
    ticket: str
    round: int
    step: int
    person: str
    channel: str
    at: datetime
    expires: datetime
    fallback_for: int | None = None
    outcome: str | None = None
    outcome_at: datetime | None = None
    reason: str | None = None


class OncallPages(Protocol):
    """Paging (``bridge.delivery.oncall.pager``): per ticket its paging state and the pages
    sent, and the uses of the one-time links in them."""

    def paging(self, ticket: str) -> Paging | None: ...

    def save_paging(self, paging: Paging) -> None:
        """Insert or replace the paging of ``paging.ticket``."""
        ...

    def pagings_due(self, now: datetime) -> list[Paging]:
        """Pagings not stopped whose next step is due at ``now``, by due time."""
        ...

    def add_page(self, page: Page) -> None:
        """Keep a page (its ``event_id`` is unique: a second one raises StoreError)."""
        ...

    def page(self, event_id: int) -> Page | None:
        """The page whose ``oncall.page`` audit event is ``event_id``."""
        ...

    def pages(self, ticket: str) -> list[Page]:
        """The ticket's pages, oldest first (by event id)."""
        ...

    def set_page_outcome(
        self, event_id: int, outcome: str, at: datetime, reason: str | None = None
    ) -> None:
        """Record how a page ended (delivered, failed, skipped)."""
        ...

    def pages_waiting(self, decided_before: datetime) -> list[Page]:
        """Pages not delivered — refused for good (``failed``), or without an outcome and
        decided at or before ``decided_before`` — that no other page stands in for yet (the
        candidates for the person's next channel), oldest first."""
        ...

    def use_page_link(self, token_id: str, at: datetime) -> bool:
        """Record the use of a page's one-time link: True the first time, False ever after
        (atomic: of two uses at the same moment, from two processes too, one gets True)."""
        ...


class WindowStore(Protocol):
    def save_window(self, window: MaintenanceWindow) -> None:
        """Insert or replace a maintenance window (windows are cancelled, never deleted)."""
        ...

    def windows(self, client: str | None = None) -> list[MaintenanceWindow]:
        """Every window (of one client, if given), by start."""
        ...

    def save_suppressed(self, alert: SuppressedAlert) -> SuppressedAlert:
        """Insert (setting ``id``) or update an alert recorded against a window; at most one
        firing record per alert (fingerprint): a second one raises StoreError."""
        ...

    def suppressed_alerts(
        self,
        *,
        fingerprint: str | None = None,
        window: str | None = None,
        state: SuppressedState | None = None,
        until_before: datetime | None = None,
    ) -> list[SuppressedAlert]:
        """Alerts recorded against windows, oldest first, filtered by what is given."""
        ...


class IncidentStore(Protocol):
    """Incidents (``bridge.tickets.incidents``): alerts held for their root cause or attached
    to another ticket, and the open tickets of assets (to find a root)."""

    def save_incident_alert(self, alert: IncidentAlert) -> IncidentAlert:
        """Insert (setting ``id``) or update one; at most one held or attached record per alert
        (fingerprint): a second one raises StoreError."""
        ...

    def incident_alerts(
        self,
        *,
        fingerprint: str | None = None,
        ticket: str | None = None,
        client: str | None = None,
        states: Collection[MemberState] = (),
        reason: MemberReason | None = None,
        due_before: datetime | None = None,
        limit: int | None = None,
        assets: Collection[str] = (),
    ) -> list[IncidentAlert]:
        """Held and attached alerts, oldest first, filtered by what is given (``due_before``:
        those whose ``until`` is at or before it; ``limit``: at most that many, the oldest;
        ``assets``: those of these assets)."""
        ...

    def count_incident_alerts(self, *, ticket: str, states: Collection[MemberState] = ()) -> int:
        """How many records are attached to a ticket (in ``states``, when given)."""
        ...

    def open_tickets_of_assets(self, assets: Collection[str]) -> list[Ticket]:
        """The open tickets of these assets, oldest first."""
        ...

    def count_tickets_opened(
        self,
        client: str,
        since: datetime,
        *,
        excluding_rule: str | None = None,
        up_to: int | None = None,
    ) -> int:
        """How many tickets of a client opened at or after ``since`` (the storm budget), at
        most ``up_to`` when given (the check then costs no more than the budget)."""
        ...


class PlanStore(Protocol):
    def save_plan(self, plan: UpdatePlan) -> None:
        """Insert or replace an update plan, kept whole."""
        ...

    def get_plan(self, plan_id: str) -> UpdatePlan | None: ...

    def plans(
        self, client: str | None = None, status: PlanStatus | None = None
    ) -> list[UpdatePlan]:
        """Update plans by id, filtered by what is given."""
        ...

    def append_step(self, step: StepRecord) -> None:
        """Keep what one runbook command did."""
        ...

    def steps(self, plan: str) -> list[StepRecord]:
        """A plan's runbook steps in the order they ran."""
        ...


class AgentStreams(Protocol):
    def record_batch(self, batch: BatchRecord, max_gap: int) -> BatchClaim:
        """Claim an agent's numbered batch (atomic across workers; call it inside the
        transaction that applies the batch, so that a claim never outlives a failed apply).

        The first batch of a stream binds it to ``batch.owner`` (the token's name); another
        owner gets FOREIGN and changes nothing. A batch at or below the last one taken is a
        DUPLICATE. A jump of more than ``max_gap`` batches is an ANOMALY: the batch is taken
        but the stream does not advance, unless the jump is confirmed by a batch that carries
        on from it (an agent that really dropped that many batches from a full spool)."""
        ...

    def peek_batch(self, batch: BatchRecord, max_gap: int) -> BatchClaim:
        """What ``record_batch`` would answer now, recording nothing: lets ingest skip the
        work of a duplicate or foreign batch before it opens its transaction. A DUPLICATE or
        FOREIGN answer stays true; a TAKEN one may not (another worker may claim it first)."""
        ...

    def agent_streams(self) -> list[AgentStream]:
        """Every agent stream, by agent id."""
        ...


class AssetFacts(Protocol):
    """What dyzur learnt about an asset (the deployed AMMS version), latest value per key."""

    def set_asset_fact(self, asset: str, key: str, value: str, at: datetime) -> bool:
        """Keep the latest value of a fact about an asset; True when it changed."""
        ...

    def asset_facts(self) -> dict[str, dict[str, str]]:
        """asset -> {key: value}."""
        ...


@dataclass(frozen=True, slots=True)
class WebSession:
    """A person's session of the pages (``bridge.users``), kept by the SHA-256 of its id: the
    id itself (the cookie's value) is never stored. ``credential``: a digest of the user's
    password hash when it began, so that a changed password ends it. ``seen_at``: its last
    use, for the idle expiry; ``created_at`` for the absolute one."""

    id_hash: str
    user: str
    credential: str
    source: str
    created_at: datetime
    seen_at: datetime


class Sessions(Protocol):
    """The pages' sessions and the failed logins that guard them (``bridge.users``), shared by
    every bridge on the store. Failed logins are kept per key (``user:<digest of the name>``,
    ``source:<address>``) with their time; a key may be locked until a time."""

    def add_session(self, session: WebSession) -> None:
        """Keep a new session (a second one with the same ``id_hash`` raises StoreError)."""
        ...

    def web_session(self, id_hash: str) -> WebSession | None: ...

    def touch_session(self, id_hash: str, at: datetime) -> None:
        """Record a use of the session at ``at`` (its ``seen_at``)."""
        ...

    def end_session(self, id_hash: str) -> bool:
        """Delete the session; True when there was one (of two ends at once, one gets True)."""
        ...

    def end_sessions(self, *, seen_before: datetime, created_before: datetime) -> int:
        """Delete the sessions last used before ``seen_before`` or begun before
        ``created_before`` (the expired ones); returns how many."""
        ...

    def add_login_failure(self, key: str, at: datetime) -> int:
        """Count a failed login of ``key`` at ``at``; returns its id."""
        ...

    def remove_login_failure(self, failure_id: int) -> None:
        """Take back one counted failure (an attempt counted before it was decided, that
        succeeded)."""
        ...

    def login_failures(self, key: str, since: datetime) -> list[datetime]:
        """The times of the key's failed logins after ``since``, oldest first."""
        ...

    def clear_login_failures(self, key: str) -> None:
        """Forget every failed login of ``key``."""
        ...

    def lock_login(self, key: str, until: datetime) -> None:
        """Refuse logins of ``key`` until ``until`` (replacing an earlier lock)."""
        ...

    def login_locked_until(self, key: str) -> datetime | None:
        """Until when the key is locked (possibly a past time), None if it never was or the
        lock was forgotten."""
        ...

    def forget_logins(self, before: datetime) -> int:
        """Delete failed logins at or before ``before`` and locks that ended by then; returns
        how many rows went."""
        ...


class Housekeeping(Protocol):
    """Upgrading, checking and closing a store."""

    def migrate(self) -> None:
        """Create or upgrade the schema; safe to call at every start."""
        ...

    def ping(self) -> None:
        """Raise StoreError when the store does not answer (for /healthz)."""
        ...

    def close(self) -> None: ...


class Store(
    Housekeeping,
    Coordination,
    PendingAlerts,
    TicketStore,
    AuditLog,
    Cursors,
    WindowStore,
    IncidentStore,
    PlanStore,
    AgentStreams,
    AssetFacts,
    SinkDeliveries,
    OncallOverrides,
    OncallPages,
    Sessions,
    Protocol,
):
    """Every role: what one store implementation provides (``open_store`` returns it)."""
