"""When maintenance windows run, and the one question the lifecycle asks of them: is this asset's
alert muted at ``now``, and by which window?

Pure: given windows, the inventory and times; no store, no clock, nothing of tickets. A recurring
window repeats at the same Europe/Warsaw wall-clock times ("every second Tuesday 22:00-02:00"),
so across a DST change an occurrence is an hour longer or shorter in real time, as the hospital
reads it; every comparison is then made on aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dateutil.rrule import rrule, rrulestr

from bridge.clock import WARSAW, local_iso
from bridge.models import Asset, MaintenanceWindow

# How far ahead conflicts of recurring windows are looked for.
CONFLICT_HORIZON = timedelta(days=730)
SELECTOR_KEYS = ("environment", "kind", "id", "client")
_FORBIDDEN_RRULE = ("DTSTART", "SECONDLY", "MINUTELY", "HOURLY")
Interval = tuple[datetime, datetime]
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def parse_selector(text: str) -> dict[str, str]:
    """``environment=test`` or ``kind=amms,environment=prod`` -> {key: value}."""
    selector: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not key or not value:
            raise ValueError(f"selector: expected key=value, got {part.strip()!r}")
        if key not in SELECTOR_KEYS:
            raise ValueError(f"selector: unknown key {key!r} (known: {', '.join(SELECTOR_KEYS)})")
        selector[key] = value
    return selector


def selected(assets: Mapping[str, Asset], client: str, selector: Mapping[str, str]) -> list[Asset]:
    """The client's assets whose fields (SELECTOR_KEYS) have the selector's values."""
    return [
        a
        for a in assets.values()
        if a.client == client
        and all(str(getattr(a, key)) == value for key, value in selector.items())
    ]


def covered_assets(window: MaintenanceWindow, assets: Mapping[str, Asset]) -> list[str]:
    """The assets a window covers: its list, or its client's assets matching its selector."""
    if window.assets:
        return list(window.assets)
    return [a.id for a in selected(assets, window.client, window.selector)]


def validate_rrule(text: str, start: datetime, end: datetime) -> None:
    """Raise ValueError naming what is wrong with an RRULE (RFC 5545, without DTSTART).

    The window's start must be an occurrence of its rule (RFC 5545: DTSTART is the first
    instance; a series whose DTSTART is not one is undefined, and calendar programs differ), so
    that what the engineer typed is the first night muted, checked for conflicts and shown.
    """
    upper = text.upper()
    for word in _FORBIDDEN_RRULE:
        if word in upper:
            raise ValueError(
                f"rrule: {word} is not allowed (DTSTART is the window's start; "
                "windows repeat at most daily)"
            )
    try:
        rule = _rule(text, _wall(start))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"rrule: {exc}") from None
    wall = _wall(start).replace(microsecond=0)  # the rule counts in whole seconds
    first = next(iter(rule), None)
    if first is None:
        raise ValueError(
            f"rrule: gives no occurrence from the start {_day(_aware(wall))} "
            "(UNTIL before it, or COUNT=0)"
        )
    if first != wall:
        span = _wall(end) - _wall(start)
        raise ValueError(
            f"start: {_day(_aware(wall))} is not an occurrence of rrule {text}; its first "
            f"occurrence would be {_day(_aware(first))} to "
            f"{local_iso(_aware(first + span))}: plan that start and end, "
            "or change rrule"
        )


def _day(at: datetime) -> str:
    """``Tuesday 2026-12-01T22:00:00+01:00``: the weekday is what a BYDAY rule is about."""
    local = at.astimezone(WARSAW)
    return f"{_WEEKDAYS[local.weekday()]} {local.isoformat()}"


def _wall(at: datetime) -> datetime:
    """Naive Europe/Warsaw wall-clock time."""
    return at.astimezone(WARSAW).replace(tzinfo=None)


def _aware(wall: datetime) -> datetime:
    """A wall-clock time in Warsaw as aware UTC (a time skipped in spring reads as CET)."""
    return wall.replace(tzinfo=WARSAW).astimezone(UTC)


def _rule(text: str, dtstart: datetime) -> rrule:
    rule = rrulestr(text, dtstart=dtstart, cache=True)
    if not isinstance(rule, rrule):
        raise ValueError("expected one RRULE")
    return rule


