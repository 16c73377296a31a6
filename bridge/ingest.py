"""Ingest: pushed samples are checked, evaluated by the rules engine, and become tickets.

The engine is not thread-safe and transitions of one alert must reach the lifecycle in order,
so evaluation and the lifecycle run under one lock per bridge process.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.auth import Principal, Role
from bridge.clock import Clock, to_datetime
from bridge.lifecycle import Change, LifecycleError, Suppression, TicketLifecycle
from bridge.metrics import BridgeMetrics
from bridge.models import Asset, AuditEvent
from collectors import Sample
from rules.engine import Engine
from rules.model import AlertState, Rule, Transition

log = logging.getLogger(__name__)
# The ssh collector reports the deployed AMMS version as this metric with a `version` label.
VERSION_METRIC = "dyzur_amms_version_info"


class IncomingSample(Protocol):
    metric: str
    labels: Mapping[str, str]
    value: float
    timestamp: float | None


class IncomingEvent(Protocol):
    action: str
    outcome: str
    asset: str
    at: float
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    reason: str  # a fixed code, also the metric label
    detail: str


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    # The batch was an agent's numbered batch that had already been taken: nothing was done.
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class BatchOrigin:
    """An agent's numbered batch: its spool's id, the batch number, and its cumulative loss."""

    agent_id: str
    seq: int
    dropped: int = 0


class Ingestor:
    def __init__(
        self,
        engine: Engine,
        lifecycle: TicketLifecycle,
        assets: Mapping[str, Asset],
        clock: Clock,
        metrics: BridgeMetrics,
        max_clock_skew: float = 300.0,
    ) -> None:
        self.engine = engine
        self.lifecycle = lifecycle
        self.store = lifecycle.store
        self.assets = assets
        self.clock = clock
        self.metrics = metrics
        self.max_clock_skew = max_clock_skew
        self._lock = threading.Lock()
        # Transitions the store could not take yet (disk full, database locked too long):
        # kept in order and retried on every tick, so an accepted sample's ticket is never lost.
        self._queue: deque[Transition] = deque()
        self._failing = False
        # Rules of alerts that come from elsewhere (Alertmanager), by name.
        self.external_rules: Callable[[str], Rule | None] = lambda name: None

    def rule_of(self, name: str) -> Rule | None:
        return self.engine.rules.get(name) or self.external_rules(name)

    def start(self) -> None:
        """Put the alerts of open tickets back and start watching the reporting assets."""
        now = self.clock.time()
        with self._lock:
            self.engine.restore(self.lifecycle.firing_alerts())
            self.engine.expect([a.id for a in self.assets.values() if a.reports], now)

    def ingest(
        self,
        samples: Sequence[IncomingSample],
        principal: Principal,
        origin: BatchOrigin | None = None,
        events: Sequence[IncomingEvent] = (),
    ) -> IngestResult:
        """Check each sample; evaluate the good ones. A bad sample never spoils the batch.

        A batch with an ``origin`` is taken once: a repeat of it (an agent's retry after a
        lost answer) is acknowledged as a duplicate and not evaluated again.
        """
        with self.metrics.ingest_seconds.time():
            return self._ingest(samples, principal, origin, events)

    def _ingest(
        self,
        samples: Sequence[IncomingSample],
        principal: Principal,
        origin: BatchOrigin | None,
        events: Sequence[IncomingEvent],
    ) -> IngestResult:
        now = self.clock.time()
        latest_allowed = now + self.max_clock_skew
        assets = self.assets
        scope = principal.client if principal.role is Role.AGENT else None
        result = IngestResult()
        rejected = result.rejected
        good: list[Sample] = []
        append = good.append
        versions: list[tuple[str, str]] = []
        isfinite = math.isfinite
        for index, s in enumerate(samples):
            value = s.value
            if not isfinite(value):
                rejected.append(Rejection(index, "non_finite", f"value is {value}"))
                continue
            asset_id = s.labels.get("asset")
            if not asset_id:
                rejected.append(Rejection(index, "missing_asset", "label 'asset' is missing"))
                continue
            asset = assets.get(asset_id)
            if asset is None:
                rejected.append(Rejection(index, "unknown_asset", f"unknown asset {asset_id!r}"))
                continue
            if scope is not None and asset.client != scope:
                rejected.append(
                    Rejection(index, "forbidden_asset", f"asset {asset_id!r} is not yours")
                )
                continue
            ts = s.timestamp
            if ts is None:
                ts = now
            elif ts > latest_allowed:
                rejected.append(Rejection(index, "future_timestamp", "timestamp is in the future"))
                continue
            append(Sample(s.metric, s.labels, value, ts))
            if s.metric == VERSION_METRIC:
                versions.append((asset_id, s.labels.get("version", "")))
        result.accepted = len(good)
        with self._lock:
            if origin is not None and not self._claim(origin, samples):
                return IngestResult(duplicate=True)
            self._audit_events(events, principal, scope)
            self._record_versions(versions)
            before = self.engine.evaluations
            transitions = self.engine.evaluate(good, now)
            self.metrics.rule_evaluations.inc(self.engine.evaluations - before)
            self._apply(transitions)
        self.metrics.samples_ingested.inc(len(good))
        for r in rejected:
            self.metrics.samples_rejected.labels(r.reason).inc()
        return result

    def _record_versions(self, versions: list[tuple[str, str]]) -> None:
        """The deployed AMMS version is kept on the asset, so update plans know what runs where;
        a change of version is an audit event."""
        now = self.clock.now()
        for asset, version in versions:
            if version and self.store.set_asset_fact(asset, "amms_version", version, now):
                self.store.append_audit(
                    AuditEvent(
                        now,
                        "dyzur",
                        "asset.version_seen",
                        "success",
                        self.assets[asset].client,
                        asset,
                        {"amms_version": version},
                    )
                )

    def _audit_events(
        self, events: Sequence[IncomingEvent], principal: Principal, scope: str | None
    ) -> None:
        """An agent's audit events join the audit trail, as done by that agent."""
        for e in events:
            asset = self.assets.get(e.asset)
            client = asset.client if asset is not None else None
            if scope is not None and client != scope:
                log.warning(
                    "agent %s sent an audit event for %r, not its own", principal.name, e.asset
                )
                continue
            self.store.append_audit(
                AuditEvent(
                    to_datetime(e.at),
                    f"agent:{principal.name}",
                    e.action,
                    e.outcome,
                    client,
                    e.asset,
                    dict(e.detail),
                )
            )

    def _claim(self, origin: BatchOrigin, samples: Sequence[IncomingSample]) -> bool:
        asset = samples[0].labels.get("asset", "") if samples else ""
        claimed = self.store.record_batch(
            origin.agent_id, asset, origin.seq, len(samples), origin.dropped, self.clock.now()
        )
        self.metrics.agent_batches.labels("accepted" if claimed else "duplicate").inc()
        return claimed

    def tick(self) -> list[Change]:
        """Time-driven work: absence rules, transitions waiting for a retry, and alerts still
        firing when their maintenance window ended."""
        with self._lock:
            changes = self._apply(self.engine.tick(self.clock.time()))
            for change in self.lifecycle.release_windows(self.rule_of):
                self.metrics.count_change(change)
                changes.append(change)
            return changes

    def _apply(self, transitions: Sequence[Transition]) -> list[Change]:
        """Apply transitions in order; on a store failure keep the rest queued, in order."""
        queue = self._queue
        queue.extend(transitions)
        changes = []
        rules = self.engine.rules
        while queue:
            transition = queue[0]
            rule = rules.get(transition.alert.rule)
            try:
                change = None if rule is None else self.lifecycle.apply(transition, rule)
            except LifecycleError as exc:
                log.error("alert dropped: %s", exc)
                queue.popleft()
                continue
            except Exception:
                self.metrics.transition_failures.inc()
                if not self._failing:  # log when it starts failing, not on every batch
                    log.exception("cannot apply alert transitions; %d kept for retry", len(queue))
                self._failing = True
                break
            queue.popleft()
            if self._failing:
                log.warning("alert transitions are being applied again")
                self._failing = False
            if isinstance(change, Suppression):
                self.metrics.alerts_in_windows.labels(change.action).inc()
            elif change is not None:
                changes.append(change)
                self.metrics.count_change(change)
        return changes

    def alert_counts(self) -> dict[AlertState, int]:
        with self._lock:
            return self.engine.counts()

    @property
    def queued_transitions(self) -> int:
        return len(self._queue)
