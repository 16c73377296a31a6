"""The audit chain: every event holds the hash of the one before it.

Editing an event changes its hash; deleting one breaks the link of the next and leaves a gap
in the ids; deleting the newest ones leaves the ids short of the store's high-water mark.
`dyzur audit verify` names the first event where any of that shows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge.models import AuditEvent

if TYPE_CHECKING:  # the store imports this module for the hash
    from bridge.store import AuditFilter, Store
    from bridge.store.roles import AuditLog

GENESIS_HASH = "0" * 64


def event_hash(event: AuditEvent) -> str:
    """SHA-256 over the previous hash and the event's fields, in a canonical form."""
    body = json.dumps(
        {
            "at": event.at.timestamp(),
            "actor": event.actor,
            "action": event.action,
            "outcome": event.outcome,
            "client": event.client,
            "asset": event.asset,
            "detail": event.detail,
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(f"{event.prev_hash}\n{body}".encode()).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    events: int
    broken_at: int | None = None  # the id of the first event that does not check out
    problem: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def all_events(store: Store, page: int = 1000) -> Iterator[AuditEvent]:
    """Every audit event of a store, oldest first, a page at a time."""
    after = 0
    while batch := store.audit_events(after_id=after, limit=page):
        yield from batch
        after = batch[-1].id or after


def verify_store(store: Store) -> ChainReport:
    return verify_chain(all_events(store), store.audit_high_water())


def verify_chain(events: Iterable[AuditEvent], high_water: int) -> ChainReport:
    """Check events given oldest first, from the first one ever written."""
    expected_id, prev_hash, count = 1, GENESIS_HASH, 0
    for event in events:
        assert event.id is not None
        if event.id != expected_id:
            missing = (
                f"{expected_id}" if event.id == expected_id + 1 else f"{expected_id}-{event.id - 1}"
            )
            return ChainReport(count, event.id, f"event(s) {missing} before it were deleted")
        if event.prev_hash != prev_hash:
            return ChainReport(count, event.id, "it does not link to the event before it")
        if event_hash(event) != event.hash:
            return ChainReport(count, event.id, "its content was changed after it was written")
        prev_hash, expected_id, count = event.hash, event.id + 1, count + 1
    if expected_id - 1 < high_water:
        return ChainReport(
            count, expected_id, f"the newest events {expected_id}-{high_water} were deleted"
        )
    return ChainReport(count)


class AuditQueries:
    """Reading the trail (GET /api/v1/audit): events by filter, in the order recorded."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    def matching(self, query: AuditFilter) -> list[AuditEvent]:
        return self.log.list_audit(query)
