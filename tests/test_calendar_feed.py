"""The iCalendar feed as a calendar client reads it: parsed back, not compared as text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dateutil.rrule import rrulestr
from icalendar import Calendar, Event

from bridge.clock import WARSAW
from bridge.maintenance.calendar_feed import build_calendar
from bridge.models import (
    Client,
    Contract,
    GateState,
    MaintenanceWindow,
    PlanStatus,
    StageState,
    UpdatePlan,
    UpdateStage,
)

NOW = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
CLIENTS = {
    "szpital-a": Client(id="szpital-a", name="Szpital A", contract=Contract(language="pl")),
    "klinika-b": Client(id="klinika-b", name="Klinika B", contract=Contract(language="en")),
}


def warsaw(*args: int) -> datetime:
    return datetime(*args, tzinfo=WARSAW)


def window(**kwargs) -> MaintenanceWindow:
    values = {
        "id": "okno-1",
        "client": "szpital-a",
        "start": warsaw(2026, 10, 6, 22, 0).astimezone(UTC),
        "end": warsaw(2026, 10, 7, 2, 0).astimezone(UTC),
        "reason": "aktualizacja firmware macierzy",
        "assets": ["srv-a1", "srv-a2"],
        "created_by": "jan.kowalski",
    }
    values.update(kwargs)
    return MaintenanceWindow(**values)


def plan(**kwargs) -> UpdatePlan:
    values = {
        "id": "plan-7",
        "client": "szpital-a",
        "target_version": "5.12.3",
        "runbook": [],
        "stages": [
            UpdateStage(
                environment="test",
                window="plan-7-test",
                start=warsaw(2026, 10, 13, 20, 0).astimezone(UTC),
                end=warsaw(2026, 10, 13, 23, 0).astimezone(UTC),
                assets=["amms-test"],
            ),
            UpdateStage(
                environment="prod",
                window="plan-7-prod",
                start=warsaw(2026, 10, 20, 20, 0).astimezone(UTC),
                end=warsaw(2026, 10, 20, 23, 0).astimezone(UTC),
                assets=["amms-prod-1", "amms-prod-2"],
            ),
        ],
        "soak": 86400.0,
        "ticket": "DZ-2026-000042",
        "created_by": "jan.kowalski",
        "created_at": NOW,
    }
    values.update(kwargs)
    return UpdatePlan(**values)


def feed(windows=(), plans=(), clients=CLIENTS) -> Calendar:
    return Calendar.from_ical(build_calendar(windows, plans, clients, NOW))


def event(calendar: Calendar, uid: str) -> Event:
    (found,) = [e for e in calendar.events if str(e["UID"]) == uid]
    return found


def test_one_event_per_window_and_per_stage_but_none_for_a_plans_own_windows():
    windows = [
        window(),
        window(id="okno-2", client="klinika-b"),
        window(id="plan-7-test", plan="plan-7"),
        window(id="plan-7-prod", plan="plan-7"),
    ]
    calendar = feed(windows, [plan()])

    assert [str(e["UID"]) for e in calendar.events] == [
        "okno-1@dyzur",
        "okno-2@dyzur",
        "plan-7-test@dyzur",
        "plan-7-prod@dyzur",
    ]


def test_calendar_properties_and_the_warsaw_vtimezone():
    calendar = feed([window()])

    assert str(calendar["PRODID"]) == "-//dyzur//maintenance windows//PL"
    assert str(calendar["VERSION"]) == "2.0"
    assert str(calendar["X-WR-CALNAME"]) == "dyzur: okna serwisowe"
    assert str(calendar["X-WR-TIMEZONE"]) == "Europe/Warsaw"
    assert [tz.tz_name for tz in calendar.timezones] == ["Europe/Warsaw"]
    assert calendar.get_missing_tzids() == set()


def test_the_vtimezone_alone_gives_the_right_offsets_on_both_sides_of_dst():
    """What a client that ignores the TZID name and reads only the VTIMEZONE computes."""
    calendar = feed([window(rrule="FREQ=WEEKLY;INTERVAL=2;BYDAY=TU")])
    tz = calendar.timezones[0].to_tz(lookup_tzid=False)

    assert datetime(2026, 10, 6, 22, 0, tzinfo=tz).utcoffset() == timedelta(hours=2)
    assert datetime(2026, 11, 3, 22, 0, tzinfo=tz).utcoffset() == timedelta(hours=1)
    assert datetime(2030, 7, 2, 22, 0, tzinfo=tz).utcoffset() == timedelta(hours=2)


def test_window_times_round_trip_as_the_same_instants_in_warsaw():
    w = window()
    parsed = event(feed([w]), "okno-1@dyzur")

    assert parsed.start == w.start
    assert parsed.end == w.end
    assert parsed.start.tzinfo.key == "Europe/Warsaw"
    assert parsed.end.tzinfo.key == "Europe/Warsaw"
    assert parsed["DTSTART"].params["TZID"] == "Europe/Warsaw"
    assert (parsed.start.hour, parsed.end.hour) == (22, 2)
    assert parsed.stamp == NOW


def test_window_across_the_october_dst_change_keeps_its_nine_real_hours():
    w = window(start=warsaw(2026, 10, 24, 22, 0), end=warsaw(2026, 10, 25, 6, 0))
    parsed = event(feed([w]), "okno-1@dyzur")

    assert parsed.start == w.start
    assert parsed.end == w.end
    assert parsed.end.astimezone(UTC) - parsed.start.astimezone(UTC) == timedelta(hours=9)
    assert (parsed.start.hour, parsed.end.hour) == (22, 6)
    assert parsed.start.utcoffset() == timedelta(hours=2)
    assert parsed.end.utcoffset() == timedelta(hours=1)


def test_rrule_round_trips_and_repeats_at_the_same_warsaw_hour_across_dst():
    text = "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU"
    # Tuesday 20 October, CEST; two weeks later (3 November) Poland is on CET.
    w = window(start=warsaw(2026, 10, 20, 22, 0), end=warsaw(2026, 10, 21, 2, 0), rrule=text)
    parsed = event(feed([w]), "okno-1@dyzur")

    assert parsed["RRULE"].to_ical().decode() == text
    first, second = list(rrulestr(parsed["RRULE"].to_ical().decode(), dtstart=parsed.start))[:2]
    assert first == w.start
    assert second.astimezone(WARSAW).replace(tzinfo=None) == datetime(2026, 11, 3, 22, 0)
    assert second.utcoffset() == timedelta(hours=1)
    assert second.astimezone(UTC) - first.astimezone(UTC) == timedelta(days=14, hours=1)


def test_rrule_until_in_warsaw_wall_time_is_written_in_utc():
    """RFC 5545: with a zoned DTSTART, UNTIL must be UTC; dyzur's rules give it in Warsaw time."""
    parsed = event(feed([window(rrule="FREQ=DAILY;UNTIL=20261105T220000")]), "okno-1@dyzur")

    (until,) = parsed["RRULE"]["UNTIL"]
    assert until == datetime(2026, 11, 5, 21, 0, tzinfo=UTC)
    occurrences = list(rrulestr(parsed["RRULE"].to_ical().decode(), dtstart=parsed.start))
    assert len(occurrences) == 31  # 6 Oct .. 5 Nov, the last one included
    assert occurrences[-1] == warsaw(2026, 11, 5, 22, 0)


