"""Stores, chosen by URL: ``sqlite:///path`` (the embedded default) or ``postgresql://…`` (the
shared store of several bridges; needs the ``postgres`` extra).

What a store must implement is ``roles.Store``: one small protocol per role (tickets, audit log,
outbox cursors, windows, update plans, agent streams, asset facts, coordination), each with its
contract test module under ``tests/store/``.
"""

from __future__ import annotations

from pathlib import Path

from bridge.store.base import (
    AuditFilter,
    BatchClaim,
    BatchRecord,
    StoreError,
    TicketFilter,
)
from bridge.store.roles import ParkedChange, SinkDelivery, Store

__all__ = [
    "AuditFilter",
    "BatchClaim",
    "BatchRecord",
    "ParkedChange",
    "SinkDelivery",
    "Store",
    "StoreError",
    "TicketFilter",
    "open_store",
    "sqlite_path",
]


def sqlite_path(url: str, base_dir: Path | None = None) -> Path:
    """``sqlite:///rel/path`` is relative to ``base_dir``; ``sqlite:////abs/path`` is absolute."""
    path = Path(url.removeprefix("sqlite:///"))
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def open_store(url: str, base_dir: Path | None = None) -> Store:
    """Open (and migrate) the store a URL names.

    An existing file is checked first and refused, untouched, if it is empty, damaged or not
    a dyzur store (``check_store_file``); only a missing file becomes a new store.
    """
    if url.startswith("sqlite:///"):
        from bridge.store.sqlite import SQLiteStore, check_store_file

        path = sqlite_path(url, base_dir)
        check_store_file(path)
        store: Store = SQLiteStore(path)
    elif url.startswith(("postgresql://", "postgres://")):
        try:
            from bridge.store.postgres import PostgresStore
        except ImportError as exc:
            raise StoreError(
                f"store {url.split('@')[-1]!r} needs PostgreSQL's driver: "
                f"pip install 'dyzur[bridge,postgres]' ({exc})"
            ) from None
        store = PostgresStore(url)
    else:
        scheme = url.split(":", 1)[0] if ":" in url else url
        raise StoreError(
            f"unsupported store URL scheme {scheme!r}: use sqlite:///PATH or "
            "postgresql://USER@HOST/DATABASE"
        )
    store.migrate()
    return store
