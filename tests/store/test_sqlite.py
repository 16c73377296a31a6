"""What only the SQLite store does: its file, schema migrations, query plans, and how its
coordination is built on SQLite's one write lock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bridge.models import Category, TicketStatus
from bridge.store import StoreError, TicketFilter, open_store
from bridge.store.sqlite import MIGRATIONS, SQLiteStore, check_store_file


def test_ping_answers_while_open_and_fails_once_closed(tmp_path):
    store = SQLiteStore(tmp_path / "ping.db")
    store.migrate()
    store.ping()
    (tmp_path / "ping.db").unlink()
    (tmp_path / "ping.db-wal").unlink(missing_ok=True)
    store.close()
    with pytest.raises(StoreError, match="does not answer"):
        store.ping()


def test_sqlite_lists_tickets_from_an_index_without_sorting(tmp_path):
    """Every filter combination, with and without a cursor, reads its page in index order:
    no temporary B-tree sorting the whole table for ORDER BY."""
    import itertools

    store = SQLiteStore(tmp_path / "plan.db")
    store.migrate()
    statements = []
    conn = store._conn()
    conn.set_trace_callback(statements.append)
    filters = {
        "client": "szpital-a",
        "status": TicketStatus.OPEN,
        "category": Category.AWARIA,
        "asset": "srv-a1",
    }
    plans = {}
    for size in range(len(filters) + 1):
        for names in itertools.combinations(filters, size):
            for before in (None, "DZ-2026-000001"):
                statements.clear()
                store.list_tickets(TicketFilter(**{k: filters[k] for k in names}, before=before))
                [sql] = [s for s in statements if s.lstrip().startswith("SELECT")]
                plan = conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
                plans[names, before] = " / ".join(row[3] for row in plan)
    conn.set_trace_callback(None)
    store.close()
    sorting = {k: v for k, v in plans.items() if "TEMP B-TREE" in v or v == "SCAN tickets"}
    assert sorting == {}
    assert plans[(), None] == "SCAN tickets USING INDEX tickets_by_opened"


def test_sqlite_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer than this dyzur"):
        SQLiteStore(path).migrate()


def test_sqlite_store_is_chosen_by_url_relative_to_the_config(tmp_path):
    store = open_store("sqlite:///sub/dir/dyzur.db", base_dir=tmp_path)
    assert (tmp_path / "sub/dir/dyzur.db").exists()
    assert store.schema_version() == len(MIGRATIONS)
    store.close()
    with pytest.raises(StoreError, match="unsupported store URL scheme 'mysql'"):
        open_store("mysql://localhost/dyzur")


def _store_at(path: Path, version: int) -> sqlite3.Connection:
    """A store file at an older schema version, as that version of dyzur left it."""
    conn = sqlite3.connect(path)
    for script in MIGRATIONS[:version]:
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    return conn


def _version_before(marker: str) -> int:
    [index] = [i for i, m in enumerate(MIGRATIONS) if marker in m]
    return index


def test_ticket_numbers_continue_from_the_per_year_table(tmp_path):
    """Stores from before named sequences counted tickets per year in ticket_sequences: the
    upgrade carries the counts over, so numbers go on and never start again at 1."""
    path = tmp_path / "old.db"
    conn = _store_at(path, _version_before("DROP TABLE ticket_sequences"))
    conn.execute("INSERT INTO ticket_sequences VALUES (2025, 812), (2026, 41)")
    conn.execute("INSERT INTO counters VALUES ('window-2026', 3)")
    conn.commit()
    conn.close()
    store = SQLiteStore(path)
    store.migrate()
    assert store.next_sequence("ticket-2026") == 42
    assert store.next_sequence("ticket-2025") == 813
    assert store.next_sequence("ticket-2027") == 1
    assert store.next_sequence("window-2026") == 4
    store.close()
    check_store_file(path)  # the upgraded file is a store of the current schema


def test_a_lease_held_across_the_upgrade_stays_with_its_holder(tmp_path):
    path = tmp_path / "old.db"
    conn = _store_at(path, _version_before("ALTER TABLE leases ADD COLUMN token"))
    conn.execute("INSERT INTO leases VALUES ('siem:soc', 'worker-1', 1000.0)")
    conn.commit()
    conn.close()
    store = SQLiteStore(path)
    store.migrate()
    assert store.lease("siem:soc", "worker-2", 60, 900.0) is None  # still worker-1's
    assert store.lease("siem:soc", "worker-1", 60, 900.0) == 1
    assert store.lease("siem:soc", "worker-2", 60, 2000.0) == 2  # lapsed: changes hands
    store.close()


def test_a_transaction_holds_the_write_lock_from_its_start(tmp_path):
    """Why ``lock`` is free on SQLite: BEGIN IMMEDIATE takes the database's write lock when
    the transaction opens, before it writes anything, so no other writer (thread or process)
    gets in until it ends, whatever lock names either takes."""
    store = SQLiteStore(tmp_path / "lock.db")
    store.migrate()
    other = sqlite3.connect(tmp_path / "lock.db", isolation_level=None, timeout=0)
    with store.transaction():
        store.lock("planning")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()
    store.close()


def test_a_busy_database_refuses_a_transaction_with_a_store_error(tmp_path):
    store = SQLiteStore(tmp_path / "busy.db", busy_timeout=0.05)
    store.migrate()
    blocker = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreError, match="is busy"), store.transaction():
        pass
    with pytest.raises(StoreError, match="is busy"):
        store.next_sequence("ticket-2026")
    blocker.execute("ROLLBACK")
    blocker.close()
    assert store.next_sequence("ticket-2026") == 1
    store.close()