def test_cancelled_window_is_cancelled_and_others_confirmed():
    cancelled = window(id="okno-2", cancelled_at=NOW + timedelta(days=1), cancelled_by="anna.nowak")
    calendar = feed([window(), cancelled])

    assert str(event(calendar, "okno-1@dyzur")["STATUS"]) == "CONFIRMED"
    assert str(event(calendar, "okno-2@dyzur")["STATUS"]) == "CANCELLED"
    assert "anna.nowak" in str(event(calendar, "okno-2@dyzur")["DESCRIPTION"])


def test_summary_and_description_in_the_contract_language():
    windows = [
        window(ticket="DZ-2026-000123"),
        window(id="okno-2", client="klinika-b", reason="UPS battery swap", assets=[]),
    ]
    windows[1].selector = {"kind": "ups", "environment": "prod"}
    calendar = feed(windows)

    pl = event(calendar, "okno-1@dyzur")
    assert str(pl["SUMMARY"]) == "Okno serwisowe: aktualizacja firmware macierzy (Szpital A)"
    assert str(pl["DESCRIPTION"]).splitlines() == [
        "Zasoby: srv-a1, srv-a2",
        "Zgłoszenie: DZ-2026-000123",
        "Zaplanowane przez: jan.kowalski",
    ]
    assert pl.categories == ["okno-serwisowe"]
    assert str(pl["X-DYZUR-CLIENT"]) == "szpital-a"

    en = event(calendar, "okno-2@dyzur")
    assert str(en["SUMMARY"]) == "Maintenance window: UPS battery swap (Klinika B)"
    assert str(en["DESCRIPTION"]).splitlines() == [
        "Assets: environment=prod, kind=ups",
        "Planned by: jan.kowalski",
    ]
    assert str(en["X-DYZUR-CLIENT"]) == "klinika-b"


