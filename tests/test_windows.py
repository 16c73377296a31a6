"""Maintenance windows with a controlled clock: suppression and its end, recurrence, DST and
conflicts, through the real engine, lifecycle and store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.clock import WARSAW
from bridge.config import parse_config
from bridge.maintenance.planning import WindowConflict, WindowError, WindowRequest
from bridge.maintenance.windows import Occurrences, WindowSchedule, covered_assets, parse_selector
from bridge.models import Asset, Category, MaintenanceWindow, SuppressedState, TicketStatus
from bridge.service import Bridge
from tests.conftest import DATA, START, config_data
from tests.test_lifecycle import disk, kinds, tickets


@pytest.fixture
def loaded(tmp_path):
    """Only the test rules: no absence rule opens tickets for assets that send nothing."""
    data = {**config_data(), "rule_files": [str(DATA / "test_rules.yaml")]}
    return parse_config(data, "test.yaml", tmp_path)


def plan(bridge: Bridge, start: datetime, end: datetime, **kw) -> MaintenanceWindow:
    request = WindowRequest(
        client=kw.pop("client", "szpital-a"),
        start=start,
        end=end,
        reason=kw.pop("reason", "aktualizacja systemu"),
        assets=kw.pop("assets", ["srv-a1"]),
        **kw,
    )
    return bridge.maintenance.plan(request, "jan.kowalski")


def warsaw(*args: int) -> datetime:
    return datetime(*args, tzinfo=WARSAW)


def audit_actions(bridge: Bridge) -> list[str]:
    return [e.action for e in bridge.store.audit_events()]


# --- suppression and its end ---------------------------------------------------------------


def test_an_alert_inside_a_window_opens_no_ticket_and_is_recorded_against_it(bridge, clock):
    window = plan(bridge, START, START + timedelta(hours=2))
    disk(bridge, 0.95)
    disk(bridge, 0.95, asset="srv-a2")  # not covered: its ticket opens as ever
    [other] = tickets(bridge)
    assert other.asset == "srv-a2"
    [record] = bridge.store.suppressed_alerts(window=window.id)
    assert record.asset == "srv-a1" and record.rule == "disk_usage"
    assert record.state is SuppressedState.FIRING and record.until == window.end
    assert "window.alert_suppressed" in audit_actions(bridge)


def test_an_alert_still_firing_when_the_window_ends_opens_its_ticket_at_once(bridge, clock):
    window = plan(bridge, START, START + timedelta(hours=2))
    disk(bridge, 0.95)
    clock.advance(3600)
    bridge.tick()
    assert tickets(bridge) == []  # the window still runs
    clock.set(window.end)
    bridge.tick()
    [ticket] = tickets(bridge)
    assert ticket.asset == "srv-a1" and ticket.status is TicketStatus.OPEN
    assert ticket.opened_at == window.end  # the SLA clock starts when the window ends
    assert kinds(bridge, ticket.number) == ["opened", "window_ended"]
    [record] = bridge.store.suppressed_alerts(window=window.id)
    assert record.state is SuppressedState.RELEASED and record.ticket == ticket.number
    bridge.tick()
    disk(bridge, 0.96)
    assert len(tickets(bridge)) == 1  # opened once, the same alert refires nothing new
    # and no orphan: its recovery resolves that very ticket
    disk(bridge, 0.5)
    [ticket] = tickets(bridge)
    assert ticket.status is TicketStatus.RESOLVED


def test_an_alert_that_fired_and_recovered_inside_the_window_is_only_logged(bridge, clock):
    window = plan(bridge, START, START + timedelta(hours=2))
    disk(bridge, 0.95)
    clock.advance(600)
    disk(bridge, 0.50)
    clock.set(window.end + timedelta(minutes=1))
    bridge.tick()
    assert tickets(bridge) == []
    [record] = bridge.store.suppressed_alerts(window=window.id)
    assert record.state is SuppressedState.RECOVERED
    assert record.recovered_at == START + timedelta(seconds=600)
    actions = audit_actions(bridge)
    assert "window.alert_suppressed" in actions and "window.alert_recovered" in actions


def test_an_escalation_inside_the_window_opens_the_higher_category(bridge, clock):
    window = plan(bridge, START, START + timedelta(hours=1))
    disk(bridge, 0.95)
    disk(bridge, 0.99)
    clock.set(window.end)
    bridge.tick()
    [ticket] = tickets(bridge)
    assert ticket.category is Category.AWARIA


def test_a_ticket_open_before_the_window_is_still_resolved_by_its_recovery(bridge, clock):
    disk(bridge, 0.95)
    plan(bridge, START + timedelta(minutes=1), START + timedelta(hours=1))
    clock.advance(120)
    disk(bridge, 0.50)
    [ticket] = tickets(bridge)
    assert ticket.status is TicketStatus.RESOLVED
    assert bridge.store.suppressed_alerts() == []


def test_the_window_survives_a_restart_of_the_bridge(loaded, store, clock):
    first = Bridge(loaded, store=store, clock=clock)
    first.start(ticker=False)
    window = plan(first, START, START + timedelta(hours=1))
    disk(first, 0.95)
    disk(first, 0.95, asset="srv-a1", mountpoint="/data")
    first.close()
    store.migrate()  # the same file, opened again
    second = Bridge(loaded, store=store, clock=clock)
    second.start(ticker=False)
    try:
        # /var recovers while the window runs: the restarted engine knows it was firing
        disk(second, 0.5)
        clock.set(window.end)
        second.tick()
        [ticket] = tickets(second)
        assert ticket.labels["mountpoint"] == "/data"
        states = {r.labels["mountpoint"]: r.state for r in store.suppressed_alerts()}
        assert states == {"/var": SuppressedState.RECOVERED, "/data": SuppressedState.RELEASED}
    finally:
        second.close()


def test_cancelling_a_running_window_opens_the_tickets_it_held(bridge, clock):
    window = plan(bridge, START, START + timedelta(hours=4))
    disk(bridge, 0.95)
    clock.advance(60)
    cancelled = bridge.maintenance.cancel(window.id, "jan.kowalski")
    assert cancelled.cancelled_at == clock.now()
    bridge.tick()
    [ticket] = tickets(bridge)
    assert ticket.asset == "srv-a1"
    disk(bridge, 0.95, mountpoint="/data")  # no longer muted
    assert len(tickets(bridge)) == 2
    assert "window.cancelled" in audit_actions(bridge)


def test_an_alert_moves_into_a_window_that_follows_directly(bridge, clock):
    first = plan(bridge, START, START + timedelta(hours=1))
    second = plan(bridge, first.end, first.end + timedelta(hours=1))
    disk(bridge, 0.95)
    clock.set(first.end)
    bridge.tick()
    assert tickets(bridge) == []
    [record] = bridge.store.suppressed_alerts()
    assert record.window == second.id and record.until == second.end
    clock.set(second.end)
    bridge.tick()
    assert len(tickets(bridge)) == 1


# --- recurrence and DST ----------------------------------------------------------------------


def test_every_second_tuesday_from_22_to_02(bridge, clock):
    window = plan(
        bridge,
        warsaw(2026, 12, 1, 22, 0),
        warsaw(2026, 12, 2, 2, 0),
        rrule="FREQ=WEEKLY;INTERVAL=2;BYDAY=TU",
    )
    schedule = bridge.maintenance.schedule()
    assert schedule.muting("srv-a1", warsaw(2026, 12, 1, 23, 30)).window == window.id
    assert schedule.muting("srv-a1", warsaw(2026, 12, 8, 23, 30)) is None  # the other Tuesday
    muted = schedule.muting("srv-a1", warsaw(2026, 12, 16, 1, 59))  # Wednesday after the 15th
    assert muted.until == warsaw(2026, 12, 16, 2, 0)
    assert schedule.muting("srv-a1", warsaw(2026, 12, 16, 2, 0)) is None  # end is exclusive
    assert schedule.muting("srv-a2", warsaw(2026, 12, 1, 23, 30)) is None


def test_a_recurring_window_keeps_its_wall_clock_hours_across_dst():
    window = MaintenanceWindow(
        "w", "c", warsaw(2026, 3, 17, 22), warsaw(2026, 3, 18, 2), "r", rrule="FREQ=WEEKLY"
    )
    spans = list(Occurrences(window).between(warsaw(2026, 3, 20, 0), warsaw(2026, 4, 1, 0)))
    # 24 March 22:00 CET and 31 March 22:00 CEST: the same hour on the wall, an hour apart in UTC
    assert [s.astimezone(UTC).hour for s, _ in spans] == [21, 20]
    assert [s.astimezone(WARSAW).hour for s, _ in spans] == [22, 22]


@pytest.mark.parametrize(
    ("start", "end", "hours", "inside"),
    [
        # the night the clocks go back: 22:00 to 06:00 is nine real hours
        (warsaw(2026, 10, 24, 22), warsaw(2026, 10, 25, 6), 9, warsaw(2026, 10, 25, 5, 30)),
        # the night they go forward: seven real hours
        (warsaw(2027, 3, 27, 22), warsaw(2027, 3, 28, 6), 7, warsaw(2027, 3, 28, 5, 30)),
    ],
)
def test_a_window_across_a_dst_change(bridge, clock, start, end, hours, inside):
    clock.set(start - timedelta(days=1))
    window = plan(bridge, start, end)
    assert (window.end - window.start) == timedelta(hours=hours)
    schedule = bridge.maintenance.schedule()
    assert schedule.muting("srv-a1", inside).window == window.id
    assert schedule.muting("srv-a1", end) is None
    assert schedule.muting("srv-a1", start - timedelta(seconds=1)) is None


def test_the_repeated_hour_of_october_is_inside_the_window_both_times(bridge, clock):
    clock.set(warsaw(2026, 10, 24, 12))
    plan(bridge, warsaw(2026, 10, 25, 2, 0), warsaw(2026, 10, 25, 4, 0))
    schedule = bridge.maintenance.schedule()
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET, an hour later
    assert schedule.muting("srv-a1", first) and schedule.muting("srv-a1", second)


# --- conflicts and bad plans -----------------------------------------------------------------


def test_an_overlapping_window_is_refused_naming_the_other(bridge):
    first = plan(bridge, START + timedelta(hours=1), START + timedelta(hours=3))
    with pytest.raises(WindowConflict) as caught:
        plan(bridge, START + timedelta(hours=2), START + timedelta(hours=4), reason="inne")
    assert first.id in str(caught.value) and "srv-a1" in str(caught.value)
    # touching is not overlapping; other assets are free
    plan(bridge, START + timedelta(hours=3), START + timedelta(hours=4))
    plan(bridge, START + timedelta(hours=1), START + timedelta(hours=3), assets=["srv-a2"])


def test_a_recurring_window_conflicts_with_a_later_one_off(bridge):
    weekly = plan(
        bridge,
        warsaw(2026, 11, 24, 22),
        warsaw(2026, 11, 25, 2),
        rrule="FREQ=WEEKLY;BYDAY=TU",
    )
    with pytest.raises(WindowConflict) as caught:
        plan(bridge, warsaw(2027, 1, 12, 23), warsaw(2027, 1, 13, 1))
    assert weekly.id in str(caught.value) and "2027-01-12T22:00:00+01:00" in str(caught.value)
    plan(bridge, warsaw(2027, 1, 13, 10), warsaw(2027, 1, 13, 12))  # a Wednesday: free


def test_a_cancelled_window_no_longer_conflicts(bridge):
    first = plan(bridge, START + timedelta(hours=1), START + timedelta(hours=3))
    bridge.maintenance.cancel(first.id, "jan.kowalski")
    plan(bridge, START + timedelta(hours=2), START + timedelta(hours=4))


def test_a_selector_covers_the_assets_that_match_it():
    assets = {
        "amms-t": Asset(id="amms-t", client="a", kind="amms", environment="test"),
        "amms-p": Asset(id="amms-p", client="a", kind="amms", environment="prod"),
        "db-t": Asset(id="db-t", client="a", environment="test"),
        "x-t": Asset(id="x-t", client="b", environment="test"),
    }
    window = MaintenanceWindow(
        "w", "a", START, START, "r", selector=parse_selector("environment=test")
    )
    assert covered_assets(window, assets) == ["amms-t", "db-t"]
    window.selector = parse_selector("kind=amms, environment=prod")
    assert covered_assets(window, assets) == ["amms-p"]
    window.selector = parse_selector("client=a")  # every asset of the window's client
    assert covered_assets(window, assets) == ["amms-t", "amms-p", "db-t"]
    with pytest.raises(ValueError, match="unknown key 'room'"):
        parse_selector("room=7")
    with pytest.raises(ValueError, match="key=value"):
        parse_selector("environment")
    schedule = WindowSchedule([window], assets)
    assert schedule.muting("amms-p", START) is None  # an empty window mutes nothing


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"end": START - timedelta(hours=1)}, "end: the window ends before it starts"),
        ({"end": START + timedelta(days=8)}, "end: a window may last at most 7 days"),
        ({"assets": ["srv-b1"]}, "assets: 'srv-b1' is not an asset of szpital-a"),
        ({"client": "nowy"}, "client: unknown client 'nowy'"),
        ({"rrule": "FREQ=SOMETIMES"}, "rrule: invalid"),
        ({"rrule": "FREQ=MINUTELY"}, "rrule: MINUTELY is not allowed"),
        ({"rrule": "FREQ=DAILY", "end": START + timedelta(hours=30)}, "begins before"),
        ({"reason": "  "}, "reason:"),
        ({"ticket": "DZ-2026-999999"}, "ticket: no ticket DZ-2026-999999"),
        ({"assets": [], "selector": {"kind": "ups"}}, "selector: kind=ups matches no asset"),
        ({"assets": []}, "assets: list the assets or give a selector"),
    ],
)
def test_a_bad_window_is_refused_naming_the_field(bridge, change, message):
    kw = {"end": START + timedelta(hours=1), **change}
    end = kw.pop("end")
    with pytest.raises(WindowError, match=message.replace("(", r"\(")):
        plan(bridge, START, end, **kw)
    assert bridge.store.windows() == []


# --- a recurring window starts on an occurrence of its rule ------------------------------------


@pytest.mark.parametrize(
    ("rrule", "first"),
    [
        # Tuesday 1 December 22:00 with a Wednesday rule: the rule's first night is the 2nd
        (
            "FREQ=WEEKLY;BYDAY=WE",
            "Wednesday 2026-12-02T22:00:00+01:00 to 2026-12-03T02:00:00+01:00",
        ),
        # the second Tuesday of the month: 1 December is the first
        (
            "FREQ=MONTHLY;BYDAY=2TU",
            "Tuesday 2026-12-08T22:00:00+01:00 to 2026-12-09T02:00:00+01:00",
        ),
        # the right day, another hour
        ("FREQ=DAILY;BYHOUR=23", "Tuesday 2026-12-01T23:00:00+01:00 to 2026-12-02T03:00:00+01:00"),
    ],
)
def test_a_recurring_window_whose_start_is_not_an_occurrence_of_its_rule_is_refused(
    bridge, rrule, first
):
    tuesday = warsaw(2026, 12, 1, 22, 0)
    with pytest.raises(WindowError) as caught:
        plan(bridge, tuesday, tuesday + timedelta(hours=4), rrule=rrule)
    message = str(caught.value)
    assert message.startswith("start: Tuesday 2026-12-01T22:00:00+01:00 is not an occurrence")
    assert f"rrule {rrule}" in message and f"first occurrence would be {first}" in message
    assert bridge.store.windows() == []
    # Nothing mutes that Tuesday night: a one-off window of the same asset is free.
    plan(bridge, warsaw(2026, 12, 1, 23, 0), warsaw(2026, 12, 2, 1, 0))


def test_a_rule_with_no_occurrence_from_the_start_is_refused(bridge):
    start = warsaw(2026, 12, 1, 22, 0)
    with pytest.raises(WindowError, match="rrule: gives no occurrence from"):
        plan(bridge, start, start + timedelta(hours=4), rrule="FREQ=WEEKLY;UNTIL=20261124T000000")
    assert bridge.store.windows() == []


def test_the_first_occurrence_the_refusal_names_is_what_mutes_and_conflicts(bridge):
    tuesday = warsaw(2026, 12, 1, 22, 0)
    with pytest.raises(WindowError):
        plan(bridge, tuesday, tuesday + timedelta(hours=4), rrule="FREQ=WEEKLY;BYDAY=WE")
    # planned as the message says: the start is the first night muted, and the first conflict
    window = plan(
        bridge, warsaw(2026, 12, 2, 22), warsaw(2026, 12, 3, 2), rrule="FREQ=WEEKLY;BYDAY=WE"
    )
    schedule = bridge.maintenance.schedule()
    assert schedule.muting("srv-a1", warsaw(2026, 12, 1, 23)) is None
    assert schedule.muting("srv-a1", warsaw(2026, 12, 2, 23)).window == window.id
    with pytest.raises(WindowConflict) as caught:
        plan(bridge, warsaw(2026, 12, 2, 23), warsaw(2026, 12, 3, 1))
    assert "2026-12-02T22:00:00+01:00" in str(caught.value)


def test_a_stored_window_off_its_rule_mutes_from_the_rules_first_occurrence(bridge, store):
    """A window planned before starts were checked: muting, conflicts and the next occurrence
    all follow the rule (the calendar feed writes that occurrence as its DTSTART)."""
    window = MaintenanceWindow(
        "OS-2026-0099",
        "szpital-a",
        warsaw(2026, 12, 1, 22).astimezone(UTC),
        warsaw(2026, 12, 2, 2).astimezone(UTC),
        "stare okno",
        assets=["srv-a1"],
        rrule="FREQ=WEEKLY;BYDAY=WE",
    )
    store.save_window(window)
    bridge.maintenance._changed()
    schedule = bridge.maintenance.schedule()
    assert schedule.muting("srv-a1", warsaw(2026, 12, 1, 23)) is None
    assert schedule.muting("srv-a1", warsaw(2026, 12, 2, 23)).window == window.id
    start, _ = bridge.maintenance.next_occurrence(window, warsaw(2026, 11, 30))
    assert start == warsaw(2026, 12, 2, 22)


def test_a_window_ends_when_its_last_occurrence_is_over():
    one_off = MaintenanceWindow("a", "c", warsaw(2026, 12, 1, 22), warsaw(2026, 12, 2, 2), "r")
    assert not Occurrences(one_off).ended(warsaw(2026, 12, 2, 1, 59))
    assert Occurrences(one_off).ended(warsaw(2026, 12, 2, 2))
    twice = MaintenanceWindow(
        "b", "c", warsaw(2026, 12, 1, 22), warsaw(2026, 12, 2, 2), "r", rrule="FREQ=WEEKLY;COUNT=2"
    )
    assert not Occurrences(twice).ended(warsaw(2026, 12, 5))
    assert Occurrences(twice).following(warsaw(2026, 12, 5))[0] == warsaw(2026, 12, 8, 22)
    assert Occurrences(twice).ended(warsaw(2026, 12, 9, 2))
    weekly = MaintenanceWindow(
        "c", "c", warsaw(2026, 12, 1, 22), warsaw(2026, 12, 2, 2), "r", rrule="FREQ=WEEKLY"
    )
    assert not Occurrences(weekly).ended(warsaw(2036, 12, 5))  # beyond any horizon: no end
    weekly.cancelled_at = warsaw(2026, 12, 8, 23).astimezone(UTC)  # during the second night
    assert Occurrences(weekly).following(warsaw(2026, 12, 8, 22, 30)) == (
        warsaw(2026, 12, 8, 22),
        weekly.cancelled_at,
    )
    assert Occurrences(weekly).ended(weekly.cancelled_at)
