"""The values the store roles (``bridge.store.roles``) take and give besides the domain models:
claims of agent batches, list filters, and the one error every store raises."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

from bridge.models import Category, TicketStatus


class BatchClaim(StrEnum):
    TAKEN = "taken"
    DUPLICATE = "duplicate"
    FOREIGN = "foreign"  # the stream belongs to another token
    ANOMALY = "anomaly"  # taken, but the sequence jumped too far to advance the stream


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One numbered batch as the store keeps count of it."""

    agent_id: str
    owner: str  # the name of the token that sent it
    asset: str
    seq: int
    samples: int
    dropped: int
    at: datetime


def without_password(url: str) -> str:
    """A store's or Redis' URL as it may appear in logs and messages: its password as ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


class StoreError(Exception):
    """The store could not do what was asked (bad URL, unreadable file, newer schema, busy or
    refused write), or was asked wrongly (a transaction inside another, a lock outside one)."""


class StaleLease(StoreError):
    """A write of a worker whose lease another worker has taken since (a newer fencing
    token was given): refused, the worker must stop what it does under that lease."""


@dataclass(frozen=True, slots=True)
class TicketFilter:
    """Which tickets to list, newest first (``opened_at``, then insertion order).

    ``before`` is a keyset cursor: the number of the last ticket of the previous page; the
    list continues right after it in that order, whatever was opened meanwhile. A cursor
    ticket that does not match ``client`` gives an empty list (a cursor never reaches another
    client's tickets). ``offset`` still skips rows after the cursor, if both are given.

    ``by_deadline`` orders the list as a queue instead (the pages' queue): tickets waiting for
    their first response by reaction deadline, earliest first, then answered ones by deadline,
    then those without one, oldest first; paged by ``offset`` (not with ``before``).
    """

    client: str | None = None
    status: TicketStatus | None = None
    category: Category | None = None
    asset: str | None = None
    limit: int = 100
    offset: int = 0
    before: str | None = None
    by_deadline: bool = False


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which audit events to list, in the order they were recorded (by id): oldest first, or
    newest first with ``newest_first``.

    Every field that is not None narrows the list: ``client`` (exact), ``action`` (exact, or
    a prefix when it ends in ``*``: ``ticket.*``), ``actor``, ``asset``, ``since`` (events
    that happened at or after it). ``after`` is the id of the last event of the previous
    page: the list continues right after it in its order.
    """

    client: str | None = None
    action: str | None = None
    actor: str | None = None
    asset: str | None = None
    since: datetime | None = None
    after: int | None = None
    newest_first: bool = False
    limit: int = 100
