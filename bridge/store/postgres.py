"""The shared store of several bridges: PostgreSQL through psycopg 3 and its connection pool.

Every role is ``SQLRoles``' SQL; what is PostgreSQL's own is here: the schema, a pool of
connections (a transaction keeps one for its whole life, a statement outside one borrows one),
named locks as transaction-level advisory locks, and the read-then-write steps made race-free
between bridges (an agent stream's claim, a lease, an asset fact) by a lock on their key.
The database decides every race: one open ticket per alert is a unique index, ticket numbers
and audit ids come from counter rows that a transaction holds until it ends (gapless, in
commit order), and a paused bridge's open transaction is ended by the server
(``idle_in_transaction_session_timeout``) so its locks do not stop the other bridge.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import psycopg
import psycopg_pool
from psycopg.pq import TransactionStatus

from bridge.store.base import BatchClaim, BatchRecord, StoreError, without_password
from bridge.store.sql import Connection, SQLRoles

log = logging.getLogger(__name__)

# The schema, one entry per version; dyzur_schema records where a database is. The SQLite
# schema's history is not replayed: this is its present shape, with PostgreSQL's types
# (DOUBLE PRECISION for epoch seconds, BIGINT ids). Tables written without a column list
# (asset_facts, sink_*, oncall_*) keep SQLite's column order.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE tickets (
        number         TEXT PRIMARY KEY,
        client         TEXT NOT NULL,
        asset          TEXT NOT NULL,
        rule           TEXT NOT NULL,
        fingerprint    TEXT NOT NULL,
        category       TEXT NOT NULL,
        status         TEXT NOT NULL,
        title          TEXT NOT NULL,
        description    TEXT NOT NULL,
        labels         TEXT NOT NULL,
        fire_count     INTEGER NOT NULL,
        last_value     DOUBLE PRECISION,
        opened_at      DOUBLE PRECISION NOT NULL,
        updated_at     DOUBLE PRECISION NOT NULL,
        resolved_at    DOUBLE PRECISION,
        responded_at   DOUBLE PRECISION,
        responded_by   TEXT,
        reaction_due   DOUBLE PRECISION,
        sla_at_risk_at DOUBLE PRECISION,
        sla_state      TEXT NOT NULL DEFAULT 'none',
        incident       TEXT,
        -- Insertion order, the lists' tie-break (SQLite's rowid, under the same name).
        rowid          BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
    );
    -- The last line of defence against duplicates: one open ticket per alert, whichever
    -- bridge opens it.
    CREATE UNIQUE INDEX tickets_one_open_per_alert ON tickets(fingerprint) WHERE status = 'open';
    CREATE INDEX tickets_by_alert ON tickets(fingerprint, opened_at);
    CREATE INDEX tickets_by_client ON tickets(client, status, opened_at);
    CREATE INDEX tickets_by_sla ON tickets(status, sla_state);
    CREATE INDEX tickets_by_opened ON tickets(opened_at, rowid);
    CREATE INDEX tickets_by_client_opened ON tickets(client, opened_at, rowid);
    CREATE INDEX tickets_by_asset ON tickets(asset, opened_at);
    CREATE INDEX tickets_open_by_asset ON tickets(asset) WHERE status = 'open';
    CREATE INDEX tickets_queue ON tickets(
        status, (responded_at IS NOT NULL), (reaction_due IS NULL), reaction_due, opened_at
    );
    CREATE INDEX tickets_queue_by_client ON tickets(
        client, status, (responded_at IS NOT NULL), (reaction_due IS NULL), reaction_due,
        opened_at
    );
    CREATE TABLE timeline (
        id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        number  TEXT NOT NULL REFERENCES tickets(number),
        at      DOUBLE PRECISION NOT NULL,
        kind    TEXT NOT NULL,
        message TEXT NOT NULL,
        actor   TEXT NOT NULL
    );
    CREATE INDEX timeline_by_ticket ON timeline(number, id);
    CREATE TABLE agent_streams (
        agent_id         TEXT PRIMARY KEY,
        asset            TEXT NOT NULL,
        last_seq         BIGINT NOT NULL,
        batches          BIGINT NOT NULL,
        samples          BIGINT NOT NULL,
        duplicates       BIGINT NOT NULL,
        gaps             BIGINT NOT NULL,
        dropped_reported BIGINT NOT NULL,
        first_seen       DOUBLE PRECISION NOT NULL,
        last_seen        DOUBLE PRECISION NOT NULL,
        owner            TEXT NOT NULL DEFAULT '',
        anomalies        BIGINT NOT NULL DEFAULT 0,
        jump_seq         BIGINT
    );
    -- Ids are given by the counter 'audit-events' (see SQLRoles._next_audit_id).
    CREATE TABLE audit_events (
        id        BIGINT PRIMARY KEY,
        at        DOUBLE PRECISION NOT NULL,
        actor     TEXT NOT NULL,
        client    TEXT,
        asset     TEXT,
        action    TEXT NOT NULL,
        outcome   TEXT NOT NULL,
        detail    TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash      TEXT NOT NULL
    );
    CREATE INDEX audit_by_client ON audit_events(client, id);
    CREATE TABLE asset_facts (
        asset      TEXT NOT NULL,
        key        TEXT NOT NULL,
        value      TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (asset, key)
    );
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        last BIGINT NOT NULL
    );
    CREATE TABLE leases (
        name  TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        until DOUBLE PRECISION NOT NULL,
        token BIGINT NOT NULL DEFAULT 1
    );
    CREATE TABLE outbox_cursors (
        consumer      TEXT PRIMARY KEY,
        last_id       BIGINT NOT NULL,
        dropped       BIGINT NOT NULL,
        fencing_token BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE windows (
        id           TEXT PRIMARY KEY,
        client       TEXT NOT NULL,
        start_at     DOUBLE PRECISION NOT NULL,
        end_at       DOUBLE PRECISION NOT NULL,
        reason       TEXT NOT NULL,
        assets       TEXT NOT NULL,
        selector     TEXT NOT NULL,
        rrule        TEXT,
        ticket       TEXT,
        plan         TEXT,
        created_by   TEXT NOT NULL,
        created_at   DOUBLE PRECISION,
        cancelled_at DOUBLE PRECISION,
        cancelled_by TEXT
    );
    CREATE INDEX windows_by_client ON windows(client, start_at);
    CREATE TABLE suppressed_alerts (
        id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        fingerprint  TEXT NOT NULL,
        window_id    TEXT NOT NULL,
        client       TEXT NOT NULL,
        asset        TEXT NOT NULL,
        rule         TEXT NOT NULL,
        category     TEXT NOT NULL,
        labels       TEXT NOT NULL,
        value        DOUBLE PRECISION,
        fired_at     DOUBLE PRECISION NOT NULL,
        until        DOUBLE PRECISION NOT NULL,
        state        TEXT NOT NULL,
        recovered_at DOUBLE PRECISION,
        ticket       TEXT
    );
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
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        plan        TEXT NOT NULL,
        environment TEXT NOT NULL,
        asset       TEXT NOT NULL,
        phase       TEXT NOT NULL,
        command     TEXT NOT NULL,
        exit_code   INTEGER,
        output      TEXT NOT NULL,
        digest      TEXT NOT NULL,
        started_at  DOUBLE PRECISION NOT NULL,
        duration    DOUBLE PRECISION NOT NULL,
        error       TEXT
    );
    CREATE INDEX update_steps_by_plan ON update_steps(plan, id);
    CREATE TABLE sink_deliveries (
        sink      TEXT NOT NULL,
        ticket    TEXT NOT NULL,
        remote_id TEXT,
        state     TEXT NOT NULL,
        reason    TEXT,
        event_id  BIGINT NOT NULL,
        at        DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (sink, ticket)
    );
    CREATE TABLE sink_parked (
        sink     TEXT NOT NULL,
        event_id BIGINT NOT NULL,
        ticket   TEXT NOT NULL,
        client   TEXT,
        action   TEXT NOT NULL,
        state    TEXT NOT NULL,
        reason   TEXT NOT NULL,
        at       DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (sink, event_id)
    );
    CREATE INDEX sink_parked_by_ticket ON sink_parked(sink, ticket, event_id);
    CREATE TABLE oncall_pagings (
        ticket     TEXT PRIMARY KEY,
        client     TEXT NOT NULL,
        asset      TEXT NOT NULL,
        round      INTEGER NOT NULL,
        step       INTEGER NOT NULL,
        stepped_at DOUBLE PRECISION NOT NULL,
        next_at    DOUBLE PRECISION,
        last_event BIGINT NOT NULL,
        stopped_at DOUBLE PRECISION,
        stopped_by TEXT
    );
    CREATE INDEX oncall_pagings_due ON oncall_pagings(next_at) WHERE stopped_at IS NULL;
    CREATE TABLE oncall_pages (
        event_id     BIGINT PRIMARY KEY,
        ticket       TEXT NOT NULL,
        round        INTEGER NOT NULL,
        step         INTEGER NOT NULL,
        person       TEXT NOT NULL,
        channel      TEXT NOT NULL,
        at           DOUBLE PRECISION NOT NULL,
        expires      DOUBLE PRECISION NOT NULL,
        fallback_for BIGINT,
        outcome      TEXT,
        outcome_at   DOUBLE PRECISION,
        reason       TEXT
    );
    CREATE INDEX oncall_pages_by_ticket ON oncall_pages(ticket, event_id);
    CREATE INDEX oncall_pages_waiting ON oncall_pages(at) WHERE outcome IS NULL;
    CREATE INDEX oncall_pages_by_fallback ON oncall_pages(fallback_for);
    CREATE TABLE oncall_link_uses (
        token_id TEXT PRIMARY KEY,
        at       DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE oncall_overrides (
        id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        rota         TEXT NOT NULL,
        shift_person TEXT NOT NULL,
        person       TEXT NOT NULL,
        starts_at    DOUBLE PRECISION NOT NULL,
        ends_at      DOUBLE PRECISION NOT NULL,
        client       TEXT,
        reason       TEXT NOT NULL,
        created_by   TEXT NOT NULL,
        created_at   DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX oncall_overrides_by_end ON oncall_overrides(ends_at);
    CREATE TABLE incident_alerts (
        id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        fingerprint  TEXT NOT NULL,
        client       TEXT NOT NULL,
        asset        TEXT NOT NULL,
        rule         TEXT NOT NULL,
        category     TEXT NOT NULL,
        labels       TEXT NOT NULL,
        value        DOUBLE PRECISION,
        fired_at     DOUBLE PRECISION NOT NULL,
        reason       TEXT NOT NULL,
        state        TEXT NOT NULL,
        title        TEXT NOT NULL,
        ticket       TEXT,
        until        DOUBLE PRECISION,
        recovered_at DOUBLE PRECISION,
        own_ticket   TEXT,
        updated_at   DOUBLE PRECISION
    );
    CREATE UNIQUE INDEX incident_alerts_one_firing ON incident_alerts(fingerprint)
        WHERE state IN ('held', 'attached');
    CREATE INDEX incident_alerts_by_fingerprint ON incident_alerts(fingerprint, state);
    CREATE INDEX incident_alerts_by_ticket_state ON incident_alerts(ticket, state, id);
    CREATE INDEX incident_alerts_by_client ON incident_alerts(client, state);
    CREATE INDEX incident_alerts_due ON incident_alerts(until);
    CREATE TABLE web_sessions (
        id_hash    TEXT PRIMARY KEY,
        user_name  TEXT NOT NULL,
        credential TEXT NOT NULL,
        source     TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        seen_at    DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX web_sessions_by_seen ON web_sessions(seen_at);
    CREATE INDEX web_sessions_by_created ON web_sessions(created_at);
    CREATE TABLE login_failures (
        id  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        key TEXT NOT NULL,
        at  DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX login_failures_by_key ON login_failures(key, at);
    CREATE INDEX login_failures_by_at ON login_failures(at);
    CREATE TABLE login_locks (
        key   TEXT PRIMARY KEY,
        until DOUBLE PRECISION NOT NULL
    )
    """,
    """
    -- The alerts pending (their rule's for: not over yet) of each hospital's series, written
    -- with the batch that changed them: the bridge that takes a hospital over goes on with
    -- their timers (bridge.sources.shards).
    CREATE TABLE pending_alerts (
        fingerprint  TEXT PRIMARY KEY,
        client       TEXT NOT NULL,
        rule         TEXT NOT NULL,
        labels       TEXT NOT NULL,
        category     TEXT NOT NULL,
        value        DOUBLE PRECISION,
        active_since DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX pending_alerts_by_client ON pending_alerts(client)
    """,
)

