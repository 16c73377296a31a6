"""The store contract suites: one module per role of ``bridge.store.roles``, each run against
every store implementation. A store joins all of them by adding its factory to
``STORE_FACTORIES`` (tests/conftest.py): the ``store`` fixture below is parametrized over it.

The helpers here build the values the suites store, so each module reads as the role's
contract and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bridge.models import Category, Ticket, TicketStatus, TimelineEntry, ticket_number
from bridge.store import Store
from tests.conftest import START, STORE_FACTORIES


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A new, migrated store of each implementation."""
    s = STORE_FACTORIES[request.param](tmp_path)
    s.migrate()
    yield s
    s.close()


def make_ticket(n: int, **overrides: object) -> Ticket:
    fields: dict[str, object] = dict(
        number=ticket_number(2026, n),
        client="szpital-a",
        asset="srv-a1",
        rule="disk_usage",
        fingerprint=f"fp{n}",
        category=Category.USTERKA,
        status=TicketStatus.OPEN,
        title=f"Ticket {n}",
        description="opis",
        opened_at=START + timedelta(minutes=n),
        updated_at=START + timedelta(minutes=n),
        labels={"asset": "srv-a1", "mountpoint": "/var"},
        last_value=0.95,
    )
    fields.update(overrides)
    return Ticket(**fields)  # type: ignore[arg-type]


def opened(at: datetime) -> TimelineEntry:
    return TimelineEntry(at, "opened", "otwarte")
