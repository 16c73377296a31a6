"""The engine of a bridge among several: one engine per hospital held, pending timers that go
on after a hospital moves to another bridge, and samples of hospitals not held left alone."""

from __future__ import annotations

import dataclasses

from rules.engine import Engine
from rules.model import AlertState, Rule
from rules.sharded import ShardedEngine
from tests.test_rules_engine import DISK, sample

P, F, R = AlertState.PENDING, AlertState.FIRING, AlertState.RESOLVED
SLOW = dataclasses.replace(DISK, for_seconds=300.0)
SILENT = Rule(
    name="silent",
    category="awaria",
    title=DISK.title,
    description=DISK.description,
    absent_seconds=120.0,
)
CLIENT_OF = {"srv-a": "szpital-a", "srv-b": "klinika-b"}


def test_a_pending_alert_restored_fires_when_its_for_timer_ends_not_later():
    """The bridge that took a hospital over goes on with the for: timer: 300 s from the
    pending start, not 300 s from the take-over."""
    first = Engine([SLOW])
    (pending,) = first.evaluate([sample(0.95, 1000.0)], now=1000.0)
    assert pending.state is P
    second = Engine([SLOW])
    second.restore([pending.alert])
    assert second.counts()[P] == 1
    assert second.tick(1100.0) == []  # the first sweep keeps the series restored
    assert second.evaluate([sample(0.96, 1200.0)], now=1200.0) == []  # 200 s: still pending
    (fired,) = second.evaluate([sample(0.96, 1300.0)], now=1300.0)
    assert (fired.previous, fired.state) == (P, F)
    assert fired.alert.active_since == 1000.0 and fired.alert.fired_at == 1300.0


def test_a_restored_pending_alert_resolves_when_the_condition_no_longer_holds():
    first = Engine([SLOW])
    (pending,) = first.evaluate([sample(0.95, 1000.0)], now=1000.0)
    second = Engine([SLOW])
    second.restore([pending.alert])
    (resolved,) = second.evaluate([sample(0.50, 1100.0)], now=1100.0)
    assert (resolved.previous, resolved.state) == (P, R)
    assert second.counts() == {P: 0, F: 0}


def test_only_the_hospitals_held_are_evaluated():
    engine = ShardedEngine([SLOW], CLIENT_OF)
    engine.take("szpital-a", [], expect=[], exempt=[], now=1000.0)
    out = engine.evaluate(
        [sample(0.95, 1000.0, asset="srv-a"), sample(0.95, 1000.0, asset="srv-b")], now=1000.0
    )
    assert [t.alert.labels["asset"] for t in out] == ["srv-a"]  # klinika-b is another's
    assert engine.holds("szpital-a") and not engine.holds("klinika-b")
    assert engine.last_seen("srv-a") == 1000.0 and engine.last_seen("srv-b") is None
    assert engine.counts() == {P: 1, F: 0} and engine.series_count() == 1


def test_a_hospital_taken_again_starts_from_the_state_given_not_from_the_old_one():
    engine = ShardedEngine([SLOW], CLIENT_OF)
    engine.take("szpital-a", [], expect=[], exempt=[], now=1000.0)
    (pending,) = engine.evaluate([sample(0.95, 1000.0, asset="srv-a")], now=1000.0)
    engine.drop("szpital-a")
    assert engine.counts() == {P: 0, F: 0} and engine.evaluations == 1
    assert engine.evaluate([sample(0.95, 1400.0, asset="srv-a")], now=1400.0) == []
    engine.take("szpital-a", [pending.alert], expect=[], exempt=[], now=1400.0)
    (fired,) = engine.evaluate([sample(0.95, 1400.0, asset="srv-a")], now=1400.0)
    assert fired.state is F and fired.alert.active_since == 1000.0


def test_absence_is_watched_only_for_hospitals_held_and_still_valid():
    held = {"szpital-a": True, "klinika-b": True}
    engine = ShardedEngine([SILENT], CLIENT_OF, valid=lambda c: held[c])
    engine.take("szpital-a", [], expect=["srv-a"], exempt=[], now=1000.0)
    engine.take("klinika-b", [], expect=["srv-b"], exempt=[], now=1000.0)
    held["klinika-b"] = False  # its lease ran out: another bridge watches it now
    fired = engine.tick(1200.0)
    assert [t.alert.labels["asset"] for t in fired] == ["srv-a"]


def test_a_silent_asset_s_alert_of_a_hospital_taken_over_is_not_fired_twice():
    first = ShardedEngine([SILENT], CLIENT_OF)
    first.take("szpital-a", [], expect=["srv-a"], exempt=[], now=1000.0)
    (fired,) = first.tick(1200.0)
    second = ShardedEngine([SILENT], CLIENT_OF)
    second.take("szpital-a", [fired.alert], expect=["srv-a"], exempt=[], now=1300.0)
    assert second.tick(1400.0) == []  # still silent: already firing, nothing new
    (recovered,) = second.evaluate([sample(1.0, 1500.0, metric="m", asset="srv-a")], now=1500.0)
    assert recovered.state is R


def test_threshold_rules_without_a_hospital_s_assets_are_ignored():
    engine = ShardedEngine([DISK], CLIENT_OF)
    engine.take("szpital-a", [], expect=[], exempt=[], now=0.0)
    assert engine.evaluate([sample(0.99, 1.0, asset="not-in-inventory")], now=1.0) == []
