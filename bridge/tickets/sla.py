"""The SLA clock: reaction deadlines in service hours, Europe/Warsaw, Polish holidays.

Pure: it is given times and returns times; it never reads the wall clock. Every duration is
measured on aware datetimes converted to UTC, so a DST change never adds or loses an hour.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache

import holidays

from bridge.clock import WARSAW
from bridge.models import Category, Contract

STANDARD_WINDOW = (time(7, 0), time(15, 0))
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_REACTION: dict[Category, timedelta] = {
    Category.AWARIA: timedelta(hours=2),
    Category.USTERKA: timedelta(hours=8),
    Category.ADMINISTRACJA: timedelta(hours=16),
    Category.KONSULTACJA: timedelta(hours=24),
}
# Aktualizacja and utrzymanie follow an agreed schedule: no reaction clock.
NO_CLOCK = frozenset({Category.AKTUALIZACJA, Category.UTRZYMANIE})
_SEARCH_DAYS = 3 * 366  # a calendar with no service time at all would search forever


class SlaError(ValueError):
    pass


@lru_cache(maxsize=64)
def polish_holidays(year: int) -> frozenset[date]:
    """Polish public holidays of a year, movable feasts and (from 2025) Christmas Eve included."""
    return frozenset(holidays.country_holidays("PL", years=year))


def parse_window(text: str) -> tuple[time, time | None]:
    """ "07:00-15:00" -> (07:00, 15:00); an end of "24:00" is returned as None (midnight)."""
    start, end = text.split("-")
    return time.fromisoformat(start), None if end == "24:00" else time.fromisoformat(end)


def _merge(windows: list[tuple[time, time | None]]) -> list[tuple[time, time | None]]:
    """Sort a day's windows and join overlapping or touching ones, so no time counts twice."""
    end_of_day = time.max

    def end(w: tuple[time, time | None]) -> time:
        return end_of_day if w[1] is None else w[1]

    merged: list[tuple[time, time | None]] = []
    for window in sorted(windows, key=lambda w: (w[0], end(w))):
        if merged and window[0] <= end(merged[-1]):
            if end(window) > end(merged[-1]):
                merged[-1] = (merged[-1][0], window[1])
        else:
            merged.append(window)
    return merged


class ServiceCalendar:
    """When the reaction clock runs: service windows per weekday, minus days off.

    ``windows`` is None for 24/7: then every second counts.
    """

    def __init__(
        self,
        windows: Mapping[int, list[tuple[time, time | None]]] | None,
        public_holidays: bool = True,
        days_off: Iterable[date] = (),
    ) -> None:
        self.windows = None if windows is None else {d: _merge(w) for d, w in windows.items()}
        self.public_holidays = public_holidays
        self.days_off = frozenset(days_off)
        if self.windows is not None and not any(self.windows.values()):
            raise SlaError("the service hours contain no time at all")

    @classmethod
    def standard(cls, days_off: Iterable[date] = ()) -> ServiceCalendar:
        return cls({d: [STANDARD_WINDOW] for d in range(5)}, True, days_off)

    @classmethod
    def always(cls) -> ServiceCalendar:
        return cls(None)

    @classmethod
    def for_contract(cls, contract: Contract) -> ServiceCalendar:
        if contract.hours == "24/7":
            return cls.always()
        if contract.hours == "standard":
            return cls.standard(contract.days_off)
        windows = {
            WEEKDAYS.index(day): [parse_window(w) for w in spans]
            for day, spans in contract.service_hours.items()
        }
        return cls(windows, contract.public_holidays, contract.days_off)

    @property
    def is_always(self) -> bool:
        return self.windows is None

    def _is_day_off(self, day: date) -> bool:
        return day in self.days_off or (self.public_holidays and day in polish_holidays(day.year))

    def _intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The day's service time as UTC intervals."""
        assert self.windows is not None
        if self._is_day_off(day):
            return []
        result = []
        for start, end in self.windows.get(day.weekday(), ()):
            begin = datetime.combine(day, start, WARSAW)
            finish = (
                datetime.combine(day + timedelta(days=1), time(0), WARSAW)
                if end is None
                else datetime.combine(day, end, WARSAW)
            )
            result.append((begin.astimezone(UTC), finish.astimezone(UTC)))
        return result

    def covers(self, at: datetime) -> bool:
        """Whether ``at`` (aware) is in service time (24/7: always)."""
        if at.tzinfo is None:
            raise SlaError("at must be an aware datetime")
        if self.windows is None:
            return True
        moment = at.astimezone(UTC)
        day = moment.astimezone(WARSAW).date()
        return any(begin <= moment < end for begin, end in self._intervals(day))

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The moment ``duration`` of service time after ``start`` (aware), in Europe/Warsaw."""
        if start.tzinfo is None:
            raise SlaError("start must be an aware datetime")
        at = start.astimezone(UTC)
        if self.windows is None:
            return (at + duration).astimezone(WARSAW)
        remaining = duration
        day = at.astimezone(WARSAW).date()
        for _ in range(_SEARCH_DAYS):
            for begin, end in self._intervals(day):
                if end <= at:
                    continue
                begin = max(begin, at)
                available = end - begin
                if remaining <= available:
                    return (begin + remaining).astimezone(WARSAW)
                remaining -= available
            day += timedelta(days=1)
        raise SlaError("no service time found within three years")

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Service time from ``start`` to ``end`` (zero when end is not after start)."""
        if start.tzinfo is None or end.tzinfo is None:
            raise SlaError("start and end must be aware datetimes")
        a, b = start.astimezone(UTC), end.astimezone(UTC)
        if b <= a:
            return timedelta(0)
        if self.windows is None:
            return b - a
        total = timedelta(0)
        day = a.astimezone(WARSAW).date()
        last = b.astimezone(WARSAW).date()
        while day <= last:
            for begin, finish in self._intervals(day):
                lo, hi = max(begin, a), min(finish, b)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return total


def reaction_time(contract: Contract, category: Category) -> timedelta | None:
    """The contract's reaction time for a category; None where no clock runs."""
    if category in NO_CLOCK:
        return None
    seconds = contract.reaction.get(category)
    return timedelta(seconds=seconds) if seconds is not None else DEFAULT_REACTION[category]


def reaction_due(contract: Contract, category: Category, opened: datetime) -> datetime | None:
    """When the first response is due for a ticket of ``category`` opened at ``opened``."""
    reaction = reaction_time(contract, category)
    if reaction is None:
        return None
    return ServiceCalendar.for_contract(contract).add(opened, reaction)