def test_unknown_client_falls_back_to_its_id_and_polish():
    parsed = event(feed([window(client="przychodnia-z")]), "okno-1@dyzur")

    assert (
        str(parsed["SUMMARY"]) == "Okno serwisowe: aktualizacja firmware macierzy (przychodnia-z)"
    )


def test_update_plan_gives_one_event_per_stage():
    calendar = feed(plans=[plan()])
    test_stage = event(calendar, "plan-7-test@dyzur")
    prod_stage = event(calendar, "plan-7-prod@dyzur")

    assert len(calendar.events) == 2
    assert str(test_stage["SUMMARY"]) == "Aktualizacja AMMS 5.12.3: etap testowy (Szpital A)"
    assert str(prod_stage["SUMMARY"]) == "Aktualizacja AMMS 5.12.3: etap produkcyjny (Szpital A)"
    assert prod_stage.start == warsaw(2026, 10, 20, 20, 0)
    assert prod_stage.start.tzinfo.key == "Europe/Warsaw"
    assert prod_stage.categories == ["aktualizacja"]
    assert str(prod_stage["STATUS"]) == "CONFIRMED"
    description = str(prod_stage["DESCRIPTION"])
    for part in ("plan-7", "planned", "waiting", "DZ-2026-000042", "amms-prod-1, amms-prod-2"):
        assert part in description


def test_update_plan_summaries_in_english():
    calendar = feed(plans=[plan(client="klinika-b")])

    assert str(event(calendar, "plan-7-test@dyzur")["SUMMARY"]) == (
        "AMMS update 5.12.3: test stage (Klinika B)"
    )
    assert str(event(calendar, "plan-7-prod@dyzur")["SUMMARY"]) == (
        "AMMS update 5.12.3: production stage (Klinika B)"
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (PlanStatus.FAILED, "CANCELLED"),
        (PlanStatus.EXPIRED, "CANCELLED"),
        (PlanStatus.ACTIVE, "CONFIRMED"),
    ],
)
def test_production_stage_that_will_not_run_is_cancelled_once_the_plan_ended(status, expected):
    p = plan(status=status, gate=GateState.FAILED)
    p.stages[0].state = StageState.FAILED
    p.stages[1].state = StageState.NOT_RUN
    calendar = feed(plans=[p])

    assert str(event(calendar, "plan-7-prod@dyzur")["STATUS"]) == expected
    assert str(event(calendar, "plan-7-test@dyzur")["STATUS"]) == "CONFIRMED"


def test_same_data_in_any_order_gives_the_same_bytes():
    windows = [
        window(),
        window(id="okno-0"),
        window(id="okno-2", start=NOW, end=NOW + timedelta(hours=1)),
    ]
    plans = [plan(), plan(id="plan-8")]

    first = build_calendar(windows, plans, CLIENTS, NOW)
    second = build_calendar(reversed(windows), reversed(plans), CLIENTS, NOW)

    assert first == second
    assert [str(e["UID"]) for e in Calendar.from_ical(first).events][:3] == [
        "okno-2@dyzur",  # earliest start
        "okno-0@dyzur",  # same start as okno-1: by UID
        "okno-1@dyzur",
    ]


def test_empty_feed_is_still_a_calendar_with_the_timezone():
    calendar = feed()

    assert calendar.events == []
    assert [tz.tz_name for tz in calendar.timezones] == ["Europe/Warsaw"]


def test_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="aware"):
        build_calendar([window(start=datetime(2026, 10, 6, 22, 0))], [], CLIENTS, NOW)


def test_a_stored_window_off_its_rule_starts_at_the_rules_first_occurrence():
    """Planned before starts were checked (Tuesday, BYDAY=WE): RFC 5545 leaves such a series
    undefined and clients differ (Outlook and libical skip the DTSTART, Google shows it), so the
    feed writes the occurrence dyzur mutes first: Wednesday, the same length."""
    w = window(
        start=warsaw(2026, 12, 1, 22, 0),
        end=warsaw(2026, 12, 2, 2, 0),
        rrule="FREQ=WEEKLY;BYDAY=WE",
    )
    parsed = event(feed([w]), "okno-1@dyzur")

    assert parsed.start == warsaw(2026, 12, 2, 22, 0)
    assert parsed.end == warsaw(2026, 12, 3, 2, 0)
    first = next(iter(rrulestr(parsed["RRULE"].to_ical().decode(), dtstart=parsed.start)))
    assert first == parsed.start  # DTSTART is the first instance, as RFC 5545 wants
