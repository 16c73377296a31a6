"""The rules engine: samples and ``now`` in, alert transitions out. Pure: no I/O, no clock.

Threshold rules
    A series is the rule's metric and one value of the rule's identity labels (a missing label
    counts as ""); one series gives one alert per rule. Its timing uses ``Sample.timestamp``,
    so samples spooled by an agent and replayed later still honour ``for``; a sample older
    than the newest one already seen for its series is ignored (equal timestamps are
    accepted).

    ``when`` true            no alert -> PENDING (``None -> pending``), or straight to FIRING
                             when ``for`` is 0 (one ``None -> firing`` transition)
    PENDING, held ``for``    -> FIRING (``pending -> firing``) on the first sample at or after
                             ``active_since + for``; a pending alert never fires without a sample
    PENDING, ``when`` false  -> RESOLVED (``pending -> resolved``; the bridge ignores these) and
                             the alert is dropped
    FIRING                   resolves only when ``clear`` holds (hysteresis; ``firing ->
                             resolved``), otherwise stays firing with the latest value
    escalation               while firing, once the escalation condition has held for its
                             ``for`` (counted from its first sample while the alert was active),
                             the category is upgraded once (``firing -> firing``,
                             ``escalated=True``); when it already holds at the moment of firing
                             the alert fires with the upgraded category directly. The category
                             never goes down until the alert resolves.

    ``fired_at``, ``resolved_at`` and ``Transition.at`` are sample timestamps (except for a
    pending alert of a stale series, see "Bounded state").

Absence rules
    Fire per asset (``labels["asset"]``) when nothing arrived from it (or nothing of the rule's
    ``metric``, matching its ``match``) for ``absent`` seconds. Unlike ``for``, absence is
    measured by arrival: a sample counts as "seen" at the ``now`` of the ``evaluate`` call that
    brought it, so a host whose clock is wrong, or that is replaying its spool, is reporting.
    ``tick(now)`` fires them (``None -> firing`` directly: the absence period is their pending
    time; ``active_since`` is when the asset was last seen, ``value`` the seconds of silence).
    Any sample from the asset resolves a firing absence alert at the end of that ``evaluate``.
    ``expect(assets, now)`` names assets that must report: one never seen counts as seen at
    that ``now``. Assets are only ever added; an absence rule with a ``metric`` watches only
    assets that have sent that metric at least once.

Speed
    Rules are compiled once in ``__init__``. For each metric the engine generates one Python
    function (``exec`` of source built from the rules' structure) that computes each identity
    key once, finds the series record with one dictionary lookup and checks every rule on
    that metric inline: matchers as dictionary lookups or memoised anchored regex results,
    the condition as a plain comparison with the threshold. Only operators from a fixed list
    and generated identifiers go into that source (rule names and labels only as ``repr()``
    in comments); every value from a rule file (label names and values, thresholds, regexes)
    is bound as a constant, never spliced into code. The
    common path (condition false, no alert on the series) allocates nothing but the identity
    key of a rule with several identity labels (and one record per new series); state
    objects exist only for active alerts.

Bounded state
    A threshold series gets a record only when a sample of it matches the matchers of at least
    one rule of its metric and identity (a sample whose metric no rule uses, whose value is not
    finite, or whose labels fail every rule's matchers leaves nothing behind). A record is
    dropped once its series has been stale for ``staleness`` seconds: no sample newer than the
    series' newest one arrived (by the ``now`` of the calls, not by sample timestamps, so a
    spool being replayed is not stale). ``staleness`` defaults to ``STALENESS_MARGIN`` (one
    hour) plus the longest ``for``, ``escalate.for`` or ``absent`` of any rule, so it is
    always longer than any period a series takes part in and than any sane collection
    interval. A sweep visits every series, so ``tick(now)`` sweeps at most once every
    ``sweep_every = staleness / 8`` seconds (7.75 minutes by default): a series counts as
    seen at the first sweep that finds a newer sample, so it is dropped between ``staleness``
    and ``staleness + 2 * sweep_every`` (1.25 times the staleness) after its last sample
    arrived. When a stale series is dropped:

    - a PENDING alert on it resolves (``pending -> resolved`` at the tick's ``now``; the
      bridge ignores these); a sample arriving later starts its ``for`` over;
    - a FIRING alert keeps its series: it stays firing until a sample satisfies ``clear``
      (a series that stopped arriving is not a recovery; an asset that went silent altogether
      is what absence rules report), so no resolution is ever lost; the series is dropped at
      the first sweep after its alert resolved and it went stale.

    Absence state is one timestamp per asset and absence rule, and it is never dropped: an asset
    that stops reporting must fire. The bridge only accepts assets of its inventory, so this is
    bounded by the inventory. ``series_count()`` tells how many threshold series are kept.

Not thread-safe: the caller serialises calls (the bridge holds one lock around the engine).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from collectors.sample import Sample
from rules.conditions import OPERATORS, default_clear, predicate
from rules.model import (
    Alert,
    AlertState,
    Matcher,
    Rule,
    Transition,
    fingerprint,
)

PENDING = AlertState.PENDING
FIRING = AlertState.FIRING
RESOLVED = AlertState.RESOLVED

_INF = math.inf
_NINF = -math.inf

# A series that received nothing new for the staleness period is dropped (see "Bounded state"):
# the staleness is this margin plus the longest for/escalate.for/absent of any rule.
STALENESS_MARGIN = 3600.0
# ``tick`` sweeps for stale series at most once per this fraction of the staleness: a sweep
# visits every series, so it is kept rare (every 7.75 minutes with the default staleness).
SWEEPS_PER_STALENESS = 8

# Regex results are memoised per label value; past this many distinct values a memo stops
# growing (label values of one label are few in practice: mountpoints, fstypes, interfaces).
REGEX_MEMO_SIZE = 4096

Key = Any  # str for a single identity label, tuple[str, ...] for several


def _snapshot(a: Alert) -> Alert:
    return Alert(
        rule=a.rule,
        fingerprint=a.fingerprint,
        labels=dict(a.labels),
        state=a.state,
        category=a.category,
        value=a.value,
        active_since=a.active_since,
        fired_at=a.fired_at,
        resolved_at=a.resolved_at,
        annotations=dict(a.annotations),
    )


class _RegexMemo(dict[str, bool]):
    """``memo[value]`` is whether the anchored regex matches ``value``, computed once."""

    __slots__ = ("fullmatch",)

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.fullmatch = re.compile(pattern).fullmatch

    def __missing__(self, value: str) -> bool:
        result = self.fullmatch(value) is not None
        if len(self) < REGEX_MEMO_SIZE:
            self[value] = result
        return result


class _Emitter:
    """Collects the transitions of one call and keeps the pending/firing counts."""

    __slots__ = ("counts", "out")

    def __init__(self) -> None:
        self.out: list[Transition] = []
        self.counts: dict[AlertState, int] = {PENDING: 0, FIRING: 0}

    def emit(
        self,
        alert: Alert,
        previous: AlertState | None,
        at: float,
        escalated: bool = False,
    ) -> None:
        counts = self.counts
        if previous is not None:
            counts[previous] -= 1
        if alert.state is not RESOLVED:
            counts[alert.state] += 1
        self.out.append(Transition(_snapshot(alert), previous, alert.state, at, escalated))


class _Active:
    """One active (pending or firing) alert of a threshold rule on one series."""

    __slots__ = ("alert", "esc_since", "escalated")

    def __init__(self, alert: Alert) -> None:
        self.alert = alert
        self.esc_since: float | None = None  # first sample of the escalation condition
        self.escalated = False


# A series record is a plain list, the cheapest thing to index in the generated code:
# ``[newest_timestamp, active_of_rule_1, ..., active_of_rule_n, seen_at, swept_timestamp]``,
# one slot per rule of its group, each an ``_Active`` or None. The last two are only written
# at creation and by the sweep: ``swept_timestamp`` is the newest timestamp the last sweep saw,
# ``seen_at`` the ``now`` when the series was last found to have a newer one.
Record = list[Any]

# What the generated code uses for a series no rule matches: never stored, never written
# (``ts >= nan`` is false, so the rules are skipped).
_NO_RECORD: Record = [math.nan]


class _Group:
    """The threshold rules of one metric that share one identity, and their series.

    A series is the metric and one value of the identity labels. Its records hold the newest
    timestamp (for the out-of-order check, done once for all rules of the group) and each
    rule's active alert.
    """

    def __init__(self, metric: str, identity: tuple[str, ...]) -> None:
        self.metric = metric
        self.identity = identity
        self.rules: list[_ThresholdRule] = []
        self.series: dict[Key, Record] = {}

    def key_of(self, labels: Any) -> Key:
        if len(self.identity) == 1:
            return labels.get(self.identity[0], "")
        return tuple(labels.get(name, "") for name in self.identity)

    def record(self, key: Key) -> Record:
        rec = self.series.get(key)
        if rec is None:
            rec = self.series[key] = self.new_record()
        return rec

    def new_record(self) -> Record:
        return [_NINF, *[None] * len(self.rules), _NINF, _NINF]

    def sweep(self, now: float, staleness: float) -> None:
        """Drop the series stale for ``staleness`` at ``now`` (see "Bounded state")."""
        stale = []
        for key, rec in self.series.items():
            if rec[0] != rec[-1]:  # a newer sample arrived since the last sweep
                rec[-1] = rec[0]
                rec[-2] = now
            elif now - rec[-2] >= staleness:
                stale.append(key)
        for key in stale:
            self.drop(key, now)

    def drop(self, key: Key, now: float) -> None:
        """Forget a stale series: its pending alerts resolve; a firing alert keeps it."""
        rec = self.series[key]
        firing = False
        for rt in self.rules:
            st = rec[rt.slot]
            if st is None:
                continue
            if st.alert.state is FIRING:
                firing = True
            else:
                rt.resolve(rec, key, now)
        if not firing:
            del self.series[key]
            for rt in self.rules:
                rt.fingerprints.pop(key, None)


class _ThresholdRule:
    """Runtime of one threshold rule: its compiled conditions and its active alerts."""

    def __init__(self, rule: Rule, emitter: _Emitter, group: _Group) -> None:
        if rule.metric is None or rule.condition is None:
            raise ValueError(f"rule {rule.name!r}: a threshold rule needs metric and condition")
        self.rule = rule
        self.name = rule.name
        self.emitter = emitter
        self.group = group
        group.rules.append(self)
        self.slot = len(group.rules)  # this rule's index in the group's records
        self.identity = rule.identity
        self.for_seconds = rule.for_seconds
        self.clear = predicate(rule.clear or default_clear(rule.condition))
        esc = rule.escalation
        self.esc_when = predicate(esc.condition) if esc is not None else None
        self.esc_category = esc.category if esc is not None else rule.category
        self.esc_for = esc.for_seconds if esc is not None else 0.0
        self.active: dict[Key, _Active] = {}
        self.fingerprints: dict[Key, str] = {}  # per kept series that alerted, computed once

    def _identity_labels(self, key: Key) -> dict[str, str]:
        if len(self.identity) == 1:
            return {self.identity[0]: key}
        return dict(zip(self.identity, key, strict=True))

    def _start(self, rec: Record, key: Key, labels: Any, value: float, ts: float) -> _Active:
        fp = self.fingerprints.get(key)
        if fp is None:
            fp = self.fingerprints[key] = fingerprint(self.name, self._identity_labels(key))
        alert_labels = dict(labels)
        alert_labels.update(self._identity_labels(key))
        alert = Alert(
            rule=self.name,
            fingerprint=fp,
            labels=alert_labels,
            state=PENDING,
            category=self.rule.category,
            value=value,
            active_since=ts,
        )
        st = rec[self.slot] = self.active[key] = _Active(alert)
        return st

    # -- slow paths, called from the generated per-metric code ------------------------------

    def on_true(self, rec: Record, key: Key, labels: Any, value: float, ts: float) -> None:
        """The firing condition holds for a sample of series ``key``."""
        st = rec[self.slot]
        esc_when = self.esc_when
        if st is None:
            st = self._start(rec, key, labels, value, ts)
            if esc_when is not None and esc_when(value):
                st.esc_since = ts
            if self.for_seconds <= 0:
                self._fire(st, None, ts)
            else:
                self.emitter.emit(st.alert, None, ts)
            return
        alert = st.alert
        alert.value = value
        if esc_when is not None and not st.escalated:
            if esc_when(value):
                if st.esc_since is None:
                    st.esc_since = ts
            else:
                st.esc_since = None
        if alert.state is PENDING:
            if ts - alert.active_since >= self.for_seconds:
                self._fire(st, PENDING, ts)
        elif st.esc_since is not None and not st.escalated and ts - st.esc_since >= self.esc_for:
            st.escalated = True
            alert.category = self.esc_category
            self.emitter.emit(alert, FIRING, ts, escalated=True)

    def _fire(self, st: _Active, previous: AlertState | None, ts: float) -> None:
        alert = st.alert
        alert.state = FIRING
        alert.fired_at = ts
        if st.esc_since is not None and ts - st.esc_since >= self.esc_for:
            st.escalated = True
            alert.category = self.esc_category
        self.emitter.emit(alert, previous, ts)

    def on_false(self, rec: Record, key: Key, value: float, ts: float) -> None:
        """The firing condition does not hold for a sample of a series with an alert."""
        st = rec[self.slot]
        st.alert.value = value
        if st.alert.state is PENDING or self.clear(value):
            self.resolve(rec, key, ts)
        elif not st.escalated:
            st.esc_since = None  # the escalation condition lies within the firing one

    def resolve(self, rec: Record, key: Key, at: float) -> None:
        alert = rec[self.slot].alert
        previous = alert.state
        alert.state = RESOLVED
        alert.resolved_at = at
        rec[self.slot] = None
        del self.active[key]
        self.emitter.emit(alert, previous, at)

    def restore(self, alert: Alert) -> None:
        key = self.group.key_of(alert.labels)
        rec = self.group.record(key)
        if rec[self.slot] is not None:
            return
        st = self._start(rec, key, alert.labels, alert.value, alert.active_since)
        if alert.state == PENDING:  # its for: timer goes on from when it started
            # Its newest sample is at least that old: the next sweep counts the series as
            # seen then, instead of as never seen (which would drop it at once).
            rec[0] = max(rec[0], alert.active_since)
            self.emitter.counts[PENDING] += 1
            return
        st.alert.state = FIRING
        st.alert.category = alert.category
        st.alert.fired_at = alert.fired_at
        st.alert.annotations = dict(alert.annotations)
        st.escalated = alert.category != self.rule.category
        self.emitter.counts[FIRING] += 1


class _AbsenceRule:
    """Runtime of one absence rule: per asset, when it was last seen and its alert."""

    def __init__(
        self, rule: Rule, emitter: _Emitter, seen: dict[str, float], exempt: set[str]
    ) -> None:
        assert rule.absent_seconds is not None
        self.rule = rule
        self.name = rule.name
        self.emitter = emitter
        self.absent = rule.absent_seconds
        self.seen = seen  # asset -> now of the evaluate call that last brought a sample
        self.exempt = exempt  # assets that never go "silent" (others report for them)
        self.active: dict[str, Alert] = {}

    def tick(self, now: float) -> None:
        absent = self.absent
        active = self.active
        exempt = self.exempt
        for asset, last in self.seen.items():
            if asset in exempt:
                continue
            silent = now - last
            alert = active.get(asset)
            if alert is not None:
                alert.value = silent
            elif silent >= absent:
                labels = {"asset": asset}
                alert = active[asset] = Alert(
                    rule=self.name,
                    fingerprint=fingerprint(self.name, labels),
                    labels=labels,
                    state=FIRING,
                    category=self.rule.category,
                    value=silent,
                    active_since=last,
                    fired_at=now,
                )
                self.emitter.emit(alert, None, now)
        self.recheck(now)

    def recheck(self, now: float) -> None:
        """Resolve the firing alerts of assets that reported again."""
        seen = self.seen
        absent = self.absent
        for asset, alert in list(self.active.items()):
            last = seen.get(asset)
            if last is not None and now - last < absent:
                alert.value = now - last
                alert.state = RESOLVED
                alert.resolved_at = now
                del self.active[asset]
                self.emitter.emit(alert, FIRING, now)

    def restore(self, alert: Alert) -> None:
        asset = alert.labels.get("asset", "")
        if asset in self.active:
            return
        alert = _snapshot(alert)
        alert.state = FIRING  # the caller may hand in the plain string
        alert.labels = {"asset": asset}
        alert.fingerprint = fingerprint(self.name, alert.labels)
        self.active[asset] = alert
        self.emitter.counts[FIRING] += 1
        # Silent since before it fired: a restart is no sign of life (``expect`` would count
        # the asset as seen at the start and resolve the alert at the next evaluation).
        silent_since = (alert.fired_at or alert.active_since) - self.absent
        self.seen[asset] = min(self.seen.get(asset, silent_since), silent_since)


class _CodeBuilder:
    """Builds the source of one metric's evaluation function and the names it binds."""

    def __init__(self) -> None:
        self.absence_lines: list[str] = []
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"_NINF": _NINF, "_INF": _INF, "_NOREC": _NO_RECORD}
        self._count = 0
        self._matchers: dict[Matcher, str] = {}  # one expression (and regex memo) per matcher

    def bind(self, value: Any, hint: str) -> str:
        self._count += 1
        name = f"_{hint}{self._count}"
        self.names[name] = value
        return name

    def matcher_expr(self, m: Matcher) -> str:
        expr = self._matchers.get(m)
        if expr is None:
            expr = self._matchers[m] = self._new_matcher_expr(m)
        return expr

    def rule_matchers_expr(self, rule: Rule) -> str:
        return " and ".join(f"({self.matcher_expr(m)})" for m in rule.matchers)

    def _new_matcher_expr(self, m: Matcher) -> str:
        label = self.bind(m.label, "l")
        get = f"g({label}, '')"
        if m.op == "=":
            return f"{get} == {self.bind(m.value, 'v')}"
        if m.op == "!=":
            return f"{get} != {self.bind(m.value, 'v')}"
        memo = self.bind(_RegexMemo(m.value), "re")
        if m.op == "=~":
            return f"{memo}[{get}]"
        if m.op == "!~":
            return f"not {memo}[{get}]"
        raise ValueError(f"unknown matcher operator {m.op!r}")

    def key_expr(self, identity: tuple[str, ...]) -> str:
        parts = [f"g({self.bind(label, 'l')}, '')" for label in identity]
        if len(parts) == 1:
            return parts[0]
        return "(" + ", ".join(parts) + ")"

    def add_group(self, group: _Group) -> None:
        series = self.bind(group.series, "series")
        new = f"{series}[k] = [_NINF{', None' * len(group.rules)}, now, _NINF]"
        lines = self.lines
        lines += [
            f"    # series of {group.identity!r}",
            f"    k = {self.key_expr(group.identity)}",
            f"    r = {series}.get(k)",
            "    if r is None:",
        ]
        if all(rt.rule.matchers for rt in group.rules):
            # A series gets a record only when some rule of the group matches the sample.
            any_rule = " or ".join(f"({self.rule_matchers_expr(rt.rule)})" for rt in group.rules)
            lines += [
                f"        if {any_rule}:",
                f"            r = {new}",
                "        else:",
                "            r = _NOREC",
            ]
        else:
            lines.append(f"        r = {new}")
        lines += [
            "    if ts >= r[0]:",
            "        r[0] = ts",
        ]
        for rt in group.rules:
            self.add_threshold(rt)

    def add_threshold(self, rt: _ThresholdRule) -> None:
        rule = rt.rule
        assert rule.condition is not None
        op = rule.condition.op
        if op not in OPERATORS:
            raise ValueError(f"rule {rule.name!r}: unknown comparison {op!r}")
        threshold = self.bind(float(rule.condition.threshold), "t")
        on_true = self.bind(rt.on_true, "true")
        on_false = self.bind(rt.on_false, "false")
        lines = self.lines
        indent = " " * 8
        lines.append(f"{indent}# rule {rule.name!r}")
        if rule.matchers:
            lines.append(f"{indent}if {self.rule_matchers_expr(rule)}:")
            indent += "    "
        lines += [
            f"{indent}if v {op} {threshold}:",
            f"{indent}    {on_true}(r, k, labels, v, ts)",
            f"{indent}elif r[{rt.slot}] is not None:",
            f"{indent}    {on_false}(r, k, v, ts)",
        ]

    def add_absence(self, rt: _AbsenceRule) -> None:
        rule = rt.rule
        seen = self.bind(rt.seen, "seen")
        lines = self.absence_lines
        indent = "    "
        lines.append(f"{indent}# absence rule {rule.name!r}")
        if rule.matchers:
            lines.append(f"{indent}if {self.rule_matchers_expr(rule)}:")
            indent += "    "
        lines += [
            f"{indent}a = g('asset')",
            f"{indent}if a is not None:",
            f"{indent}    {seen}[a] = now",
        ]

    def build(self, metric: str) -> Callable[[Any, float, float, float], None]:
        # Absence rules count any sample as a sign of life; threshold rules skip NaN and inf.
        source = "\n".join(
            [
                "def _evaluate(labels, v, ts, now):",
                "    g = labels.get",
                *self.absence_lines,
                "    if not _NINF < v < _INF:",
                "        return",
                *self.lines,
            ]
        )
        code = compile(source, f"<rules for metric {metric}>", "exec")
        namespace = dict(self.names)
        exec(code, namespace)  # noqa: S102 - source built above from a fixed set of operators
        fn: Callable[[Any, float, float, float], None] = namespace["_evaluate"]
        fn.__doc__ = source  # for debugging: the generated code
        return fn


