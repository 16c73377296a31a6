"""Ingest: pushed samples are checked, evaluated by the rules engine, and become tickets.

The engine is not thread-safe and transitions of one alert must reach the lifecycle in order,
so evaluation and the lifecycle run under one lock per bridge process.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from bridge.actions import Action
from bridge.auth import Principal, Role
from bridge.clock import Clock, to_datetime
from bridge.errors import Forbidden
from bridge.metrics import BridgeMetrics
from bridge.models import AgentStream, Asset, AuditEvent
from bridge.sources.versions import AmmsVersions
from bridge.store import BatchClaim, BatchRecord, StoreError
from bridge.store.base import StaleLease
from bridge.store.roles import AgentStreams, AuditLog, Coordination, PendingAlerts
from bridge.tickets.changes import Attachment, Change, Suppression
from bridge.tickets.lifecycle import LifecycleError, Prepared, TicketLifecycle
from collectors import AGENT_AUDIT_ACTIONS, Sample
from rules.engine import Engine
from rules.model import Alert, AlertState, Rule, Transition
from rules.sharded import ShardedEngine

log = logging.getLogger(__name__)


# What ingest reads of a pushed sample and event (the API's models, collectors' Samples):
# read-only, so that a model whose fields are narrower (a dict, a Literal) fits.


class IncomingSample(Protocol):
    @property
    def metric(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def value(self) -> float: ...
    @property
    def timestamp(self) -> float | None: ...


class IncomingEvent(Protocol):
    @property
    def action(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def asset(self) -> str: ...
    @property
    def at(self) -> float: ...
    @property
    def detail(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    reason: str  # a fixed code, also the metric label
    detail: str


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    # Audit events of the batch refused one by one (not an action collectors record, not an
    # asset of the token's hospital, stamped too long ago or in the future).
    rejected_events: list[Rejection] = field(default_factory=list)
    # The batch was an agent's numbered batch that had already been taken: nothing was done.
    duplicate: bool = False
    # The batch number jumped further than max_seq_gap: taken, but the stream did not advance.
    anomaly: bool = False


@dataclass(frozen=True, slots=True)
class BatchOrigin:
    """An agent's numbered batch: its spool's id, the batch number, and its cumulative loss."""

    agent_id: str
    seq: int
    dropped: int = 0


class StreamForbidden(Forbidden):
    """A numbered batch for an agent stream that belongs to another token (``agent``'s)."""

    refusal = Action.AGENT_STREAM_REFUSED

    def __init__(self, agent_id: str, agent: str) -> None:
        super().__init__(
            f"agent.id: agent stream {agent_id!r} belongs to another token", f"agent:{agent}"
        )
        self.agent_id = agent_id
        self.agent = agent


# C0 and C1 control characters and the Unicode bidirectional overrides and isolates: in a
# ticket title, an e-mail subject or a helpdesk they hide or reorder what a person reads.
_FORBIDDEN_CHARACTER = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0, DEL, C1
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"  # bidi marks, overrides, isolates
)


# How a control or bidi character can stand in a JSON body (raw C0 is invalid JSON): an escape
# (\u0000, \n, \u202e: any backslash), DEL, or the UTF-8 bytes of C1 (C2 80-9F) and of the
# bidi marks (D8 9C, E2 80 8E-AE, E2 81 A6-A9). Each is looked for with one fast scan.
_SUSPECT_BYTES = (b"\\", b"\x7f", b"\xc2", b"\xd8\x9c", b"\xe2\x80", b"\xe2\x81")


def may_hold_forbidden_characters(body: bytes) -> bool:
    """False when a JSON body cannot hold a control or bidi character anywhere, so the labels
    of its samples need no check one by one (most agents' batches: plain ASCII)."""
    return any(suspect in body for suspect in _SUSPECT_BYTES)


def forbidden_character(labels: Mapping[str, str]) -> str | None:
    """The name of the first label whose value holds a control or bidi character, or None."""
    for name, value in labels.items():
        # isprintable() is the fast path: every forbidden character is non-printable.
        if not value.isprintable() and _FORBIDDEN_CHARACTER.search(value):
            return name
    return None


