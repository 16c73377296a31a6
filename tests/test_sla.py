"""The SLA clock: reaction deadlines in service hours, Europe/Warsaw, Polish public holidays.

Every expected deadline in the tables below was worked out by hand from the contract rules
(standard hours Mon-Fri 07:00-15:00 without Polish public holidays, 24/7 in real elapsed time,
custom windows per weekday), never by calling the code under test. Winter time in Warsaw is
+01:00, summer time +02:00; the changes are on the last Sunday of March (02:00 -> 03:00) and of
October (03:00 -> 02:00).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bridge.clock import WARSAW
from bridge.models import Category, Contract
from bridge.tickets.sla import (
    DEFAULT_REACTION,
    NO_CLOCK,
    ServiceCalendar,
    SlaError,
    polish_holidays,
    reaction_due,
    reaction_time,
)

AWARIA = Category.AWARIA  # 2 h
USTERKA = Category.USTERKA  # 8 h
ADMIN = Category.ADMINISTRACJA  # 16 h
KONSULTACJA = Category.KONSULTACJA  # 24 h
AKTUALIZACJA = Category.AKTUALIZACJA  # no clock
UTRZYMANIE = Category.UTRZYMANIE  # no clock

MON_SAT = ("mon", "tue", "wed", "thu", "fri", "sat")

STD = Contract()
H24 = Contract(hours="24/7")
# Mon-Sat 07:00-19:00, with and without Polish public holidays, and with one extra day off.
LONG = Contract(hours="custom", service_hours={d: ["07:00-19:00"] for d in MON_SAT})
LONG_NO_HOL = Contract(
    hours="custom", service_hours={d: ["07:00-19:00"] for d in MON_SAT}, public_holidays=False
)
LONG_OFF = Contract(
    hours="custom",
    service_hours={d: ["07:00-19:00"] for d in MON_SAT},
    days_off=[date(2026, 11, 28)],  # a Saturday
)
# A weekend shift: Friday evening to Sunday morning, windows ending at 24:00.
WEEKEND = Contract(
    hours="custom",
    service_hours={"fri": ["16:00-24:00"], "sat": ["00:00-24:00"], "sun": ["00:00-08:00"]},
    public_holidays=False,
)
# Two windows a day with a lunch break.
SPLIT = Contract(
    hours="custom",
    service_hours={d: ["08:00-12:00", "13:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
)
STD_OFF = Contract(days_off=[date(2026, 11, 27)])  # a Friday
STD_AWARIA_4H = Contract(reaction={"awaria": "4h"})
H24_USTERKA_30M = Contract(hours="24/7", reaction={"usterka": "30m"})
STD_NO_CLOCK_OVERRIDE = Contract(reaction={"aktualizacja": "4h", "utrzymanie": "1h"})


def local(text: str) -> datetime:
    """An ISO string as an aware datetime: without an offset it is local Warsaw time."""
    at = datetime.fromisoformat(text)
    return at.replace(tzinfo=WARSAW) if at.tzinfo is None else at


def utc(at: datetime) -> datetime:
    """The instant in UTC: the only safe way to compare two aware datetimes.

    Python compares datetimes of one tzinfo by wall time, ignoring ``fold`` (02:45 summer time
    looks later than 02:15 winter time on the October night), and calls a datetime in the
    repeated hour unequal to every datetime of another zone (PEP 495).
    """
    return at.astimezone(UTC)


def assert_same_moment(actual: datetime | None, expected: str) -> None:
    want = datetime.fromisoformat(expected)
    assert actual is not None
    assert utc(actual) == utc(want), f"{actual.isoformat()} != {expected}"
    assert actual.utcoffset() == want.utcoffset(), f"{actual.isoformat()} != {expected}"


# (contract, category, opened (local Warsaw unless it carries an offset), expected due)
CASES = [
    # --- standard hours, ordinary weeks (November 2026: Mon 23 .. Sun 29, all +01:00) ---
    pytest.param(STD, AWARIA, "2026-11-23T10:00", "2026-11-23T12:00+01:00", id="std-inside"),
    pytest.param(STD, USTERKA, "2026-11-23T10:00", "2026-11-24T10:00+01:00", id="std-8h-next-day"),
    pytest.param(STD, AWARIA, "2026-11-23T05:30", "2026-11-23T09:00+01:00", id="std-before-7"),
    pytest.param(STD, AWARIA, "2026-11-23T07:00", "2026-11-23T09:00+01:00", id="std-at-7"),
    pytest.param(STD, AWARIA, "2026-11-23T15:00", "2026-11-24T09:00+01:00", id="std-at-15"),
    pytest.param(STD, AWARIA, "2026-11-23T18:45", "2026-11-24T09:00+01:00", id="std-after-15"),
    pytest.param(STD, AWARIA, "2026-11-23T13:00", "2026-11-23T15:00+01:00", id="std-ends-at-15"),
    pytest.param(STD, USTERKA, "2026-11-23T07:00", "2026-11-23T15:00+01:00", id="std-full-day"),
    pytest.param(STD, AWARIA, "2026-11-23T14:59:30", "2026-11-24T08:59:30+01:00", id="std-seconds"),
    pytest.param(STD, AWARIA, "2026-11-28T10:00", "2026-11-30T09:00+01:00", id="std-saturday"),
    pytest.param(STD, AWARIA, "2026-11-29T23:59", "2026-11-30T09:00+01:00", id="std-sunday"),
    pytest.param(STD, AWARIA, "2026-11-27T14:00", "2026-11-30T08:00+01:00", id="std-fri-to-mon"),
    pytest.param(
        STD, USTERKA, "2026-11-27T11:30", "2026-11-30T11:30+01:00", id="std-fri-8h-to-mon"
    ),
    # 16 h from Mon 10:00: Mon 5 h, Tue 8 h, Wed 3 h.
    pytest.param(STD, ADMIN, "2026-11-23T10:00", "2026-11-25T10:00+01:00", id="std-16h"),
    # 24 h from Wed 12:00: Wed 3 h, Thu 8 h, Fri 8 h, weekend, Mon 5 h.
    pytest.param(STD, KONSULTACJA, "2026-11-25T12:00", "2026-11-30T12:00+01:00", id="std-24h"),
    pytest.param(
        STD, KONSULTACJA, "2026-11-23T07:00", "2026-11-25T15:00+01:00", id="std-24h-ends-at-15"
    ),
    pytest.param(
        STD, AWARIA, "2026-11-23T06:30+00:00", "2026-11-23T09:30+01:00", id="std-opened-in-utc"
    ),
    # --- standard hours, fixed holidays ---
    pytest.param(STD, AWARIA, "2025-12-31T14:00", "2026-01-02T08:00+01:00", id="hol-1-jan"),
    pytest.param(STD, AWARIA, "2026-01-05T14:00", "2026-01-07T08:00+01:00", id="hol-6-jan"),
    # Thu 30 Apr 2 h, Fri 1 May holiday, Sat, Sun 3 May, Mon 6 h.
    pytest.param(STD, USTERKA, "2026-04-30T13:00", "2026-05-04T13:00+02:00", id="hol-1-may"),
    # 2027: Sat 1 May, Mon 3 May holiday.
    pytest.param(STD, AWARIA, "2027-04-30T14:00", "2027-05-04T08:00+02:00", id="hol-3-may"),
    pytest.param(STD, AWARIA, "2025-08-14T14:30", "2025-08-18T08:30+02:00", id="hol-15-aug"),
    # Fri 29 Oct 2027 1 h (+02:00), DST on Sun 31, Mon 1 Nov holiday, Tue 1 h (+01:00).
    pytest.param(STD, AWARIA, "2027-10-29T14:00", "2027-11-02T08:00+01:00", id="hol-1-nov-dst"),
    pytest.param(STD, AWARIA, "2026-11-10T16:00", "2026-11-12T09:00+01:00", id="hol-11-nov"),
    # Wed 23 Dec 1 h; Thu 24, Fri 25 holidays; Sat 26 holiday anyway; Mon 28 7 h.
    pytest.param(STD, USTERKA, "2026-12-23T14:00", "2026-12-28T14:00+01:00", id="hol-xmas-2026"),
    pytest.param(STD, AWARIA, "2026-12-24T10:00", "2026-12-28T09:00+01:00", id="hol-eve-2026"),
    # Tue 23 Dec 1 h; Wed 24 (Christmas Eve, from 2025), Thu 25, Fri 26 holidays; Mon 29 1 h.
    pytest.param(STD, AWARIA, "2025-12-23T14:00", "2025-12-29T08:00+01:00", id="hol-xmas-2025"),
    pytest.param(STD, AWARIA, "2025-12-24T10:00", "2025-12-29T09:00+01:00", id="hol-eve-2025"),
    # 2024: Christmas Eve (Tue) is a working day; Wed 25 and Thu 26 are holidays.
    pytest.param(STD, AWARIA, "2024-12-24T10:00", "2024-12-24T12:00+01:00", id="eve-2024-works"),
    pytest.param(
        STD, USTERKA, "2024-12-24T14:00", "2024-12-27T14:00+01:00", id="eve-2024-then-xmas"
    ),
    # --- movable feasts ---
    pytest.param(STD, AWARIA, "2026-04-03T14:00", "2026-04-07T08:00+02:00", id="easter-mon-2026"),
    pytest.param(STD, AWARIA, "2025-04-19T10:00", "2025-04-22T09:00+02:00", id="easter-mon-2025"),
    pytest.param(STD, AWARIA, "2026-06-03T14:00", "2026-06-05T08:00+02:00", id="corpus-2026"),
    # Wed 26 May 1.5 h, Thu 27 Corpus Christi, Fri 28 6.5 h.
    pytest.param(STD, USTERKA, "2027-05-26T13:30", "2027-05-28T13:30+02:00", id="corpus-2027"),
    # --- a holiday on a Saturday changes nothing (Sat 15 Aug 2026, Sat 1 Nov 2025) ---
    pytest.param(STD, AWARIA, "2026-08-14T14:00", "2026-08-17T08:00+02:00", id="hol-on-sat-aug"),
    pytest.param(STD, AWARIA, "2025-10-31T14:00", "2025-11-03T08:00+01:00", id="hol-on-sat-nov"),
    # --- standard hours across the DST weekends ---
    pytest.param(STD, AWARIA, "2026-03-27T14:00", "2026-03-30T08:00+02:00", id="std-dst-mar-2026"),
    pytest.param(STD, AWARIA, "2026-10-23T14:00", "2026-10-26T08:00+01:00", id="std-dst-oct-2026"),
    # Fri 26 Mar 2027 4 h; Sun 28 is DST and Easter; Mon 29 Easter Monday; Tue 30 4 h.
    pytest.param(
        STD, USTERKA, "2027-03-26T11:00", "2027-03-30T11:00+02:00", id="std-dst-easter-2027"
    ),
    # --- 24/7: real elapsed time ---
    pytest.param(H24, AWARIA, "2026-10-25T01:30", "2026-10-25T02:30+01:00", id="247-dst-oct-2026"),
    pytest.param(H24, AWARIA, "2026-03-29T01:30", "2026-03-29T04:30+02:00", id="247-dst-mar-2026"),
    pytest.param(H24, USTERKA, "2027-03-28T00:00", "2027-03-28T09:00+02:00", id="247-dst-mar-2027"),
    pytest.param(
        H24, KONSULTACJA, "2027-10-30T12:00", "2027-10-31T11:00+01:00", id="247-dst-oct-2027"
    ),
    # The first 02:30 of 31 Oct 2027 (still +02:00) plus 2 h is 03:30 winter time.
    pytest.param(
        H24, AWARIA, "2027-10-31T02:30+02:00", "2027-10-31T03:30+01:00", id="247-ambiguous"
    ),
    pytest.param(H24, AWARIA, "2026-11-23T23:30", "2026-11-24T01:30+01:00", id="247-midnight"),
    pytest.param(H24, KONSULTACJA, "2026-12-31T18:00", "2027-01-01T18:00+01:00", id="247-year-end"),
    pytest.param(H24, AWARIA, "2026-12-26T10:00", "2026-12-26T12:00+01:00", id="247-holiday"),
    pytest.param(
        H24, AWARIA, "2026-07-01T22:30+00:00", "2026-07-02T02:30+02:00", id="247-opened-in-utc"
    ),
    # --- custom: Mon-Sat 07:00-19:00 ---
    pytest.param(LONG, AWARIA, "2026-11-28T18:00", "2026-11-30T08:00+01:00", id="long-sat-to-mon"),
    pytest.param(LONG, USTERKA, "2026-11-27T15:00", "2026-11-28T11:00+01:00", id="long-fri-to-sat"),
    pytest.param(LONG, AWARIA, "2026-11-23T06:00", "2026-11-23T09:00+01:00", id="long-before-7"),
    pytest.param(LONG, AWARIA, "2026-11-23T17:00", "2026-11-23T19:00+01:00", id="long-ends-at-19"),
    pytest.param(LONG, AWARIA, "2026-08-15T10:00", "2026-08-17T09:00+02:00", id="long-hol-sat"),
    pytest.param(
        LONG_NO_HOL, AWARIA, "2026-08-15T10:00", "2026-08-15T12:00+02:00", id="long-no-hol-sat"
    ),
    # Thu 24 Dec 18:00: 1 h, then Fri 25 counts without public holidays.
    pytest.param(
        LONG_NO_HOL, AWARIA, "2026-12-24T18:00", "2026-12-25T08:00+01:00", id="long-no-hol-xmas"
    ),
    # With holidays: Thu 24, Fri 25, Sat 26 off, Sunday has no window, Mon 28.
    pytest.param(LONG, AWARIA, "2026-12-24T18:00", "2026-12-28T09:00+01:00", id="long-hol-xmas"),
    pytest.param(
        LONG_OFF, USTERKA, "2026-11-27T15:00", "2026-11-30T11:00+01:00", id="long-day-off-sat"
    ),
    # --- custom: weekend shift with windows ending at 24:00 ---
    pytest.param(
        WEEKEND, AWARIA, "2026-11-27T22:00", "2026-11-28T00:00+01:00", id="wknd-ends-at-24"
    ),
    pytest.param(WEEKEND, KONSULTACJA, "2026-11-27T20:00", "2026-11-28T20:00+01:00", id="wknd-24h"),
    # Sat 20:00-24:00 4 h, Sun 00:00-08:00 8 h, then Fri 4 Dec 16:00 + 4 h.
    pytest.param(
        WEEKEND, ADMIN, "2026-11-28T20:00", "2026-12-04T20:00+01:00", id="wknd-16h-next-week"
    ),
    pytest.param(
        WEEKEND, AWARIA, "2026-11-29T09:00", "2026-12-04T18:00+01:00", id="wknd-after-sun-window"
    ),
    # Windows are measured in real time: the Sunday window on a DST day is 9 h or 7 h long.
    pytest.param(WEEKEND, AWARIA, "2026-10-25T01:30", "2026-10-25T02:30+01:00", id="wknd-dst-oct"),
    pytest.param(WEEKEND, AWARIA, "2026-03-29T01:30", "2026-03-29T04:30+02:00", id="wknd-dst-mar"),
    # --- custom: two windows a day (08:00-12:00, 13:00-17:00) ---
    pytest.param(SPLIT, AWARIA, "2026-11-23T11:00", "2026-11-23T14:00+01:00", id="split-lunch"),
    pytest.param(
        SPLIT, AWARIA, "2026-11-23T12:30", "2026-11-23T15:00+01:00", id="split-opened-at-lunch"
    ),
    pytest.param(
        SPLIT, AWARIA, "2026-11-23T10:00", "2026-11-23T12:00+01:00", id="split-ends-at-12"
    ),
    pytest.param(SPLIT, USTERKA, "2026-11-23T08:00", "2026-11-23T17:00+01:00", id="split-full-day"),
    # Mon 15:00-17:00 2 h, Tue 08:00-12:00 4 h, 13:00 + 2 h.
    pytest.param(SPLIT, USTERKA, "2026-11-23T15:00", "2026-11-24T15:00+01:00", id="split-next-day"),
    pytest.param(SPLIT, AWARIA, "2026-11-11T09:00", "2026-11-12T10:00+01:00", id="split-holiday"),
    # --- standard with an extra day off ---
    pytest.param(STD_OFF, AWARIA, "2026-11-26T14:00", "2026-11-30T08:00+01:00", id="std-day-off"),
    # --- reaction overrides ---
    pytest.param(
        STD_AWARIA_4H, AWARIA, "2026-11-23T10:00", "2026-11-23T14:00+01:00", id="override-4h"
    ),
    pytest.param(
        STD_AWARIA_4H, AWARIA, "2026-11-23T13:00", "2026-11-24T09:00+01:00", id="override-4h-next"
    ),
    pytest.param(
        STD_AWARIA_4H, USTERKA, "2026-11-23T10:00", "2026-11-24T10:00+01:00", id="override-other"
    ),
    pytest.param(
        H24_USTERKA_30M, USTERKA, "2026-11-23T23:45", "2026-11-24T00:15+01:00", id="override-247"
    ),
    # --- no reaction clock ---
    pytest.param(STD, AKTUALIZACJA, "2026-11-23T10:00", None, id="none-aktualizacja"),
    pytest.param(STD, UTRZYMANIE, "2026-11-23T10:00", None, id="none-utrzymanie"),
    pytest.param(H24, AKTUALIZACJA, "2026-11-28T03:00", None, id="none-247-aktualizacja"),
    pytest.param(LONG, UTRZYMANIE, "2026-11-29T03:00", None, id="none-custom-utrzymanie"),
    pytest.param(
        STD_NO_CLOCK_OVERRIDE, AKTUALIZACJA, "2026-11-23T10:00", None, id="none-despite-override"
    ),
]


@pytest.mark.parametrize(("contract", "category", "opened", "expected"), CASES)
def test_reaction_due_by_hand(contract, category, opened, expected):
    due = reaction_due(contract, category, local(opened))
    if expected is None:
        assert due is None
    else:
        assert_same_moment(due, expected)


def test_the_table_is_big_enough():
    timed = [c for c in CASES if c.values[3] is not None]
    assert len(timed) >= 35
    assert len({c.id for c in CASES}) == len(CASES)


def test_reaction_times():
    assert reaction_time(STD, AWARIA) == timedelta(hours=2)
    assert reaction_time(STD, USTERKA) == timedelta(hours=8)
    assert reaction_time(STD, ADMIN) == timedelta(hours=16)
    assert reaction_time(STD, KONSULTACJA) == timedelta(hours=24)
    assert reaction_time(STD_AWARIA_4H, AWARIA) == timedelta(hours=4)
    assert reaction_time(STD, AKTUALIZACJA) is None
    assert reaction_time(STD_NO_CLOCK_OVERRIDE, UTRZYMANIE) is None


# --- ServiceCalendar.between, by hand -------------------------------------------------------

STANDARD = ServiceCalendar.standard()
ALWAYS = ServiceCalendar.always()

BETWEEN = [
    pytest.param(STANDARD, "2026-11-23T10:00", "2026-11-23T12:00", 2 * 60, id="std-same-day"),
    pytest.param(STANDARD, "2026-11-23T06:00", "2026-11-23T16:00", 8 * 60, id="std-whole-day"),
    pytest.param(STANDARD, "2026-11-23T16:00", "2026-11-24T06:00", 0, id="std-night"),
    pytest.param(STANDARD, "2026-11-23T12:00", "2026-11-23T10:00", 0, id="std-reversed"),
    pytest.param(STANDARD, "2026-11-23T10:00", "2026-11-23T10:00", 0, id="std-empty"),
    pytest.param(STANDARD, "2026-11-27T14:00", "2026-11-30T08:00", 2 * 60, id="std-weekend"),
    # Tue 5 h, Wed 11 Nov holiday, Thu 3 h.
    pytest.param(STANDARD, "2026-11-10T10:00", "2026-11-12T10:00", 8 * 60, id="std-holiday"),
    # Fri 3 Apr 5 h, weekend, Easter Monday, Tue 3 h.
    pytest.param(STANDARD, "2026-04-03T10:00", "2026-04-07T10:00", 8 * 60, id="std-weekend-easter"),
    # Tue 23 Dec 8 h, 24-26 Dec holidays, weekend, Mon 29 8 h.
    pytest.param(STANDARD, "2025-12-23T07:00", "2025-12-29T15:00", 16 * 60, id="std-xmas-2025"),
    # Fri 23 Oct 2026 1 h, the DST weekend, Mon 26 1 h.
    pytest.param(STANDARD, "2026-10-23T14:00", "2026-10-26T08:00", 2 * 60, id="std-dst"),
    pytest.param(
        STANDARD, "2026-11-23T09:00+00:00", "2026-11-23T12:00", 2 * 60, id="std-mixed-offsets"
    ),
    pytest.param(ALWAYS, "2026-10-25T00:00", "2026-10-25T04:00", 5 * 60, id="247-dst-oct"),
    pytest.param(ALWAYS, "2026-03-29T00:00", "2026-03-29T04:00", 3 * 60, id="247-dst-mar"),
    pytest.param(ALWAYS, "2026-12-31T23:00", "2027-01-01T01:30", 150, id="247-year-end"),
    pytest.param(
        ServiceCalendar.for_contract(SPLIT),
        "2026-11-23T11:00",
        "2026-11-24T09:00",
        (1 + 4 + 1) * 60,
        id="split",
    ),
    pytest.param(
        ServiceCalendar.for_contract(WEEKEND),
        "2026-11-27T23:00",
        "2026-11-28T01:00",
        2 * 60,
        id="across-24-00",
    ),
]


@pytest.mark.parametrize(("calendar", "start", "end", "minutes"), BETWEEN)
def test_between_by_hand(calendar, start, end, minutes):
    assert calendar.between(local(start), local(end)) == timedelta(minutes=minutes)


# --- properties -----------------------------------------------------------------------------

PROPERTY_CUSTOM = Contract(
    hours="custom",
    service_hours={
        "mon": ["08:00-12:00", "13:00-17:00"],
        "wed": ["06:30-22:15"],
        "fri": ["20:00-24:00"],
        "sat": ["00:00-24:00"],
        # Crosses both DST changes: 2 h of real time in March, 4 h in October.
        "sun": ["00:00-03:00"],
    },
    days_off=[date(2026, 12, 31), date(2027, 7, 3)],
)
CONTRACTS = {"standard": STD, "24/7": H24, "custom": PROPERTY_CUSTOM}

openings = st.datetimes(
    min_value=datetime(2025, 1, 1),
    max_value=datetime(2028, 12, 31, 23, 59, 59),
    timezones=st.sampled_from([WARSAW, UTC, timezone(timedelta(hours=-5, minutes=-30))]),
)
clocked = st.sampled_from([c for c in Category if c not in NO_CLOCK])
kinds = st.sampled_from(sorted(CONTRACTS))
TINY = timedelta(microseconds=1)


@settings(max_examples=300, deadline=None)
@given(kind=kinds, category=clocked, opened=openings)
# Deadlines in the repeated hour of October (fold=1) and in the skipped hour of March.
@example(kind="24/7", category=AWARIA, opened=local("2025-10-26T01:00"))
@example(kind="custom", category=AWARIA, opened=local("2026-10-25T01:15"))
@example(kind="custom", category=USTERKA, opened=local("2027-03-28T02:30"))
def test_due_is_exactly_the_reaction_time_of_service_after_opening(kind, category, opened):
    contract = CONTRACTS[kind]
    calendar = ServiceCalendar.for_contract(contract)
    reaction = reaction_time(contract, category)
    due = reaction_due(contract, category, opened)
    assert due is not None
    assert utc(due) > utc(opened)
    assert due.tzinfo is WARSAW
    assert calendar.between(opened, due) == reaction
    # The clock runs in the last instant before the deadline: it is not in a gap. (Arithmetic
    # in UTC: on a Warsaw datetime it is wall-clock arithmetic and loses the October fold.)
    assert calendar.between(utc(due) - TINY, due) == TINY


@settings(max_examples=300, deadline=None)
@given(kind=kinds, category=clocked, a=openings, b=openings)
# 02:45 summer time is before 02:15 winter time on 25 Oct 2026.
@example(kind="24/7", category=AWARIA, a=local("2026-10-25T00:45"), b=local("2026-10-25T01:15"))
def test_a_later_opening_never_gives_an_earlier_deadline(kind, category, a, b):
    first, second = sorted((a, b), key=utc)
    contract = CONTRACTS[kind]
    due_first = reaction_due(contract, category, first)
    due_second = reaction_due(contract, category, second)
    assert utc(due_first) <= utc(due_second)


@settings(max_examples=300, deadline=None)
@given(category=clocked, opened=openings)
def test_standard_deadline_is_in_service_hours_or_at_a_window_end(category, opened):
    due = reaction_due(STD, category, opened)
    local_due = due.astimezone(WARSAW)
    assert local_due.weekday() < 5
    assert local_due.date() not in polish_holidays(local_due.year)
    assert time(7, 0) < local_due.time() <= time(15, 0)


@settings(max_examples=200, deadline=None)
@given(category=clocked, opened=openings)
def test_a_custom_calendar_of_whole_days_without_holidays_is_24_7(category, opened):
    whole = Contract(
        hours="custom",
        service_hours={d: ["00:00-24:00"] for d in (*MON_SAT, "sun")},
        public_holidays=False,
    )
    assert utc(reaction_due(whole, category, opened)) == utc(reaction_due(H24, category, opened))


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("contract", [STD, H24, LONG], ids=["standard", "24/7", "custom"])
def test_a_naive_opening_raises(contract):
    with pytest.raises(SlaError):
        reaction_due(contract, AWARIA, datetime(2026, 11, 23, 10, 0))


@pytest.mark.parametrize("calendar", [STANDARD, ALWAYS], ids=["standard", "24/7"])
def test_a_naive_span_raises(calendar):
    with pytest.raises(SlaError):
        calendar.between(datetime(2026, 11, 23, 10, 0), local("2026-11-23T12:00"))


@pytest.mark.parametrize("windows", [{}, {0: []}, {d: [] for d in range(7)}])
def test_a_calendar_without_service_time_raises(windows):
    with pytest.raises(SlaError):
        ServiceCalendar(windows)


def test_a_calendar_whose_windows_are_empty_raises_instead_of_searching_forever():
    calendar = ServiceCalendar({0: [(time(7, 0), time(7, 0))]})
    with pytest.raises(SlaError):
        calendar.add(local("2026-11-23T10:00"), timedelta(hours=2))


def test_the_contract_refuses_custom_hours_without_windows():
    with pytest.raises(ValidationError):
        Contract(hours="custom")
    with pytest.raises(ValidationError):
        Contract(hours="custom", service_hours={"mon": ["15:00-07:00"]})


def test_overlapping_windows_count_once():
    # Monday service is 07:00-14:00 (the union): 7 h, then the next Monday 1 h.
    contract = Contract(hours="custom", service_hours={"mon": ["07:00-12:00", "10:00-14:00"]})
    calendar = ServiceCalendar.for_contract(contract)
    monday = calendar.between(local("2026-11-23T07:00"), local("2026-11-23T14:00"))
    due = reaction_due(contract, USTERKA, local("2026-11-23T07:00"))
    assert monday == timedelta(hours=7)
    assert_same_moment(due, "2026-11-30T08:00+01:00")


def test_windows_with_the_same_start_and_one_ending_at_midnight():
    contract = Contract(hours="custom", service_hours={"mon": ["07:00-24:00", "07:00-12:00"]})
    calendar = ServiceCalendar.for_contract(contract)
    assert calendar.between(local("2026-11-23T00:00"), local("2026-11-24T00:00")) == timedelta(
        hours=17
    )


# --- the holiday source ---------------------------------------------------------------------


def test_christmas_eve_is_a_public_holiday_from_2025_on():
    assert date(2025, 12, 24) in polish_holidays(2025)
    assert date(2026, 12, 24) in polish_holidays(2026)
    assert date(2024, 12, 24) not in polish_holidays(2024)


@pytest.mark.parametrize(
    ("year", "easter_monday", "corpus_christi"),
    [
        (2025, date(2025, 4, 21), date(2025, 6, 19)),
        (2026, date(2026, 4, 6), date(2026, 6, 4)),
        (2027, date(2027, 3, 29), date(2027, 5, 27)),
    ],
)
def test_movable_feasts(year, easter_monday, corpus_christi):
    assert {easter_monday, corpus_christi} <= polish_holidays(year)


def test_default_reactions_cover_every_clocked_category():
    assert set(DEFAULT_REACTION) | NO_CLOCK == set(Category)
    assert not set(DEFAULT_REACTION) & NO_CLOCK


@pytest.mark.parametrize(
    ("hours", "local", "covered"),
    [
        ("standard", datetime(2026, 11, 23, 10, 0), True),  # a Monday
        ("standard", datetime(2026, 11, 23, 6, 59, 59), False),
        ("standard", datetime(2026, 11, 23, 7, 0), True),
        ("standard", datetime(2026, 11, 23, 15, 0), False),  # the window ends at 15:00
        ("standard", datetime(2026, 11, 24, 3, 0), False),  # the night
        ("standard", datetime(2026, 11, 28, 10, 0), False),  # a Saturday
        ("standard", datetime(2026, 11, 11, 10, 0), False),  # Independence Day, a Wednesday
        ("24/7", datetime(2026, 11, 24, 3, 0), True),
        ("24/7", datetime(2026, 11, 11, 10, 0), True),
    ],
)
def test_covers_says_whether_a_moment_is_in_service_hours(hours, local, covered):
    calendar = ServiceCalendar.for_contract(Contract(hours=hours))
    assert calendar.covers(local.replace(tzinfo=WARSAW)) is covered
    assert calendar.covers(local.replace(tzinfo=WARSAW).astimezone(UTC)) is covered
    with pytest.raises(SlaError):
        calendar.covers(local)