class Occurrences:
    """The occurrences of one window in real time, cut short where it was cancelled."""

    def __init__(self, window: MaintenanceWindow) -> None:
        self.window = window
        self._start = window.start.astimezone(UTC)
        self._end = window.end.astimezone(UTC)
        self._cut = window.cancelled_at
        self._rule: rrule | None = None
        if window.rrule:
            first = _wall(window.start)
            self._span = _wall(window.end) - first  # wall-clock length: "22:00-02:00"
            self._rule = _rule(window.rrule, first)

    def _cancelled(self, occurrence: Interval) -> Interval | None:
        if self._cut is None:
            return occurrence
        start, end = occurrence
        if start >= self._cut:
            return None
        return start, min(end, self._cut)

    def between(self, start: datetime, end: datetime) -> Iterator[Interval]:
        """Occurrences that overlap [start, end), in order."""
        if self._rule is None:
            candidates: Iterable[Interval] = [(self._start, self._end)]
        else:
            # Widen by the span and a DST hour so an occurrence begun earlier is found.
            walls = self._rule.between(
                _wall(start) - self._span - timedelta(hours=2),
                _wall(end) + timedelta(hours=2),
                inc=True,
            )
            candidates = ((_aware(w), _aware(w + self._span)) for w in walls)
        for occurrence in candidates:
            cut = self._cancelled(occurrence)
            if cut is not None and cut[0] < end and cut[1] > start:
                yield cut

    def at(self, moment: datetime) -> Interval | None:
        """The occurrence running at ``moment`` (start inclusive, end exclusive), if any."""
        for start, end in self.between(moment, moment + timedelta(microseconds=1)):
            if start <= moment < end:
                return start, end
        return None

    def following(self, moment: datetime) -> Interval | None:
        """The occurrence running at ``moment`` or the next one after it; None once the
        window's last occurrence is over (or it was cancelled). Not bounded by a horizon."""
        if self._rule is None:
            candidates: Iterable[Interval] = [(self._start, self._end)]
        else:
            # From a span and a DST hour before, so an occurrence running at ``moment`` is found.
            walls = self._rule.xafter(_wall(moment) - self._span - timedelta(hours=2), inc=True)
            candidates = ((_aware(w), _aware(w + self._span)) for w in walls)
        for occurrence in candidates:
            cut = self._cancelled(occurrence)
            if cut is None:
                return None  # begins after the cancellation, and so do all later ones
            if cut[1] > moment:
                return cut
        return None

    def ended(self, moment: datetime) -> bool:
        """No occurrence runs at ``moment`` or later: the last one is over."""
        return self.following(moment) is None

    def first(self) -> Interval | None:
        """The first occurrence, as muted (not cut by a cancellation); None if the rule has
        none. For a window planned before starts were checked against their rule it is not
        the window's start."""
        if self._rule is None:
            return self._start, self._end
        wall = next(iter(self._rule), None)
        return None if wall is None else (_aware(wall), _aware(wall + self._span))

    def first_overlap_with_itself(self, horizon: datetime) -> Interval | None:
        """An occurrence that begins before the previous one ended (a 25-hour daily window)."""
        previous_end: datetime | None = None
        for start, end in self.between(self._start, horizon):
            if previous_end is not None and start < previous_end:
                return start, end
            previous_end = end
        return None


@dataclass(frozen=True, slots=True)
class Conflict:
    other: MaintenanceWindow
    assets: list[str]
    start: datetime  # the first overlapping occurrence of the other window
    end: datetime


def find_conflict(
    new: MaintenanceWindow, existing: Iterable[MaintenanceWindow], assets: Mapping[str, Asset]
) -> Conflict | None:
    """The first planned window sharing an asset with ``new`` whose occurrences overlap it."""
    mine = set(covered_assets(new, assets))
    horizon = new.start + CONFLICT_HORIZON
    ours = list(Occurrences(new).between(new.start, horizon))
    for other in existing:
        if other.id == new.id or other.client != new.client:
            continue
        shared = mine.intersection(covered_assets(other, assets))
        if not shared:
            continue
        theirs = Occurrences(other).between(new.start, horizon)
        overlap = _first_overlap(ours, theirs)
        if overlap is not None:
            return Conflict(other, sorted(shared), *overlap)
    return None


def _first_overlap(ours: list[Interval], theirs: Iterable[Interval]) -> Interval | None:
    """Both in order; returns the first of ``theirs`` that overlaps one of ``ours``."""
    i = 0
    for start, end in theirs:
        while i < len(ours) and ours[i][1] <= start:
            i += 1
        if i == len(ours):
            return None
        if ours[i][0] < end:
            return start, end
    return None


@dataclass(frozen=True, slots=True)
class Muting:
    """The answer to "is it muted?": by which window, and until when."""

    window: str
    until: datetime


class WindowSchedule:
    """The planned windows indexed by asset, to answer ``muting(asset, at)`` quickly."""

    def __init__(self, windows: Iterable[MaintenanceWindow], assets: Mapping[str, Asset]) -> None:
        self.windows = {w.id: w for w in windows}
        self._occurrences = [Occurrences(w) for w in self.windows.values()]
        self._by_asset: dict[str, list[Occurrences]] = {}
        for occurrences in self._occurrences:
            for asset in covered_assets(occurrences.window, assets):
                self._by_asset.setdefault(asset, []).append(occurrences)

    def muting(self, asset: str, at: datetime) -> Muting | None:
        best: Muting | None = None
        for occurrences in self._by_asset.get(asset, ()):
            running = occurrences.at(at)
            if running is not None and (best is None or running[1] > best.until):
                best = Muting(occurrences.window.id, running[1])
        return best

    def active(self, at: datetime) -> list[tuple[MaintenanceWindow, Interval]]:
        """Windows with an occurrence running at ``at``."""
        found = []
        for occurrences in self._occurrences:
            running = occurrences.at(at)
            if running is not None:
                found.append((occurrences.window, running))
        return found
