"""The bridge's domain: clients, contracts, assets, tickets and their categories."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from collectors.durations import format_duration, parse_duration


class Category(StrEnum):
    """Ticket categories of the service contract (DESIGN.md); the codes are used everywhere."""

    AWARIA = "awaria"
    USTERKA = "usterka"
    ADMINISTRACJA = "administracja"
    KONSULTACJA = "konsultacja"
    AKTUALIZACJA = "aktualizacja"
    UTRZYMANIE = "utrzymanie"

    @property
    def severity(self) -> int:
        """Rank for escalation: a category may only be upgraded to a higher rank."""
        return _SEVERITY.get(self, 0)


# Only the categories alerts can open are ranked; the others are never escalated.
_SEVERITY = {Category.UTRZYMANIE: 1, Category.USTERKA: 2, Category.AWARIA: 3}


class TicketStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


def _duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    seconds = float(value) if isinstance(value, int | float) else parse_duration(str(value))
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be a finite number of seconds >= 0")
    return seconds


# Seconds, written in the config as 30s, 5m, 1h30m or a number of seconds.
Duration = Annotated[float, BeforeValidator(_duration)]


def _span(seconds: float) -> str:
    """A bound or a value as the config writes it: 0.5s, 10m, 30d."""
    if seconds == int(seconds) and seconds < 1e9:
        return format_duration(seconds)
    return f"{seconds:g}s"


def between(low: float, high: float) -> AfterValidator:
    """Refuses seconds outside ``low`` to ``high``, saying so: ``Annotated[Duration, between(…)]``
    is a type a type checker reads as a float."""

    def check(seconds: float) -> float:
        if not low <= seconds <= high:
            raise ValueError(f"must be from {_span(low)} to {_span(high)}, got {_span(seconds)}")
        return seconds

    return AfterValidator(check)


# A contract's reaction time: at least a second, at most 30 days of service time.
ReactionTime = Annotated[Duration, between(1.0, 30 * 86400.0)]

Language = Literal["pl", "en"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
# One service window of a day, local time in Europe/Warsaw: "07:00-15:00"; "24:00" ends a day.
ServiceWindow = Annotated[
    str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d-(([01]\d|2[0-3]):[0-5]\d|24:00)$")
]
Environment = Literal["test", "prod"]
AssetKind = Literal["server", "storage", "ups", "amms", "network", "other"]
ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Contract(_Strict):
    """The client's terms. Service hours and reaction times are used by the SLA clock."""

    # standard: Mon-Fri 07:00-15:00 without Polish public holidays; 24/7: real time;
    # custom: the windows of service_hours.
    hours: Literal["standard", "24/7", "custom"] = "standard"
    language: Language = "pl"
    service_hours: dict[Weekday, list[ServiceWindow]] = {}
    # custom hours: whether Polish public holidays are days off (standard: always).
    public_holidays: bool = True
    # Extra days off of this client (standard and custom hours).
    days_off: list[date] = []
    # Reaction times that differ from the defaults (awaria 2h, usterka 8h, ...).
    reaction: dict[Category, ReactionTime] = {}

    @model_validator(mode="after")
    def _hours_match(self) -> Contract:
        if self.hours == "custom" and not any(self.service_hours.values()):
            raise ValueError("hours: custom needs service_hours, e.g. {mon: ['07:00-19:00']}")
        if self.hours != "custom" and self.service_hours:
            raise ValueError("service_hours apply only with hours: custom")
        for day, windows in self.service_hours.items():
            for window in windows:
                start, end = window.split("-")
                if start >= end:
                    raise ValueError(f"service_hours.{day}: {window} ends before it starts")
        return self


class Client(_Strict):
    """One hospital or clinic under contract."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    contract: Contract = Contract()


class SshAddress(_Strict):
    """Where dyzur reaches an asset over SSH to run an update plan's runbook."""

    host: str = Field(min_length=1, max_length=253)
    port: int = Field(22, ge=1, le=65535)
    # Default: ssh.user of the bridge's config.
    user: str | None = Field(None, min_length=1, max_length=64)


class Asset(_Strict):
    """Something watched; belongs to one client."""

    id: str = Field(pattern=ID_PATTERN)
    client: str
    kind: AssetKind = "server"
    environment: Environment = "prod"
    depends_on: str | None = None
    name: str | None = None
    # Whether the asset pushes samples itself; only such assets can go "silent".
    reports: bool = True
    # For update plans: how the bridge reaches it over SSH (AMMS hosts).
    ssh: SshAddress | None = None


@dataclass(slots=True)
class TimelineEntry:
    """One line of a ticket's history: what happened, when, and who did it."""

    at: datetime
    kind: str  # opened, refired, escalated, recovered, resolved, reopened, acknowledged
    message: str
    actor: str = "dyzur"