def _periods(rule: Rule) -> list[float]:
    """The periods a rule's series or assets take part in: for, escalate.for, absent."""
    periods = [rule.for_seconds]
    if rule.escalation is not None:
        periods.append(rule.escalation.for_seconds)
    if rule.absent_seconds is not None:
        periods.append(rule.absent_seconds)
    return periods


class Engine:
    """Evaluates compiled rules against samples; see the module docstring for the semantics."""

    def __init__(self, rules: Sequence[Rule], staleness: float | None = None) -> None:
        """``staleness``: seconds after which a silent series is dropped; by default derived
        from the rules (see "Bounded state"); ``math.inf`` keeps every series for ever."""
        self.rules: dict[str, Rule] = {}
        for rule in rules:
            if rule.name in self.rules:
                raise ValueError(f"duplicate rule name {rule.name!r}")
            self.rules[rule.name] = rule
        if staleness is None:
            staleness = STALENESS_MARGIN + max(
                (d for rule in self.rules.values() for d in _periods(rule)), default=0.0
            )
        if not staleness > 0:
            raise ValueError(f"staleness must be more than 0 seconds, got {staleness!r}")
        self.staleness = staleness
        # Seconds between two sweeps; none at all when nothing is ever dropped.
        self.sweep_every = staleness / SWEEPS_PER_STALENESS
        self._next_sweep = _NINF if staleness < _INF else _INF
        self._emitter = _Emitter()
        self._threshold: dict[str, _ThresholdRule] = {}
        self._absence: dict[str, _AbsenceRule] = {}
        # asset -> last arrival, shared by absence rules watching any metric.
        self._seen_any: dict[str, float] = {}
        # Assets absence rules never fire for (``exempt``).
        self._exempt: set[str] = set()
        builders: dict[str, _CodeBuilder] = {}
        groups: dict[tuple[str, tuple[str, ...]], _Group] = {}
        for rule in self.rules.values():
            if rule.absent_seconds is not None:
                if rule.metric is None:
                    if rule.matchers:
                        raise ValueError(f"rule {rule.name!r}: absence matchers need a metric")
                    self._absence[rule.name] = _AbsenceRule(
                        rule, self._emitter, self._seen_any, self._exempt
                    )
                    continue
                art = self._absence[rule.name] = _AbsenceRule(rule, self._emitter, {}, self._exempt)
                builders.setdefault(rule.metric, _CodeBuilder()).add_absence(art)
            else:
                if rule.metric is None:
                    raise ValueError(f"rule {rule.name!r}: a threshold rule needs a metric")
                group = groups.get((rule.metric, rule.identity))
                if group is None:
                    group = groups[rule.metric, rule.identity] = _Group(rule.metric, rule.identity)
                self._threshold[rule.name] = _ThresholdRule(rule, self._emitter, group)
        self._groups = list(groups.values())
        for group in groups.values():  # after the rules, so each group knows all of its rules
            builders.setdefault(group.metric, _CodeBuilder()).add_group(group)
        self._dispatch = {metric: b.build(metric) for metric, b in builders.items()}
        # How many rules each metric is evaluated against, for the evaluation counter.
        self._rules_per_metric: dict[str, int] = {}
        for rule in self.rules.values():
            if rule.metric is not None:
                self._rules_per_metric[rule.metric] = self._rules_per_metric.get(rule.metric, 0) + 1
        # Rule evaluations so far (a sample checked against one rule is one evaluation).
        self.evaluations = 0

    def evaluate(self, samples: Iterable[Sample], now: float) -> list[Transition]:
        """Feed samples received at ``now``; return the transitions they caused, in order."""
        emitter = self._emitter
        out = emitter.out = []
        dispatch_get = self._dispatch.get
        weights = self._rules_per_metric
        # Arrivals per asset, kept even without an absence rule watching them: the bridge's
        # incidents ask whether a root cause's collector went stale (``last_seen``).
        seen = self._seen_any
        evaluations = 0
        for metric, labels, value, ts in samples:
            asset = labels.get("asset")
            if asset is not None:
                seen[asset] = now
            fn = dispatch_get(metric)
            if fn is not None:
                fn(labels, value, ts, now)
                evaluations += weights[metric]
        self.evaluations += evaluations
        for rt in self._absence.values():
            if rt.active:
                rt.recheck(now)
        return out

    def exempt(self, assets: Iterable[str]) -> None:
        """Assets absence rules never fire for: devices another agent polls (a UPS, an AMMS
        host), whose silence the poller's own rules report."""
        self._exempt.update(assets)

    def expect(self, assets: Iterable[str], now: float) -> None:
        """Assets that must report: one never seen counts as last seen at ``now``."""
        seen = self._seen_any
        for asset in assets:
            seen.setdefault(asset, now)

    def last_seen(self, asset: str) -> float | None:
        """When a sample of the asset last arrived (None: not since the engine started)."""
        return self._seen_any.get(asset)

    def tick(self, now: float) -> list[Transition]:
        """Evaluate absence rules at ``now`` and, at most every ``sweep_every`` seconds, drop
        the stale series; return the transitions (absence firings, stale pending alerts)."""
        emitter = self._emitter
        out = emitter.out = []
        for rt in self._absence.values():
            rt.tick(now)
        if now >= self._next_sweep:
            self._next_sweep = now + self.sweep_every
            for group in self._groups:
                group.sweep(now, self.staleness)
        return out

    def series_count(self) -> int:
        """How many threshold series the engine keeps state for."""
        return sum(len(group.series) for group in self._groups)

    def restore(self, alerts: Iterable[Alert]) -> None:
        """Put back firing alerts after a restart (from the open tickets), so a recovery
        resolves them and a condition that still holds is not reported as a new firing; and
        pending alerts of threshold rules (a hospital taken over from another bridge), whose
        ``for:`` timers go on from their ``active_since``. Alerts of unknown rules, and alerts
        neither firing nor pending, are ignored."""
        for alert in alerts:
            if alert.state == PENDING:  # also a plain string from storage
                threshold = self._threshold.get(alert.rule)
                if threshold is not None:
                    threshold.restore(alert)
                continue
            if alert.state != FIRING:
                continue
            rt = self._threshold.get(alert.rule) or self._absence.get(alert.rule)
            if rt is not None:
                rt.restore(alert)

    def alerts(self) -> list[Alert]:
        """Snapshots of the pending and firing alerts."""
        result = [
            _snapshot(st.alert) for rt in self._threshold.values() for st in rt.active.values()
        ]
        result += [_snapshot(a) for rt in self._absence.values() for a in rt.active.values()]
        return result

    def counts(self) -> dict[AlertState, int]:
        """How many alerts are pending and firing now."""
        return dict(self._emitter.counts)
