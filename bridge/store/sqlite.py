"""The embedded store: one SQLite file in WAL mode, safe for threads and for several processes."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from bridge.store.base import StoreError
from bridge.store.sql import Connection, SQLRoles

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
    """
    -- Fencing tokens of leases come from the counters lease:<name> (wherever the lease is
    -- kept: here or in Redis), so a store can refuse a stale holder's write (check_fence).
    INSERT INTO counters(name, last) SELECT 'lease:' || name, token FROM leases
        WHERE true ON CONFLICT(name) DO UPDATE SET last = max(last, excluded.last);
    -- The alerts pending (their rule's for: not over yet) of each hospital's series, written
    -- with the batch that changed them: the bridge that takes a hospital over goes on with
    -- their timers (bridge.sources.shards).
    CREATE TABLE pending_alerts (
        fingerprint  TEXT PRIMARY KEY,
        client       TEXT NOT NULL,
        rule         TEXT NOT NULL,
        labels       TEXT NOT NULL,
        category     TEXT NOT NULL,
        value        REAL,
        active_since REAL NOT NULL
    );
    CREATE INDEX pending_alerts_by_client ON pending_alerts(client)
    """,
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


class SQLiteStore(SQLRoles):
    """Every role of ``bridge.store.roles.Store`` on one SQLite file.

    One connection per thread; a write takes SQLite's write lock (BEGIN IMMEDIATE) for its
    transaction, so two bridge processes on one file serialise the same way two threads do.
    A transaction (``transaction()``) is per thread: the methods called on the thread that
    opened it join it, and a method called outside one is a transaction of its own. Named
    locks (``lock``) cost nothing: the write lock a transaction holds from its start already
    serialises every writer, whatever the name.
    """

    INTEGRITY_ERROR = sqlite3.IntegrityError

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

    def _appended(self) -> None:
        self._local.appended = True

    def _next_audit_id(self, conn: Connection) -> int:
        # The transaction holds the write lock: appenders already take turns.
        return self._audit_high_water(conn) + 1

    def audit_high_water(self) -> int:
        return self._audit_high_water(self._conn())

    @staticmethod
    def _audit_high_water(conn: Connection) -> int:
        # AUTOINCREMENT keeps the highest id ever given, also after the newest rows are deleted.
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit_events'").fetchone()
        return 0 if row is None else int(row[0])