class Intake(Protocol):
    """Where the API sends pushed batches: the ``Ingestor`` of a bridge on its own, or the
    hand-over among several bridges (``bridge.sources.handover.ClusterIntake``)."""

    def ingest(
        self,
        samples: Sequence[IncomingSample],
        principal: Principal,
        origin: BatchOrigin | None = None,
        events: Sequence[IncomingEvent] = (),
        *,
        labels_checked: bool = False,
    ) -> IngestResult: ...

    def agent_streams(self) -> list[AgentStream]: ...


class IngestStore(Coordination, AgentStreams, AuditLog, PendingAlerts, Protocol):
    """The store roles a batch needs: its transaction, the agent stream's claim, the audit
    events it carries, and (among several bridges) its hospital's pending alerts."""


# The lease of a hospital's series among several bridges (bridge.sources.shards).
def shard_lease(client: str) -> str:
    return f"shard:{client}"


class Ingestor:
    def __init__(
        self,
        engine: Engine | ShardedEngine,
        lifecycle: TicketLifecycle,
        store: IngestStore,
        assets: Mapping[str, Asset],
        clock: Clock,
        metrics: BridgeMetrics,
        max_clock_skew: float = 300.0,
        agent_events_max_age: float = 7 * 86400.0,
        max_seq_gap: int = 10_000,
        *,
        versions: AmmsVersions,
        external_rules: Callable[[str], Rule | None],
    ) -> None:
        """``versions`` records the deployed AMMS versions among the samples;
        ``external_rules`` gives the rules of alerts that come from elsewhere (Alertmanager)
        by name. With a ``ShardedEngine`` (several bridges), the hospitals are taken and
        dropped one by one (``take_shard``) and their pending alerts kept in the store."""
        self.engine = engine
        self.sharded = isinstance(engine, ShardedEngine)
        self.lifecycle = lifecycle
        self.store = store
        self.assets = assets
        self.clock = clock
        self.metrics = metrics
        self.max_clock_skew = max_clock_skew
        self.agent_events_max_age = agent_events_max_age
        self.max_seq_gap = max_seq_gap
        self._lock = threading.Lock()
        # Transitions the store could not take yet (disk full, database locked too long):
        # kept in order and retried with the next batch and on every tick. The batch that
        # produced them was refused (503) and its claim rolled back, so a retry of it is taken.
        self._queue: deque[Transition] = deque()
        self._failing = False
        self.versions = versions
        self.external_rules = external_rules

    def rule_of(self, name: str) -> Rule | None:
        return self.engine.rules.get(name) or self.external_rules(name)

    def start(self) -> None:
        """Put the alerts of open tickets back and start watching the reporting assets (with
        several bridges: of each hospital once it is taken, ``take_shard``)."""
        now = self.clock.time()
        with self._lock:
            self.engine.restore(self.lifecycle.firing_alerts())
            self.engine.expect([a.id for a in self.assets.values() if a.reports], now)
            self.engine.exempt([a.id for a in self.assets.values() if not a.reports])

    def take_shard(self, client: str) -> None:
        """Start evaluating ``client``'s series (this bridge took its lease): its firing alerts
        (open tickets, window and incident records) and pending ones from the store, its
        reporting assets watched from now."""
        assert isinstance(self.engine, ShardedEngine)
        firing = [a for a in self.lifecycle.firing_alerts() if self._client(a.asset) == client]
        pending = self.store.pending_alerts(client)
        assets = [a for a in self.assets.values() if a.client == client]
        with self._lock:
            self.engine.take(
                client,
                firing + pending,
                expect=[a.id for a in assets if a.reports],
                exempt=[a.id for a in assets if not a.reports],
                now=self.clock.time(),
            )

    def drop_shard(self, client: str) -> None:
        """Stop evaluating ``client``'s series (another bridge takes them); a batch being
        evaluated for it ends first."""
        assert isinstance(self.engine, ShardedEngine)
        with self._lock:
            self.engine.drop(client)
            # Its transitions waiting for a retry are the new holder's to make from now.
            kept = [t for t in self._queue if self._client(t.alert.asset) != client]
            self._queue.clear()
            self._queue.extend(kept)

    def _client(self, asset: str | None) -> str | None:
        found = self.assets.get(asset or "")
        return None if found is None else found.client

    def _keep_pending(self) -> None:
        """Inside the transaction (several bridges): the pending alerts the queued transitions
        started or ended, for the bridge that takes their hospital next."""
        changes: dict[str, tuple[str, Alert] | None] = {}
        for t in self._queue:
            if t.state is AlertState.PENDING:
                client = self._client(t.alert.asset)
                if client is not None:
                    changes[t.alert.fingerprint] = (client, t.alert)
            elif t.previous is AlertState.PENDING:
                changes[t.alert.fingerprint] = None
        if changes:
            self.store.save_pending(changes)

    def ingest(
        self,
        samples: Sequence[IncomingSample],
        principal: Principal,
        origin: BatchOrigin | None = None,
        events: Sequence[IncomingEvent] = (),
        *,
        labels_checked: bool = False,
        fence: tuple[str, int] | None = None,
    ) -> IngestResult:
        """Check each sample; evaluate the good ones. A bad sample never spoils the batch.
        ``labels_checked``: the caller made sure no label holds a control or bidi character
        (``may_hold_forbidden_characters`` of the body), so they are not checked one by one.
        ``fence``: the lease (and its token) this bridge evaluates the batch's hospital under;
        the batch is refused (StaleLease, nothing kept) if another bridge took it since.

        Everything a batch causes — its claim, its audit events, its tickets — is written in
        one transaction: a batch answered 200 has all its effects, and one that failed (the
        store raised) left none, so the agent's retry is applied exactly once. A batch with an
        ``origin`` is taken once: a repeat of it is acknowledged as a duplicate.
        """
        with self.metrics.ingest_seconds.time():
            return self._ingest(samples, principal, origin, events, not labels_checked, fence)

    def _check_samples(
        self, samples: Sequence[IncomingSample], scope: str | None, now: float, labels: bool
    ) -> tuple[list[Sample], list[Rejection]]:
        latest_allowed = now + self.max_clock_skew
        assets = self.assets
        rejected: list[Rejection] = []
        good: list[Sample] = []
        append = good.append
        isfinite = math.isfinite
        join = "".join
        for index, s in enumerate(samples):
            value = s.value
            if not isfinite(value):
                rejected.append(Rejection(index, "non_finite", f"value is {value}"))
                continue
            names = s.labels
            asset_id = names.get("asset")
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
            elif ts != ts:  # NaN
                rejected.append(Rejection(index, "non_finite", "timestamp is nan"))
                continue
            elif ts > latest_allowed:
                rejected.append(Rejection(index, "future_timestamp", "timestamp is in the future"))
                continue
            # One C-level scan of every value; the names are looked for only when it fails.
            if labels and not join(names.values()).isprintable():
                bad_label = forbidden_character(names)
            else:
                bad_label = None
            if bad_label is not None:
                rejected.append(
                    Rejection(
                        index,
                        "control_character",
                        f"label {bad_label!r} holds a control or bidi character",
                    )
                )
                continue
            append(Sample(s.metric, names, value, ts))
        return good, rejected

    def _ingest(
        self,
        samples: Sequence[IncomingSample],
        principal: Principal,
        origin: BatchOrigin | None,
        events: Sequence[IncomingEvent],
        check_labels: bool,
        fence: tuple[str, int] | None,
    ) -> IngestResult:
        now = self.clock.time()
        scope = principal.client if principal.role is Role.AGENT else None
        good, rejected = self._check_samples(samples, scope, now, check_labels)
        audit, rejected_events = self._check_events(events, principal, scope, now)
        result = IngestResult(len(good), rejected, rejected_events)
        with self._lock:
            record = None if origin is None else self._batch(origin, samples, principal)
            # A batch already taken (or of another token's stream) is not evaluated: the
            # transaction below only records its claim.
            seen = None if record is None else self.store.peek_batch(record, self.max_seq_gap)
            repeat = seen in (BatchClaim.DUPLICATE, BatchClaim.FOREIGN)
            try:
                prepared: list[Prepared] = []
                at = self.clock.now()
                queued = len(self._queue)
                if not repeat:
                    before = self.engine.evaluations
                    self._queue.extend(self.engine.evaluate(good, now))
                    self.metrics.rule_evaluations.inc(self.engine.evaluations - before)
                    # Texts, muting and deadlines before the transaction, which only writes.
                    prepared = self._prepare(at)
                with self.store.transaction():
                    if fence is not None:
                        self.store.check_fence(*fence)
                    if record is not None:
                        claim = self._claim(record, principal)
                        if claim is BatchClaim.DUPLICATE:
                            # Another bridge process took it meanwhile and wrote what it
                            # causes: its transitions here would count it twice.
                            for _ in range(len(self._queue) - queued):
                                self._queue.pop()
                            return IngestResult(duplicate=True)
                        if repeat:  # the store said it was taken, and now it is not
                            raise StoreError(f"agent batch {record.seq} claimed as {claim}")
                        result.anomaly = claim is BatchClaim.ANOMALY
                    for event in audit:
                        self.store.append_audit(event)
                    self.versions.observe(good, at)
                    if self.sharded:
                        self._keep_pending()
                    changes = self.lifecycle.apply_all(prepared)
            except StreamForbidden:
                raise
            except StaleLease:
                # Another bridge holds the hospital now: what this batch made of the old
                # state is not kept for a retry here (the agent sends it again, to the holder).
                for _ in range(len(self._queue) - queued):
                    self._queue.pop()
                raise
            except Exception:
                # Nothing of the batch was kept, its claim neither; the engine has moved on, so
                # its transitions wait in the queue for the retry or the next tick.
                self._failed()
                raise
            self._applied(changes)
        self.metrics.samples_ingested.inc(len(good))
        for r in rejected:
            self.metrics.samples_rejected.labels(r.reason).inc()
        for r in rejected_events:
            self.metrics.agent_events_rejected.labels(r.reason).inc()
        return result

    def _check_events(
        self,
        events: Sequence[IncomingEvent],
        principal: Principal,
        scope: str | None,
        now: float,
    ) -> tuple[list[AuditEvent], list[Rejection]]:
        """An agent's audit events join the audit trail, as done by that agent — only what
        collectors record, about its hospital's assets, stamped when the agent could have."""
        accepted, rejected = [], []
        earliest, latest = now - self.agent_events_max_age, now + self.max_clock_skew
        for index, e in enumerate(events):
            asset = self.assets.get(e.asset)
            if e.action not in AGENT_AUDIT_ACTIONS:
                reason, detail = "unknown_action", f"agents may not record {e.action!r}"
            elif asset is None:
                reason, detail = "unknown_asset", f"unknown asset {e.asset!r}"
            elif scope is not None and asset.client != scope:
                reason, detail = "forbidden_asset", f"asset {e.asset!r} is not yours"
            elif not earliest <= e.at <= latest:  # NaN fails this too
                reason, detail = "bad_time", "'at' is too old or in the future"
            else:
                accepted.append(
                    AuditEvent(
                        to_datetime(e.at),
                        f"agent:{principal.name}",
                        e.action,
                        e.outcome,
                        asset.client,
                        e.asset,
                        dict(e.detail),
                    )
                )
                continue
            log.warning("agent %s: audit event %d refused: %s", principal.name, index, detail)
            rejected.append(Rejection(index, reason, detail))
        return accepted, rejected

    def _batch(
        self, origin: BatchOrigin, samples: Sequence[IncomingSample], principal: Principal
    ) -> BatchRecord:
        asset = samples[0].labels.get("asset", "") if samples else ""
        return BatchRecord(
            origin.agent_id,
            principal.name,
            asset,
            origin.seq,
            len(samples),
            origin.dropped,
            self.clock.now(),
        )

    def _claim(self, record: BatchRecord, principal: Principal) -> BatchClaim:
        """Inside the batch's transaction: claim it (StreamForbidden for another token's)."""
        claim = self.store.record_batch(record, self.max_seq_gap)
        labels = {BatchClaim.TAKEN: "accepted", BatchClaim.DUPLICATE: "duplicate"}
        self.metrics.agent_batches.labels(labels.get(claim, claim.value)).inc()
        if claim is BatchClaim.FOREIGN:
            raise StreamForbidden(record.agent_id, principal.name)
        if claim is BatchClaim.ANOMALY:
            log.warning(
                "agent stream %s of %s jumped to batch %d, more than %d ahead: taken, "
                "the stream does not advance",
                record.agent_id,
                principal.name,
                record.seq,
                self.max_seq_gap,
            )
            scope = self.assets.get(record.asset)
            self.store.append_audit(
                AuditEvent(
                    record.at,
                    f"agent:{principal.name}",
                    Action.AGENT_SEQ_ANOMALY,
                    "failure",
                    scope.client if scope is not None else principal.client,
                    record.asset or None,
                    {"stream": record.agent_id, "seq": record.seq, "max_gap": self.max_seq_gap},
                )
            )
        return claim

    def tick(self, releases: bool = True) -> list[Change]:
        """Time-driven work: absence rules, transitions waiting for a retry, and (with
        ``releases``: the bridge doing the singleton work) alerts still firing when their
        maintenance window ended and incidents' held alerts."""
        with self._lock:
            try:
                self._queue.extend(self.engine.tick(self.clock.time()))
                prepared = self._prepare(self.clock.now())
                with self.store.transaction():
                    if self.sharded:
                        self._keep_pending()
                    applied = self.lifecycle.apply_all(prepared)
            except Exception:
                self._failed()
                return []
            changes = self._applied(applied)
        # Outside the engine's lock (pushes go on meanwhile: the release of a storm may take
        # seconds): each release is its own unit, deciding on what its transaction reads, so
        # one alert whose ticket cannot be written does not hold back the others (it stays
        # recorded and is retried).
        if releases:
            for change in self.lifecycle.release_windows(self.rule_of):
                self.metrics.count_change(change)
                changes.append(change)
        # Held alerts whose settle time ended, dependents of a resolved root, storms. Among
        # several bridges each releases those of the hospitals it evaluates (it knows when
        # their roots last reported); alone, all of them.
        if isinstance(self.engine, ShardedEngine):
            released = self.lifecycle.incidents.release_due(self.rule_of, self.engine.valid())
        elif releases:
            released = self.lifecycle.incidents.release_due(self.rule_of)
        else:
            released = []
        changes += self.metrics.count_changes(released)
        return changes

    def _prepare(self, now: datetime) -> list[Prepared]:
        """Before the transaction: what each queued transition needs (its ticket's texts, the
        muting answer, the deadline), in order; ``lifecycle.apply_all`` then applies them in
        the caller's transaction. A store failure there rolls it back and leaves the queue as
        it was. A transition of an asset not in the inventory is dropped."""
        prepared: list[Prepared] = []
        rules = self.engine.rules
        for transition in self._queue:
            rule = rules.get(transition.alert.rule)
            if rule is None:
                continue
            try:
                p = self.lifecycle.prepare(transition, rule, now)
            except LifecycleError as exc:
                log.error("alert dropped: %s", exc)
                continue
            if p is not None:
                prepared.append(p)
        return prepared

    def _applied(self, changes: list[Change | Suppression | Attachment]) -> list[Change]:
        """The queued transitions were written: forget them, count what they changed."""
        self._queue.clear()
        if self._failing:
            log.warning("alert transitions are being applied again")
            self._failing = False
        return self.metrics.count_changes(changes)

    def _failed(self) -> None:
        self.metrics.transition_failures.inc()
        if not self._failing:  # log when it starts failing, not on every batch
            log.exception(
                "cannot write to the store; %d alert transitions kept for retry", len(self._queue)
            )
        self._failing = True

    def alert_counts(self) -> dict[AlertState, int]:
        with self._lock:
            return self.engine.counts()

    def series_count(self) -> int:
        with self._lock:
            return self.engine.series_count()

    def agent_streams(self) -> list[AgentStream]:
        """Each agent's numbered batches: how many arrived, duplicates, batches lost."""
        return self.store.agent_streams()

    @property
    def queued_transitions(self) -> int:
        return len(self._queue)
