"""Request and response bodies of the API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from bridge.clock import local_iso
from bridge.models import (
    AgentStream,
    Category,
    IncidentAlert,
    MemberReason,
    MemberState,
    SlaState,
    Ticket,
    TicketStatus,
    TimelineEntry,
)
from bridge.store import ParkedChange, SinkDelivery
from bridge.tickets.desk import NOTE_MAX, note_problem
from bridge.tickets.incident_desk import HeldView, IncidentKind, IncidentView

MetricName = Annotated[
    str, StringConstraints(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", max_length=200)
]
LabelName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", max_length=100)]
LabelValue = Annotated[str, StringConstraints(max_length=1024)]

# SQLite's integers are 64-bit signed: a number beyond is refused as a field, never stored.
INT64_MAX = 2**63 - 1
# Seconds since the Unix epoch that a datetime holds in every time zone (a day inside
# 0001-01-01..9999-12-31 UTC, so that Europe/Warsaw or any offset still converts).
EARLIEST_EPOCH = datetime(1, 1, 2, tzinfo=UTC).timestamp()
LATEST_EPOCH = datetime(9999, 12, 31, tzinfo=UTC).timestamp()


def timestamps_out_of_range(samples: list[SampleIn]) -> list[FieldError]:
    """The samples whose timestamp a datetime cannot hold (±Infinity, before year 1, after
    9999), named as fields. NaN passes: like a NaN value, it rejects only its own sample
    (sources.samples). One plain loop over the batch after parsing: a field validator would
    cost a Python call per sample on the hot path."""
    low, high = EARLIEST_EPOCH, LATEST_EPOCH
    return [
        FieldError(
            field=f"samples.{index}.timestamp",
            msg=f"seconds since the Unix epoch from {low:.0f} (0001-01-02) to {high:.0f} "
            f"(9999-12-31), got {s.timestamp}",
            type="value_error",
        )
        for index, s in enumerate(samples)
        if s.timestamp is not None and not low <= s.timestamp <= high and s.timestamp == s.timestamp
    ]


# A time an agent stamped: finite and inside what a datetime holds.
Epoch = Annotated[
    float,
    Field(strict=True, ge=EARLIEST_EPOCH, le=LATEST_EPOCH, allow_inf_nan=False),
]


class SampleIn(BaseModel):
    """One measurement. Types are strict: "3" is not a number and true is not 1."""

    model_config = ConfigDict(extra="forbid")

    metric: MetricName
    labels: dict[LabelName, LabelValue] = Field(
        default_factory=dict, strict=True, max_length=64, description="must include 'asset'"
    )
    value: float = Field(strict=True, description="NaN and infinities are rejected per sample")
    timestamp: float | None = Field(
        None,
        strict=True,
        description="seconds since the Unix epoch; default: when received. NaN is rejected "
        "per sample",
        json_schema_extra={"minimum": EARLIEST_EPOCH, "maximum": LATEST_EPOCH},
    )


class BatchOriginIn(BaseModel):
    """Sent by dyzur agents so that a retried batch is taken once (see GET /api/v1/agents)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="the agent's spool id")
    seq: int = Field(
        strict=True, ge=1, le=INT64_MAX, description="batch number, 1, 2, 3, ... per spool"
    )
    dropped: int = Field(
        0,
        strict=True,
        ge=0,
        le=INT64_MAX,
        description="samples dropped from the agent's full spool, in all",
    )


DetailValue = (
    str
    | Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX)]
    | Annotated[float, Field(allow_inf_nan=False)]
    | bool
    | None
)


