"""Who is on duty when: the one question the pager asks of the rota, and what people read of it
(``dyzur oncall now``, the gaps of a 24/7 hospital's coverage, a person's calendar).

A shift starts at a Europe/Warsaw wall-clock time and lasts ``duration`` of wall-clock time,
repeating by its ``rrule`` at the same wall-clock hours, exactly as a maintenance window does
(``bridge.maintenance.windows``): a 24-hour shift from 08:00 to 08:00 covers 23 real hours across
the spring DST night and 25 across the autumn one, as the engineers read their rota. Every
comparison is then made on aware datetimes.

Of the shifts of one rota that cover a hospital and asset kind at a moment, the one with the
higher ``priority`` is on duty, a shift without one being the lowest (config validation refuses
overlaps of shifts with the same priority, or both without one).
An override hands a period of a person's shifts to another person; it wins over the shifts for
its period and coverage, and creates no duty where that person had none.

Pure: given the settings, the overrides (asked of their source at each question, so an override
written by another process counts at once) and times; no clock, no network.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from bridge.clock import WARSAW
from bridge.maintenance.windows import Interval, Occurrences, validate_rrule
from bridge.models import Asset, Client, MaintenanceWindow
from bridge.store.roles import OncallOverride

if TYPE_CHECKING:
    from bridge.config import OncallPerson, OncallSettings, OncallShift

# The rota whose person is paged first, and whose coverage gaps are reported.
PRIMARY = "primary"
# How far ahead overlapping shifts are looked for: a year of weekly rotations and a bit.
OVERLAP_HORIZON = timedelta(days=400)
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Duty:
    """Who is on duty, in which rota, for the period of their shift (or of the override that
    handed it to them, within the shift) that contains the moment asked about."""

    person: OncallPerson
    rota: str
    start: datetime
    end: datetime
    override: bool


@dataclass(frozen=True, slots=True)
class Gap:
    """A period of a 24/7 hospital's coverage with nobody on duty for one asset kind."""

    client: str
    kind: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Assignment:
    """A period a person is on duty, as their calendar shows it: of the shift
    ``oncall.shifts.<shift>`` (its own, or handed to them by ``override``), for its coverage."""

    person: str
    rota: str
    start: datetime
    end: datetime
    shift: int
    clients: tuple[str, ...] | None
    kinds: tuple[str, ...] | None
    override: OncallOverride | None = None


