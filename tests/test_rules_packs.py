"""The UPS and storage rule packs, driven through the real engine."""

from __future__ import annotations

from collectors import Sample
from rules.engine import Engine
from rules.loader import load_rule_files
from rules.model import AlertState
from rules.templates import try_render


def engine() -> Engine:
    return Engine(load_rule_files(["builtin:ups", "builtin:storage", "builtin:amms"]))


def feed(e: Engine, metric: str, values: list[tuple[float, float]], **labels) -> list:
    out = []
    for t, v in values:
        out += e.evaluate([Sample(metric, {"asset": "ups-1", **labels}, v, t)], t)
    return [(x.alert.rule, x.state, x.alert.category, x.escalated) for x in out]


def test_a_minute_on_battery_is_an_awaria_and_a_flicker_is_nothing():
    e = engine()
    assert feed(e, "dyzur_ups_on_battery", [(0, 1), (30, 1), (40, 0)]) == [
        ("ups_on_battery", AlertState.PENDING, "awaria", False),
        ("ups_on_battery", AlertState.RESOLVED, "awaria", False),
    ]
    got = feed(e, "dyzur_ups_on_battery", [(100, 1), (130, 1), (160, 1)])
    assert ("ups_on_battery", AlertState.FIRING, "awaria", False) in got


def test_an_unreachable_device_is_a_usterka_then_an_awaria_after_half_an_hour():
    e = engine()
    times = [(t, 0.0) for t in range(0, 2400, 60)]
    got = [x for x in feed(e, "dyzur_snmp_up", times) if x[1] is AlertState.FIRING]
    assert got == [
        ("snmp_device_unreachable", AlertState.FIRING, "usterka", False),
        ("snmp_device_unreachable", AlertState.FIRING, "awaria", True),
    ]


def test_storage_usage_escalates_and_failed_disks_open_a_usterka():
    e = engine()
    got = feed(
        e, "dyzur_storage_used_ratio", [(0, 0.9), (600, 0.9), (660, 0.97)], storage="/vol/amms"
    )
    assert [(g[2], g[3]) for g in got if g[1] is AlertState.FIRING] == [
        ("usterka", False),
        ("awaria", True),
    ]
    assert feed(e, "dyzur_storage_disks_failed", [(0, 1)])[0][:3] == (
        "storage_disk_failed",
        AlertState.FIRING,
        "usterka",
    )


def test_an_amms_check_on_production_is_a_usterka_then_an_awaria_when_critical():
    e = engine()
    states = [(0, 1), (300, 1), (360, 2), (660, 2)]  # WARNING 5 min, then CRITICAL 5 min
    got = feed(e, "dyzur_check_state", states, check="amms_service", environment="prod")
    assert [(g[2], g[3]) for g in got if g[1] is AlertState.FIRING] == [
        ("usterka", False),
        ("awaria", True),
    ]
    [alert] = [a for a in e.alerts() if a.rule == "amms_check_prod"]
    title, _ = try_render(e.rules["amms_check_prod"], alert, "pl")
    assert title == "AMMS ups-1: kontrola amms_service w stanie CRITICAL"


def test_an_amms_check_on_test_stays_a_usterka():
    e = engine()
    states = [(0, 2), (300, 2), (600, 2)]
    got = feed(e, "dyzur_check_state", states, check="amms_service", environment="test")
    assert [(g[0], g[2]) for g in got if g[1] is AlertState.FIRING] == [
        ("amms_check_test", "usterka")
    ]


def test_a_changed_ssh_host_key_is_an_awaria_at_once():
    e = engine()
    got = feed(e, "dyzur_ssh_host_key_mismatch", [(0, 1)])
    assert got == [("ssh_host_key_changed", AlertState.FIRING, "awaria", False)]


def test_the_ups_power_rules_share_one_incident_group():
    """A UPS on battery whose battery runs low is one ticket (issue 18): the pack's power
    rules are in the group `power`, its other rules in none."""
    rules = load_rule_files(["builtin:ups"])
    grouped = {r.name: r.group for r in rules if r.group is not None}
    assert grouped == {
        "ups_on_battery": "power",
        "ups_low_runtime": "power",
        "ups_low_charge": "power",
        "ups_battery_low": "power",
        "ups_input_voltage_low": "power",
    }