class AgentEventIn(BaseModel):
    """An audit event an agent recorded (an SSH command it ran, a refused host key)."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(pattern=r"^[a-z][a-z0-9_.]{0,63}$")
    outcome: str = Field(pattern=r"^(success|failure)$")
    asset: str = Field(min_length=1, max_length=200)
    at: Epoch = Field(description="seconds since the Unix epoch")
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
    rejected_events: list[RejectedSample] = Field(
        default_factory=list, description="audit events refused one by one, with the reason"
    )
    duplicate: bool = False
    anomaly: bool = Field(
        False, description="the batch number jumped beyond max_seq_gap: taken, not advancing"
    )


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
    owner: str = Field(description="the token the stream belongs to")
    anomalies: int = Field(description="batch numbers that jumped beyond max_seq_gap")
    jump_seq: int | None = Field(description="the last such jump, not confirmed yet")

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


class DeliveryOut(BaseModel):
    """Where a ticket went: a helpdesk sink, the helpdesk's id for it, and the state of its
    last change there (``delivered``, or ``failed`` with the reason)."""

    sink: str
    remote_id: str | None
    state: str
    reason: str | None
    at: str

    @classmethod
    def of(cls, d: SinkDelivery) -> DeliveryOut:
        return cls(
            sink=d.sink,
            remote_id=d.remote_id,
            state=d.state,
            reason=d.reason,
            at=local_iso(d.at) or "",
        )


class ParkedOut(BaseModel):
    """A ticket change a helpdesk sink parked: ``failed`` (the helpdesk refused it; ``reason``
    is its answer) or ``waiting`` (held behind a failed change of the same ticket). ``at``:
    when it was parked or last refused, ISO 8601 in Europe/Warsaw with its UTC offset."""

    sink: str
    ticket: str
    client: str | None
    event_id: int = Field(description="the change's audit event (GET /api/v1/audit)")
    action: str = Field(description="the change: ticket.opened, ticket.acknowledged, ...")
    state: Literal["failed", "waiting"]
    reason: str
    at: str

    @classmethod
    def of(cls, p: ParkedChange) -> ParkedOut:
        return cls(
            sink=p.sink,
            ticket=p.ticket,
            client=p.client,
            event_id=p.event_id,
            action=p.action,
            state="waiting" if p.state == "waiting" else "failed",
            reason=p.reason,
            at=local_iso(p.at) or "",
        )


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
    incident: str | None = Field(
        None,
        description="the ticket of the incident this one is part of: its root cause's ticket "
        "that explains it (GET /api/v1/incidents)",
    )
    timeline: list[TimelineOut] | None = None
    deliveries: list[DeliveryOut] | None = None

    @classmethod
    def of(
        cls,
        t: Ticket,
        timeline: list[TimelineEntry] | None = None,
        deliveries: list[SinkDelivery] | None = None,
    ) -> TicketOut:
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
            incident=t.incident,
            timeline=None if timeline is None else [TimelineOut.of(e) for e in timeline],
            deliveries=None if deliveries is None else [DeliveryOut.of(d) for d in deliveries],
        )


class IncidentTicketOut(BaseModel):
    """An incident's ticket, in short (GET /api/v1/tickets/{number} has the rest)."""

    number: str
    client: str
    asset: str = Field(description="empty for a storm ticket")
    rule: str
    category: Category
    title: str
    status: TicketStatus
    reaction_due: str | None
    opened_at: str

    @classmethod
    def of(cls, t: Ticket) -> IncidentTicketOut:
        return cls(
            number=t.number,
            client=t.client,
            asset=t.asset,
            rule=t.rule,
            category=t.category,
            title=t.title,
            status=t.status,
            reaction_due=local_iso(t.reaction_due),
            opened_at=local_iso(t.opened_at) or "",
        )


class IncidentAlertOut(BaseModel):
    """An alert recorded against an incident's ticket instead of a ticket of its own."""

    fingerprint: str = Field(
        description="the alert's key (`alert` of POST /api/v1/tickets/{number}/split)"
    )
    asset: str
    rule: str
    category: Category
    title: str
    state: MemberState = Field(
        description="`attached` (firing), `recovered` (opens nothing), `released` (it opened "
        "or joined a ticket of its own: `own_ticket`)"
    )
    reason: MemberReason = Field(
        description="`dependency` (its asset depends on the root), `group` (one of the "
        "asset's group of alerts), `storm` (beyond the hospital's storm budget)"
    )
    fired_at: str
    recovered_at: str | None
    own_ticket: str | None

    @classmethod
    def of(cls, m: IncidentAlert) -> IncidentAlertOut:
        return cls(
            fingerprint=m.fingerprint,
            asset=m.asset,
            rule=m.rule,
            category=m.category,
            title=m.title,
            state=m.state,
            reason=m.reason,
            fired_at=local_iso(m.fired_at) or "",
            recovered_at=local_iso(m.recovered_at),
            own_ticket=m.own_ticket,
        )


class IncidentCountsOut(BaseModel):
    firing: int = Field(description="attached alerts still firing")
    recovered: int
    released: int


