"""The rota (pure): who is on duty for a hospital and asset kind at a moment, across DST nights,
with priorities, coverage by hospital and kind, overrides, and the gaps of a 24/7 coverage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.clock import WARSAW
from bridge.config import OncallSettings
from bridge.delivery.oncall.rota import Gap, Rota, coverage_gaps, shift_problems
from bridge.models import Asset, Client, Contract
from bridge.store.roles import OncallOverride

PEOPLE = [
    {"id": pid, "name": pid.capitalize(), "channels": ["mail"]}
    for pid in ("anna", "bartek", "celina", "darek", "ewa")
]


def settings(*shifts: dict) -> OncallSettings:
    return OncallSettings.model_validate({"people": PEOPLE, "shifts": list(shifts)})


def shift(person: str, start: str, duration: str = "24h", **kw) -> dict:
    return {"person": person, "start": start, "duration": duration, **kw}


def warsaw(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=WARSAW)


def who(rota: Rota, at: str, client: str = "szpital-a", kind: str = "server", name="primary"):
    duty = rota.on_duty(name, client, kind, warsaw(at))
    return None if duty is None else duty.person.id


def hours(duty) -> float:
    return (duty.end - duty.start).total_seconds() / 3600


# A week of 24-hour shifts from Monday 08:00, rotating among four engineers (README's example).
ROTATION = [
    shift(person, start, "168h", rrule="FREQ=WEEKLY;INTERVAL=4")
    for person, start in [
        ("anna", "2026-03-23T08:00"),
        ("bartek", "2026-03-30T08:00"),
        ("celina", "2026-04-06T08:00"),
        ("darek", "2026-04-13T08:00"),
    ]
]


def test_a_daily_shift_across_the_spring_dst_night_covers_23_real_hours():
    rota = Rota(settings(shift("anna", "2026-03-27T08:00", rrule="FREQ=DAILY")))
    # Saturday 08:00 CET to Sunday 08:00 CEST: the clocks went from 02:00 to 03:00 meanwhile.
    duty = rota.on_duty("primary", "szpital-a", "server", warsaw("2026-03-29T02:59"))
    assert duty is not None and duty.person.id == "anna"
    assert duty.start == warsaw("2026-03-28T08:00") and duty.end == warsaw("2026-03-29T08:00")
    assert hours(duty) == 23
    # The next one is 24 hours again, still from 08:00 wall-clock time.
    after = rota.on_duty("primary", "szpital-a", "server", warsaw("2026-03-29T08:00"))
    assert after is not None and after.start == warsaw("2026-03-29T08:00") and hours(after) == 24


def test_a_daily_shift_across_the_autumn_dst_night_covers_25_real_hours():
    rota = Rota(settings(shift("anna", "2026-10-20T08:00", rrule="FREQ=DAILY")))
    # 02:30 happens twice that night; both are inside the same shift.
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET
    duties = [rota.on_duty("primary", "szpital-a", "server", at) for at in (first, second)]
    assert duties[0] == duties[1]
    assert duties[0] is not None and hours(duties[0]) == 25
    assert duties[0].start == warsaw("2026-10-24T08:00")
    assert duties[0].end == warsaw("2026-10-25T08:00")


def test_a_week_long_shift_keeps_its_wall_clock_hours_across_both_dst_nights():
    rota = Rota(settings(*ROTATION))
    spring = rota.on_duty("primary", "szpital-a", "amms", warsaw("2026-03-29T12:00"))
    assert spring is not None and spring.person.id == "anna" and hours(spring) == 167
    # The hand-over stays at Monday 08:00 wall-clock time after the change.
    assert who(rota, "2026-03-30T07:59") == "anna"
    assert who(rota, "2026-03-30T08:00") == "bartek"
    # Autumn: the week of 2026-10-19 is darek's (four weeks after celina's of 2026-09-21 ...).
    autumn = rota.on_duty("primary", "szpital-a", "server", warsaw("2026-10-25T12:00"))
    assert autumn is not None and hours(autumn) == 169
    assert autumn.start == warsaw("2026-10-19T08:00") and autumn.end == warsaw("2026-10-26T08:00")
    assert [who(rota, f"2026-04-{d:02d}T12:00") for d in (6, 13, 20)] == [
        "celina",
        "darek",
        "anna",
    ]


def test_coverage_by_hospital_and_asset_kind():
    rota = Rota(
        settings(
            shift("anna", "2026-11-23T08:00", "7d", clients=["szpital-a"]),
            shift("bartek", "2026-11-23T08:00", "7d", clients=["klinika-b"]),
            shift("ewa", "2026-11-23T08:00", "7d", kinds=["amms"], rota="amms"),
        )
    )
    assert who(rota, "2026-11-24T03:00", "szpital-a") == "anna"
    assert who(rota, "2026-11-24T03:00", "klinika-b") == "bartek"
    assert who(rota, "2026-11-24T03:00", "szpital-c") is None
    assert who(rota, "2026-11-24T03:00", "szpital-c", "amms", name="amms") == "ewa"
    assert who(rota, "2026-11-24T03:00", "szpital-a", "server", name="amms") is None
    # Before the first start and after the last end, nobody.
    assert who(rota, "2026-11-23T07:59", "szpital-a") is None
    assert who(rota, "2026-11-30T08:00", "szpital-a") is None
    assert rota.rotas == ["primary", "amms"]


def test_the_higher_priority_wins_where_shifts_overlap():
    rota = Rota(
        settings(
            *ROTATION,
            # The AMMS specialist takes AMMS hosts, every hospital, over the rotation.
            shift(
                "ewa", "2026-03-23T08:00", "168h", rrule="FREQ=WEEKLY", kinds=["amms"], priority=10
            ),
            # Christmas Eve: darek instead of whoever's week it is, for everything.
            shift("darek", "2026-12-24T08:00", "24h", priority=20),
        )
    )
    assert who(rota, "2026-04-01T03:00", kind="amms") == "ewa"
    assert who(rota, "2026-04-01T03:00", kind="server") == "bartek"
    assert who(rota, "2026-12-24T20:00", kind="server") == "darek"
    assert who(rota, "2026-12-24T20:00", kind="amms") == "darek"
    assert who(rota, "2026-12-25T08:00", kind="amms") == "ewa"


def test_overlapping_shifts_of_one_coverage_need_distinct_priorities():
    overlapping = settings(
        shift(
            "anna", "2026-11-30T08:00", "7d", rrule="FREQ=WEEKLY;INTERVAL=2", clients=["szpital-a"]
        ),
        shift("bartek", "2026-12-07T08:00", "7d", rrule="FREQ=WEEKLY;INTERVAL=2"),
        # Its own rota: no overlap; with bartek (all hospitals) a hospital and kind overlap.
        shift("celina", "2026-11-30T08:00", "7d", rota="secondary"),
        shift("ewa", "2026-12-01T08:00", "7d", clients=["klinika-b"], kinds=["amms"]),
        shift("darek", "2026-12-06T08:00", "2d", clients=["szpital-a"]),
    )
    assert shift_problems(overlapping) == [
        "oncall.shifts.3: overlaps oncall.shifts.1 (rota primary, klinika-b, kind amms) on "
        "2026-12-07 08:00; give one of them a priority (the higher wins)",
        "oncall.shifts.4: overlaps oncall.shifts.0 (rota primary, szpital-a) on "
        "2026-12-06 08:00; give one of them a priority (the higher wins)",
        "oncall.shifts.4: overlaps oncall.shifts.1 (rota primary, szpital-a) on "
        "2026-12-07 08:00; give one of them a priority (the higher wins)",
    ]
    same = settings(
        shift("anna", "2026-11-30T08:00", "7d", priority=1),
        shift("bartek", "2026-12-01T08:00", "1d", priority=1),
    )
    assert shift_problems(same) == [
        "oncall.shifts.1: overlaps oncall.shifts.0 (rota primary, all hospitals) on "
        "2026-12-01 08:00; both have priority 1; give them distinct priorities"
    ]
    distinct = settings(
        shift("anna", "2026-11-30T08:00", "7d", priority=1),
        shift("bartek", "2026-12-01T08:00", "1d", priority=2),
        # Without a priority: the lowest.
        shift("celina", "2026-11-30T08:00", "14d"),
    )
    assert shift_problems(distinct) == []


def test_a_shift_refused_for_its_start_rrule_or_length_is_named():
    problems = shift_problems(
        settings(
            shift("anna", "2026-11-30T08:00+01:00"),
            shift("bartek", "2026-11-30T08:00", rrule="FREQ=WEEKLY;BYDAY=TU"),
            shift("celina", "2026-11-30T08:00", rrule="FREQ=HOURLY"),
            shift("darek", "2026-11-30T08:00", "25h", rrule="FREQ=DAILY"),
        )
    )
    assert problems[0].startswith("oncall.shifts.0.start: a Europe/Warsaw wall-clock time")
    assert problems[1].startswith("oncall.shifts.1.start: Monday 2026-11-30T08:00:00+01:00 is not")
    assert problems[2].startswith("oncall.shifts.2.rrule: HOURLY is not allowed")
    assert problems[3] == (
        "oncall.shifts.3.duration: the occurrence of 2026-12-01 08:00 begins before the "
        "previous one ends; shorten it or repeat it less often"
    )
    assert len(problems) == 4


def override(shift_person, person, start, end, client=None, id=1, rota="primary"):
    return OncallOverride(
        rota=rota,
        shift_person=shift_person,
        person=person,
        start=warsaw(start),
        end=warsaw(end),
        client=client,
        reason="choroba",
        created_by="cli:kasia",
        created_at=warsaw("2026-03-01T10:00"),
        id=id,
    )


def test_an_override_hands_a_period_of_a_shift_to_another_person():
    swap = override("bartek", "ewa", "2026-04-01T20:00", "2026-04-02T08:00")
    rota = Rota(settings(*ROTATION), [swap])
    assert who(rota, "2026-04-01T19:59") == "bartek"
    duty = rota.on_duty("primary", "szpital-a", "server", warsaw("2026-04-02T03:00"))
    assert duty is not None and duty.person.id == "ewa" and duty.override
    assert (duty.start, duty.end) == (swap.start, swap.end)
    assert who(rota, "2026-04-02T08:00") == "bartek"
    # It hands only bartek's duty: the same night a week later is celina's, untouched.
    assert who(rota, "2026-04-09T03:00") == "celina"


def test_an_override_for_one_hospital_and_the_latest_of_two_wins():
    rota = Rota(
        settings(*ROTATION),
        [
            override("bartek", "ewa", "2026-04-01T00:00", "2026-04-03T00:00", client="szpital-a"),
            override("bartek", "celina", "2026-04-02T00:00", "2026-04-02T12:00", id=2),
        ],
    )
    assert who(rota, "2026-04-01T03:00", "szpital-a") == "ewa"
    assert who(rota, "2026-04-01T03:00", "klinika-b") == "bartek"
    assert who(rota, "2026-04-02T03:00", "szpital-a") == "celina"
    assert who(rota, "2026-04-02T03:00", "klinika-b") == "celina"
    assert who(rota, "2026-04-02T13:00", "szpital-a") == "ewa"


def test_an_override_creates_no_duty_and_one_for_another_rota_changes_nothing():
    rota = Rota(
        settings(shift("anna", "2026-11-23T08:00", "12h")),
        [
            override("anna", "ewa", "2026-11-23T00:00", "2026-11-24T00:00", rota="secondary"),
            override("anna", "bartek", "2026-11-23T00:00", "2026-11-24T00:00", id=2),
        ],
    )
    assert who(rota, "2026-11-23T07:00") is None
    assert who(rota, "2026-11-23T10:00") == "bartek"
    assert who(rota, "2026-11-23T21:00") is None


def test_the_rota_asks_its_override_source_at_every_question():
    kept: list[OncallOverride] = []

    class Source:
        def oncall_overrides(self, start=None, end=None):
            return [o for o in kept if o.start < end and o.end > start]

    rota = Rota(settings(*ROTATION), Source())
    assert who(rota, "2026-04-01T03:00") == "bartek"
    kept.append(override("bartek", "ewa", "2026-04-01T00:00", "2026-04-02T00:00"))
    assert who(rota, "2026-04-01T03:00") == "ewa"


def test_a_naive_moment_is_refused():
    rota = Rota(settings(*ROTATION))
    with pytest.raises(ValueError, match="aware"):
        rota.on_duty("primary", "szpital-a", "server", datetime(2026, 4, 1, 3))


CLIENTS = [
    Client(id="szpital-a", name="Szpital A", contract=Contract(hours="24/7")),
    Client(id="klinika-b", name="Klinika B"),  # standard hours: no gaps reported
]
ASSETS = [
    Asset(id="srv-a1", client="szpital-a"),
    Asset(id="amms-a1", client="szpital-a", kind="amms"),
    Asset(id="srv-b1", client="klinika-b"),
]


def test_gaps_of_a_24_7_hospital_per_asset_kind():
    rota = Rota(
        settings(
            # Days 08:00-20:00 only for servers; AMMS hosts covered all the time by ewa.
            shift("anna", "2026-11-23T08:00", "12h", rrule="FREQ=DAILY"),
            shift("ewa", "2026-11-23T08:00", "24h", rrule="FREQ=DAILY", kinds=["amms"], priority=5),
            # A secondary rota fills nothing of the primary's gaps.
            shift("bartek", "2026-11-23T20:00", "12h", rrule="FREQ=DAILY", rota="secondary"),
        )
    )
    gaps = coverage_gaps(
        rota, CLIENTS, ASSETS, warsaw("2026-11-23T08:00"), warsaw("2026-11-25T08:00")
    )
    assert gaps == [
        Gap("szpital-a", "server", warsaw("2026-11-23T20:00"), warsaw("2026-11-24T08:00")),
        Gap("szpital-a", "server", warsaw("2026-11-24T20:00"), warsaw("2026-11-25T08:00")),
    ]


def test_no_gap_when_shifts_join_and_one_before_the_first_and_after_the_last():
    rota = Rota(
        settings(
            shift("anna", "2026-11-23T08:00", "12h"),
            shift("bartek", "2026-11-23T20:00", "12h"),
        )
    )
    start, end = warsaw("2026-11-23T00:00"), warsaw("2026-11-25T00:00")
    assert rota.gaps("szpital-a", "server", start, end) == [
        (start, warsaw("2026-11-23T08:00")),
        (warsaw("2026-11-24T08:00"), end),
    ]


def test_a_persons_schedule_shows_what_they_really_cover():
    swap = override("bartek", "ewa", "2026-04-01T20:00", "2026-04-02T08:00")
    rota = Rota(settings(*ROTATION, shift("darek", "2026-04-03T08:00", "24h", priority=10)), [swap])
    start, end = warsaw("2026-03-30T00:00"), warsaw("2026-04-07T00:00")
    bartek = [(a.start, a.end, a.override is not None) for a in rota.schedule("bartek", start, end)]
    assert bartek == [
        (warsaw("2026-03-30T08:00"), warsaw("2026-04-01T20:00"), False),
        (warsaw("2026-04-02T08:00"), warsaw("2026-04-03T08:00"), False),
        (warsaw("2026-04-04T08:00"), warsaw("2026-04-06T08:00"), False),
    ]
    ewa = rota.schedule("ewa", start, end)
    assert [(a.start, a.end, a.shift, a.override) for a in ewa] == [(swap.start, swap.end, 1, swap)]
    assert [(a.start, a.end) for a in rota.schedule("darek", start, end)] == [
        (warsaw("2026-04-03T08:00"), warsaw("2026-04-04T08:00"))
    ]
