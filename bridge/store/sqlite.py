"""The embedded store: one SQLite file in WAL mode, safe for threads and for several processes."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from datetime import datetime
from pathlib import Path

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
    StoreError,
    TicketFilter,
)
from bridge.store.codec import plan_from_json, plan_to_json
from bridge.store.roles import (
    Cursor,
    OncallOverride,
    Page,
    Paging,
    ParkedChange,
    SinkDelivery,
    WebSession,
)

# Each entry upgrades the schema by one version; PRAGMA user_version records where a file is.
# Statements are split on ";", so none may appear inside a statement or a comment.
log = logging.getLogger(__name__)

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE tickets (
        number       TEXT PRIMARY KEY,
        client       TEXT NOT NULL,
        asset        TEXT NOT NULL,
        rule         TEXT NOT NULL,
        fingerprint  TEXT NOT NULL,
        category     TEXT NOT NULL,
        status       TEXT NOT NULL,
        title        TEXT NOT NULL,
        description  TEXT NOT NULL,
        labels       TEXT NOT NULL,
        fire_count   INTEGER NOT NULL,
        last_value   REAL,
        opened_at    REAL NOT NULL,
        updated_at   REAL NOT NULL,
        resolved_at  REAL,
        responded_at REAL,
        responded_by TEXT,
        reaction_due REAL
    );
    -- The last line of defence against duplicates: one open ticket per alert, ever.
    CREATE UNIQUE INDEX tickets_one_open_per_alert ON tickets(fingerprint) WHERE status = 'open';
    CREATE INDEX tickets_by_alert ON tickets(fingerprint, opened_at);
    CREATE INDEX tickets_by_client ON tickets(client, status, opened_at);
    CREATE TABLE timeline (
        id      INTEGER PRIMARY KEY,
        number  TEXT NOT NULL REFERENCES tickets(number),
        at      REAL NOT NULL,
        kind    TEXT NOT NULL,
        message TEXT NOT NULL,
        actor   TEXT NOT NULL
    );
    CREATE INDEX timeline_by_ticket ON timeline(number, id);
    CREATE TABLE ticket_sequences (
        year INTEGER PRIMARY KEY,
        last INTEGER NOT NULL
    );
    """,
    """
    CREATE TABLE agent_streams (
        agent_id         TEXT PRIMARY KEY,
        asset            TEXT NOT NULL,
        last_seq         INTEGER NOT NULL,
        batches          INTEGER NOT NULL,
        samples          INTEGER NOT NULL,
        duplicates       INTEGER NOT NULL,
        gaps             INTEGER NOT NULL,
        dropped_reported INTEGER NOT NULL,
        first_seen       REAL NOT NULL,
        last_seen        REAL NOT NULL
    );
    """,
    """
    ALTER TABLE tickets ADD COLUMN sla_at_risk_at REAL;
    ALTER TABLE tickets ADD COLUMN sla_state TEXT NOT NULL DEFAULT 'none';
    CREATE INDEX tickets_by_sla ON tickets(status, sla_state);
    CREATE TABLE audit_events (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      REAL NOT NULL,
        actor   TEXT NOT NULL,
        client  TEXT,
        asset   TEXT,
        action  TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail  TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash    TEXT NOT NULL
    );
    CREATE INDEX audit_by_client ON audit_events(client, id);
    -- How far each SIEM destination got, and what its full queue cost while it was away.
    -- What dyzur learnt about an asset (e.g. the deployed AMMS version), latest value per key.
    CREATE TABLE asset_facts (
        asset      TEXT NOT NULL,
        key        TEXT NOT NULL,
        value      TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (asset, key)
    );
    CREATE TABLE siem_cursors (
        destination TEXT PRIMARY KEY,
        last_id     INTEGER NOT NULL,
        dropped     INTEGER NOT NULL,
        lease_owner TEXT NOT NULL DEFAULT '',
        lease_until REAL NOT NULL DEFAULT 0
    );
    """,
    """
    -- SIEM forwarding now takes its lease from the general leases table.
    ALTER TABLE siem_cursors DROP COLUMN lease_owner;
    ALTER TABLE siem_cursors DROP COLUMN lease_until;
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        last INTEGER NOT NULL
    );
    CREATE TABLE leases (
        name  TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        until REAL NOT NULL
    );
    CREATE TABLE windows (
        id           TEXT PRIMARY KEY,
        client       TEXT NOT NULL,
        start_at     REAL NOT NULL,
        end_at       REAL NOT NULL,
        reason       TEXT NOT NULL,
        assets       TEXT NOT NULL,
        selector     TEXT NOT NULL,
        rrule        TEXT,
        ticket       TEXT,
        plan         TEXT,
        created_by   TEXT NOT NULL,
        created_at   REAL,
        cancelled_at REAL,
        cancelled_by TEXT
    );
    CREATE INDEX windows_by_client ON windows(client, start_at);
    CREATE TABLE suppressed_alerts (
        id           INTEGER PRIMARY KEY,
        fingerprint  TEXT NOT NULL,
        window_id    TEXT NOT NULL,
        client       TEXT NOT NULL,
        asset        TEXT NOT NULL,
        rule         TEXT NOT NULL,
        category     TEXT NOT NULL,
        labels       TEXT NOT NULL,
        value        REAL,
        fired_at     REAL NOT NULL,
        until        REAL NOT NULL,
        state        TEXT NOT NULL,
        recovered_at REAL,
        ticket       TEXT
    );
    -- One firing record per alert, like one open ticket per alert.
    CREATE UNIQUE INDEX suppressed_one_firing ON suppressed_alerts(fingerprint)
        WHERE state = 'firing';
    CREATE INDEX suppressed_by_window ON suppressed_alerts(window_id, id);
    CREATE TABLE update_plans (
        id     TEXT PRIMARY KEY,
        client TEXT NOT NULL,
        status TEXT NOT NULL,
        data   TEXT NOT NULL
    );
    CREATE TABLE update_steps (
        id          INTEGER PRIMARY KEY,
        plan        TEXT NOT NULL,
        environment TEXT NOT NULL,
        asset       TEXT NOT NULL,
        phase       TEXT NOT NULL,
        command     TEXT NOT NULL,
        exit_code   INTEGER,
        output      TEXT NOT NULL,
        digest      TEXT NOT NULL,
        started_at  REAL NOT NULL,
        duration    REAL NOT NULL,
        error       TEXT
    );
    CREATE INDEX update_steps_by_plan ON update_steps(plan, id);
    """,
    """
    -- A stream belongs to the token that opened it, and jumps beyond max_seq_gap are anomalies.
    ALTER TABLE agent_streams ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE agent_streams ADD COLUMN anomalies INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE agent_streams ADD COLUMN jump_seq INTEGER
    """,
    """
    -- Ticket lists: one index per filter combination in list order (opened_at, then rowid,
    -- which every index ends with), so a page reads only its rows and never sorts the table.
    -- tickets_by_client (client, status, opened_at) already serves client and status.
    CREATE INDEX tickets_by_opened ON tickets(opened_at);
    CREATE INDEX tickets_by_client_opened ON tickets(client, opened_at);
    CREATE INDEX tickets_by_client_category ON tickets(client, category, opened_at);
    CREATE INDEX tickets_by_status ON tickets(status, opened_at);
    CREATE INDEX tickets_by_category ON tickets(category, opened_at);
    CREATE INDEX tickets_by_asset ON tickets(asset, opened_at)
    """,
    """
    -- An Alertmanager alert is identified within its hospital: am-<fingerprint> becomes
    -- am:<client>:<fingerprint> (bridge.alertmanager.alert_identity) on tickets and window records
    UPDATE tickets SET fingerprint = 'am:' || client || ':' || substr(fingerprint, 4)
        WHERE rule LIKE 'alertmanager:%' AND fingerprint LIKE 'am-%';
    UPDATE suppressed_alerts SET fingerprint = 'am:' || client || ':' || substr(fingerprint, 4)
        WHERE rule LIKE 'alertmanager:%' AND fingerprint LIKE 'am-%'
    """,
    """
    -- One cursor per outbox consumer (bridge.delivery.outbox), keyed by its name: each SIEM
    -- destination becomes the consumer siem:<destination> with its position and drop count,
    -- so nothing is sent again or skipped after the upgrade. fencing_token is the lease token
    -- that moved the cursor last, and an older one cannot move it (Cursors.set_cursor).
    CREATE TABLE outbox_cursors (
        consumer      TEXT PRIMARY KEY,
        last_id       INTEGER NOT NULL,
        dropped       INTEGER NOT NULL,
        fencing_token INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO outbox_cursors(consumer, last_id, dropped)
        SELECT 'siem:' || destination, last_id, dropped FROM siem_cursors;
    DROP TABLE siem_cursors
    """,
    """
    -- Leases carry a fencing token that grows each time a lease changes hands (roles.py);
    -- a lease held now keeps working with token 1.
    ALTER TABLE leases ADD COLUMN token INTEGER NOT NULL DEFAULT 1;
    -- Ticket numbers come from the named sequences (ticket-<year>), continuing where the
    -- per-year table left them.
    INSERT INTO counters(name, last) SELECT 'ticket-' || year, last FROM ticket_sequences
        WHERE true ON CONFLICT(name) DO UPDATE SET last = max(last, excluded.last);
    DROP TABLE ticket_sequences
    """,
    """
    -- Helpdesk sinks (bridge.delivery.sinks): per sink and ticket, the helpdesk's own id and
    -- the state of the last change delivered (or refused, with the reason).
    CREATE TABLE sink_deliveries (
        sink      TEXT NOT NULL,
        ticket    TEXT NOT NULL,
        remote_id TEXT,
        state     TEXT NOT NULL,
        reason    TEXT,
        event_id  INTEGER NOT NULL,
        at        REAL NOT NULL,
        PRIMARY KEY (sink, ticket)
    )
    """,
    """
    -- The changes each helpdesk sink parked (refused, or held behind a refused change of the
    -- same ticket) until dyzur sinks retry sends them again.
    CREATE TABLE sink_parked (
        sink     TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        ticket   TEXT NOT NULL,
        client   TEXT,
        action   TEXT NOT NULL,
        state    TEXT NOT NULL,
        reason   TEXT NOT NULL,
        at       REAL NOT NULL,
        PRIMARY KEY (sink, event_id)
    );
    CREATE INDEX sink_parked_by_ticket ON sink_parked(sink, ticket, event_id)
    """,
    """
    -- Paging (bridge.delivery.oncall.pager): per ticket the escalation step paged last and
    -- when the next is due, each page with its outbox entry (the oncall.page audit event)
    -- and outcome, and the one-time links used.
    CREATE TABLE oncall_pagings (
        ticket     TEXT PRIMARY KEY,
        client     TEXT NOT NULL,
        asset      TEXT NOT NULL,
        round      INTEGER NOT NULL,
        step       INTEGER NOT NULL,
        stepped_at REAL NOT NULL,
        next_at    REAL,
        last_event INTEGER NOT NULL,
        stopped_at REAL,
        stopped_by TEXT
    );
    CREATE INDEX oncall_pagings_due ON oncall_pagings(next_at) WHERE stopped_at IS NULL;
    CREATE TABLE oncall_pages (
        event_id     INTEGER PRIMARY KEY,
        ticket       TEXT NOT NULL,
        round        INTEGER NOT NULL,
        step         INTEGER NOT NULL,
        person       TEXT NOT NULL,
        channel      TEXT NOT NULL,
        at           REAL NOT NULL,
        expires      REAL NOT NULL,
        fallback_for INTEGER,
        outcome      TEXT,
        outcome_at   REAL,
        reason       TEXT
    );
    CREATE INDEX oncall_pages_by_ticket ON oncall_pages(ticket, event_id);
    CREATE INDEX oncall_pages_waiting ON oncall_pages(at) WHERE outcome IS NULL;
    CREATE INDEX oncall_pages_by_fallback ON oncall_pages(fallback_for);
    CREATE TABLE oncall_link_uses (
        token_id TEXT PRIMARY KEY,
        at       REAL NOT NULL
    )
    """,
    """
    -- On-call overrides (bridge.delivery.oncall.rota): a period of one person's shifts handed
    -- to another, with who asked and why. Never changed once added.
    CREATE TABLE oncall_overrides (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        rota         TEXT NOT NULL,
        shift_person TEXT NOT NULL,
        person       TEXT NOT NULL,
        starts_at    REAL NOT NULL,
        ends_at      REAL NOT NULL,
        client       TEXT,
        reason       TEXT NOT NULL,
        created_by   TEXT NOT NULL,
        created_at   REAL NOT NULL
    );
    CREATE INDEX oncall_overrides_by_end ON oncall_overrides(ends_at)
    """,
    """
    -- Incidents (bridge.tickets.incidents): a ticket explained by its root cause's ticket, and
    -- the alerts without a ticket of their own: held for their root, or attached to a ticket.
    ALTER TABLE tickets ADD COLUMN incident TEXT;
    CREATE INDEX tickets_open_by_asset ON tickets(asset) WHERE status = 'open';
    CREATE TABLE incident_alerts (
        id           INTEGER PRIMARY KEY,
        fingerprint  TEXT NOT NULL,
        client       TEXT NOT NULL,
        asset        TEXT NOT NULL,
        rule         TEXT NOT NULL,
        category     TEXT NOT NULL,
        labels       TEXT NOT NULL,
        value        REAL,
        fired_at     REAL NOT NULL,
        reason       TEXT NOT NULL,
        state        TEXT NOT NULL,
        title        TEXT NOT NULL,
        ticket       TEXT,
        until        REAL,
        recovered_at REAL,
        own_ticket   TEXT,
        updated_at   REAL
    );
    -- One firing record per alert, like one open ticket per alert.
    CREATE UNIQUE INDEX incident_alerts_one_firing ON incident_alerts(fingerprint)
        WHERE state IN ('held', 'attached');
    -- Queries bind the states as parameters, which a partial index cannot serve.
    CREATE INDEX incident_alerts_by_fingerprint ON incident_alerts(fingerprint, state);
    CREATE INDEX incident_alerts_by_ticket ON incident_alerts(ticket, id);
    CREATE INDEX incident_alerts_by_ticket_state ON incident_alerts(ticket, state, id);
    CREATE INDEX incident_alerts_by_client ON incident_alerts(client, state);
    CREATE INDEX incident_alerts_due ON incident_alerts(until)
    """,
    """
    -- The pages' sessions (bridge.users): kept by the SHA-256 of the session id, never the id
    -- itself. Failed logins per key (a user name's digest, a source address) and the keys
    -- locked out after too many, shared by every bridge on the store.
    CREATE TABLE web_sessions (
        id_hash    TEXT PRIMARY KEY,
        user_name  TEXT NOT NULL,
        credential TEXT NOT NULL,
        source     TEXT NOT NULL,
        created_at REAL NOT NULL,
        seen_at    REAL NOT NULL
    );
    CREATE INDEX web_sessions_by_seen ON web_sessions(seen_at);
    CREATE INDEX web_sessions_by_created ON web_sessions(created_at);
    CREATE TABLE login_failures (
        id  INTEGER PRIMARY KEY,
        key TEXT NOT NULL,
        at  REAL NOT NULL
    );
    CREATE INDEX login_failures_by_key ON login_failures(key, at);
    CREATE INDEX login_failures_by_at ON login_failures(at);
    CREATE TABLE login_locks (
        key   TEXT PRIMARY KEY,
        until REAL NOT NULL
    )
    """,
    """
    -- The pages' queue (TicketFilter.by_deadline): open tickets in deadline order without
    -- sorting them all at each look (10,000 open tickets: 65 ms -> 5 ms a page), of every
    -- hospital or of one (else one hospital's page scans every hospital's queue: 17 ms).
    CREATE INDEX tickets_queue ON tickets(
        status, responded_at IS NOT NULL, reaction_due IS NULL, reaction_due, opened_at
    );
    CREATE INDEX tickets_queue_by_client ON tickets(
        client, status, responded_at IS NOT NULL, reaction_due IS NULL, reaction_due, opened_at
    )
    """,
)

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
    return f" AND client IN ({', '.join('?' * len(ordered))})", ordered


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else to_datetime(value)