class OverrideSource(Protocol):
    """Where the overrides are kept (the store's ``OncallOverrides`` role)."""

    def oncall_overrides(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[OncallOverride]: ...


class StaticOverrides:
    """A fixed list of overrides, for a rota built without a store."""

    def __init__(self, overrides: Iterable[OncallOverride] = ()) -> None:
        self._overrides = sorted(overrides, key=lambda o: o.id)

    def oncall_overrides(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[OncallOverride]:
        return [
            o
            for o in self._overrides
            if (end is None or o.start < end) and (start is None or o.end > start)
        ]


def wall_start(shift: OncallShift) -> datetime:
    """The shift's (first) start as naive Warsaw wall-clock time (an aware start, which config
    validation refuses, is read in Warsaw)."""
    if shift.start.tzinfo is not None:
        return shift.start.astimezone(WARSAW).replace(tzinfo=None)
    return shift.start


def _aware(wall: datetime) -> datetime:
    """A Warsaw wall-clock time as aware UTC (as ``windows`` reads one)."""
    return wall.replace(tzinfo=WARSAW).astimezone(UTC)


def shift_bounds(shift: OncallShift) -> Interval:
    """The first occurrence: its start, and its end ``duration`` of wall-clock time later."""
    wall = wall_start(shift)
    return _aware(wall), _aware(wall + timedelta(seconds=shift.duration))


class _Shift:
    """One configured shift with its occurrences (recurring exactly like a window's)."""

    def __init__(self, index: int, shift: OncallShift) -> None:
        self.index = index
        self.shift = shift
        self.person = shift.person
        self.rota = shift.rota
        self.clients = None if shift.clients is None else frozenset(shift.clients)
        self.kinds = None if shift.kinds is None else frozenset(shift.kinds)
        # Higher priority first; an unset priority is the lowest, then the earlier shift.
        self.rank = (shift.priority if shift.priority is not None else -(2**63), -index)
        start, end = shift_bounds(shift)
        self.first = start
        window = MaintenanceWindow(
            id=f"oncall.shifts.{index}",
            client="",
            start=start,
            end=end,
            reason="",
            rrule=shift.rrule,
        )
        self.occurrences = Occurrences(window)

    def covers(self, client: str, kind: str) -> bool:
        return (self.clients is None or client in self.clients) and (
            self.kinds is None or kind in self.kinds
        )

    def covers_all_of(self, other: _Shift) -> bool:
        """Whatever ``other`` covers, this covers too."""
        return _within(other.clients, self.clients) and _within(other.kinds, self.kinds)


def _within(inner: frozenset[str] | None, outer: frozenset[str] | None) -> bool:
    return outer is None or (inner is not None and inner <= outer)


class Rota:
    """The configured shifts and the overrides of ``overrides`` (a store, or a fixed list)."""

    def __init__(
        self,
        settings: OncallSettings,
        overrides: OverrideSource | Sequence[OncallOverride] = (),
    ) -> None:
        self.settings = settings
        self._people = {p.id: p for p in settings.people}
        self._shifts = [_Shift(i, s) for i, s in enumerate(settings.shifts)]
        self._overrides: OverrideSource = (
            StaticOverrides(overrides) if isinstance(overrides, Sequence) else overrides
        )

    @property
    def rotas(self) -> list[str]:
        """The rotas the shifts name, primary first."""
        names = {s.rota for s in self._shifts}
        return sorted(names, key=lambda name: (name != PRIMARY, name))

    def person(self, id: str) -> OncallPerson:
        """The person ``id``; KeyError naming it when the config has no such person."""
        try:
            return self._people[id]
        except KeyError:
            raise KeyError(f"unknown person {id!r}") from None

    def on_duty(self, rota: str, client: str, kind: str, at: datetime) -> Duty | None:
        """Who is on duty in ``rota`` for ``client``'s assets of ``kind`` at ``at`` (aware):
        the person of the highest-priority shift running then, or the one an override handed
        that period to; None when nobody is."""
        at = _require_aware(at)
        found = self._shift_at(rota, client, kind, at)
        if found is None:
            return None
        shift, (start, end) = found
        override = self._override_at(rota, shift.person, client, at)
        if override is not None:
            return Duty(
                self._people[override.person],
                rota,
                max(start, override.start),
                min(end, override.end),
                override=True,
            )
        return Duty(self._people[shift.person], rota, start, end, override=False)

    def _shift_at(
        self, rota: str, client: str, kind: str, at: datetime
    ) -> tuple[_Shift, Interval] | None:
        best: tuple[_Shift, Interval] | None = None
        for shift in self._shifts:
            if shift.rota != rota or not shift.covers(client, kind):
                continue
            if best is not None and shift.rank < best[0].rank:
                continue
            running = shift.occurrences.at(at)
            if running is not None:
                best = (shift, running)
        return best

    def _override_at(
        self, rota: str, shift_person: str, client: str, at: datetime
    ) -> OncallOverride | None:
        """The latest override handing ``shift_person``'s duty at ``at`` to someone (one whose
        person left the config is skipped: the shift's own person stays on duty)."""
        for o in reversed(self._overrides.oncall_overrides(at, at + _TICK)):
            if (
                o.rota == rota
                and o.shift_person == shift_person
                and o.client in (None, client)
                and o.start <= at < o.end
                and o.person in self._people
            ):
                return o
        return None

    def has_shift(
        self, rota: str, person: str, client: str | None, start: datetime, end: datetime
    ) -> bool:
        """Whether ``person`` has a shift in ``rota`` (for ``client``, if given) running at some
        time in [start, end): an override can hand only such a period."""
        for shift in self._shifts:
            if shift.rota != rota or shift.person != person:
                continue
            if client is not None and shift.clients is not None and client not in shift.clients:
                continue
            if next(shift.occurrences.between(start, end), None) is not None:
                return True
        return False

    def covered(
        self, rota: str, client: str, kind: str, start: datetime, end: datetime
    ) -> list[Interval]:
        """The periods in [start, end) when somebody is on duty in ``rota`` for ``client`` and
        ``kind``, merged, in order. Overrides change who, never whether."""
        spans = sorted(
            (max(s, start), min(e, end))
            for shift in self._shifts
            if shift.rota == rota and shift.covers(client, kind)
            for s, e in shift.occurrences.between(start, end)
        )
        merged: list[Interval] = []
        for s, e in spans:
            if merged and s <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            else:
                merged.append((s, e))
        return merged

    def gaps(
        self, client: str, kind: str, start: datetime, end: datetime, rota: str = PRIMARY
    ) -> list[Interval]:
        """The periods in [start, end) with nobody on duty in ``rota`` for ``client``'s
        assets of ``kind``."""
        found: list[Interval] = []
        cursor = start
        for s, e in self.covered(rota, client, kind, start, end):
            if s > cursor:
                found.append((cursor, s))
            cursor = max(cursor, e)
        if cursor < end:
            found.append((cursor, end))
        return found

    def schedule(self, person: str, start: datetime, end: datetime) -> list[Assignment]:
        """When ``person`` is on duty in [start, end), as their calendar shows it: their shifts'
        occurrences less what a higher-priority shift covering all of it takes and what an
        override hands to another person, and the periods handed to them; by start."""
        overrides = self._overrides.oncall_overrides(start, end)
        found: list[Assignment] = []
        for shift in self._shifts:
            if shift.person == person:
                handed = [
                    (o.start, o.end)
                    for o in overrides
                    if o.rota == shift.rota
                    and o.shift_person == person
                    and (o.client is None or shift.clients == frozenset({o.client}))
                    and o.person in self._people
                ]
                for occurrence in shift.occurrences.between(start, end):
                    cuts = handed + self._taken_by_higher(shift, *occurrence)
                    for s, e in _subtract(occurrence, cuts):
                        found.append(_assignment(person, shift, s, e))
        for o in overrides:
            if o.person != person:
                continue
            for shift in self._shifts:
                if shift.rota != o.rota or shift.person != o.shift_person:
                    continue
                if o.client is not None and not (
                    shift.clients is None or o.client in shift.clients
                ):
                    continue
                for s, e in shift.occurrences.between(max(start, o.start), min(end, o.end)):
                    s, e = max(s, o.start), min(e, o.end)
                    clients = (o.client,) if o.client is not None else None
                    found.append(_assignment(person, shift, s, e, o, clients))
        found.sort(key=lambda a: (a.start, a.shift, a.override is not None))
        return found

    def _taken_by_higher(self, shift: _Shift, start: datetime, end: datetime) -> list[Interval]:
        return [
            running
            for other in self._shifts
            if other is not shift
            and other.rota == shift.rota
            and other.rank > shift.rank
            and other.covers_all_of(shift)
            for running in other.occurrences.between(start, end)
        ]


def _assignment(
    person: str,
    shift: _Shift,
    start: datetime,
    end: datetime,
    override: OncallOverride | None = None,
    clients: tuple[str, ...] | None = None,
) -> Assignment:
    if clients is None and shift.clients is not None:
        clients = tuple(sorted(shift.clients))
    kinds = None if shift.kinds is None else tuple(sorted(shift.kinds))
    return Assignment(person, shift.rota, start, end, shift.index, clients, kinds, override)


def _subtract(interval: Interval, cuts: Iterable[Interval]) -> list[Interval]:
    """What is left of ``interval`` once the ``cuts`` are taken out."""
    left = [interval]
    for cut_start, cut_end in cuts:
        rest: list[Interval] = []
        for s, e in left:
            if cut_end <= s or cut_start >= e:
                rest.append((s, e))
                continue
            if s < cut_start:
                rest.append((s, cut_start))
            if cut_end < e:
                rest.append((cut_end, e))
        left = rest
    return left


def _require_aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"rota: expected an aware datetime, got {at.isoformat()}")
    return at


def coverage_gaps(
    rota: Rota,
    clients: Iterable[Client],
    assets: Iterable[Asset],
    start: datetime,
    end: datetime,
) -> list[Gap]:
    """The gaps of the primary rota's coverage of every 24/7 hospital, for each kind of asset
    it has, in [start, end): by hospital, kind and start."""
    kinds: dict[str, set[str]] = {}
    for asset in assets:
        kinds.setdefault(asset.client, set()).add(asset.kind)
    found = []
    for client in sorted(clients, key=lambda c: c.id):
        if client.contract.hours != "24/7":
            continue
        for kind in sorted(kinds.get(client.id, ())):
            found += [Gap(client.id, kind, s, e) for s, e in rota.gaps(client.id, kind, start, end)]
    return found


def local_minute(at: datetime) -> str:
    """``2026-12-07 08:00`` in Warsaw: how a rota is read."""
    return at.astimezone(WARSAW).strftime("%Y-%m-%d %H:%M")


def shift_problems(settings: OncallSettings) -> list[str]:
    """What is wrong with the shifts themselves, naming the field: a start with an offset, a
    bad rrule, a shift overlapping its own next occurrence, and overlapping shifts of one rota
    and coverage with the same priority or both without one (looked for in the first
    ``OVERLAP_HORIZON`` from the later of the two first starts)."""
    problems: list[str] = []
    valid: list[_Shift] = []
    for i, shift in enumerate(settings.shifts):
        field = f"oncall.shifts.{i}"
        if shift.start.tzinfo is not None:
            problems.append(
                f"{field}.start: a Europe/Warsaw wall-clock time without an offset "
                f"(2026-11-30T08:00), got {shift.start.isoformat()}"
            )
            continue
        if shift.rrule is not None:
            try:
                validate_rrule(shift.rrule, *shift_bounds(shift))
            except ValueError as exc:
                problems.append(f"{field}.{exc}")
                continue
        built = _Shift(i, shift)
        itself = built.occurrences.first_overlap_with_itself(built.first + OVERLAP_HORIZON)
        if itself is not None:
            problems.append(
                f"{field}.duration: the occurrence of {local_minute(itself[0])} begins before "
                "the previous one ends; shorten it or repeat it less often"
            )
            continue
        valid.append(built)
    # Each shift's occurrences expanded once, over every pair's horizon.
    lo = min((x.first for x in valid), default=None)
    hi = max((x.first for x in valid), default=None)
    expanded = (
        {}
        if lo is None or hi is None
        else {x.index: list(x.occurrences.between(lo, hi + OVERLAP_HORIZON)) for x in valid}
    )
    for j, b in enumerate(valid):
        for a in valid[:j]:
            if a.rota != b.rota or not _coverage_meets(a, b):
                continue
            pa, pb = a.shift.priority, b.shift.priority
            if pa != pb:
                continue  # the higher wins; a shift without a priority is the lowest
            horizon_start = max(a.first, b.first)
            overlap = _first_overlap(
                expanded[a.index], expanded[b.index], horizon_start, horizon_start + OVERLAP_HORIZON
            )
            if overlap is None:
                continue
            fix = (
                "give one of them a priority (the higher wins)"
                if pa is None
                else f"both have priority {pa}; give them distinct priorities"
            )
            problems.append(
                f"oncall.shifts.{b.index}: overlaps oncall.shifts.{a.index} "
                f"(rota {a.rota}, {_coverage_text(a, b)}) on {local_minute(overlap)}; {fix}"
            )
    return problems


def _coverage_meets(a: _Shift, b: _Shift) -> bool:
    return all(
        x is None or y is None or x & y for x, y in ((a.clients, b.clients), (a.kinds, b.kinds))
    )


def _coverage_text(a: _Shift, b: _Shift) -> str:
    clients = _meet(a.clients, b.clients)
    text = "all hospitals" if clients is None else ", ".join(sorted(clients))
    kinds = _meet(a.kinds, b.kinds)
    return text if kinds is None else f"{text}, kind {', '.join(sorted(kinds))}"


def _meet(x: frozenset[str] | None, y: frozenset[str] | None) -> frozenset[str] | None:
    if x is None:
        return y
    return x if y is None else x & y


def _first_overlap(
    ours: list[Interval], theirs: list[Interval], start: datetime, end: datetime
) -> datetime | None:
    """When the first overlap of two shifts' occurrences (each in order, none overlapping the
    next) in [start, end) begins."""
    mine = [o for o in ours if o[1] > start and o[0] < end]
    other = [o for o in theirs if o[1] > start and o[0] < end]
    i = 0
    for s, e in mine:
        while i < len(other) and other[i][1] <= s:
            i += 1
        if i == len(other):
            return None
        if other[i][0] < e:
            return max(s, other[i][0])
    return None
