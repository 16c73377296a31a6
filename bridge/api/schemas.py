"""Request and response bodies of the API."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bridge.clock import local_iso
from bridge.models import (
    AgentStream,
    Category,
    SlaState,
    Ticket,
    TicketStatus,
    TimelineEntry,
)

MetricName = Annotated[
    str, StringConstraints(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", max_length=200)
]
LabelName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", max_length=100)]
LabelValue = Annotated[str, StringConstraints(max_length=1024)]


class SampleIn(BaseModel):
    """One measurement. Types are strict: "3" is not a number and true is not 1."""

    model_config = ConfigDict(extra="forbid")

    metric: MetricName
    labels: dict[LabelName, LabelValue] = Field(
        default_factory=dict, strict=True, max_length=64, description="must include 'asset'"
    )
    value: float = Field(strict=True, description="NaN and infinities are rejected per sample")
    timestamp: float | None = Field(
        None, strict=True, description="seconds since the Unix epoch; default: when received"
    )


class BatchOriginIn(BaseModel):
    """Sent by dyzur agents so that a retried batch is taken once (see GET /api/v1/agents)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="the agent's spool id")
    seq: int = Field(strict=True, ge=1, description="batch number, 1, 2, 3, ... per spool")
    dropped: int = Field(
        0, strict=True, ge=0, description="samples dropped from the agent's full spool, in all"
    )


DetailValue = str | int | float | bool | None


class AgentEventIn(BaseModel):
    """An audit event an agent recorded (an SSH command it ran, a refused host key)."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(pattern=r"^[a-z][a-z0-9_.]{0,63}$")
    outcome: str = Field(pattern=r"^(success|failure)$")
    asset: str = Field(min_length=1, max_length=200)
    at: float = Field(strict=True, description="seconds since the Unix epoch")
    detail: dict[str, DetailValue] = Field(default_factory=dict, max_length=32)


class SampleBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    samples: list[SampleIn] = Field(max_length=100_000)
    agent: BatchOriginIn | None = None
    events: list[AgentEventIn] = Field(default_factory=list, max_length=10_000)


class RejectedSample(BaseModel):
    index: int
    reason: str
    detail: str


class IngestResponse(BaseModel):
    accepted: int
    rejected: list[RejectedSample]
    duplicate: bool = False


class AgentStreamOut(BaseModel):
    agent_id: str
    asset: str
    last_seq: int
    batches: int
    samples: int
    duplicates: int
    gaps: int
    dropped_reported: int
    first_seen: str
    last_seen: str

    @classmethod
    def of(cls, a: AgentStream) -> AgentStreamOut:
        return cls(
            **{
                **asdict(a),
                "first_seen": local_iso(a.first_seen),
                "last_seen": local_iso(a.last_seen),
            }
        )


class TimelineOut(BaseModel):
    at: str
    kind: str
    message: str
    actor: str

    @classmethod
    def of(cls, e: TimelineEntry) -> TimelineOut:
        return cls(at=local_iso(e.at) or "", kind=e.kind, message=e.message, actor=e.actor)


class TicketOut(BaseModel):
    """A ticket; times are ISO 8601 in Europe/Warsaw with their UTC offset."""

    number: str
    client: str
    asset: str
    rule: str
    category: Category
    status: TicketStatus
    title: str
    description: str
    labels: dict[str, str]
    fire_count: int
    last_value: float | None
    opened_at: str
    updated_at: str
    resolved_at: str | None
    responded_at: str | None
    responded_by: str | None
    reaction_due: str | None
    sla_state: SlaState
    sla_at_risk_at: str | None
    responded_within_deadline: bool | None
    timeline: list[TimelineOut] | None = None

    @classmethod
    def of(cls, t: Ticket, timeline: list[TimelineEntry] | None = None) -> TicketOut:
        return cls(
            number=t.number,
            client=t.client,
            asset=t.asset,
            rule=t.rule,
            category=t.category,
            status=t.status,
            title=t.title,
            description=t.description,
            labels=t.labels,
            fire_count=t.fire_count,
            # JSON has no NaN: a restored alert without a value shows none.
            last_value=t.last_value if t.last_value == t.last_value else None,
            opened_at=local_iso(t.opened_at) or "",
            updated_at=local_iso(t.updated_at) or "",
            resolved_at=local_iso(t.resolved_at),
            responded_at=local_iso(t.responded_at),
            responded_by=t.responded_by,
            reaction_due=local_iso(t.reaction_due),
            sla_state=t.sla_state,
            sla_at_risk_at=local_iso(t.sla_at_risk_at),
            responded_within_deadline=(
                None
                if t.responded_at is None or t.reaction_due is None
                else t.responded_at <= t.reaction_due
            ),
            timeline=None if timeline is None else [TimelineOut.of(e) for e in timeline],
        )
