"""The store roles in SQL, shared by the SQLite and PostgreSQL stores.

``SQLRoles`` implements every role of ``bridge.store.roles`` except coordination's
transactions and locks, in the SQL both databases speak, with ``?`` placeholders (the
PostgreSQL connection translates them). What differs is a hook of the subclass: how a
connection and a write transaction are had, the name of the two-argument maximum, how the
audit chain's appenders take turns, and the audit id high-water mark.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar, Protocol

from bridge.audit import GENESIS_HASH, event_hash
from bridge.clock import to_datetime
from bridge.models import (
    AgentStream,
    AuditEvent,
    Category,
    IncidentAlert,
    MaintenanceWindow,
    MemberReason,
    MemberState,
    PlanStatus,
    SlaState,
    StepRecord,
    SuppressedAlert,
    SuppressedState,
    Ticket,
    TicketStatus,
    TimelineEntry,
    UpdatePlan,
)
from bridge.store.base import (
    AuditFilter,
    BatchClaim,
    BatchRecord,
    StaleLease,
    StoreError,
    TicketFilter,
)
from bridge.store.codec import plan_from_json, plan_to_json
from bridge.store.roles import (
    Cursor,
    Leases,
    OncallOverride,
    Page,
    Paging,
    ParkedChange,
    SinkDelivery,
    WebSession,
)
from rules.model import Alert, AlertState

log = logging.getLogger(__name__)

Row = Any  # a row read by name or by position (Row, or the PostgreSQL store's)


def lease_sequence(name: str) -> str:
    """The sequence a lease's fencing tokens come from, wherever the lease is kept."""
    return f"lease:{name}"


class Connection(Protocol):
    """What the roles use of a connection: statements with ``?`` placeholders."""

    def execute(self, sql: str, parameters: Any = (), /) -> Any: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...


_INCIDENT_ALERT_COLUMNS = (
    "fingerprint, client, asset, rule, category, labels, value, fired_at, reason, state, title, "
    "ticket, until, recovered_at, own_ticket, updated_at"
)

# Ids per query of audit_events_by_id (SQLite's limit of bound parameters is far above it).
_IDS_PER_QUERY = 500

_TICKET_COLUMNS = (
    "number, client, asset, rule, fingerprint, category, status, title, description, labels, "
    "fire_count, last_value, opened_at, updated_at, resolved_at, responded_at, responded_by, "
    "reaction_due, sla_at_risk_at, sla_state, incident"
)


def _scope(clients: frozenset[str] | None) -> tuple[str, tuple[str, ...]]:
    """SQL and parameters limiting audit events to some clients' (None: every event)."""
    if clients is None:
        return "", ()
    ordered = tuple(sorted(clients))
    return f" AND {_one_of('client', ordered)}", ordered


def _one_of(column: str, values: Collection[object]) -> str:
    """``column IN (?, ...)``; false for no values (PostgreSQL has no empty ``IN ()``)."""
    return f"{column} IN ({', '.join('?' * len(values))})" if values else "false"


class _Where:
    """A WHERE clause of optional filters: a filter whose value is None adds nothing."""

    def __init__(self) -> None:
        self.terms: list[str] = []
        self.params: list[object] = []

    def equal(self, *columns: tuple[str, object | None]) -> None:
        for column, value in columns:
            if value is not None:
                self.add(f"{column} = ?", str(value))

    def add(self, term: str, *params: object) -> None:
        self.terms.append(term)
        self.params.extend(params)

    def one_of(self, column: str, values: Collection[object]) -> None:
        self.add(_one_of(column, values), *values)

    def __str__(self) -> str:
        return " WHERE " + " AND ".join(self.terms) if self.terms else ""


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else to_datetime(value)


def _row_to_event(r: Row) -> AuditEvent:
    return AuditEvent(
        at=to_datetime(r["at"]),
        actor=r["actor"],
        action=r["action"],
        outcome=r["outcome"],
        client=r["client"],
        asset=r["asset"],
        detail=json.loads(r["detail"]),
        id=r["id"],
        prev_hash=r["prev_hash"],
        hash=r["hash"],
    )


def _row_to_ticket(row: Row) -> Ticket:
    return Ticket(
        number=row["number"],
        client=row["client"],
        asset=row["asset"],
        rule=row["rule"],
        fingerprint=row["fingerprint"],
        category=Category(row["category"]),
        status=TicketStatus(row["status"]),
        title=row["title"],
        description=row["description"],
        labels=json.loads(row["labels"]),
        fire_count=row["fire_count"],
        last_value=row["last_value"],
        opened_at=to_datetime(row["opened_at"]),
        updated_at=to_datetime(row["updated_at"]),
        resolved_at=_dt(row["resolved_at"]),
        responded_at=_dt(row["responded_at"]),
        responded_by=row["responded_by"],
        reaction_due=_dt(row["reaction_due"]),
        sla_at_risk_at=_dt(row["sla_at_risk_at"]),
        sla_state=SlaState(row["sla_state"]),
        incident=row["incident"],
    )


def _row_to_paging(r: Row) -> Paging:
    return Paging(
        ticket=r["ticket"],
        client=r["client"],
        asset=r["asset"],
        round=r["round"],
        step=r["step"],
        stepped_at=to_datetime(r["stepped_at"]),
        next_at=_dt(r["next_at"]),
        last_event=r["last_event"],
        stopped_at=_dt(r["stopped_at"]),
        stopped_by=r["stopped_by"],
    )


def _row_to_page(r: Row) -> Page:
    return Page(
        event_id=r["event_id"],
        ticket=r["ticket"],
        round=r["round"],
        step=r["step"],
        person=r["person"],
        channel=r["channel"],
        at=to_datetime(r["at"]),
        expires=to_datetime(r["expires"]),
        fallback_for=r["fallback_for"],
        outcome=r["outcome"],
        outcome_at=_dt(r["outcome_at"]),
        reason=r["reason"],
    )


