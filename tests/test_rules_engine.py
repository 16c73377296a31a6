"""The rules engine: timing (`for`), hysteresis, escalation, absence, matchers, restore."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.sample import Sample
from rules.engine import STALENESS_MARGIN, Engine
from rules.model import (
    Alert,
    AlertState,
    Condition,
    Escalation,
    Matcher,
    Rule,
    Text,
    Transition,
    fingerprint,
)

P, F, R = AlertState.PENDING, AlertState.FIRING, AlertState.RESOLVED
METRIC = "dyzur_filesystem_used_ratio"
TEXT = Text(pl="{{ rule }}", en="{{ rule }}")

DISK = Rule(
    name="disk",
    category="usterka",
    title=TEXT,
    description=TEXT,
    metric=METRIC,
    condition=Condition(">", 0.90),
    clear=Condition("<", 0.85),
    identity=("asset", "mountpoint"),
)


def rule(**changes) -> Rule:
    return dataclasses.replace(DISK, **changes)


def sample(value: float, ts: float, metric: str = METRIC, **labels: str) -> Sample:
    labels.setdefault("asset", "srv1")
    labels.setdefault("mountpoint", "/var")
    return Sample(metric, labels, value, ts)


def feed(engine: Engine, points, **labels) -> list[Transition]:
    """Feed (ts, value) points one call each, as an agent pushing in real time would."""
    out = []
    for ts, value in points:
        out += engine.evaluate([sample(value, ts, **labels)], now=ts)
    return out


def kinds(transitions) -> list[tuple]:
    return [(t.previous, t.state) for t in transitions]


# --- for -------------------------------------------------------------------------------------


def test_for_holds_back_firing_until_the_boundary():
    engine = Engine([rule(for_seconds=300)])
    assert kinds(feed(engine, [(1000, 0.95)])) == [(None, P)]
    assert feed(engine, [(1100, 0.96), (1299, 0.97)]) == []
    [fired] = feed(engine, [(1300, 0.97)])
    assert (fired.previous, fired.state, fired.at) == (P, F, 1300)
    assert fired.alert.active_since == 1000
    assert fired.alert.fired_at == 1300
    assert fired.alert.value == 0.97
    assert feed(engine, [(1400, 0.97)]) == []


def test_for_zero_fires_on_the_first_sample():
    engine = Engine([rule(for_seconds=0)])
    [t] = feed(engine, [(10, 0.91)])
    assert (t.previous, t.state, t.alert.category) == (None, F, "usterka")
    assert t.alert.fired_at == 10


def test_pending_alert_that_recovers_resolves_without_firing_and_starts_over():
    engine = Engine([rule(for_seconds=300)])
    out = feed(engine, [(0, 0.95), (200, 0.80)])
    assert kinds(out) == [(None, P), (P, R)]
    assert engine.alerts() == []
    # The `for` clock starts again from scratch.
    assert kinds(feed(engine, [(250, 0.95), (500, 0.95)])) == [(None, P)]
    assert kinds(feed(engine, [(550, 0.95)])) == [(P, F)]


def test_pending_drops_as_soon_as_when_is_false_even_above_clear():
    engine = Engine([rule(for_seconds=60)])
    assert kinds(feed(engine, [(0, 0.95), (10, 0.88)])) == [(None, P), (P, R)]


def test_for_counts_sample_timestamps_not_arrival():
    """A spool replayed in one batch long after the fact still honours `for`."""
    engine = Engine([rule(for_seconds=300)])
    batch = [sample(0.95, ts) for ts in (0, 100, 200, 299)]
    assert kinds(engine.evaluate(batch, now=10_000)) == [(None, P)]
    [t] = engine.evaluate([sample(0.95, 300)], now=10_001)
    assert (t.state, t.at, t.alert.fired_at) == (F, 300, 300)


# --- hysteresis ------------------------------------------------------------------------------


def test_value_hovering_at_the_threshold_fires_once_and_does_not_flap():
    engine = Engine([rule()])
    points = [(i * 60, 0.91 if i % 2 == 0 else 0.89) for i in range(40)]
    out = feed(engine, points)
    assert kinds(out) == [(None, F)]
    # Between the thresholds it stays firing; only below the clear threshold it resolves.
    assert feed(engine, [(3000, 0.86), (3060, 0.85)]) == []
    [t] = feed(engine, [(3120, 0.849)])
    assert (t.previous, t.state, t.alert.resolved_at, t.alert.value) == (F, R, 3120, 0.849)


def test_without_clear_the_negated_condition_resolves():
    engine = Engine([rule(clear=None)])
    assert kinds(feed(engine, [(0, 0.95), (60, 0.90)])) == [(None, F), (F, R)]


def test_firing_alert_value_follows_the_latest_sample():
    engine = Engine([rule()])
    feed(engine, [(0, 0.95), (60, 0.87)])
    [alert] = engine.alerts()
    assert alert.value == 0.87
    assert alert.state is F


# --- escalation ------------------------------------------------------------------------------

ESC = Escalation(Condition(">", 0.98), "awaria", 0.0)


def test_escalation_upgrades_the_category_once_and_never_back():
    engine = Engine([rule(escalation=ESC)])
    [fired] = feed(engine, [(0, 0.95)])
    assert fired.alert.category == "usterka"
    [up] = feed(engine, [(60, 0.99)])
    assert (up.previous, up.state, up.escalated, up.alert.category) == (F, F, True, "awaria")
    # Staying above, dropping below and rising again: no second escalation, no downgrade.
    assert feed(engine, [(120, 0.995), (180, 0.93), (240, 0.99)]) == []
    assert engine.alerts()[0].category == "awaria"
    [resolved] = feed(engine, [(300, 0.5)])
    assert (resolved.state, resolved.alert.category) == (R, "awaria")
    # A new episode starts at the rule's own category again.
    [again] = feed(engine, [(360, 0.95)])
    assert again.alert.category == "usterka"


def test_already_beyond_the_escalation_fires_straight_with_the_upgraded_category():
    engine = Engine([rule(escalation=ESC)])
    out = feed(engine, [(0, 0.99)])
    assert [(t.previous, t.state, t.alert.category, t.escalated) for t in out] == [
        (None, F, "awaria", False)
    ]


def test_escalation_holding_through_pending_fires_upgraded_at_the_for_boundary():
    engine = Engine([rule(for_seconds=300, escalation=ESC)])
    out = feed(engine, [(0, 0.99), (150, 0.99), (300, 0.99)])
    assert [(t.state, t.alert.category, t.escalated) for t in out] == [
        (P, "usterka", False),
        (F, "awaria", False),
    ]


def test_escalation_for_must_hold_and_restarts_when_interrupted():
    esc = Escalation(Condition(">", 0.98), "awaria", 120.0)
    engine = Engine([rule(escalation=esc)])
    assert kinds(feed(engine, [(0, 0.99)])) == [(None, F)]  # fires, not yet escalated
    assert feed(engine, [(60, 0.99), (100, 0.95)]) == []  # interrupted at 100
    assert feed(engine, [(130, 0.99), (240, 0.99)]) == []  # 110 s since 130
    [up] = feed(engine, [(250, 0.99)])
    assert up.escalated and up.alert.category == "awaria" and up.at == 250


def test_escalation_for_restarts_when_the_value_falls_between_clear_and_when():
    esc = Escalation(Condition(">", 0.98), "awaria", 120.0)
    engine = Engine([rule(escalation=esc)])
    assert kinds(feed(engine, [(0, 0.99), (60, 0.87)])) == [(None, F)]  # 0.87: still firing
    assert feed(engine, [(130, 0.99), (240, 0.99)]) == []
    assert [t.escalated for t in feed(engine, [(250, 0.99)])] == [True]


# --- absence ---------------------------------------------------------------------------------

SILENT = Rule(
    name="agent_silent", category="awaria", title=TEXT, description=TEXT, absent_seconds=300
)


def test_absence_fires_after_the_period_and_resolves_when_samples_return():
    engine = Engine([SILENT])
    engine.evaluate([sample(0.1, 1000, metric="anything", asset="srv1")], now=1000)
    assert engine.tick(1299) == []
    [t] = engine.tick(1300)
    assert (t.previous, t.state, t.at) == (None, F, 1300)
    assert t.alert.labels == {"asset": "srv1"}
    assert t.alert.category == "awaria"
    assert t.alert.active_since == 1000  # silent since
    assert t.alert.value == 300  # seconds of silence
    assert t.alert.fingerprint == fingerprint("agent_silent", {"asset": "srv1"})
    assert engine.tick(1400) == []  # fires once
    [back] = engine.evaluate([sample(0.1, 1500, metric="other", asset="srv1")], now=1500)
    assert (back.previous, back.state, back.at) == (F, R, 1500)
    assert engine.tick(1600) == []


def test_absence_counts_arrival_so_replayed_old_samples_mean_the_asset_is_back():
    engine = Engine([SILENT])
    engine.expect(["srv1"], now=0)
    assert kinds(engine.tick(300)) == [(None, F)]
    # The agent comes back and pushes its spool: timestamps from the outage, arriving now.
    assert kinds(engine.evaluate([sample(0.1, 50, asset="srv1")], now=900)) == [(F, R)]
    assert engine.tick(1000) == []


def test_expected_asset_that_never_reports_fires_after_the_period():
    engine = Engine([SILENT])
    engine.expect(["srv1", "srv2"], now=100)
    engine.evaluate([sample(0.1, 350, asset="srv2")], now=350)
    [t] = engine.tick(400)
    assert t.alert.labels == {"asset": "srv1"}
    # expect() does not reset an asset already seen.
    engine.expect(["srv2"], now=600)
    assert [t.alert.labels["asset"] for t in engine.tick(650)] == ["srv2"]


def test_absence_of_one_metric_watches_only_that_metric_and_its_reporters():
    rule_ = dataclasses.replace(SILENT, name="ups_silent", metric="ups_battery_ratio")
    engine = Engine([rule_])
    engine.expect(["srv9"], now=0)  # never sent the metric: not watched by this rule
    engine.evaluate([sample(1.0, 0, metric="ups_battery_ratio", asset="ups1")], now=0)
    engine.evaluate([sample(0.5, 200, metric="something_else", asset="ups1")], now=200)
    assert [t.alert.labels for t in engine.tick(300)] == [{"asset": "ups1"}]
    # Another metric does not bring it back; its own metric does.
    assert engine.evaluate([sample(0.5, 400, metric="something_else", asset="ups1")], 400) == []
    out = engine.evaluate([sample(1.0, 500, metric="ups_battery_ratio", asset="ups1")], 500)
    assert kinds(out) == [(F, R)]


def test_a_nan_sample_still_means_the_asset_is_alive():
    engine = Engine([SILENT, rule()])
    engine.expect(["srv1"], now=0)
    assert engine.evaluate([sample(math.nan, 250, asset="srv1")], now=250) == []
    assert engine.tick(400) == []


# --- matchers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matcher", "matching", "not_matching"),
    [
        (Matcher("fstype", "=", "ext4"), ["ext4"], ["xfs", "ext44", None]),
        (Matcher("fstype", "!=", "tmpfs"), ["ext4", None], ["tmpfs"]),
        (Matcher("fstype", "=~", "ext[34]|xfs"), ["ext3", "ext4", "xfs"], ["ext2", "xfs2", None]),
        (Matcher("fstype", "!~", "tmpfs|overlay"), ["ext4", "tmpfs2", None], ["tmpfs", "overlay"]),
        (Matcher("fstype", "=", ""), [None, ""], ["ext4"]),  # PromQL: a missing label is ""
    ],
)
def test_matchers(matcher, matching, not_matching):
    def fires(fstype):
        engine = Engine([rule(matchers=(matcher,))])
        labels = {"asset": "srv1"} if fstype is None else {"asset": "srv1", "fstype": fstype}
        return engine.evaluate([Sample(METRIC, labels, 0.99, 1)], now=1) != []

    assert [fires(v) for v in matching] == [True] * len(matching)
    assert [fires(v) for v in not_matching] == [False] * len(not_matching)


def test_all_matchers_of_a_rule_must_hold():
    matchers = (Matcher("env", "=", "prod"), Matcher("mountpoint", "=~", "/var.*"))
    engine = Engine([rule(matchers=matchers)])
    assert feed(engine, [(1, 0.99)], env="prod", mountpoint="/var/lib") != []
    assert feed(engine, [(1, 0.99)], env="test", mountpoint="/var/log") == []
    assert feed(engine, [(1, 0.99)], env="prod", mountpoint="/home") == []


def test_rules_on_one_metric_keep_their_own_alerts():
    warn = rule(name="disk_warn")
    crit = rule(
        name="disk_crit",
        category="awaria",
        condition=Condition(">", 0.97),
        clear=Condition("<", 0.95),
        matchers=(Matcher("env", "=", "prod"),),
    )
    per_asset = rule(
        name="disk_any", identity=("asset",), condition=Condition(">=", 0.99), clear=None
    )
    engine = Engine([warn, crit, per_asset])

    def step(ts, value, mountpoint="/var", env="prod"):
        out = feed(engine, [(ts, value)], mountpoint=mountpoint, env=env)
        return [(t.alert.rule, t.state.value) for t in out]

    assert step(0, 0.93) == [("disk_warn", "firing")]
    assert step(60, 0.99) == [("disk_crit", "firing"), ("disk_any", "firing")]
    assert step(120, 0.96) == [("disk_any", "resolved")]
    assert step(180, 0.93) == [("disk_crit", "resolved")]
    # Another mountpoint is another series for the first two, the same one for disk_any.
    assert step(240, 0.99, mountpoint="/home", env="test") == [
        ("disk_warn", "firing"),
        ("disk_any", "firing"),
    ]
    assert sorted((a.rule, a.labels["mountpoint"]) for a in engine.alerts()) == [
        ("disk_any", "/home"),
        ("disk_warn", "/home"),
        ("disk_warn", "/var"),
    ]


def test_samples_of_other_metrics_are_not_evaluated():
    engine = Engine([rule()])
    assert engine.evaluate([sample(0.99, 1, metric="dyzur_memory_used_ratio")], now=1) == []


# --- series ----------------------------------------------------------------------------------


def test_out_of_order_samples_are_ignored():
    engine = Engine([rule()])
    assert feed(engine, [(100, 0.5), (50, 0.99)]) == []  # late bad sample: ignored
    assert kinds(feed(engine, [(150, 0.99)])) == [(None, F)]
    assert feed(engine, [(120, 0.10)]) == []  # late good sample: does not resolve
    assert kinds(feed(engine, [(150, 0.10)])) == [(F, R)]  # same timestamp is accepted


def test_many_series_are_independent():
    engine = Engine([rule(for_seconds=60)])
    assets = [f"srv{i}" for i in range(100)]
    batch = [sample(0.99 if i % 2 else 0.5, 0, asset=a) for i, a in enumerate(assets)]
    assert len(engine.evaluate(batch, now=0)) == 50
    batch = [sample(0.99 if i % 2 else 0.5, 60, asset=a) for i, a in enumerate(assets)]
    fired = engine.evaluate(batch, now=60)
    assert sorted(t.alert.labels["asset"] for t in fired) == sorted(assets[1::2])
    assert engine.counts() == {P: 0, F: 50}
    # One recovering does not touch the others.
    [t] = engine.evaluate([sample(0.1, 120, asset="srv1")], now=120)
    assert (t.alert.labels["asset"], t.state) == ("srv1", R)
    assert engine.counts() == {P: 0, F: 49}
    # Another mountpoint on the same asset is a series of its own.
    out = engine.evaluate([sample(0.99, 130, asset="srv3", mountpoint="/home")], now=130)
    assert kinds(out) == [(None, P)]
    assert engine.counts() == {P: 1, F: 49}


def test_missing_identity_label_counts_as_empty():
    engine = Engine([rule()])
    [t] = engine.evaluate([Sample(METRIC, {"asset": "srv1"}, 0.99, 1)], now=1)
    assert t.alert.labels["mountpoint"] == ""
    assert t.alert.fingerprint == fingerprint("disk", {"asset": "srv1", "mountpoint": ""})


def test_non_finite_values_are_skipped():
    engine = Engine([rule()])
    feed(engine, [(0, 0.99)])
    for bad in (math.nan, math.inf, -math.inf):
        assert feed(engine, [(10, bad)]) == []
    assert engine.alerts()[0].value == 0.99
    assert engine.counts()[F] == 1


def test_alert_carries_the_sample_labels_and_the_identity():
    engine = Engine([rule()])
    [t] = feed(engine, [(0, 0.99)], fstype="ext4", device="/dev/sda1")
    assert t.alert.labels == {
        "asset": "srv1",
        "mountpoint": "/var",
        "fstype": "ext4",
        "device": "/dev/sda1",
    }
    assert t.alert.asset == "srv1"
    assert t.alert.rule == "disk"


# --- fingerprints ----------------------------------------------------------------------------


def test_fingerprints_are_stable_across_label_order_and_distinct_across_rules_and_labels():
    other = rule(name="disk_other")
    engine = Engine([rule(), other])
    a = Sample(METRIC, {"asset": "srv1", "mountpoint": "/", "fstype": "ext4"}, 0.99, 1)
    b = Sample(METRIC, {"fstype": "xfs", "mountpoint": "/", "asset": "srv1"}, 0.99, 1)
    first = {t.alert.rule: t.alert.fingerprint for t in Engine([rule(), other]).evaluate([a], 1)}
    second = {t.alert.rule: t.alert.fingerprint for t in engine.evaluate([b], 1)}
    assert first == second  # label order and non-identity labels do not matter
    assert first["disk"] == fingerprint("disk", {"mountpoint": "/", "asset": "srv1"})
    assert first["disk"] != first["disk_other"]
    c = Sample(METRIC, {"asset": "srv1", "mountpoint": "/var"}, 0.99, 1)
    d = Sample(METRIC, {"asset": "srv2", "mountpoint": "/"}, 0.99, 1)
    fps = {t.alert.fingerprint for t in engine.evaluate([c, d], 1) if t.alert.rule == "disk"}
    assert len(fps) == 2 and first["disk"] not in fps


def test_fingerprint_is_kept_across_episodes():
    engine = Engine([rule()])
    out = feed(engine, [(0, 0.99), (60, 0.5), (120, 0.99)])
    assert kinds(out) == [(None, F), (F, R), (None, F)]
    assert len({t.alert.fingerprint for t in out}) == 1


# --- restore ---------------------------------------------------------------------------------


def firing_alert(rule_: Rule, labels: dict[str, str], **changes) -> Alert:
    alert = Alert(
        rule=rule_.name,
        fingerprint=fingerprint(rule_.name, {k: labels[k] for k in rule_.identity}),
        labels=labels,
        state=F,
        category=rule_.category,
        value=0.97,
        active_since=500,
        fired_at=800,
    )
    return dataclasses.replace(alert, **changes)


def test_restored_alert_is_not_fired_again_and_resolves_on_recovery():
    engine = Engine([rule()])
    engine.restore([firing_alert(DISK, {"asset": "srv1", "mountpoint": "/var"})])
    assert engine.counts() == {P: 0, F: 1}
    assert feed(engine, [(1000, 0.96)]) == []  # still bad: the same alert, no new firing
    [t] = feed(engine, [(1060, 0.5)])
    assert (t.previous, t.state) == (F, R)
    assert t.alert.active_since == 500 and t.alert.fired_at == 800
    assert engine.counts() == {P: 0, F: 0}


def test_restore_accepts_a_plain_state_string_and_ignores_what_it_cannot_place():
    engine = Engine([rule(), SILENT])
    engine.restore(
        [
            firing_alert(DISK, {"asset": "srv1", "mountpoint": "/"}, state="firing"),
            firing_alert(DISK, {"asset": "srv2", "mountpoint": "/"}, state="pending"),
            firing_alert(DISK, {"asset": "srv3", "mountpoint": "/"}, rule="gone"),
            firing_alert(DISK, {"asset": "srv4", "mountpoint": "/"}, state=R),
        ]
    )
    alerts = sorted(engine.alerts(), key=lambda a: a.labels["asset"])
    assert [(a.labels["asset"], a.state) for a in alerts] == [("srv1", F), ("srv2", P)]


def test_restored_escalated_alert_is_not_escalated_again():
    engine = Engine([rule(escalation=ESC)])
    labels = {"asset": "srv1", "mountpoint": "/var"}
    engine.restore([firing_alert(DISK, labels, category="awaria")])
    assert feed(engine, [(1000, 0.99)]) == []
    [t] = feed(engine, [(1060, 0.1)])
    assert (t.state, t.alert.category) == (R, "awaria")


def test_restored_absence_alert_resolves_when_the_asset_reports():
    engine = Engine([SILENT])
    engine.restore([firing_alert(SILENT, {"asset": "srv1"}, state="firing")])
    assert engine.alerts()[0].state is F
    assert engine.tick(2000) == []  # still silent: no second firing
    [t] = engine.evaluate([sample(0.1, 2100, asset="srv1")], now=2100)
    assert (t.alert.rule, t.previous, t.state) == ("agent_silent", F, R)


# --- snapshots, counts -----------------------------------------------------------------------


def test_transitions_and_alerts_are_snapshots():
    engine = Engine([rule(escalation=ESC)])
    [fired] = feed(engine, [(0, 0.95)])
    feed(engine, [(60, 0.99)])  # escalates and changes the value
    assert (fired.alert.state, fired.alert.category, fired.alert.value) == (F, "usterka", 0.95)
    [listed] = engine.alerts()
    listed.labels["asset"] = "changed"
    listed.value = 0.0
    fired.alert.labels["mountpoint"] = "changed"
    [again] = engine.alerts()
    assert again.labels["asset"] == "srv1" and again.labels["mountpoint"] == "/var"
    assert again.value == 0.99
    [resolved] = feed(engine, [(120, 0.1)])
    assert resolved.alert.labels["mountpoint"] == "/var"


def test_counts_follow_pending_and_firing():
    engine = Engine([rule(for_seconds=60), SILENT])
    assert engine.counts() == {P: 0, F: 0}
    feed(engine, [(0, 0.99)])
    assert engine.counts() == {P: 1, F: 0}
    feed(engine, [(60, 0.99)])
    assert engine.counts() == {P: 0, F: 1}
    engine.expect(["srv2"], now=0)
    engine.tick(300)
    assert engine.counts() == {P: 0, F: 2}
    assert sorted(a.rule for a in engine.alerts()) == ["agent_silent", "disk"]


def test_engine_refuses_duplicate_rule_names_and_lists_its_rules():
    with pytest.raises(ValueError, match="duplicate rule name 'disk'"):
        Engine([rule(), rule()])
    assert Engine([rule(), SILENT]).rules == {"disk": rule(), "agent_silent": SILENT}


# --- bounded state: unmatched samples and stale series ------------------------------------------


def ticks(engine: Engine, start: float, end: float, live: dict[str, str] | None = None):
    """Tick every minute from ``start`` to ``end`` as the bridge does; ``live``: labels of a
    series that keeps reporting 0.5 every minute meanwhile. Returns the transitions."""
    out = []
    now = start
    while now <= end:
        if live is not None:
            out += engine.evaluate([sample(0.5, now, **live)], now=now)
        out += engine.tick(now)
        now += 60
    return out


def test_staleness_is_the_margin_plus_the_longest_period_of_any_rule():
    assert Engine([rule()]).staleness == STALENESS_MARGIN == 3600
    esc = Escalation(Condition(">", 0.98), "awaria", 900.0)
    rules = [rule(for_seconds=300, escalation=esc), SILENT]
    assert Engine(rules).staleness == 3600 + 900
    assert Engine([rule(for_seconds=7200), SILENT]).staleness == 3600 + 7200
    assert Engine([rule()], staleness=120).staleness == 120
    with pytest.raises(ValueError, match="staleness"):
        Engine([rule()], staleness=0)


def test_samples_no_rule_matches_leave_no_state():
    not_tmpfs = (Matcher("fstype", "!~", "tmpfs|overlay"),)
    prod = (Matcher("env", "=", "prod"),)
    engine = Engine([rule(matchers=not_tmpfs), rule(name="disk_prod", matchers=prod)])
    batch = [
        sample(0.99, 0, fstype="tmpfs", env="test", mountpoint=f"/run/user/{i}") for i in range(100)
    ]
    batch.append(sample(0.99, 0, metric="no_rule_uses_this", mountpoint="/x"))
    batch.append(sample(math.nan, 0, fstype="ext4", mountpoint="/nan"))
    assert engine.evaluate(batch, now=0) == []
    assert engine.series_count() == 0
    # One rule matching is enough for the series to be kept, and it alerts as before.
    out = engine.evaluate([sample(0.99, 10, fstype="tmpfs", env="prod", mountpoint="/r")], 10)
    assert [(t.alert.rule, t.state) for t in out] == [("disk_prod", F)]
    assert engine.series_count() == 1
    # A rule without matchers matches every sample of its metric.
    engine = Engine([rule()])
    engine.evaluate([sample(0.1, 0, fstype="tmpfs")], now=0)
    assert engine.series_count() == 1


def test_churned_series_are_dropped_after_the_staleness_period():
    engine = Engine([rule(for_seconds=300)])
    staleness = engine.staleness
    churned = [sample(0.5, 0, mountpoint=f"/mnt/job-{i}") for i in range(200)]
    engine.evaluate(churned, now=0)
    assert engine.series_count() == 200
    live = {"mountpoint": "/var"}
    assert ticks(engine, 0, staleness - 60, live) == []
    assert engine.series_count() == 201  # not stale yet
    ticks(engine, staleness, staleness + 2 * engine.sweep_every, live)
    assert engine.series_count() == 1  # the churned ones went; the live one stays
    # A dropped series that comes back is a new series and alerts as usual.
    t = staleness + 200
    out = engine.evaluate([sample(0.99, t, mountpoint="/mnt/job-7")], now=t)
    assert kinds(out) == [(None, P)]
    assert engine.series_count() == 2


def test_pending_alert_of_a_stale_series_resolves_and_its_for_starts_over():
    engine = Engine([rule(for_seconds=600)])
    assert kinds(feed(engine, [(0, 0.99)])) == [(None, P)]
    out = ticks(engine, 0, engine.staleness + 2 * engine.sweep_every)
    assert [(t.previous, t.state, t.alert.fingerprint) for t in out] == [
        (P, R, fingerprint("disk", {"asset": "srv1", "mountpoint": "/var"}))
    ]
    assert engine.counts() == {P: 0, F: 0}
    assert engine.series_count() == 0
    t = engine.staleness + 300
    assert kinds(feed(engine, [(t, 0.99)])) == [(None, P)]  # not fired at once: held anew
    assert kinds(feed(engine, [(t + 600, 0.99)])) == [(P, F)]


def test_series_inside_its_for_window_is_not_dropped():
    engine = Engine([rule(for_seconds=7200)])  # 2 h: longer than the margin
    assert kinds(feed(engine, [(0, 0.99)])) == [(None, P)]
    # Silent for longer than an hour, but less than `for` + the margin: still pending.
    assert ticks(engine, 0, 7200 + 1800) == []
    assert engine.counts() == {P: 1, F: 0}
    [fired] = feed(engine, [(9000, 0.99)])
    assert (fired.previous, fired.state, fired.alert.active_since) == (P, F, 0)


def test_firing_alert_of_a_stale_series_stays_firing_until_a_sample_clears_it():
    engine = Engine([rule()])
    assert kinds(feed(engine, [(0, 0.99)])) == [(None, F)]
    end = 5 * engine.staleness
    assert ticks(engine, 0, end) == []  # the series stopped: no resolution, none lost
    assert engine.counts() == {P: 0, F: 1}
    assert engine.series_count() == 1
    [alert] = engine.alerts()
    assert alert.state is F and alert.value == 0.99
    [cleared] = feed(engine, [(end + 60, 0.5)])
    assert (cleared.previous, cleared.state, cleared.at) == (F, R, end + 60)
    # Resolved, the series is an ordinary one again and goes when it is stale.
    ticks(engine, end + 60, end + 60 + engine.staleness + 2 * engine.sweep_every)
    assert engine.series_count() == 0


def test_restored_firing_alert_survives_the_sweep_and_resolves_on_recovery():
    engine = Engine([rule()])
    engine.restore([firing_alert(DISK, {"asset": "srv1", "mountpoint": "/var"})])
    assert ticks(engine, 0, 2 * engine.staleness) == []
    [t] = feed(engine, [(2 * engine.staleness + 60, 0.5)])
    assert (t.previous, t.state) == (F, R)


def test_an_asset_that_goes_silent_still_fires_absence_after_its_series_are_dropped():
    engine = Engine([SILENT, rule()])
    engine.expect(["srv1"], now=0)
    engine.evaluate([sample(0.5, 0, asset="srv1")], now=0)
    out = ticks(engine, 0, engine.staleness + 2 * engine.sweep_every)
    assert [(t.alert.rule, t.previous, t.state, t.at) for t in out] == [
        ("agent_silent", None, F, 300)
    ]
    assert engine.series_count() == 0  # its disk series went, its absence alert did not
    assert [a.rule for a in engine.alerts()] == ["agent_silent"]
    t = engine.staleness + 300
    [back] = engine.evaluate([sample(0.5, t, asset="srv1")], now=t)
    assert (back.alert.rule, back.previous, back.state) == ("agent_silent", F, R)
    assert engine.series_count() == 1
    # Silent again: the absence rule fires again, however long ago the sweep ran.
    out = ticks(engine, t + 60, t + 2 * engine.staleness)
    assert [(t.alert.rule, t.previous, t.state) for t in out] == [("agent_silent", None, F)]


# --- property: the engine against a straightforward reference model ----------------------------


def reference(points, for_seconds, esc_for):
    """The documented semantics for `> 0.9`, clear `< 0.85`, escalate `> 0.98` -> awaria."""
    out = []
    state, since, esc_since, category, escalated, last = None, 0.0, None, "", False, -math.inf

    def fire(ts, previous):
        nonlocal state, category, escalated
        state = "firing"
        if esc_since is not None and ts - esc_since >= esc_for:
            category, escalated = "awaria", True
        out.append((previous, "firing", category, False, ts))

    for ts, v in points:
        if math.isnan(v) or ts < last:
            continue
        last = ts
        if state is None:
            if v > 0.9:
                since, category, escalated = ts, "usterka", False
                esc_since = ts if v > 0.98 else None
                if for_seconds == 0:
                    fire(ts, None)
                else:
                    state = "pending"
                    out.append((None, "pending", category, False, ts))
            continue
        if (state == "pending" and not v > 0.9) or (state == "firing" and v < 0.85):
            out.append((state, "resolved", category, False, ts))
            state = None
            continue
        if not escalated:
            esc_since = (esc_since if esc_since is not None else ts) if v > 0.98 else None
        if state == "pending":
            if ts - since >= for_seconds:
                fire(ts, "pending")
        elif not escalated and esc_since is not None and ts - esc_since >= esc_for:
            category, escalated = "awaria", True
            out.append(("firing", "firing", category, True, ts))
    return out


VALUES = st.sampled_from([0.1, 0.84, 0.85, 0.86, 0.9, 0.91, 0.95, 0.98, 0.99, math.nan])


@settings(max_examples=500, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(-30, 120), VALUES), max_size=60),
    for_seconds=st.sampled_from([0, 60, 300]),
    other_for=st.sampled_from([0, 120]),
    esc_for=st.sampled_from([0, 90]),
    batch=st.integers(1, 7),
)
def test_engine_matches_the_reference_model(steps, for_seconds, other_for, esc_for, batch):
    points, ts = [], 1000
    for dt, value in steps:
        ts += dt  # a negative step is an out-of-order sample
        points.append((ts, value))
    esc = Escalation(Condition(">", 0.98), "awaria", float(esc_for))
    # Two rules on one metric and identity share their series records: each must still
    # behave as if it were alone.
    rules = {
        "disk": rule(for_seconds=float(for_seconds), escalation=esc),
        "disk_slow": rule(name="disk_slow", for_seconds=float(other_for), escalation=esc),
    }
    engine = Engine(list(rules.values()))
    got = []
    for i in range(0, len(points), batch):
        chunk = [sample(v, t) for t, v in points[i : i + batch]]
        got += engine.evaluate(chunk, now=points[i][0])
    for name, r in rules.items():
        observed = [
            (t.previous and t.previous.value, t.state.value, t.alert.category, t.escalated, t.at)
            for t in got
            if t.alert.rule == name
        ]
        assert observed == reference(points, r.for_seconds, esc_for), name
    # Never two firings of one alert without a resolve between them.
    open_ = set()
    for t in got:
        if t.state is F and t.previous is not F:
            assert t.alert.fingerprint not in open_
            open_.add(t.alert.fingerprint)
        elif t.state is R and t.previous is F:
            open_.remove(t.alert.fingerprint)
