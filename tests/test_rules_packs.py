"""The UPS and storage rule packs, driven through the real engine."""

from __future__ import annotations

from collectors import Sample
from rules.engine import Engine
from rules.loader import load_rule_files
from rules.model import AlertState


def engine() -> Engine:
    return Engine(load_rule_files(["builtin:ups", "builtin:storage"]))


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
