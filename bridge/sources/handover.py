"""Pushed batches among several bridges: any bridge answers any agent.

A batch of a hospital this bridge holds (``Shards``) is evaluated here. One of a hospital
another bridge holds is handed over through Redis: added to the hospital's intake stream
(XADD), read by its holder's consumer group (XREADGROUP), evaluated there and answered; the
receiving bridge waits for that answer and gives it to the agent. So an agent is answered 200
only once the batch is in the store (PostgreSQL), never on Redis' word alone: Redis keeps
nothing on disk, and a batch lost with it was never acknowledged, so the agent's spool sends
it again and its numbering (``agent.seq``) takes it once.

An entry read by a bridge that died before acknowledging it is claimed by the hospital's next
holder (XAUTOCLAIM); one whose evaluation keeps failing goes, after ``dead_letter_after``
reads, to the dead-letter stream (``dyzur cluster status`` counts it).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from bridge.auth import Principal, Role
from bridge.errors import Invalid
from bridge.metrics import BridgeMetrics
from bridge.models import AgentStream, Asset
from bridge.sources.samples import (
    BatchOrigin,
    IncomingEvent,
    IncomingSample,
    Ingestor,
    IngestResult,
    Rejection,
    StreamForbidden,
    shard_lease,
)
from bridge.sources.shards import Shards
from bridge.store import StoreError

log = logging.getLogger(__name__)

# Entries kept per hospital's stream (acknowledged ones are trimmed beyond it).
STREAM_LENGTH = 100_000
# How long an answer nobody waits for any more is kept in Redis.
ANSWER_TTL = 60.0


class HandoverTimeout(StoreError):
    """The bridge holding the hospital did not answer in time (503: the agent sends it again)."""


class HandoverStreams(Protocol):
    """What the hand-over needs of the coordination (``RedisCoordination``)."""

    def hand_over(
        self, stream: str, fields: dict[str, str], reply: str, timeout: float, maxlen: int
    ) -> str | None: ...

    def answer(self, reply: str, body: str, ttl: float) -> None: ...

    def read_handed(
        self, streams: Sequence[str], consumer: str, *, count: int, block: float, min_idle: float
    ) -> list[Any]: ...

    def ack(self, entry: Any) -> None: ...

    def dead_letter(self, entry: Any, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class HandedSample:
    metric: str
    labels: dict[str, str]
    value: float
    timestamp: float | None


@dataclass(frozen=True, slots=True)
class HandedEvent:
    action: str
    outcome: str
    asset: str
    at: float
    detail: dict[str, Any]


def _encode_batch(
    samples: Sequence[IncomingSample],
    principal: Principal,
    origin: BatchOrigin | None,
    events: Sequence[IncomingEvent],
    labels_checked: bool,
) -> dict[str, str]:
    batch = {
        "samples": [[s.metric, dict(s.labels), s.value, s.timestamp] for s in samples],
        "events": [[e.action, e.outcome, e.asset, e.at, dict(e.detail)] for e in events],
        "origin": None if origin is None else asdict(origin),
        "labels_checked": labels_checked,
    }
    who = {"name": principal.name, "role": principal.role.value, "client": principal.client}
    return {"principal": json.dumps(who), "batch": json.dumps(batch)}


def _encode_result(result: IngestResult) -> dict[str, Any]:
    return {
        "accepted": result.accepted,
        "rejected": [asdict(r) for r in result.rejected],
        "rejected_events": [asdict(r) for r in result.rejected_events],
        "duplicate": result.duplicate,
        "anomaly": result.anomaly,
    }


def _decode_result(data: Mapping[str, Any]) -> IngestResult:
    return IngestResult(
        data["accepted"],
        [Rejection(**r) for r in data["rejected"]],
        [Rejection(**r) for r in data["rejected_events"]],
        duplicate=data["duplicate"],
        anomaly=data["anomaly"],
    )


class ClusterIntake:
    """``Ingestor.ingest`` for a bridge among several (see the module's docstring)."""

    def __init__(
        self,
        ingestor: Ingestor,
        shards: Shards,
        streams: HandoverStreams,
        assets: Mapping[str, Asset],
        metrics: BridgeMetrics,
        *,
        timeout: float,
        dead_letter_after: int,
    ) -> None:
        self.ingestor = ingestor
        self.shards = shards
        self.streams = streams
        self.assets = assets
        self.metrics = metrics
        self.timeout = timeout
        self.dead_letter_after = dead_letter_after

    def agent_streams(self) -> list[AgentStream]:
        return self.ingestor.agent_streams()

    # --- receiving -------------------------------------------------------------------------

    def _hospital(
        self,
        samples: Sequence[IncomingSample],
        principal: Principal,
        events: Sequence[IncomingEvent],
    ) -> str | None:
        """The one hospital a batch is about: the agent token's, else its assets' (unknown
        assets are rejected sample by sample wherever the batch is evaluated)."""
        if principal.client is not None:
            return principal.client
        clients = {
            asset.client
            for name in [s.labels.get("asset", "") for s in samples] + [e.asset for e in events]
            if (asset := self.assets.get(name)) is not None
        }
        if len(clients) > 1:
            raise Invalid(
                "samples: a batch holds the samples of one hospital when several bridges share "
                f"the work; this one has assets of {', '.join(sorted(clients))}"
            )
        return next(iter(clients), None)

    def ingest(
        self,
        samples: Sequence[IncomingSample],
        principal: Principal,
        origin: BatchOrigin | None = None,
        events: Sequence[IncomingEvent] = (),
        *,
        labels_checked: bool = False,
    ) -> IngestResult:
        client = self._hospital(samples, principal, events)
        if client is None:  # nothing of any hospital: rejected sample by sample, here
            return self.ingestor.ingest(
                samples, principal, origin, events, labels_checked=labels_checked
            )
        token = self.shards.token(client)
        if token is not None:
            return self.ingestor.ingest(
                samples,
                principal,
                origin,
                events,
                labels_checked=labels_checked,
                fence=(shard_lease(client), token),
            )
        return self._hand_over(client, samples, principal, origin, events, labels_checked)

    def _hand_over(
        self,
        client: str,
        samples: Sequence[IncomingSample],
        principal: Principal,
        origin: BatchOrigin | None,
        events: Sequence[IncomingEvent],
        labels_checked: bool,
    ) -> IngestResult:
        fields = _encode_batch(samples, principal, origin, events, labels_checked)
        answer = self.streams.hand_over(
            client, fields, uuid.uuid4().hex, self.timeout, STREAM_LENGTH
        )
        if answer is None:
            self.metrics.handovers.labels("timeout").inc()
            raise HandoverTimeout(
                f"the bridge holding hospital {client} did not take its batch within "
                f"{self.timeout:g} s"
            )
        data = json.loads(answer)
        status = data["status"]
        if status == 200:
            self.metrics.handovers.labels("taken").inc()
            return _decode_result(data["result"])
        if status == 403:
            self.metrics.handovers.labels("refused").inc()
            raise StreamForbidden(data["agent_id"], data["agent"])
        self.metrics.handovers.labels("failed").inc()
        raise StoreError(f"the bridge holding hospital {client} could not take its batch")

    # --- the holder's side ---------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Read the intake streams of the hospitals held, until ``stop``."""
        failing = False
        while not stop.is_set():
            held = self.shards.held()
            if not held:
                stop.wait(0.2)
                continue
            try:
                entries = self.streams.read_handed(
                    held, self.shards.owner, count=64, block=0.5, min_idle=self.timeout
                )
                for entry in entries:
                    self.take(entry)
                failing = False
            except StoreError:
                if not failing:  # once when it starts failing, not every half second
                    log.exception("cannot read the batches handed over by other bridges")
                failing = True
                stop.wait(1.0)

    def take(self, entry: Any) -> None:
        """Evaluate one handed-over batch and answer it; acknowledged once answered (or dead-
        lettered). Left unacknowledged when the hospital is no longer held here (its holder
        claims it) or when its evaluation failed unexpectedly (read again later)."""
        client = entry.stream
        token = self.shards.token(client)
        if token is None:
            return
        if entry.deliveries > self.dead_letter_after:
            reason = f"read {entry.deliveries} times without an answer"
            self.streams.dead_letter(entry, reason)
            self.metrics.handovers.labels("dead_letter").inc()
            log.error("a batch of hospital %s went to the dead letters: %s", client, reason)
            self._answer(entry, {"status": 503})
            return
        try:
            who = json.loads(entry.fields["principal"])
            batch = json.loads(entry.fields["batch"])
            principal = Principal(who["name"], Role(who["role"]), who["client"])
            origin = None if batch["origin"] is None else BatchOrigin(**batch["origin"])
            result = self.ingestor.ingest(
                [HandedSample(*s) for s in batch["samples"]],
                principal,
                origin,
                [HandedEvent(*e) for e in batch["events"]],
                labels_checked=batch["labels_checked"],
                fence=(shard_lease(client), token),
            )
            answer: dict[str, Any] = {"status": 200, "result": _encode_result(result)}
        except StreamForbidden as refusal:
            answer = {"status": 403, "agent_id": refusal.agent_id, "agent": refusal.agent}
        except StoreError:
            # Nothing of it was kept: the agent is answered 503 and sends it again.
            answer = {"status": 503}
        except Exception:
            log.exception("a batch of hospital %s handed over by another bridge failed", client)
            return
        self._answer(entry, answer)

    def _answer(self, entry: Any, answer: dict[str, Any]) -> None:
        self.streams.answer(entry.fields["reply"], json.dumps(answer), ANSWER_TTL)
        self.streams.ack(entry)