def _row_to_event(r: sqlite3.Row) -> AuditEvent:
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


def _row_to_ticket(row: sqlite3.Row) -> Ticket:
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


def _row_to_paging(r: sqlite3.Row) -> Paging:
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


def _row_to_page(r: sqlite3.Row) -> Page:
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


def _apply_script(conn: sqlite3.Connection, script: str) -> None:
    """Run one entry of MIGRATIONS."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _schema_tables(version: int) -> set[str]:
    """The tables a store at schema ``version`` has: its migrations run in memory."""
    conn = sqlite3.connect(":memory:")
    try:
        for script in MIGRATIONS[:version]:
            _apply_script(conn, script)
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def _judge_batch(
    row: sqlite3.Row, batch: BatchRecord, max_gap: int
) -> tuple[BatchClaim, int, int | None]:
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


_SQLITE_HEADER = b"SQLite format 3\x00"
_REFUSED = (
    "; dyzur leaves the file as it is: restore the store from a backup, or move the file "
    "away to start a new, empty store"
)


def check_store_file(path: Path) -> None:
    """Refuse an existing store file that is empty, not an SQLite database, damaged (SQLite's
    quick_check) or not dyzur's, raising StoreError naming the file and what is wrong.

    A missing file is fine: it becomes a new store. Nothing is written: the file is read with
    ``immutable=1`` (no locks, no -wal or -shm files), or read-only when a -wal file says a
    bridge is running or was killed (its committed transactions are in the WAL). A database
    without any table and at schema version 0 is what a first start killed before its first
    migration leaves; it holds nothing and is taken as new.
    """
    if not path.exists():
        return
    if not path.is_file():
        raise StoreError(f"{path} is not a regular file{_REFUSED}")
    try:
        with path.open("rb") as f:
            header = f.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not header:
        raise StoreError(f"{path} is empty (0 bytes), not a dyzur store{_REFUSED}")
    if header != _SQLITE_HEADER:
        raise StoreError(f"{path} is not an SQLite database (no SQLite header){_REFUSED}")
    in_use = any(path.with_name(path.name + s).exists() for s in ("-wal", "-journal"))
    uri = f"{path.resolve().as_uri()}?mode=ro" + ("" if in_use else "&immutable=1")
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30.0)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from None
    try:
        damage = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.OperationalError as exc:  # locked past the timeout, unreadable
        raise StoreError(f"cannot check {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
        raise StoreError(f"{path} is damaged: {exc}{_REFUSED}") from None
    finally:
        conn.close()
    if damage != ["ok"]:
        raise StoreError(f"{path} is damaged: {'; '.join(damage)}{_REFUSED}")
    if version == 0 and tables:
        raise StoreError(
            f"{path} is an SQLite database but not a dyzur store (schema version 0, tables: "
            f"{', '.join(sorted(tables))}){_REFUSED}"
        )
    missing = _schema_tables(version) - tables if version <= len(MIGRATIONS) else set()
    if missing:
        raise StoreError(
            f"{path} is damaged: tables {', '.join(sorted(missing))} of its schema version "
            f"{version} are missing{_REFUSED}"
        )


class SQLiteStore:
    """Every role of ``bridge.store.roles.Store`` on one SQLite file.

    One connection per thread; a write takes SQLite's write lock (BEGIN IMMEDIATE) for its
    transaction, so two bridge processes on one file serialise the same way two threads do.
    A transaction (``transaction()``) is per thread: the methods called on the thread that
    opened it join it, and a method called outside one is a transaction of its own. Named
    locks (``lock``) cost nothing: the write lock a transaction holds from its start already
    serialises every writer, whatever the name.
    """

    def __init__(self, path: Path | str, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        # How long a writer waits for another's write lock before the write fails.
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._append_watchers: list[Callable[[], None]] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory of {self.path}: {exc}") from exc

    # --- connections and transactions -------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                # Autocommit mode: transactions are begun explicitly below.
                conn = sqlite3.connect(
                    self.path,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=self.busy_timeout,
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _unit(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """One write transaction on ``conn``: committed at the end, rolled back on any
        exception. SQLite's own errors become StoreError (the caller may retry later)."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # "database is locked" past the busy timeout
            raise StoreError(f"SQLite database {self.path} is busy: {exc}") from exc
        self._local.appended = False
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:  # disk full, I/O error, a constraint, ...
            self._rollback(conn)
            raise StoreError(f"SQLite database {self.path} refused a write: {exc}") from exc
        except BaseException:
            self._rollback(conn)
            raise
        if self._local.appended:
            self._local.appended = False
            for watcher in self._append_watchers:
                try:
                    watcher()
                except Exception:  # committed: the caller must not see a failure now
                    log.exception("a watcher of audit appends failed")

    def watch_appends(self, watcher: Callable[[], None]) -> None:
        self._append_watchers.append(watcher)

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        # SQLite rolls back by itself after some errors (a full disk): nothing left to undo.
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """The transaction open on this thread (joined), or a write transaction of its own."""
        conn = self._conn()
        if conn.in_transaction:
            yield conn
            return
        with self._unit(conn):
            yield conn

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        with self._unit(conn):
            yield

    def transaction(self) -> AbstractContextManager[None]:
        if self._conn().in_transaction:
            raise StoreError(
                "a transaction is already open on this thread; transactions do not nest: "
                "the caller that owns the unit of work opens one and everything inside joins it"
            )
        return self._transaction(self._conn())

    def lock(self, name: str) -> AbstractContextManager[None]:
        # The open transaction began with BEGIN IMMEDIATE: it holds the database's write lock
        # until it ends, which serialises every writer of every process, whatever the name.
        if not self._conn().in_transaction:
            raise StoreError(f"lock {name!r} asked for outside a transaction: open one first")
        return nullcontext()

    def migrate(self) -> None:
        with self._write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this dyzur "
                    f"understands ({len(MIGRATIONS)}); upgrade dyzur"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                _apply_script(conn, script)
                conn.execute(f"PRAGMA user_version = {number}")

    def schema_version(self) -> int:
        return int(self._conn().execute("PRAGMA user_version").fetchone()[0])

    def ping(self) -> None:
        try:
            self._conn().execute("SELECT 1 FROM tickets LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite database {self.path} does not answer: {exc}") from exc

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

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

    def _append(self, conn: sqlite3.Connection, number: str, entry: TimelineEntry) -> None:
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
        where, params = [], []
        for column, value in (
            ("client", query.client),
            ("status", query.status),
            ("category", query.category),
            ("asset", query.asset),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(str(value))
        if query.before is not None and not query.by_deadline:
            # Keyset paging: the rows after the cursor ticket in list order. The cursor is
            # looked up within the same client scope, so another client's ticket matches nothing.
            cursor = "SELECT opened_at, rowid FROM tickets WHERE number = ?"
            params.append(query.before)
            if query.client is not None:
                cursor += " AND client = ?"
                params.append(query.client)
            where.append(f"(opened_at, rowid) < ({cursor})")
        sql = f"SELECT {_TICKET_COLUMNS} FROM tickets"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if query.by_deadline:  # the queue: waiting by deadline, then answered, then no clock
            sql += (
                " ORDER BY responded_at IS NOT NULL, reaction_due IS NULL, reaction_due,"
                " opened_at, rowid LIMIT ? OFFSET ?"
            )
        else:
            sql += " ORDER BY opened_at DESC, rowid DESC LIMIT ? OFFSET ?"
        rows = self._conn().execute(sql, (*params, query.limit, query.offset)).fetchall()
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
                "dropped_reported = MAX(dropped_reported, ?), last_seen = ?, owner = ?, "
                "anomalies = anomalies + ?, jump_seq = ? WHERE agent_id = ?",
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
            row = conn.execute("SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1").fetchone()
            event.prev_hash = row[0] if row is not None else GENESIS_HASH
            event.hash = event_hash(event)
            event.id = conn.execute(
                "INSERT INTO audit_events(at, actor, client, asset, action, outcome, detail, "
                "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
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
            ).lastrowid
            self._local.appended = True
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
        where: list[str] = []
        params: list[object] = []
        for column, value in (
            ("client", query.client),
            ("actor", query.actor),
            ("asset", query.asset),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.action is not None and query.action.endswith("*"):
            prefix = query.action.removesuffix("*")
            where.append("substr(action, 1, ?) = ?")
            params += [len(prefix), prefix]
        elif query.action is not None:
            where.append("action = ?")
            params.append(query.action)
        if query.since is not None:
            where.append("at >= ?")
            params.append(query.since.timestamp())
        if query.after is not None:
            where.append("id < ?" if query.newest_first else "id > ?")
            params.append(query.after)
        sql = (
            "SELECT id, at, actor, client, asset, action, outcome, detail, prev_hash, hash "
            "FROM audit_events"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY id {'DESC' if query.newest_first else 'ASC'} LIMIT ?"
        rows = self._conn().execute(sql, (*params, query.limit)).fetchall()
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

    def audit_high_water(self) -> int:
        row = (
            self._conn()
            .execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit_events'")
            .fetchone()
        )
        return 0 if row is None else int(row[0])

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
        where, params = ["true"], []
        for column, value in (("sink", sink), ("ticket", ticket)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if clients is not None:
            ordered = sorted(clients)
            where.append(f"client IN ({', '.join('?' * len(ordered))})")
            params += ordered
        rows = (
            self._conn()
            .execute(
                "SELECT sink, ticket, event_id, client, action, state, reason, at "
                f"FROM sink_parked WHERE {' AND '.join(where)} ORDER BY event_id, sink "
                "LIMIT ? OFFSET ?",
                (*params, -1 if limit is None else limit, offset),
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
                "ON CONFLICT(name) DO UPDATE SET last = last + 1 RETURNING last",
                (name,),
            ).fetchone()
            return int(row[0])

    def lease(self, name: str, owner: str, ttl: float, now: float) -> int | None:
        with self._write() as conn:
            row = conn.execute(
                "SELECT owner, until, token FROM leases WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                token = 1
                conn.execute(
                    "INSERT INTO leases(name, owner, until, token) VALUES (?, ?, ?, ?)",
                    (name, owner, now + ttl, token),
                )
                return token
            holder: str = row[0]
            until: float = row[1]
            token = int(row[2])
            if holder != owner:
                if holder and until >= now:
                    return None  # another owner's lease runs on
                token += 1  # changes hands (or is taken again after a release)
            conn.execute(
                "UPDATE leases SET owner = ?, until = ?, token = ? WHERE name = ?",
                (owner, now + ttl, token, name),
            )
            return token

    def release_lease(self, name: str, owner: str) -> None:
        # The row stays (without an owner) so that its token keeps growing.
        with self._write() as conn:
            conn.execute(
                "UPDATE leases SET owner = '', until = 0 WHERE name = ? AND owner = ?",
                (name, owner),
            )

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
                "INSERT OR REPLACE INTO oncall_pagings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

    def save_window(self, window: MaintenanceWindow) -> None:
        w = window
        with self._write() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO windows({self._WINDOW_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    f"INSERT INTO suppressed_alerts({columns}) VALUES ({', '.join('?' * 13)})",
                    values,
                ).lastrowid
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
        where: list[str] = []
        params: list[object] = []
        for column, value in (
            ("fingerprint", fingerprint),
            ("window_id", window),
            ("state", state),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(str(value))
        if until_before is not None:
            where.append("until <= ?")
            params.append(until_before.timestamp())
        sql = "SELECT * FROM suppressed_alerts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._conn().execute(sql + " ORDER BY id", params).fetchall()
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
                        f"VALUES ({', '.join('?' * len(values))})",
                        values,
                    ).lastrowid
                else:
                    assignments = ", ".join(f"{c.strip()} = ?" for c in columns.split(","))
                    conn.execute(
                        f"UPDATE incident_alerts SET {assignments} WHERE id = ?", (*values, a.id)
                    )
        except sqlite3.IntegrityError as exc:
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
        where: list[str] = []
        params: list[object] = []
        for column, value in (
            ("fingerprint", fingerprint),
            ("ticket", ticket),
            ("client", client),
            ("reason", reason),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(str(value))
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            params.extend(str(s) for s in states)
        if due_before is not None:
            where.append("until <= ?")
            params.append(due_before.timestamp())
        if assets:
            where.append(f"asset IN ({', '.join('?' * len(assets))})")
            params.extend(assets)
        sql = f"SELECT id, {_INCIDENT_ALERT_COLUMNS} FROM incident_alerts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
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
        return int(self._conn().execute(f"SELECT count(*) FROM ({sql})", params).fetchone()[0])

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
        where, params = [], []
        for column, value in (("client", client), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(str(value))
        sql = "SELECT data FROM update_plans"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._conn().execute(sql + " ORDER BY id", params).fetchall()
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
                "UPDATE web_sessions SET seen_at = MAX(seen_at, ?) WHERE id_hash = ?",
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