class SlaState(StrEnum):
    """Where a ticket stands against its reaction deadline."""

    NONE = "none"  # no reaction clock (aktualizacja, utrzymanie)
    RUNNING = "running"  # waiting for the first response
    AT_RISK = "at_risk"  # the at-risk share of the reaction time has passed
    BREACHED = "breached"  # the deadline passed without a response, or the response came late
    MET = "met"  # responded within the deadline


@dataclass(slots=True)
class Ticket:
    """A service ticket opened by dyzur for one alert (rule + identifying labels)."""

    number: str
    client: str
    asset: str
    rule: str
    fingerprint: str
    category: Category
    status: TicketStatus
    title: str
    description: str
    opened_at: datetime
    updated_at: datetime
    labels: dict[str, str] = field(default_factory=dict)
    fire_count: int = 1
    last_value: float | None = None
    resolved_at: datetime | None = None
    responded_at: datetime | None = None
    responded_by: str | None = None
    reaction_due: datetime | None = None
    # When "SLA at risk" is due: the at-risk share of the reaction time in service hours.
    sla_at_risk_at: datetime | None = None
    sla_state: SlaState = SlaState.NONE
    # The incident this ticket is part of: the root cause's ticket that explains it (a server's
    # "agent silent" ticket opened before its UPS's "on battery" one), or None.
    incident: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status is TicketStatus.OPEN


@dataclass(slots=True)
class AgentStream:
    """What the bridge knows of one agent's numbered batches: proof that each arrived once.

    An agent numbers its batches 1, 2, 3, ... per spool (``agent_id`` is new with each spool).
    A batch at or below ``last_seq`` is a duplicate (a retry whose answer was lost) and is not
    evaluated again; a jump counts the batches the agent dropped from a full spool as ``gaps``.
    A stream belongs to the token that sent its first batch (``owner``). A jump larger than the
    bridge's ``max_seq_gap`` is an anomaly: the batch is taken, the stream does not advance
    (``jump_seq`` remembers it) until a following batch carries on from it.
    """

    agent_id: str
    asset: str
    last_seq: int
    batches: int
    samples: int
    duplicates: int
    gaps: int
    dropped_reported: int  # samples the agent says it dropped from its full spool, cumulative
    first_seen: datetime
    last_seen: datetime
    owner: str = ""  # the name of the token the stream belongs to
    anomalies: int = 0  # sequence jumps larger than max_seq_gap
    jump_seq: int | None = None  # the last such jump, not (yet) confirmed


@dataclass(slots=True)
class AuditEvent:
    """One change of state: who did what, when, to which client's asset, and how it ended.

    ``detail`` holds the specifics (ticket number, category, deadline); never a secret.
    """

    at: datetime
    actor: str
    action: str  # e.g. ticket.opened, ticket.acknowledged, sla.at_risk, sla.breached
    outcome: str = "success"
    client: str | None = None
    asset: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    id: int | None = None  # given by the store
    # The chain: this event's hash covers its fields and the previous event's hash.
    prev_hash: str | None = None
    hash: str | None = None


def ticket_number(year: int, sequence: int) -> str:
    """Human-readable, stable ticket number, e.g. DZ-2026-000123."""
    return f"DZ-{year}-{sequence:06d}"


@dataclass(slots=True)
class MaintenanceWindow:
    """An okno serwisowe: while one of its occurrences runs, alerts of the covered assets open
    no tickets. ``start``/``end`` are the first occurrence; ``rrule`` (RFC 5545, without
    DTSTART) repeats it at the same Europe/Warsaw wall-clock times."""

    id: str
    client: str
    start: datetime
    end: datetime
    reason: str
    # The covered assets: listed, or chosen by a selector such as {"environment": "test"}.
    assets: list[str] = field(default_factory=list)
    selector: dict[str, str] = field(default_factory=dict)
    rrule: str | None = None
    ticket: str | None = None  # a linked ticket, if the engineer gave one
    plan: str | None = None  # the update plan whose stage this window is
    created_by: str = "dyzur"
    created_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancelled_by: str | None = None


class SuppressedState(StrEnum):
    FIRING = "firing"  # still firing: its ticket opens when the window ends
    RECOVERED = "recovered"  # fired and recovered inside the window: only logged
    RELEASED = "released"  # still firing when the window ended: its ticket was opened


@dataclass(slots=True)
class SuppressedAlert:
    """An alert that fired while its asset was in a maintenance window, recorded against it."""

    fingerprint: str
    window: str
    client: str
    asset: str
    rule: str
    category: Category
    labels: dict[str, str]
    value: float | None
    fired_at: datetime
    until: datetime  # end of the window occurrence: the ticket opens then if still firing
    state: SuppressedState = SuppressedState.FIRING
    recovered_at: datetime | None = None
    ticket: str | None = None  # the ticket opened when the window ended
    id: int | None = None


class MemberState(StrEnum):
    HELD = "held"  # a dependent's alert waiting (the settle time) for its root to claim it
    ATTACHED = "attached"  # firing, attached to another ticket: its root's, its group's, a storm's
    RECOVERED = "recovered"  # recovered while held or attached: it opens nothing
    RELEASED = "released"  # it opened (or joined) a ticket of its own; ``own_ticket`` says which