def _ticket_params(t: Ticket) -> tuple[object, ...]:
    return (
        t.number,
        t.client,
        t.asset,
        t.rule,
        t.fingerprint,
        t.category.value,
        t.status.value,
        t.title,
        t.description,
        json.dumps(t.labels, sort_keys=True),
        t.fire_count,
        t.last_value,
        t.opened_at.timestamp(),
        t.updated_at.timestamp(),
        _epoch(t.resolved_at),
        _epoch(t.responded_at),
        t.responded_by,
        _epoch(t.reaction_due),
        _epoch(t.sla_at_risk_at),
        t.sla_state.value,
        t.incident,
    )


def _judge_batch(row: Row, batch: BatchRecord, max_gap: int) -> tuple[BatchClaim, int, int | None]:
    """The claim ``batch`` makes on its stream (``row``: last_seq, owner, jump_seq), the gap
    it leaves, and the stream's jump_seq after it (see ``AgentStreams.record_batch``)."""
    last_seq: int = row[0]
    owner: str = row[1]
    jump_seq: int | None = row[2]
    if owner and owner != batch.owner:
        return BatchClaim.FOREIGN, 0, jump_seq
    if batch.seq <= last_seq or batch.seq == jump_seq:
        return BatchClaim.DUPLICATE, 0, jump_seq
    gap = batch.seq - last_seq - 1
    if gap <= max_gap:
        return BatchClaim.TAKEN, gap, jump_seq
    if jump_seq is not None and jump_seq < batch.seq <= jump_seq + max_gap + 1:
        return BatchClaim.TAKEN, gap - 1, None  # the jump is confirmed: jump_seq was taken then
    return BatchClaim.ANOMALY, gap, batch.seq