class IncidentOut(BaseModel):
    """An open incident: one ticket standing for one problem. Times are ISO 8601 in
    Europe/Warsaw with their UTC offset."""

    ticket: IncidentTicketOut
    kind: IncidentKind = Field(
        description="`dependency`: a root cause's ticket (alerts of dependent assets attached, "
        "or tickets it explains); `storm`: a hospital's storm ticket; `group`: one asset's "
        "group ticket with more than one alert"
    )
    root: str | None = Field(description="the root cause's asset; null for a storm")
    attached: list[IncidentAlertOut] = Field(description="oldest first")
    explains: list[str] = Field(
        description="tickets that are part of this incident (their `incident` names it)"
    )
    counts: IncidentCountsOut

    @classmethod
    def of(cls, v: IncidentView) -> IncidentOut:
        return cls(
            ticket=IncidentTicketOut.of(v.ticket),
            kind=v.kind,
            root=v.root,
            attached=[IncidentAlertOut.of(m) for m in v.attached],
            explains=v.explains,
            counts=IncidentCountsOut(firing=v.firing, recovered=v.recovered, released=v.released),
        )


class HeldAlertOut(BaseModel):
    """An alert of a dependent asset held for its root cause (no ticket yet): attached if a
    root's ticket opens before ``held_until``, otherwise it opens its own ticket then (a stale
    root extends the hold)."""

    fingerprint: str
    client: str
    asset: str
    rule: str
    category: Category
    title: str
    fired_at: str
    held_until: str | None
    waiting_for: list[str] = Field(description="the assets it depends on, nearest first")

    @classmethod
    def of(cls, h: HeldView) -> HeldAlertOut:
        m = h.alert
        return cls(
            fingerprint=m.fingerprint,
            client=m.client,
            asset=m.asset,
            rule=m.rule,
            category=m.category,
            title=m.title,
            fired_at=local_iso(m.fired_at) or "",
            held_until=local_iso(m.until),
            waiting_for=h.waiting_for,
        )


def _note_text(text: str) -> str:
    problem = note_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return text


NoteText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=NOTE_MAX,
        description="one line of text: no control characters (line breaks, escapes, "
        "bidirectional overrides)",
    ),
    AfterValidator(_note_text),
]


class NoteIn(BaseModel):
    """An engineer's note on a ticket's timeline."""

    model_config = ConfigDict(extra="forbid")

    text: NoteText


class ResolveIn(BaseModel):
    """Closing a ticket by hand, optionally with a note (written on the timeline first)."""

    model_config = ConfigDict(extra="forbid")

    note: NoteText | None = None


class SplitIn(BaseModel):
    """Which alert attached to the ticket gets a ticket of its own."""

    model_config = ConfigDict(extra="forbid")

    alert: str = Field(
        min_length=1, max_length=256, description="the alert's fingerprint (`attached[]`)"
    )


class FieldError(BaseModel):
    field: str = Field(description="where: samples.3.value, body.start, query.limit, path.number")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer of the API has this body."""

    detail: str = Field(description="what went wrong, for a person to read")
    errors: list[FieldError] = Field(
        default_factory=list, description="each refused field (422); empty otherwise"
    )
    conflicts_with: str | None = Field(
        None,
        description="409: the window a new window or update stage overlaps, or the update plan "
        "a window belongs to (cancel the plan instead)",
    )


ERROR_MEANINGS = {
    400: "malformed JSON",
    401: "no token, or not a valid one",
    403: "the token's role or hospital may not do this",
    404: "not found, or another hospital's",
    409: "refused by the current state",
    413: "the body is larger than max_body_bytes",
    422: "a field is refused: `errors` names each",
    503: "the ticket store is unavailable: nothing was done, retry after Retry-After",
}


ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "seconds", "schema": {"type": "string"}}},
}


def error_responses(*codes: int, **meanings: str) -> dict[int | str, dict]:
    """OpenAPI ``responses`` of the error answers an operation can give, each an ErrorBody.
    ``meanings`` (``e404="no such ticket"``) say what a code means for this operation."""
    responses: dict[int | str, dict] = {}
    for code in codes:
        response = {
            "model": ErrorBody,
            "description": meanings.get(f"e{code}", ERROR_MEANINGS[code]),
        }
        if code in ERROR_HEADERS:
            response["headers"] = ERROR_HEADERS[code]
        responses[code] = response
    return responses


def error_response(
    status: int,
    detail: str,
    errors: list[FieldError] | None = None,
    *,
    conflicts_with: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(detail=detail, errors=errors or [], conflicts_with=conflicts_with)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)