class MemberReason(StrEnum):
    DEPENDENCY = "dependency"  # its asset depends on the asset of the ticket it is attached to
    GROUP = "group"  # one of the alerts of its asset's incident group sharing one ticket
    STORM = "storm"  # collected into its hospital's storm ticket beyond the storm budget


@dataclass(slots=True)
class IncidentAlert:
    """An alert that does not (yet) have a ticket of its own: held for its root, or attached
    to another ticket (its root cause's, its group's, its hospital's storm ticket)."""

    fingerprint: str
    client: str
    asset: str
    rule: str
    category: Category
    labels: dict[str, str]
    value: float | None
    fired_at: datetime
    reason: MemberReason
    state: MemberState
    title: str = ""  # the alert's own ticket title, in the contract's language, for lists
    ticket: str | None = None  # the ticket it is attached to (None while held)
    # Held: when the hold ends. Attached to a resolved root: when it opens its own ticket.
    until: datetime | None = None
    recovered_at: datetime | None = None
    own_ticket: str | None = None  # released: the ticket it opened
    updated_at: datetime | None = None
    id: int | None = None

    @property
    def is_firing(self) -> bool:
        return self.state in (MemberState.HELD, MemberState.ATTACHED)


class StageState(StrEnum):
    PLANNED = "planned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NOT_RUN = "not_run"  # production after a failed or unapproved test stage, or a missed window
    CANCELLED = "cancelled"  # the plan was cancelled while it ran: stopped after its command


class GateState(StrEnum):
    """Whether production may follow the test stage."""

    WAITING = "waiting"  # the test stage has not passed its runbook yet
    SOAKING = "soaking"  # runbook passed; watching the test assets for alerts until soak_until
    HELD = "held"  # an engineer stopped it; only an approval lets production run
    PASSED = "passed"  # post-checks OK and the soak quiet, or approved by an engineer
    # The test stage failed (final), or the soak judgement found alerts or tickets of the test
    # assets (an engineer may still approve over it, with an override and a reason).
    FAILED = "failed"
    NOT_REQUIRED = "not_required"  # a client without a test environment (explicit flag)


class PlanStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"  # the production window passed without production running
    CANCELLED = "cancelled"  # an engineer called it off (update cancel)


Phase = Literal["pre_check", "update", "post_check"]
PHASES: tuple[Phase, ...] = ("pre_check", "update", "post_check")


@dataclass(frozen=True, slots=True)
class RunbookStep:
    """One command of a runbook; ``{version}``, ``{asset}`` and ``{environment}`` are filled in."""

    phase: Phase
    command: str
    timeout: float = 600.0


@dataclass(slots=True)
class UpdateStage:
    environment: Environment
    window: str  # the maintenance window the stage runs in
    start: datetime
    end: datetime
    assets: list[str]
    state: StageState = StageState.PLANNED
    started_at: datetime | None = None
    finished_at: datetime | None = None
    failure: str | None = None
    failure_ticket: str | None = None
    # The assets on which every update command ran successfully (set when the stage ends).
    updated: list[str] = field(default_factory=list)


@dataclass(slots=True)
class UpdatePlan:
    """An AMMS update for one client: the test stage first, production only after its gate."""

    id: str
    client: str
    target_version: str
    runbook: list[RunbookStep]
    stages: list[UpdateStage]  # test then prod, or prod alone (without_test_stage)
    soak: float  # seconds the test assets must stay quiet after the test stage
    ticket: str  # the aktualizacja ticket of the plan
    created_by: str
    created_at: datetime
    without_test_stage: bool = False
    status: PlanStatus = PlanStatus.ACTIVE
    gate: GateState = GateState.WAITING
    gate_by: str | None = None
    gate_at: datetime | None = None
    gate_reason: str | None = None
    soak_until: datetime | None = None
    # The last soak judgement (by the ticker at the soak's end, or at an approval): what it
    # found on the test assets from the end of the test stage until ``judged_until``.
    gate_findings: list[str] = field(default_factory=list)
    judged_until: datetime | None = None
    gate_override: bool = False  # approved over a judgement that found something
    gate_ticket: str | None = None  # the usterka a failed soak judgement opened
    cancelled_at: datetime | None = None
    cancelled_by: str | None = None
    cancel_reason: str | None = None

    def stage(self, environment: str) -> UpdateStage | None:
        return next((s for s in self.stages if s.environment == environment), None)


@dataclass(frozen=True, slots=True)
class StepRecord:
    """What one runbook command did on one asset (kept for the plan and its tickets)."""

    plan: str
    environment: str
    asset: str
    phase: str
    command: str
    exit_code: int | None  # None: it never ran (no connection, refused host key)
    output: str  # the tail of stdout and stderr
    digest: str  # sha256 of the whole output
    started_at: datetime
    duration: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.error is None