class SQLRoles:
    """Every store role but coordination's transactions and locks, on a subclass's
    connections (see the module's docstring for the hooks)."""

    # The two-argument maximum: max(a, b) in SQLite, greatest(a, b) in PostgreSQL.
    GREATEST: ClassVar[str] = "max"
    # Locks the rows a fence check reads until the transaction ends (SQLite's write lock
    # already does).
    FOR_SHARE: ClassVar[str] = ""
    # What LIMIT takes for "no limit".
    NO_LIMIT: ClassVar[int | None] = -1
    # The driver's error of a violated unique constraint.
    INTEGRITY_ERROR: ClassVar[type[Exception]] = Exception
    _leases: Leases | None = None

    def _conn(self) -> Connection:
        """This thread's connection; statements outside a transaction commit on their own."""
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Connection]:
        """The transaction open on this thread (joined), or a write transaction of its own."""
        raise NotImplementedError

    def _next_audit_id(self, conn: Connection) -> int:
        """The id of the audit event appended now: one more than the highest ever given. It
        is taken so that appenders take turns until their transactions end: the chain is read
        (its last hash) and appended by one writer at a time, ids commit in their order (an
        outbox consumer reading past an id never misses a smaller one committed later) and a
        rolled back append uses up no id (the chain's check reads a gap as a deletion)."""
        raise NotImplementedError

    def _appended(self) -> None:
        """Note that this thread's transaction appended an audit event (watchers are told
        once it commits)."""
        raise NotImplementedError

    def audit_high_water(self) -> int:
        raise NotImplementedError

    # --- tickets ---------------------------------------------------------------------------

    def latest_ticket_for_alert(self, fingerprint: str) -> Ticket | None:
        row = (
            self._conn()
            .execute(
                f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE fingerprint = ? "
                "ORDER BY opened_at DESC, rowid DESC LIMIT 1",
                (fingerprint,),
            )
            .fetchone()
        )
        return None if row is None else _row_to_ticket(row)

    def _append(self, conn: Connection, number: str, entry: TimelineEntry) -> None:
        conn.execute(
            "INSERT INTO timeline(number, at, kind, message, actor) VALUES (?, ?, ?, ?, ?)",
            (number, entry.at.timestamp(), entry.kind, entry.message, entry.actor),
        )

    def insert_ticket(self, ticket: Ticket, entry: TimelineEntry) -> None:
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO tickets({_TICKET_COLUMNS}) VALUES ({', '.join('?' * 21)})",
                _ticket_params(ticket),
            )
            self._append(conn, ticket.number, entry)

    def update_ticket(self, ticket: Ticket, entry: TimelineEntry | None = None) -> None:
        params = _ticket_params(ticket)
        assignments = ", ".join(f"{c.strip()} = ?" for c in _TICKET_COLUMNS.split(",")[1:])
        with self._write() as conn:
            cur = conn.execute(
                f"UPDATE tickets SET {assignments} WHERE number = ?", (*params[1:], params[0])
            )
            if cur.rowcount != 1:
                raise StoreError(f"ticket {ticket.number} does not exist")
            if entry is not None:
                self._append(conn, ticket.number, entry)

    def get_ticket(self, number: str) -> Ticket | None:
        row = (
            self._conn()
            .execute(f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE number = ?", (number,))
            .fetchone()
        )
        return None if row is None else _row_to_ticket(row)

    def list_tickets(self, query: TicketFilter) -> list[Ticket]:
        where = _Where()
        where.equal(
            ("client", query.client),
            ("status", query.status),
            ("category", query.category),
            ("asset", query.asset),
        )
        if query.before is not None and not query.by_deadline:
            # Keyset paging: the rows after the cursor ticket in list order. The cursor is
            # looked up within the same client scope, so another client's ticket matches nothing.
            cursor = "SELECT opened_at, rowid FROM tickets WHERE number = ?"
            if query.client is None:
                where.add(f"(opened_at, rowid) < ({cursor})", query.before)
            else:
                cursor += " AND client = ?"
                where.add(f"(opened_at, rowid) < ({cursor})", query.before, query.client)
        sql = f"SELECT {_TICKET_COLUMNS} FROM tickets{where}"
        if query.by_deadline:  # the queue: waiting by deadline, then answered, then no clock
            sql += (
                " ORDER BY responded_at IS NOT NULL, reaction_due IS NULL, reaction_due,"
                " opened_at, rowid LIMIT ? OFFSET ?"
            )
        else:
            sql += " ORDER BY opened_at DESC, rowid DESC LIMIT ? OFFSET ?"
        rows = self._conn().execute(sql, (*where.params, query.limit, query.offset)).fetchall()
        return [_row_to_ticket(r) for r in rows]

    def timeline(self, number: str) -> list[TimelineEntry]:
        rows = (
            self._conn()
            .execute(
                "SELECT at, kind, message, actor FROM timeline WHERE number = ? ORDER BY id",
                (number,),
            )
            .fetchall()
        )
        return [TimelineEntry(to_datetime(r[0]), r[1], r[2], r[3]) for r in rows]

    def open_tickets(self) -> Iterator[Ticket]:
        rows = (
            self._conn()
            .execute(f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE status = 'open'")
            .fetchall()
        )
        return iter([_row_to_ticket(r) for r in rows])

    # --- agent streams -----------------------------------------------------------------------

    def peek_batch(self, batch: BatchRecord, max_gap: int) -> BatchClaim:
        row = (
            self._conn()
            .execute(
                "SELECT last_seq, owner, jump_seq FROM agent_streams WHERE agent_id = ?",
                (batch.agent_id,),
            )
            .fetchone()
        )
        return BatchClaim.TAKEN if row is None else _judge_batch(row, batch, max_gap)[0]

    def record_batch(self, batch: BatchRecord, max_gap: int) -> BatchClaim:
        t = batch.at.timestamp()
        with self._write() as conn:
            row = conn.execute(
                "SELECT last_seq, owner, jump_seq FROM agent_streams WHERE agent_id = ?",
                (batch.agent_id,),
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO agent_streams(agent_id, asset, last_seq, batches, samples, "
                    "duplicates, gaps, dropped_reported, first_seen, last_seen, owner) "
                    "VALUES (?, ?, ?, 1, ?, 0, 0, ?, ?, ?, ?)",
                    (
                        batch.agent_id,
                        batch.asset,
                        batch.seq,
                        batch.samples,
                        batch.dropped,
                        t,
                        t,
                        batch.owner,
                    ),
                )
                return BatchClaim.TAKEN
            claim, gap, jump_seq = _judge_batch(row, batch, max_gap)
            if claim is BatchClaim.FOREIGN:
                return claim
            if claim is BatchClaim.DUPLICATE:
                conn.execute(
                    "UPDATE agent_streams SET duplicates = duplicates + 1, last_seen = ?, "
                    "owner = ? WHERE agent_id = ?",
                    (t, batch.owner, batch.agent_id),
                )
                return claim
            last_seq: int = row[0]
            new_seq = last_seq if claim is BatchClaim.ANOMALY else batch.seq
            conn.execute(
                "UPDATE agent_streams SET asset = ?, gaps = gaps + ?, last_seq = ?, "
                "batches = batches + 1, samples = samples + ?, "
                f"dropped_reported = {self.GREATEST}(dropped_reported, ?), last_seen = ?, "
                "owner = ?, anomalies = anomalies + ?, jump_seq = ? WHERE agent_id = ?",
                (
                    batch.asset,
                    0 if claim is BatchClaim.ANOMALY else gap,
                    new_seq,
                    batch.samples,
                    batch.dropped,
                    t,
                    batch.owner,
                    1 if claim is BatchClaim.ANOMALY else 0,
                    jump_seq,
                    batch.agent_id,
                ),
            )
            return claim

    def agent_streams(self) -> list[AgentStream]:
        rows = self._conn().execute("SELECT * FROM agent_streams ORDER BY agent_id").fetchall()
        return [
            AgentStream(
                **{
                    **dict(r),
                    "first_seen": to_datetime(r["first_seen"]),
                    "last_seen": to_datetime(r["last_seen"]),
                }
            )
            for r in rows
        ]

    # --- audit -------------------------------------------------------------------------------

    def append_audit(self, event: AuditEvent) -> AuditEvent:
        with self._write() as conn:
            event.id = self._next_audit_id(conn)
            row = conn.execute("SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1").fetchone()
            event.prev_hash = row[0] if row is not None else GENESIS_HASH
            event.hash = event_hash(event)
            conn.execute(
                "INSERT INTO audit_events(id, at, actor, client, asset, action, outcome, detail, "
                "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event.id,
                    event.at.timestamp(),
                    event.actor,
                    event.client,
                    event.asset,
                    event.action,
                    event.outcome,
                    json.dumps(event.detail, sort_keys=True, ensure_ascii=False),
                    event.prev_hash,
                    event.hash,
                ),
            )
            self._appended()
        return event

    def audit_events(
        self, after_id: int = 0, limit: int = 1000, clients: frozenset[str] | None = None
    ) -> list[AuditEvent]:
        sql = (
            "SELECT id, at, actor, client, asset, action, outcome, detail, prev_hash, hash "
            "FROM audit_events WHERE id > ?"
        )
        scope, params = _scope(clients)
        rows = (
            self._conn()
            .execute(f"{sql}{scope} ORDER BY id LIMIT ?", (after_id, *params, limit))
            .fetchall()
        )
        return [_row_to_event(r) for r in rows]

    def list_audit(self, query: AuditFilter) -> list[AuditEvent]:
        where = _Where()
        where.equal(("client", query.client), ("actor", query.actor), ("asset", query.asset))
        if query.action is not None and query.action.endswith("*"):
            prefix = query.action.removesuffix("*")
            where.add("substr(action, 1, CAST(? AS INTEGER)) = ?", len(prefix), prefix)
        elif query.action is not None:
            where.add("action = ?", query.action)
        if query.since is not None:
            where.add("at >= ?", query.since.timestamp())
        if query.after is not None:
            where.add("id < ?" if query.newest_first else "id > ?", query.after)
        sql = (
            "SELECT id, at, actor, client, asset, action, outcome, detail, prev_hash, hash "
            f"FROM audit_events{where} ORDER BY id {'DESC' if query.newest_first else 'ASC'} "
            "LIMIT ?"
        )
        rows = self._conn().execute(sql, (*where.params, query.limit)).fetchall()
        return [_row_to_event(r) for r in rows]

    def audit_events_by_id(self, ids: Collection[int]) -> list[AuditEvent]:
        wanted = sorted(set(ids))
        events: list[AuditEvent] = []
        conn = self._conn()
        for start in range(0, len(wanted), _IDS_PER_QUERY):
            chunk = wanted[start : start + _IDS_PER_QUERY]
            rows = conn.execute(
                "SELECT id, at, actor, client, asset, action, outcome, detail, prev_hash, hash "
                f"FROM audit_events WHERE id IN ({', '.join('?' * len(chunk))}) ORDER BY id",
                chunk,
            ).fetchall()
            events += [_row_to_event(r) for r in rows]
        return events

    def audit_backlog(self, after_id: int, clients: frozenset[str] | None) -> int:
        scope, params = _scope(clients)
        return int(
            self._conn()
            .execute(f"SELECT COUNT(*) FROM audit_events WHERE id > ?{scope}", (after_id, *params))
            .fetchone()[0]
        )

    def audit_skip(self, after_id: int, count: int, clients: frozenset[str] | None) -> int:
        scope, params = _scope(clients)
        row = (
            self._conn()
            .execute(
                f"SELECT id FROM audit_events WHERE id > ?{scope} ORDER BY id LIMIT 1 OFFSET ?",
                (after_id, *params, count - 1),
            )
            .fetchone()
        )
        return after_id if row is None else int(row[0])

    # --- outbox cursors ------------------------------------------------------------------------

    def cursor(self, consumer: str) -> Cursor:
        row = (
            self._conn()
            .execute("SELECT last_id, dropped FROM outbox_cursors WHERE consumer = ?", (consumer,))
            .fetchone()
        )
        return Cursor() if row is None else Cursor(row[0], row[1])

    def set_cursor(self, consumer: str, cursor: Cursor, fencing_token: int) -> bool:
        with self._write() as conn:
            return (
                conn.execute(
                    "INSERT INTO outbox_cursors(consumer, last_id, dropped, fencing_token) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT(consumer) DO UPDATE SET "
                    "last_id = excluded.last_id, dropped = excluded.dropped, "
                    "fencing_token = excluded.fencing_token "
                    "WHERE outbox_cursors.fencing_token <= excluded.fencing_token",
                    (consumer, cursor.last_id, cursor.dropped, fencing_token),
                ).rowcount
                == 1
            )

    def sla_counts(self) -> dict[tuple[str, str, str], int]:
        rows = (
            self._conn()
            .execute(
                "SELECT client, category, sla_state, COUNT(*) FROM tickets "
                "WHERE status = 'open' AND sla_state IN ('at_risk', 'breached') "
                "GROUP BY client, category, sla_state"
            )
            .fetchall()
        )
        return {(r[0], r[1], r[2]): r[3] for r in rows}

    def ticket_counts(self) -> dict[tuple[str, str, str], int]:
        rows = (
            self._conn()
            .execute(
                "SELECT client, category, status, COUNT(*) FROM tickets "
                "GROUP BY client, category, status"
            )
            .fetchall()
        )
        return {(r[0], r[1], r[2]): r[3] for r in rows}

    def tickets_opened_between(self, client: str, start: datetime, end: datetime) -> list[Ticket]:
        rows = (
            self._conn()
            .execute(
                f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE client = ? AND opened_at >= ? "
                "AND opened_at < ? ORDER BY opened_at",
                (client, start.timestamp(), end.timestamp()),
            )
            .fetchall()
        )
        return [_row_to_ticket(r) for r in rows]

    # --- asset facts -------------------------------------------------------------------------

    def set_asset_fact(self, asset: str, key: str, value: str, at: datetime) -> bool:
        with self._write() as conn:
            row = conn.execute(
                "SELECT value FROM asset_facts WHERE asset = ? AND key = ?", (asset, key)
            ).fetchone()
            conn.execute(
                "INSERT INTO asset_facts VALUES (?, ?, ?, ?) ON CONFLICT(asset, key) "
                "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (asset, key, value, at.timestamp()),
            )
            return row is None or row[0] != value

    def asset_facts(self) -> dict[str, dict[str, str]]:
        facts: dict[str, dict[str, str]] = {}
        for asset, key, value in self._conn().execute(
            "SELECT asset, key, value FROM asset_facts ORDER BY asset, key"
        ):
            facts.setdefault(asset, {})[key] = value
        return facts

    # --- helpdesk sink deliveries --------------------------------------------------------------

    def record_delivery(self, delivery: SinkDelivery) -> None:
        d = delivery
        with self._write() as conn:
            conn.execute(
                "INSERT INTO sink_deliveries VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(sink, ticket) DO UPDATE SET "
                "remote_id = coalesce(excluded.remote_id, sink_deliveries.remote_id), "
                "state = excluded.state, reason = excluded.reason, "
                "event_id = excluded.event_id, at = excluded.at",
                (d.sink, d.ticket, d.remote_id, d.state, d.reason, d.event_id, d.at.timestamp()),
            )
            if d.state == "delivered":
                conn.execute(
                    "DELETE FROM sink_parked WHERE sink = ? AND event_id = ?", (d.sink, d.event_id)
                )

    def _sink_rows(self, where: str, params: tuple[str, ...]) -> list[SinkDelivery]:
        rows = (
            self._conn()
            .execute(
                "SELECT sink, ticket, remote_id, state, reason, event_id, at "
                f"FROM sink_deliveries WHERE {where} ORDER BY sink",
                params,
            )
            .fetchall()
        )
        return [
            SinkDelivery(
                r["sink"],
                r["ticket"],
                r["remote_id"],
                r["state"],
                r["reason"],
                r["event_id"],
                to_datetime(r["at"]),
            )
            for r in rows
        ]

    def sink_deliveries(self, ticket: str) -> list[SinkDelivery]:
        return self._sink_rows("ticket = ?", (ticket,))

    def sink_delivery(self, sink: str, ticket: str) -> SinkDelivery | None:
        found = self._sink_rows("sink = ? AND ticket = ?", (sink, ticket))
        return found[0] if found else None

    def park_changes(self, changes: Sequence[ParkedChange]) -> None:
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO sink_parked VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(sink, event_id) DO UPDATE SET state = excluded.state, "
                "reason = excluded.reason, at = excluded.at",
                [
                    (c.sink, c.event_id, c.ticket, c.client, c.action, c.state, c.reason, at)
                    for c in changes
                    for at in (c.at.timestamp(),)
                ],
            )

    def parked_changes(
        self,
        sink: str | None = None,
        *,
        ticket: str | None = None,
        clients: frozenset[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ParkedChange]:
        where = _Where()
        where.equal(("sink", sink), ("ticket", ticket))
        if clients is not None:
            where.one_of("client", sorted(clients))
        rows = (
            self._conn()
            .execute(
                "SELECT sink, ticket, event_id, client, action, state, reason, at "
                f"FROM sink_parked{where} ORDER BY event_id, sink LIMIT ? OFFSET ?",
                (*where.params, self.NO_LIMIT if limit is None else limit, offset),
            )
            .fetchall()
        )
        return [
            ParkedChange(
                r["sink"],
                r["ticket"],
                r["event_id"],
                r["client"],
                r["action"],
                r["state"],
                r["reason"],
                to_datetime(r["at"]),
            )
            for r in rows
        ]

    def unpark_changes(self, sink: str, event_ids: Collection[int]) -> None:
        with self._write() as conn:
            conn.executemany(
                "DELETE FROM sink_parked WHERE sink = ? AND event_id = ?",
                [(sink, i) for i in event_ids],
            )

    def parked_counts(self) -> dict[str, int]:
        rows = self._conn().execute("SELECT sink, COUNT(*) FROM sink_parked GROUP BY sink")
        return {r[0]: r[1] for r in rows}

    # --- on-call overrides ---------------------------------------------------------------------

    def add_oncall_override(self, override: OncallOverride) -> OncallOverride:
        o = override
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO oncall_overrides(rota, shift_person, person, starts_at, ends_at, "
                "client, reason, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "RETURNING id",
                (
                    o.rota,
                    o.shift_person,
                    o.person,
                    o.start.timestamp(),
                    o.end.timestamp(),
                    o.client,
                    o.reason,
                    o.created_by,
                    o.created_at.timestamp(),
                ),
            ).fetchone()
        return replace(o, id=int(row[0]))

    def oncall_overrides(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[OncallOverride]:
        rows = (
            self._conn()
            .execute(
                "SELECT * FROM oncall_overrides WHERE ends_at > ? AND starts_at < ? ORDER BY id",
                (
                    float("-inf") if start is None else start.timestamp(),
                    float("inf") if end is None else end.timestamp(),
                ),
            )
            .fetchall()
        )
        return [
            OncallOverride(
                rota=r["rota"],
                shift_person=r["shift_person"],
                person=r["person"],
                start=to_datetime(r["starts_at"]),
                end=to_datetime(r["ends_at"]),
                client=r["client"],
                reason=r["reason"],
                created_by=r["created_by"],
                created_at=to_datetime(r["created_at"]),
                id=r["id"],
            )
            for r in rows
        ]

    # --- counters and leases ------------------------------------------------------------------

    def next_sequence(self, name: str) -> int:
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO counters(name, last) VALUES (?, 1) "
                "ON CONFLICT(name) DO UPDATE SET last = counters.last + 1 RETURNING last",
                (name,),
            ).fetchone()
            return int(row[0])

    def use_leases(self, leases: Leases) -> None:
        """Take leases from ``leases`` (Redis, between bridges) instead of this store; their
        fencing tokens still come from this store's sequences (``check_fence``)."""
        self._leases = leases

    def lease(self, name: str, owner: str, ttl: float, now: float) -> int | None:
        if self._leases is not None:
            return self._leases.lease(name, owner, ttl, now)
        return self._own_lease(name, owner, ttl, now)

    def _own_lease(self, name: str, owner: str, ttl: float, now: float) -> int | None:
        with self._write() as conn:
            row = conn.execute(
                "SELECT owner, until, token FROM leases WHERE name = ?", (name,)
            ).fetchone()
            if row is not None and row[0] == owner:
                token = int(row[2])
            elif row is not None and row[0] and row[1] >= now:
                return None  # another owner's lease runs on
            else:  # free, run out or released: changes hands with a new token
                token = self.next_sequence(lease_sequence(name))
            conn.execute(
                "INSERT INTO leases(name, owner, until, token) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, "
                "until = excluded.until, token = excluded.token",
                (name, owner, now + ttl, token),
            )
            return token

    def release_lease(self, name: str, owner: str) -> None:
        if self._leases is not None:
            self._leases.release_lease(name, owner)
            return
        # The row stays (without an owner); its token's sequence keeps growing anyway.
        with self._write() as conn:
            conn.execute(
                "UPDATE leases SET owner = '', until = 0 WHERE name = ? AND owner = ?",
                (name, owner),
            )

    def check_fence(self, name: str, token: int) -> None:
        with self._write() as conn:
            row = conn.execute(
                f"SELECT last FROM counters WHERE name = ?{self.FOR_SHARE}",
                (lease_sequence(name),),
            ).fetchone()
        newest = 0 if row is None else int(row[0])
        if newest > token:
            raise StaleLease(
                f"lease {name!r} was taken by another bridge (token {newest}, this one "
                f"holds {token}): its write is refused"
            )

    # --- pending alerts ------------------------------------------------------------------------

    def save_pending(self, changes: Mapping[str, tuple[str, Alert] | None]) -> None:
        with self._write() as conn:
            gone = [(fp,) for fp, kept in changes.items() if kept is None]
            if gone:
                conn.executemany("DELETE FROM pending_alerts WHERE fingerprint = ?", gone)
            kept = [
                (
                    fp,
                    client,
                    a.rule,
                    json.dumps(a.labels, sort_keys=True),
                    a.category,
                    a.value if a.value == a.value else None,
                    a.active_since,
                )
                for fp, found in changes.items()
                if found is not None
                for client, a in (found,)
            ]
            if kept:
                conn.executemany(
                    "INSERT INTO pending_alerts VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(fingerprint) DO UPDATE SET client = excluded.client, "
                    "rule = excluded.rule, labels = excluded.labels, "
                    "category = excluded.category, value = excluded.value, "
                    "active_since = excluded.active_since",
                    kept,
                )

    def pending_alerts(self, client: str | None = None) -> list[Alert]:
        sql = "SELECT * FROM pending_alerts"
        params: tuple[str, ...] = ()
        if client is not None:
            sql += " WHERE client = ?"
            params = (client,)
        rows = self._conn().execute(sql + " ORDER BY fingerprint", params).fetchall()
        return [
            Alert(
                rule=r["rule"],
                fingerprint=r["fingerprint"],
                labels=json.loads(r["labels"]),
                state=AlertState.PENDING,
                category=r["category"],
                value=math.nan if r["value"] is None else r["value"],
                active_since=r["active_since"],
            )
            for r in rows
        ]

    # --- on-call paging ---------------------------------------------------------------------

    def paging(self, ticket: str) -> Paging | None:
        row = (
            self._conn()
            .execute("SELECT * FROM oncall_pagings WHERE ticket = ?", (ticket,))
            .fetchone()
        )
        return None if row is None else _row_to_paging(row)

    def save_paging(self, paging: Paging) -> None:
        p = paging
        with self._write() as conn:
            conn.execute(
                "INSERT INTO oncall_pagings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(ticket) DO UPDATE SET client = excluded.client, "
                "asset = excluded.asset, round = excluded.round, step = excluded.step, "
                "stepped_at = excluded.stepped_at, next_at = excluded.next_at, "
                "last_event = excluded.last_event, stopped_at = excluded.stopped_at, "
                "stopped_by = excluded.stopped_by",
                (
                    p.ticket,
                    p.client,
                    p.asset,
                    p.round,
                    p.step,
                    p.stepped_at.timestamp(),
                    _epoch(p.next_at),
                    p.last_event,
                    _epoch(p.stopped_at),
                    p.stopped_by,
                ),
            )

    def pagings_due(self, now: datetime) -> list[Paging]:
        rows = self._conn().execute(
            "SELECT * FROM oncall_pagings WHERE stopped_at IS NULL AND next_at <= ? "
            "ORDER BY next_at, ticket",
            (now.timestamp(),),
        )
        return [_row_to_paging(r) for r in rows]

    def add_page(self, page: Page) -> None:
        p = page
        with self._write() as conn:
            conn.execute(
                "INSERT INTO oncall_pages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    p.event_id,
                    p.ticket,
                    p.round,
                    p.step,
                    p.person,
                    p.channel,
                    p.at.timestamp(),
                    p.expires.timestamp(),
                    p.fallback_for,
                    p.outcome,
                    _epoch(p.outcome_at),
                    p.reason,
                ),
            )

    def page(self, event_id: int) -> Page | None:
        row = (
            self._conn()
            .execute("SELECT * FROM oncall_pages WHERE event_id = ?", (event_id,))
            .fetchone()
        )
        return None if row is None else _row_to_page(row)

    def pages(self, ticket: str) -> list[Page]:
        rows = self._conn().execute(
            "SELECT * FROM oncall_pages WHERE ticket = ? ORDER BY event_id", (ticket,)
        )
        return [_row_to_page(r) for r in rows]

    def set_page_outcome(
        self, event_id: int, outcome: str, at: datetime, reason: str | None = None
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE oncall_pages SET outcome = ?, outcome_at = ?, reason = ? "
                "WHERE event_id = ?",
                (outcome, at.timestamp(), reason, event_id),
            )

    def pages_waiting(self, decided_before: datetime) -> list[Page]:
        rows = self._conn().execute(
            "SELECT * FROM oncall_pages AS p "
            "WHERE (outcome = 'failed' OR (outcome IS NULL AND at <= ?)) AND NOT EXISTS "
            "(SELECT 1 FROM oncall_pages AS f WHERE f.fallback_for = p.event_id) "
            "ORDER BY event_id",
            (decided_before.timestamp(),),
        )
        return [_row_to_page(r) for r in rows]

    def use_page_link(self, token_id: str, at: datetime) -> bool:
        with self._write() as conn:
            used = conn.execute(
                "INSERT INTO oncall_link_uses VALUES (?, ?) ON CONFLICT(token_id) DO NOTHING",
                (token_id, at.timestamp()),
            )
            return used.rowcount == 1

    # --- maintenance windows -----------------------------------------------------------------

    _WINDOW_COLUMNS = (
        "id, client, start_at, end_at, reason, assets, selector, rrule, ticket, plan, created_by, "
        "created_at, cancelled_at, cancelled_by"
    )
    _WINDOW_UPDATES = ", ".join(
        f"{c} = excluded.{c}" for c in (c.strip() for c in _WINDOW_COLUMNS.split(",")[1:])
    )

    def save_window(self, window: MaintenanceWindow) -> None:
        w = window
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO windows({self._WINDOW_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                f"ON CONFLICT(id) DO UPDATE SET {self._WINDOW_UPDATES}",
                (
                    w.id,
                    w.client,
                    w.start.timestamp(),
                    w.end.timestamp(),
                    w.reason,
                    json.dumps(w.assets),
                    json.dumps(w.selector, sort_keys=True),
                    w.rrule,
                    w.ticket,
                    w.plan,
                    w.created_by,
                    _epoch(w.created_at),
                    _epoch(w.cancelled_at),
                    w.cancelled_by,
                ),
            )

    def windows(self, client: str | None = None) -> list[MaintenanceWindow]:
        sql = f"SELECT {self._WINDOW_COLUMNS} FROM windows"
        params: tuple[str, ...] = ()
        if client is not None:
            sql, params = sql + " WHERE client = ?", (client,)
        rows = self._conn().execute(sql + " ORDER BY start_at, id", params).fetchall()
        return [
            MaintenanceWindow(
                id=r["id"],
                client=r["client"],
                start=to_datetime(r["start_at"]),
                end=to_datetime(r["end_at"]),
                reason=r["reason"],
                assets=json.loads(r["assets"]),
                selector=json.loads(r["selector"]),
                rrule=r["rrule"],
                ticket=r["ticket"],
                plan=r["plan"],
                created_by=r["created_by"],
                created_at=_dt(r["created_at"]),
                cancelled_at=_dt(r["cancelled_at"]),
                cancelled_by=r["cancelled_by"],
            )
            for r in rows
        ]

    def save_suppressed(self, alert: SuppressedAlert) -> SuppressedAlert:
        a = alert
        values = (
            a.fingerprint,
            a.window,
            a.client,
            a.asset,
            a.rule,
            a.category.value,
            json.dumps(a.labels, sort_keys=True),
            a.value if a.value is None or a.value == a.value else None,
            a.fired_at.timestamp(),
            a.until.timestamp(),
            a.state.value,
            _epoch(a.recovered_at),
            a.ticket,
        )
        columns = (
            "fingerprint, window_id, client, asset, rule, category, labels, value, fired_at, "
            "until, state, recovered_at, ticket"
        )
        with self._write() as conn:
            if a.id is None:
                a.id = conn.execute(
                    f"INSERT INTO suppressed_alerts({columns}) VALUES ({', '.join('?' * 13)}) "
                    "RETURNING id",
                    values,
                ).fetchone()[0]
            else:
                assignments = ", ".join(f"{c.strip()} = ?" for c in columns.split(","))
                conn.execute(
                    f"UPDATE suppressed_alerts SET {assignments} WHERE id = ?", (*values, a.id)
                )
        return a

    def suppressed_alerts(
        self,
        *,
        fingerprint: str | None = None,
        window: str | None = None,
        state: SuppressedState | None = None,
        until_before: datetime | None = None,
    ) -> list[SuppressedAlert]:
        where = _Where()
        where.equal(("fingerprint", fingerprint), ("window_id", window), ("state", state))
        if until_before is not None:
            where.add("until <= ?", until_before.timestamp())
        sql = f"SELECT * FROM suppressed_alerts{where} ORDER BY id"
        rows = self._conn().execute(sql, where.params).fetchall()
        return [
            SuppressedAlert(
                fingerprint=r["fingerprint"],
                window=r["window_id"],
                client=r["client"],
                asset=r["asset"],
                rule=r["rule"],
                category=Category(r["category"]),
                labels=json.loads(r["labels"]),
                value=r["value"],
                fired_at=to_datetime(r["fired_at"]),
                until=to_datetime(r["until"]),
                state=SuppressedState(r["state"]),
                recovered_at=_dt(r["recovered_at"]),
                ticket=r["ticket"],
                id=r["id"],
            )
            for r in rows
        ]

    # --- incidents ---------------------------------------------------------------------------

    def save_incident_alert(self, alert: IncidentAlert) -> IncidentAlert:
        a = alert
        values = (
            a.fingerprint,
            a.client,
            a.asset,
            a.rule,
            a.category.value,
            json.dumps(a.labels, sort_keys=True),
            a.value if a.value is None or a.value == a.value else None,
            a.fired_at.timestamp(),
            a.reason.value,
            a.state.value,
            a.title,
            a.ticket,
            _epoch(a.until),
            _epoch(a.recovered_at),
            a.own_ticket,
            _epoch(a.updated_at),
        )
        columns = _INCIDENT_ALERT_COLUMNS
        try:
            with self._write() as conn:
                if a.id is None:
                    a.id = conn.execute(
                        f"INSERT INTO incident_alerts({columns}) "
                        f"VALUES ({', '.join('?' * len(values))}) RETURNING id",
                        values,
                    ).fetchone()[0]
                else:
                    assignments = ", ".join(f"{c.strip()} = ?" for c in columns.split(","))
                    conn.execute(
                        f"UPDATE incident_alerts SET {assignments} WHERE id = ?", (*values, a.id)
                    )
        except self.INTEGRITY_ERROR as exc:
            raise StoreError(f"alert {a.fingerprint} is already held or attached: {exc}") from exc
        return a

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
        where = _Where()
        where.equal(
            ("fingerprint", fingerprint), ("ticket", ticket), ("client", client), ("reason", reason)
        )
        if states:
            where.one_of("state", [str(s) for s in states])
        if due_before is not None:
            where.add("until <= ?", due_before.timestamp())
        if assets:
            where.one_of("asset", list(assets))
        sql = f"SELECT id, {_INCIDENT_ALERT_COLUMNS} FROM incident_alerts{where} ORDER BY id"
        params = list(where.params)
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self._conn().execute(sql, params).fetchall()
        return [
            IncidentAlert(
                fingerprint=r["fingerprint"],
                client=r["client"],
                asset=r["asset"],
                rule=r["rule"],
                category=Category(r["category"]),
                labels=json.loads(r["labels"]),
                value=r["value"],
                fired_at=to_datetime(r["fired_at"]),
                reason=MemberReason(r["reason"]),
                state=MemberState(r["state"]),
                title=r["title"],
                ticket=r["ticket"],
                until=_dt(r["until"]),
                recovered_at=_dt(r["recovered_at"]),
                own_ticket=r["own_ticket"],
                updated_at=_dt(r["updated_at"]),
                id=r["id"],
            )
            for r in rows
        ]

    def count_incident_alerts(self, *, ticket: str, states: Collection[MemberState] = ()) -> int:
        sql = "SELECT count(*) FROM incident_alerts WHERE ticket = ?"
        params = [ticket, *(str(s) for s in states)]
        if states:
            sql += f" AND state IN ({', '.join('?' * len(states))})"
        return int(self._conn().execute(sql, params).fetchone()[0])

    def open_tickets_of_assets(self, assets: Collection[str]) -> list[Ticket]:
        if not assets:
            return []
        marks = ", ".join("?" * len(assets))
        rows = (
            self._conn()
            .execute(
                f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE status = 'open' "
                f"AND asset IN ({marks}) ORDER BY opened_at, rowid",
                tuple(assets),
            )
            .fetchall()
        )
        return [_row_to_ticket(r) for r in rows]

    def count_tickets_opened(
        self,
        client: str,
        since: datetime,
        *,
        excluding_rule: str | None = None,
        up_to: int | None = None,
    ) -> int:
        sql = "SELECT 1 FROM tickets WHERE client = ? AND opened_at >= ?"
        params: list[object] = [client, since.timestamp()]
        if excluding_rule is not None:
            sql += " AND rule != ?"
            params.append(excluding_rule)
        if up_to is not None:  # a budget's check reads no further than the budget
            sql += " LIMIT ?"
            params.append(up_to)
        return int(
            self._conn().execute(f"SELECT count(*) FROM ({sql}) AS opened", params).fetchone()[0]
        )

    # --- update plans ------------------------------------------------------------------------

    def save_plan(self, plan: UpdatePlan) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO update_plans(id, client, status, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET status = excluded.status, data = excluded.data",
                (plan.id, plan.client, plan.status.value, plan_to_json(plan)),
            )

    def get_plan(self, plan_id: str) -> UpdatePlan | None:
        row = (
            self._conn()
            .execute("SELECT data FROM update_plans WHERE id = ?", (plan_id,))
            .fetchone()
        )
        return None if row is None else plan_from_json(row[0])

    def plans(
        self, client: str | None = None, status: PlanStatus | None = None
    ) -> list[UpdatePlan]:
        where = _Where()
        where.equal(("client", client), ("status", status))
        sql = f"SELECT data FROM update_plans{where} ORDER BY id"
        rows = self._conn().execute(sql, where.params).fetchall()
        return [plan_from_json(r[0]) for r in rows]

    def append_step(self, step: StepRecord) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO update_steps(plan, environment, asset, phase, command, exit_code, "
                "output, digest, started_at, duration, error) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    step.plan,
                    step.environment,
                    step.asset,
                    step.phase,
                    step.command,
                    step.exit_code,
                    step.output,
                    step.digest,
                    step.started_at.timestamp(),
                    step.duration,
                    step.error,
                ),
            )

    def steps(self, plan: str) -> list[StepRecord]:
        rows = (
            self._conn()
            .execute(
                "SELECT plan, environment, asset, phase, command, exit_code, output, digest, "
                "started_at, duration, error FROM update_steps WHERE plan = ? ORDER BY id",
                (plan,),
            )
            .fetchall()
        )
        return [StepRecord(**{**dict(r), "started_at": to_datetime(r["started_at"])}) for r in rows]

    # --- the pages' sessions and failed logins ------------------------------------------------

    def add_session(self, session: WebSession) -> None:
        s = session
        with self._write() as conn:
            conn.execute(
                "INSERT INTO web_sessions(id_hash, user_name, credential, source, created_at, "
                "seen_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    s.id_hash,
                    s.user,
                    s.credential,
                    s.source,
                    s.created_at.timestamp(),
                    s.seen_at.timestamp(),
                ),
            )

    def web_session(self, id_hash: str) -> WebSession | None:
        row = (
            self._conn()
            .execute("SELECT * FROM web_sessions WHERE id_hash = ?", (id_hash,))
            .fetchone()
        )
        if row is None:
            return None
        return WebSession(
            id_hash=row["id_hash"],
            user=row["user_name"],
            credential=row["credential"],
            source=row["source"],
            created_at=to_datetime(row["created_at"]),
            seen_at=to_datetime(row["seen_at"]),
        )

    def touch_session(self, id_hash: str, at: datetime) -> None:
        with self._write() as conn:
            conn.execute(
                f"UPDATE web_sessions SET seen_at = {self.GREATEST}(seen_at, ?) WHERE id_hash = ?",
                (at.timestamp(), id_hash),
            )

    def end_session(self, id_hash: str) -> bool:
        with self._write() as conn:
            ended = conn.execute("DELETE FROM web_sessions WHERE id_hash = ?", (id_hash,))
            return ended.rowcount == 1

    def end_sessions(self, *, seen_before: datetime, created_before: datetime) -> int:
        with self._write() as conn:
            ended = conn.execute(
                "DELETE FROM web_sessions WHERE seen_at < ? OR created_at < ?",
                (seen_before.timestamp(), created_before.timestamp()),
            )
            return ended.rowcount

    def add_login_failure(self, key: str, at: datetime) -> int:
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO login_failures(key, at) VALUES (?, ?) RETURNING id",
                (key, at.timestamp()),
            ).fetchone()
            return int(row[0])

    def remove_login_failure(self, failure_id: int) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM login_failures WHERE id = ?", (failure_id,))

    def login_failures(self, key: str, since: datetime) -> list[datetime]:
        rows = self._conn().execute(
            "SELECT at FROM login_failures WHERE key = ? AND at > ? ORDER BY at, id",
            (key, since.timestamp()),
        )
        return [to_datetime(r[0]) for r in rows]

    def clear_login_failures(self, key: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM login_failures WHERE key = ?", (key,))

    def lock_login(self, key: str, until: datetime) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO login_locks(key, until) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET until = excluded.until",
                (key, until.timestamp()),
            )

    def login_locked_until(self, key: str) -> datetime | None:
        row = self._conn().execute("SELECT until FROM login_locks WHERE key = ?", (key,)).fetchone()
        return None if row is None else to_datetime(row[0])

    def forget_logins(self, before: datetime) -> int:
        with self._write() as conn:
            at = before.timestamp()
            failures = conn.execute("DELETE FROM login_failures WHERE at <= ?", (at,)).rowcount
            locks = conn.execute("DELETE FROM login_locks WHERE until <= ?", (at,)).rowcount
            return failures + locks
