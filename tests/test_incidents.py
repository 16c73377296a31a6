"""Incidents (issue 18) with a controlled clock, through the real engine, lifecycle and store:
root cause by dependency, holds, grouped alerts, the storm budget and splitting."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridge.config import parse_config
from bridge.models import Category, MemberReason, MemberState, TicketStatus
from bridge.service import Bridge
from bridge.store import TicketFilter
from collectors import Sample
from tests.conftest import AGENT, DATA, config_data

SERVERS = ["srv-1", "srv-2", "srv-3", "srv-4", "srv-5"]
AMMS = ["amms-1", "amms-2"]


def incident_config(**incidents) -> dict:
    """Klinika B (24/7): a UPS, a switch behind it, five servers behind the switch and two
    AMMS hosts on the first two servers."""
    data = config_data()
    data["rule_files"] = ["builtin:hosts", "builtin:ups", str(DATA / "test_rules.yaml")]
    assets = [
        {"id": "ups-1", "client": "klinika-b", "kind": "ups", "reports": False},
        {"id": "sw-1", "client": "klinika-b", "kind": "network", "depends_on": "ups-1",
         "reports": False},
    ]  # fmt: skip
    assets += [
        {"id": s, "client": "klinika-b", "kind": "server", "depends_on": "sw-1"} for s in SERVERS
    ]
    assets += [
        {"id": a, "client": "klinika-b", "kind": "amms", "depends_on": s, "reports": False}
        for a, s in zip(AMMS, SERVERS, strict=False)
    ]
    data["assets"] = assets
    if incidents:
        data["incidents"] = incidents
    return data


@pytest.fixture
def loaded(tmp_path):
    return parse_config(incident_config(), "test.yaml", tmp_path)


def push(bridge: Bridge, metric: str, asset: str, value: float, **labels: str) -> None:
    s = Sample(metric, {"asset": asset, **labels}, value, bridge.clock.time())
    result = bridge.ingestor.ingest([s], AGENT)
    assert result.accepted == 1, result.rejected


def heartbeat(bridge: Bridge, assets) -> None:
    for asset in assets:
        push(bridge, "dyzur_up", asset, 1.0)


def on_battery(bridge: Bridge, value: float = 1.0) -> None:
    push(bridge, "dyzur_ups_on_battery", "ups-1", value)


def disk(bridge: Bridge, asset: str, value: float) -> None:
    push(bridge, "dz_test_disk_used_ratio", asset, value, mountpoint="/var")


def open_tickets(bridge: Bridge):
    return bridge.store.list_tickets(TicketFilter(status="open"))


def all_tickets(bridge: Bridge):
    return bridge.store.list_tickets(TicketFilter())


def kinds(bridge: Bridge, number: str) -> list[str]:
    return [e.kind for e in bridge.store.timeline(number)]


def actions(bridge: Bridge) -> list[str]:
    return [e.action for e in bridge.store.audit_events()]


def dependents(bridge: Bridge, number: str):
    return [
        m for m in bridge.lifecycle.incidents.members(number) if m.reason is MemberReason.DEPENDENCY
    ]


def step(bridge: Bridge, clock, seconds: float) -> None:
    clock.advance(seconds)
    bridge.tick()


def ups_battery_cycle(bridge: Bridge, clock) -> None:
    """The servers go silent 30 s before the UPS's on-battery alert fires (it needs a minute
    on battery)."""
    heartbeat(bridge, SERVERS)
    step(bridge, clock, 270)
    on_battery(bridge)  # pending
    step(bridge, clock, 30)  # the agents' last samples 5 min ago: "agent silent" fires
    assert open_tickets(bridge) == []  # held for their root cause
    held = bridge.lifecycle.incidents.firing()
    assert {m.asset for m in held} == set(SERVERS)
    assert {m.state for m in held} == {MemberState.HELD}
    step(bridge, clock, 30)
    on_battery(bridge)  # a minute on battery: the UPS's alert fires


def test_servers_silent_before_their_ups_make_one_ticket_listing_them(bridge, clock):
    ups_battery_cycle(bridge, clock)
    [ticket] = open_tickets(bridge)
    assert ticket.asset == "ups-1" and ticket.category is Category.AWARIA
    members = dependents(bridge, ticket.number)
    assert {m.asset for m in members} == set(SERVERS)
    assert {(m.state, m.reason) for m in members} == {
        (MemberState.ATTACHED, MemberReason.DEPENDENCY)
    }
    assert kinds(bridge, ticket.number).count("incident_attached") == len(SERVERS)
    assert actions(bridge).count("incident.alert_attached") == len(SERVERS)
    # Nothing else opens while the UPS is on battery, however long the servers stay silent.
    for _ in range(10):
        step(bridge, clock, 60)
        on_battery(bridge)
    assert [t.number for t in open_tickets(bridge)] == [ticket.number]


def test_power_back_resolves_the_incident_and_nothing_else_opens(bridge, clock):
    ups_battery_cycle(bridge, clock)
    [ticket] = open_tickets(bridge)
    on_battery(bridge, 0.0)
    assert bridge.store.get_ticket(ticket.number).status is TicketStatus.RESOLVED
    step(bridge, clock, 60)
    heartbeat(bridge, SERVERS)  # the servers report again: their alerts recover
    step(bridge, clock, 600)  # long after the grace period
    assert open_tickets(bridge) == []
    members = dependents(bridge, ticket.number)
    assert {m.state for m in members} == {MemberState.RECOVERED}
    assert len(all_tickets(bridge)) == 1


def test_a_server_still_down_after_the_grace_opens_its_own_ticket_saying_so(bridge, clock):
    ups_battery_cycle(bridge, clock)
    [root] = open_tickets(bridge)
    on_battery(bridge, 0.0)
    step(bridge, clock, 60)
    heartbeat(bridge, SERVERS[1:])  # srv-1 stays down
    step(bridge, clock, 200)
    assert open_tickets(bridge) == []  # within the 5-minute grace
    heartbeat(bridge, SERVERS[1:])
    step(bridge, clock, 60)
    [own] = open_tickets(bridge)
    assert own.asset == "srv-1" and own.rule == "agent_silent"
    assert own.incident == root.number
    assert "incident_part" in kinds(bridge, own.number)
    [line] = [e for e in bridge.store.timeline(own.number) if e.kind == "incident_part"]
    assert root.number in line.message and "ups-1" in line.message
    assert "incident.alert_released" in actions(bridge)
    # a problem of its own from its release: its deadline runs from then
    expected = bridge.lifecycle.deadline("klinika-b", Category.AWARIA, own.opened_at)
    assert own.reaction_due == expected.due
    # its recovery resolves that ticket: no orphan
    heartbeat(bridge, ["srv-1"])
    assert bridge.store.get_ticket(own.number).status is TicketStatus.RESOLVED


def test_a_dependent_alert_without_a_root_opens_its_ticket_after_the_settle_time(bridge, clock):
    heartbeat(bridge, ["ups-1", "sw-1"])  # the root is known and fresh
    disk(bridge, "srv-2", 0.95)
    assert open_tickets(bridge) == []
    step(bridge, clock, 60)
    heartbeat(bridge, ["ups-1", "sw-1"])
    assert open_tickets(bridge) == []
    step(bridge, clock, 31)
    [ticket] = open_tickets(bridge)
    assert ticket.asset == "srv-2" and ticket.rule == "disk_usage"
    assert "incident_held" in kinds(bridge, ticket.number)
    # the deadline runs from the alert's first firing, not from the end of the hold
    opened = bridge.store.timeline(ticket.number)[0].at
    expected = bridge.lifecycle.deadline(
        "klinika-b", Category.USTERKA, opened - timedelta(seconds=91)
    )
    assert ticket.reaction_due == expected.due


def test_a_stale_root_extends_the_hold_instead_of_releasing_a_storm(bridge, clock):
    heartbeat(bridge, ["ups-1"])
    step(bridge, clock, 200)  # the UPS's poller silent for longer than stale_after (180 s)
    disk(bridge, "srv-3", 0.95)
    step(bridge, clock, 91)
    assert open_tickets(bridge) == []  # the hold goes on while the root is stale
    [member] = bridge.lifecycle.incidents.firing()
    assert member.state is MemberState.HELD
    step(bridge, clock, 900)  # but never beyond max_hold (15 min)
    [ticket] = open_tickets(bridge)
    assert ticket.asset == "srv-3"


def test_a_root_firing_later_links_the_dependents_open_ticket_and_closes_nothing(bridge, clock):
    heartbeat(bridge, ["ups-1", "sw-1"])
    disk(bridge, "srv-4", 0.95)
    step(bridge, clock, 91)
    heartbeat(bridge, ["ups-1", "sw-1"])
    step(bridge, clock, 1)
    [own] = open_tickets(bridge)
    on_battery(bridge)
    step(bridge, clock, 60)
    on_battery(bridge)
    root = next(t for t in open_tickets(bridge) if t.asset == "ups-1")
    own = bridge.store.get_ticket(own.number)
    assert own.status is TicketStatus.OPEN and own.incident == root.number
    assert "incident_linked" in kinds(bridge, own.number)
    assert "incident_explains" in kinds(bridge, root.number)
    assert "incident.ticket_linked" in actions(bridge)


def test_held_alerts_survive_a_restart(loaded, store, clock):
    first = Bridge(loaded, store=store, clock=clock)
    first.start(ticker=False)
    heartbeat(first, SERVERS)
    step(first, clock, 300)
    assert len(first.lifecycle.incidents.firing()) == len(SERVERS)
    first.close()
    store.migrate()
    second = Bridge(loaded, store=store, clock=clock)
    second.start(ticker=False)
    try:
        step(second, clock, 30)
        on_battery(second)
        step(second, clock, 60)
        on_battery(second)
        [ticket] = open_tickets(second)
        assert {m.asset for m in dependents(second, ticket.number)} == set(SERVERS)
        # the restored alerts still recover (never an orphan), and none fires twice
        heartbeat(second, SERVERS)
        members = dependents(second, ticket.number)
        assert {m.state for m in members} == {MemberState.RECOVERED}
        assert len(all_tickets(second)) == 1
    finally:
        second.close()


# --- grouped alerts of one asset -------------------------------------------------------------


def test_a_ups_on_battery_whose_battery_runs_low_is_one_ticket_escalated_in_place(bridge, clock):
    push(bridge, "dyzur_ups_input_voltage_volts", "ups-1", 0.0, line="1")
    on_battery(bridge)
    step(bridge, clock, 60)
    on_battery(bridge)
    [ticket] = open_tickets(bridge)
    assert ticket.category is Category.AWARIA and ticket.rule == "ups_on_battery"
    push(bridge, "dyzur_ups_battery_charge_ratio", "ups-1", 0.2)
    push(bridge, "dyzur_ups_battery_runtime_seconds", "ups-1", 300)
    push(bridge, "dyzur_ups_battery_low", "ups-1", 1)
    step(bridge, clock, 300)
    push(bridge, "dyzur_ups_input_voltage_volts", "ups-1", 0.0, line="1")  # Usterka after 5 min
    [same] = open_tickets(bridge)
    assert same.number == ticket.number and same.category is Category.AWARIA
    members = [
        m
        for m in bridge.lifecycle.incidents.members(ticket.number)
        if m.reason is MemberReason.GROUP
    ]
    assert sorted(m.rule for m in members) == [
        "ups_battery_low",
        "ups_input_voltage_low",
        "ups_low_charge",
        "ups_low_runtime",
        "ups_on_battery",
    ]
    for m in members:
        assert m.title in same.description  # the description lists each alert
    # one alert of the group recovers: the ticket stays
    push(bridge, "dyzur_ups_battery_charge_ratio", "ups-1", 0.6)
    assert bridge.store.get_ticket(ticket.number).is_open
    assert "group_recovered" in kinds(bridge, ticket.number)
    # the last one recovering resolves it
    push(bridge, "dyzur_ups_battery_runtime_seconds", "ups-1", 3000)
    push(bridge, "dyzur_ups_battery_low", "ups-1", 0)
    push(bridge, "dyzur_ups_input_voltage_volts", "ups-1", 230.0, line="1")
    assert bridge.store.get_ticket(ticket.number).is_open
    on_battery(bridge, 0.0)
    assert bridge.store.get_ticket(ticket.number).status is TicketStatus.RESOLVED
    assert len(all_tickets(bridge)) == 1


def test_a_group_escalates_when_a_higher_alert_joins(bridge, clock):
    push(bridge, "dyzur_ups_input_voltage_volts", "ups-1", 200.0, line="1")
    step(bridge, clock, 300)
    push(bridge, "dyzur_ups_input_voltage_volts", "ups-1", 200.0, line="1")
    [ticket] = open_tickets(bridge)
    assert ticket.category is Category.USTERKA
    push(bridge, "dyzur_ups_battery_low", "ups-1", 1)
    [same] = open_tickets(bridge)
    assert same.number == ticket.number and same.category is Category.AWARIA
    assert "escalated" in kinds(bridge, ticket.number)


# --- the storm budget --------------------------------------------------------------------------


@pytest.fixture
def storm_loaded(tmp_path):
    data = incident_config(storm={"tickets": 3, "period": "10m", "quiet": "5m"})
    data["rule_files"] = [str(DATA / "test_rules.yaml")]  # no "agent silent" joining the storm
    data["assets"] += [{"id": f"host-{i}", "client": "szpital-a"} for i in range(10)]
    return parse_config(data, "test.yaml", tmp_path)


@pytest.fixture
def storm_bridge(storm_loaded, store, clock):
    b = Bridge(storm_loaded, store=store, clock=clock)
    b.start(ticker=False)
    yield b
    b.close()


def test_beyond_the_budget_alerts_collect_into_one_storm_ticket(storm_bridge, clock):
    bridge = storm_bridge
    for i in range(8):
        disk(bridge, f"host-{i}", 0.95)
    opened = open_tickets(bridge)
    storms = [t for t in opened if t.rule == "alert_storm"]
    assert len(opened) == 4 and len(storms) == 1  # three within the budget, one storm
    [storm] = storms
    assert storm.category is Category.AWARIA and storm.client == "szpital-a"
    members = bridge.lifecycle.incidents.members(storm.number)
    assert [m.asset for m in members] == [f"host-{i}" for i in range(3, 8)]
    assert "(5)" not in storm.title and "5" in storm.title
    assert "incident.storm_opened" in actions(bridge)
    # one recovers inside the storm: it will open nothing
    disk(bridge, "host-3", 0.5)
    # an engineer splits one out: its own ticket, the deadline it would have had
    split = bridge.lifecycle.incidents.split(
        storm.number, members[1].fingerprint, "jan.kowalski", bridge.ingestor.rule_of
    )
    assert split.asset == "host-4"
    expected = bridge.lifecycle.deadline("szpital-a", Category.USTERKA, members[1].fired_at)
    assert split.reaction_due == expected.due
    assert "incident.alert_split" in actions(bridge)
    # the storm ends after 5 quiet minutes: those still firing open their own tickets
    step(bridge, clock, 301)
    assert bridge.store.get_ticket(storm.number).status is TicketStatus.RESOLVED
    assets = sorted(t.asset for t in open_tickets(bridge))
    assert assets == ["host-0", "host-1", "host-2", "host-4", "host-5", "host-6", "host-7"]
    assert "incident.storm_closed" in actions(bridge)


def test_the_storm_budget_is_per_hospital(storm_bridge):
    bridge = storm_bridge
    for i in range(5):
        disk(bridge, f"host-{i}", 0.95)
    disk(bridge, "srv-1", 0.95)  # klinika-b: its own budget (held first: it has a root chain)
    assert [t for t in open_tickets(bridge) if t.client == "klinika-b"] == []
    storms = [t for t in open_tickets(bridge) if t.rule == "alert_storm"]
    assert [s.client for s in storms] == ["szpital-a"]


# --- configuration ------------------------------------------------------------------------------


def test_a_dependency_cycle_and_an_unknown_storm_client_are_named(tmp_path):
    from bridge.config import ConfigError

    data = incident_config(storm={"clients": {"szpital-x": {"tickets": 5}}})
    data["assets"][0]["depends_on"] = "srv-1"  # ups-1 -> srv-1 -> sw-1 -> ups-1
    with pytest.raises(ConfigError) as raised:
        parse_config(data, "dyzur.yaml", tmp_path)
    message = str(raised.value)
    assert "assets.0.depends_on: a dependency cycle: ups-1 -> srv-1 -> sw-1 -> ups-1" in message
    assert "incidents.storm.clients.szpital-x: unknown client 'szpital-x'" in message


def test_incident_periods_are_checked_and_named(tmp_path):
    from bridge.config import ConfigError

    with pytest.raises(ConfigError) as raised:
        parse_config(incident_config(settle="2h", storm={"tickets": 0}), "dyzur.yaml", tmp_path)
    message = str(raised.value)
    assert "incidents.settle" in message and "incidents.storm.tickets" in message


def test_a_split_of_an_alert_whose_asset_is_in_a_window_is_refused_and_changes_nothing(
    storm_bridge, clock
):
    from bridge.maintenance.planning import WindowRequest
    from bridge.tickets.incidents import SplitRefused

    bridge = storm_bridge
    for i in range(5):
        disk(bridge, f"host-{i}", 0.95)
    [storm] = [t for t in open_tickets(bridge) if t.rule == "alert_storm"]
    member = bridge.lifecycle.incidents.members(storm.number)[-1]
    request = WindowRequest(
        client="szpital-a",
        start=clock.now(),
        end=clock.now() + timedelta(hours=1),
        reason="wymiana dysku",
        assets=[member.asset],
    )
    bridge.maintenance.plan(request, "jan.kowalski")
    with pytest.raises(SplitRefused, match="maintenance window"):
        bridge.lifecycle.incidents.split(
            storm.number, member.fingerprint, "jan.kowalski", bridge.ingestor.rule_of
        )
    [same] = [m for m in bridge.lifecycle.incidents.members(storm.number) if m.id == member.id]
    assert same.state is MemberState.ATTACHED
    assert bridge.store.suppressed_alerts(fingerprint=member.fingerprint) == []


def test_a_stale_root_is_noticed_without_any_absence_rule_loaded(tmp_path, store, clock):
    data = incident_config()
    data["rule_files"] = [str(DATA / "test_rules.yaml")]  # no "agent silent" rule at all
    bridge = Bridge(parse_config(data, "test.yaml", tmp_path), store=store, clock=clock)
    bridge.start(ticker=False)
    try:
        heartbeat(bridge, ["ups-1"])
        step(bridge, clock, 200)  # the UPS's poller silent longer than stale_after
        disk(bridge, "srv-3", 0.95)
        step(bridge, clock, 91)
        assert open_tickets(bridge) == []  # the hold goes on while the root is stale
        heartbeat(bridge, ["ups-1", "sw-1"])  # the root reports again, healthy
        step(bridge, clock, 91)
        [ticket] = open_tickets(bridge)
        assert ticket.asset == "srv-3"
    finally:
        bridge.close()


def test_releases_and_open_storms_are_in_the_metrics(storm_bridge, clock):
    bridge = storm_bridge
    for i in range(5):
        disk(bridge, f"host-{i}", 0.95)
    value = bridge.metrics.registry.get_sample_value
    assert value("dyzur_incident_storms_open", {"client": "szpital-a"}) == 1
    assert value("dyzur_incident_storms_open", {"client": "klinika-b"}) == 0
    assert value("dyzur_incident_alerts_total", {"action": "attached"}) == 2
    step(bridge, clock, 301)  # the storm ends: both open their own tickets
    assert value("dyzur_incident_alerts_total", {"action": "released"}) == 2
    assert value("dyzur_incident_storms_open", {"client": "szpital-a"}) == 0


def test_a_storm_budget_turned_off_collects_nothing(tmp_path, store, clock):
    data = incident_config(storm={"enabled": False})
    data["rule_files"] = [str(DATA / "test_rules.yaml")]
    data["assets"] += [{"id": f"host-{i}", "client": "szpital-a"} for i in range(12)]
    bridge = Bridge(parse_config(data, "test.yaml", tmp_path), store=store, clock=clock)
    bridge.start(ticker=False)
    try:
        for i in range(12):
            disk(bridge, f"host-{i}", 0.95)
        opened = open_tickets(bridge)
        assert len(opened) == 12 and all(t.rule == "disk_usage" for t in opened)
    finally:
        bridge.close()
