"""The bridge's one source of time. Tests replace it; nothing else reads the wall clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

WARSAW = ZoneInfo("Europe/Warsaw")


class Clock:
    """Wall-clock time as epoch seconds and as an aware UTC datetime."""

    def time(self) -> float:
        return time.time()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)


class FixedClock(Clock):
    """A clock that moves only when told to: for tests and replays."""

    def __init__(self, start: float | datetime) -> None:
        self._t = start.timestamp() if isinstance(start, datetime) else float(start)

    def time(self) -> float:
        return self._t

    def advance(self, seconds: float) -> None:
        self._t += seconds

    def set(self, when: float | datetime) -> None:
        self._t = when.timestamp() if isinstance(when, datetime) else float(when)


def to_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def local_iso(when: datetime | None) -> str | None:
    """ISO 8601 in Europe/Warsaw with its UTC offset, as the hospitals read time."""
    return None if when is None else when.astimezone(WARSAW).isoformat()


def utc_iso(when: datetime | None) -> str:
    """A time as the bridge's log writes it: UTC to the second, marked Z
    (2026-11-30T09:00:00Z)."""
    return "-" if when is None else when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_time(when: datetime | None) -> str:
    """A time as a person reads it on a ticket: 2026-11-23 14:05:37 (Europe/Warsaw). To the
    second: a runbook's steps, a soak or an escalated deadline do not fall on whole minutes."""
    return "—" if when is None else when.astimezone(WARSAW).strftime("%Y-%m-%d %H:%M:%S")
