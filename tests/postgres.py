"""The real PostgreSQL of this machine (127.0.0.1:5432, trust auth) for tests: a database of
its own per test, made on first use and dropped at the end of the session."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

ADMIN_URL = os.environ.get("DYZUR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
_made: set[str] = set()


def _admin():  # type: ignore[no-untyped-def]
    import psycopg

    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {ADMIN_URL} is required under CI: {exc}")
        pytest.skip(f"PostgreSQL at {ADMIN_URL} does not answer")


def database_url(tmp_path: Path, name: str = "") -> str:
    """The URL of a new, empty database of this test (the same one for the same path and
    name: two stores on it are two bridges on one database)."""
    digest = hashlib.sha1(f"{tmp_path}/{name}".encode()).hexdigest()[:16]
    database = f"dyzur_test_{digest}"
    if database not in _made:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{database}"')
        _made.add(database)
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + database


def drop_databases() -> None:
    """Drop the databases this session made."""
    if not _made:
        return
    with _admin() as conn:
        for database in sorted(_made):
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    _made.clear()