# A connection's limits, set when the pool opens it. A lock waited for longer than the SQLite
# store's busy timeout fails the write (503, the caller retries); a transaction left idle by a
# paused or hung bridge is ended by the server, which releases its locks and row locks.
_SESSION = (
    "SET lock_timeout = '30s'",
    "SET idle_in_transaction_session_timeout = '60s'",
)
_AUDIT_IDS = "audit-events"
PING_WAIT = 2.0  # seconds /healthz waits for a connection
_MIGRATION_LOCK = "dyzur:migrate"


class Row(tuple[Any, ...]):
    """A row read by position or by column name, like ``sqlite3.Row``."""

    _index: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(self._index[key])
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self._index)


def _rows(cursor: psycopg.Cursor[Any]) -> Any:
    index = {column.name: i for i, column in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> Row:
        row = Row(values)
        row._index = index
        return row

    return make


@functools.lru_cache(maxsize=2048)
def _placeholders(sql: str) -> str:
    """The roles' ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled first)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Result:
    """What a statement gave, read before its connection goes back to the pool."""

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self.rowcount = cursor.rowcount
        self._rows: list[Row] = cursor.fetchall() if cursor.description else []

    def fetchone(self) -> Row | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Row]:
        return self._rows

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)


def _unavailable(url: str, exc: BaseException) -> StoreError:
    return StoreError(f"PostgreSQL store {url} is unavailable: {exc}")


class _Statements:
    """``Connection`` on one psycopg connection (a transaction's) or, without one, on a
    connection borrowed from the pool for each statement."""

    def __init__(
        self,
        store: PostgresStore,
        conn: psycopg.Connection[Any] | None,
        wait: float | None = None,
    ) -> None:
        """``wait``: how long to wait for a connection of the pool (None: the pool's own)."""
        self._store = store
        self._conn = conn
        self._wait = wait

    def _run(self, run: Any) -> _Result:
        try:
            if self._conn is not None:
                return run(self._conn)
            with self._store._pool.connection(timeout=self._wait) as conn:
                return run(conn)
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            raise _unavailable(self._store.url, exc) from exc

    def execute(self, sql: str, parameters: Any = (), /) -> _Result:
        query = _placeholders(sql)
        return self._run(lambda conn: _Result(conn.execute(query, tuple(parameters))))

    def executemany(self, sql: str, parameters: Any, /) -> _Result:
        query = _placeholders(sql)

        def run(conn: psycopg.Connection[Any]) -> _Result:
            with conn.cursor() as cur:
                cur.executemany(query, list(parameters))
                return _Result(cur)

        return self._run(run)


class PostgresStore(SQLRoles):
    """Every role of ``bridge.store.roles.Store`` on one PostgreSQL database, shared by any
    number of bridges. Transactions are per thread, as in the SQLite store."""

    GREATEST = "greatest"
    FOR_SHARE = " FOR SHARE"
    NO_LIMIT = None
    INTEGRITY_ERROR = psycopg.errors.IntegrityError

    def __init__(self, url: str, *, pool_size: int = 16, connect_timeout: float = 5.0) -> None:
        """``pool_size``: connections at most (each transaction keeps one while it lasts;
        PostgreSQL's default max_connections, 100, leaves room for several bridges)."""
        self.url = without_password(url)
        self._local = threading.local()
        self._append_watchers: list[Any] = []
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={
                "autocommit": True,
                "row_factory": _rows,
                "connect_timeout": max(1, round(connect_timeout)),
                # Idle pauses longer than a firewall's or NAT's state timeout: TCP keep-alives,
                # and the pool checks a connection before handing it out.
                "keepalives": 1,
                "keepalives_idle": 30,
            },
            configure=_configure,
            check=psycopg_pool.ConnectionPool.check_connection,
            timeout=connect_timeout,
            name="dyzur",
            open=False,
        )
        self._pool.open(wait=False)

    # --- connections and transactions -------------------------------------------------------

    def _tx(self) -> psycopg.Connection[Any] | None:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        return conn

    def _conn(self) -> Connection:
        return _Statements(self, self._tx())

    @contextmanager
    def _unit(self) -> Iterator[Connection]:
        """One transaction on a connection of the pool, kept by this thread until it ends:
        committed at the end, rolled back on any exception; PostgreSQL's errors become
        StoreError (the caller may retry later)."""
        try:
            conn = self._pool.getconn()
        except psycopg_pool.PoolTimeout as exc:
            raise _unavailable(self.url, exc) from exc
        self._local.conn = conn
        self._local.appended = False
        try:
            conn.execute("BEGIN")
            yield _Statements(self, conn)
            conn.execute("COMMIT")
        except psycopg.Error as exc:
            self._rollback(conn)
            raise StoreError(f"PostgreSQL store {self.url} refused a write: {exc}") from exc
        except BaseException:
            self._rollback(conn)
            raise
        finally:
            self._local.conn = None
            self._pool.putconn(conn)
        if self._local.appended:
            self._local.appended = False
            for watcher in self._append_watchers:
                try:
                    watcher()
                except Exception:  # committed: the caller must not see a failure now
                    log.exception("a watcher of audit appends failed")

    @staticmethod
    def _rollback(conn: psycopg.Connection[Any]) -> None:
        if conn.closed or conn.info.transaction_status == TransactionStatus.IDLE:
            return
        try:
            conn.execute("ROLLBACK")
        except psycopg.Error:  # the connection is gone: the server rolled it back
            log.debug("rollback on a lost connection", exc_info=True)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self._tx() is not None:
            yield self._conn()
            return
        with self._unit() as conn:
            yield conn

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._unit():
            yield

    def transaction(self) -> AbstractContextManager[None]:
        if self._tx() is not None:
            raise StoreError(
                "a transaction is already open on this thread; transactions do not nest: "
                "the caller that owns the unit of work opens one and everything inside joins it"
            )
        return self._transaction()

    def lock(self, name: str) -> AbstractContextManager[None]:
        if self._tx() is None:
            raise StoreError(f"lock {name!r} asked for outside a transaction: open one first")
        self._advisory_lock(name)
        return nullcontext()

    def _advisory_lock(self, name: str) -> None:
        # Held until the transaction ends; a second take by the same transaction is a no-op
        # in effect (advisory locks are re-entrant). A hash collision only serialises more.
        self._conn().execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (name,))

    def watch_appends(self, watcher: Any) -> None:
        self._append_watchers.append(watcher)

    def _appended(self) -> None:
        self._local.appended = True

    def migrate(self) -> None:
        with self._unit() as conn:
            # Two bridges starting together: one migrates, the other waits and finds it done.
            self._advisory_lock(_MIGRATION_LOCK)
            conn.execute("CREATE TABLE IF NOT EXISTS dyzur_schema (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM dyzur_schema").fetchone()
            version = 0 if row is None else int(row[0])
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"{self.url} has schema version {version}, newer than this dyzur "
                    f"understands ({len(MIGRATIONS)}); upgrade dyzur"
                )
            tx = self._tx()
            assert tx is not None
            for script in MIGRATIONS[version:]:
                tx.execute(script.encode())  # DDL without parameters, several statements
            if row is None:
                conn.execute("INSERT INTO dyzur_schema(version) VALUES (?)", (len(MIGRATIONS),))
            else:
                conn.execute("UPDATE dyzur_schema SET version = ?", (len(MIGRATIONS),))

    def schema_version(self) -> int:
        row = self._conn().execute("SELECT version FROM dyzur_schema").fetchone()
        return 0 if row is None else int(row[0])

    def ping(self) -> None:
        # A load balancer's health check waits a few seconds at most: answer within two.
        _Statements(self, self._tx(), wait=PING_WAIT).execute("SELECT 1 FROM tickets LIMIT 1")

    def close(self) -> None:
        self._pool.close()

    # --- PostgreSQL's own steps -------------------------------------------------------------

    def _next_audit_id(self, conn: Connection) -> int:
        # The counter's row stays locked until the transaction ends: appenders take turns.
        return self.next_sequence(_AUDIT_IDS)

    def audit_high_water(self) -> int:
        row = self._conn().execute("SELECT last FROM counters WHERE name = ?", (_AUDIT_IDS,))
        found = row.fetchone()
        return 0 if found is None else int(found[0])

    # Under READ COMMITTED two bridges could both read a row before either writes it: these
    # read-then-write steps take their key's lock first (SQLite's write lock does it there).

    def record_batch(self, batch: BatchRecord, max_gap: int) -> BatchClaim:
        with self._write():
            self._advisory_lock(f"agent-stream:{batch.agent_id}")
            return super().record_batch(batch, max_gap)

    def _own_lease(self, name: str, owner: str, ttl: float, now: float) -> int | None:
        with self._write():
            self._advisory_lock(f"lease:{name}")
            return super()._own_lease(name, owner, ttl, now)

    def set_asset_fact(self, asset: str, key: str, value: str, at: Any) -> bool:
        with self._write():
            self._advisory_lock(f"asset-fact:{asset}:{key}")
            return super().set_asset_fact(asset, key, value, at)


def _configure(conn: psycopg.Connection[Any]) -> None:
    for statement in _SESSION:
        conn.execute(statement)
