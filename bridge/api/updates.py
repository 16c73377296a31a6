"""Staged AMMS updates: plan, list, status; the engineer's approve or hold of the gate, and
cancel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    WithJsonSchema,
)
from starlette.concurrency import run_in_threadpool

from bridge.api.deps import Engineer, PlansDep, Reader, UpdatesDep, client_scope, visible
from bridge.api.schemas import error_responses
from bridge.api.windows import PlannedTime, Selector
from bridge.clock import local_iso
from bridge.maintenance.updates import (
    VERSION_PATTERN,
    PlanNotFound,
    StageWindow,
    UpdateRequest,
    Updates,
)
from bridge.maintenance.windows import parse_selector
from bridge.models import Duration, RunbookStep, StepRecord, UpdatePlan, UpdateStage, between

router = APIRouter(prefix="/api/v1/updates", tags=["updates"])
NO_PLAN = error_responses(404, 422, e404="no such update plan, or another hospital's")
GATE = {
    **NO_PLAN,
    **error_responses(400, 409, e409="the plan's state does not allow it"),
}

Command = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
# What collectors.durations reads: seconds, or units largest first ("90s", "1h30m", "2d").
DURATION_TEXT = r"^(?=.)(\d+(\.\d+)?|(\d+(\.\d+)?d)?(\d+(\.\d+)?h)?(\d+(\.\d+)?m)?(\d+(\.\d+)?s)?)$"


def as_read(low: float, high: float) -> WithJsonSchema:
    """A duration from ``low`` to ``high`` seconds, described in the OpenAPI as it is read."""
    number = {"type": "number", "minimum": low, "maximum": high}
    return WithJsonSchema({"anyOf": [number, {"type": "string", "pattern": DURATION_TEXT}]})


StepTimeout = Annotated[Duration, between(1.0, 86400.0), as_read(1.0, 86400.0)]
# As updates.soak of the config.
Soak = Annotated[Duration, between(0.0, 14 * 86400.0), as_read(0.0, 14 * 86400.0)]


class StepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: Command
    timeout: StepTimeout = Field(600.0, description="seconds, or 30s, 10m, 1h; at most 1 day")


# A command alone, or with its timeout: told apart by type, so that an error names the one meant
# ("runbook.update.0.step.timeout"), not both readings.
RunbookItem = Annotated[
    Annotated[Command, Tag("command")] | Annotated[StepIn, Tag("step")],
    Discriminator(lambda item: "step" if isinstance(item, dict | StepIn) else "command"),
]


class RunbookIn(BaseModel):
    """Commands run over SSH on every asset of a stage; {version}, {asset} and {environment}
    are filled in. A command is a string or {command, timeout}."""

    model_config = ConfigDict(extra="forbid")

    pre_checks: list[RunbookItem] = Field(default_factory=list, max_length=100)
    update: list[RunbookItem] = Field(min_length=1, max_length=100)
    post_checks: list[RunbookItem] = Field(default_factory=list, max_length=100)

    def steps(self) -> list[RunbookStep]:
        steps = []
        for phase, items in (
            ("pre_check", self.pre_checks),
            ("update", self.update),
            ("post_check", self.post_checks),
        ):
            for item in items:
                step = item if isinstance(item, StepIn) else StepIn(command=item)
                steps.append(RunbookStep(phase, step.command, step.timeout))  # type: ignore[arg-type]
        return steps


class WindowTimes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: PlannedTime
    end: PlannedTime

    def stage(self) -> StageWindow:
        return StageWindow(self.start, self.end)


class UpdateIn(BaseModel):
    """An AMMS update to plan. Times are ISO 8601; without an offset they are Europe/Warsaw."""

    model_config = ConfigDict(extra="forbid")

    client: str = Field(max_length=64)
    target_version: str = Field(pattern=VERSION_PATTERN.pattern)
    test_window: WindowTimes | None = None
    prod_window: WindowTimes
    runbook: RunbookIn
    soak: Soak | None = Field(
        None, description="default: updates.soak of the config; at most 14 days"
    )
    without_test_stage: bool = Field(
        False, description="the client has no test environment: production alone"
    )
    selector: Selector = Field("kind=amms", description="the assets it updates")


class GateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=500)
    override: bool = Field(
        False,
        description="approve although the soak judgement found alerts or tickets of the test "
        "assets (or failed the gate); needs a reason, and is recorded as an override",
    )


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="why (on the ticket)")


class StageOut(BaseModel):
    environment: str
    window: str
    start: str
    end: str
    assets: list[str]
    state: str
    started_at: str | None
    finished_at: str | None
    failure: str | None
    failure_ticket: str | None
    updated: list[str] = Field(
        description="assets on which every update command succeeded (when the stage ended)"
    )

    @classmethod
    def of(cls, s: UpdateStage) -> StageOut:
        return cls(
            environment=s.environment,
            window=s.window,
            start=local_iso(s.start) or "",
            end=local_iso(s.end) or "",
            assets=s.assets,
            state=s.state.value,
            started_at=local_iso(s.started_at),
            finished_at=local_iso(s.finished_at),
            failure=s.failure,
            failure_ticket=s.failure_ticket,
            updated=s.updated,
        )


class StepOut(BaseModel):
    environment: str
    asset: str
    phase: str
    command: str
    exit_code: int | None
    error: str | None
    output: str
    output_sha256: str
    started_at: str
    duration: float

    @classmethod
    def of(cls, s: StepRecord) -> StepOut:
        return cls(
            environment=s.environment,
            asset=s.asset,
            phase=s.phase,
            command=s.command,
            exit_code=s.exit_code,
            error=s.error,
            output=s.output,
            output_sha256=s.digest,
            started_at=local_iso(s.started_at) or "",
            duration=round(s.duration, 3),
        )


class PlanOut(BaseModel):
    """A plan; times are ISO 8601 in Europe/Warsaw with their UTC offset."""

    id: str
    client: str
    target_version: str
    status: str
    gate: str
    gate_by: str | None
    gate_at: str | None
    gate_reason: str | None
    gate_override: bool = Field(description="approved over a judgement that found something")
    gate_findings: list[str] = Field(
        description="what the last soak judgement found on the test assets (empty: nothing)"
    )
    judged_until: str | None = Field(
        description="the soak judgement covers the end of the test stage until this time"
    )
    soak_seconds: float
    soak_until: str | None
    without_test_stage: bool
    ticket: str
    created_by: str
    created_at: str
    cancelled_at: str | None
    cancelled_by: str | None
    cancel_reason: str | None
    stages: list[StageOut]
    runbook: list[dict[str, str | float]]
    steps: list[StepOut] | None = None

    @classmethod
    def of(cls, p: UpdatePlan, steps: list[StepRecord] | None = None) -> PlanOut:
        return cls(
            id=p.id,
            client=p.client,
            target_version=p.target_version,
            status=p.status.value,
            gate=p.gate.value,
            gate_by=p.gate_by,
            gate_at=local_iso(p.gate_at),
            gate_reason=p.gate_reason,
            gate_override=p.gate_override,
            gate_findings=p.gate_findings,
            judged_until=local_iso(p.judged_until),
            soak_seconds=p.soak,
            soak_until=local_iso(p.soak_until),
            without_test_stage=p.without_test_stage,
            ticket=p.ticket,
            created_by=p.created_by,
            created_at=local_iso(p.created_at) or "",
            cancelled_at=local_iso(p.cancelled_at),
            cancelled_by=p.cancelled_by,
            cancel_reason=p.cancel_reason,
            stages=[StageOut.of(s) for s in p.stages],
            runbook=[
                {"phase": s.phase, "command": s.command, "timeout": s.timeout} for s in p.runbook
            ],
            steps=None if steps is None else [StepOut.of(s) for s in steps],
        )


@router.post(
    "",
    status_code=201,
    response_model=PlanOut,
    responses=error_responses(400, 409, 422, e409="a stage overlaps a window of its assets"),
)
def plan_update(body: UpdateIn, principal: Engineer, updates: UpdatesDep) -> PlanOut:
    """Plan an update: the windows, the aktualizacja ticket, the runbook."""
    request = UpdateRequest(
        client=body.client,
        target_version=body.target_version,
        runbook=body.runbook.steps(),
        prod_window=body.prod_window.stage(),
        test_window=body.test_window.stage() if body.test_window else None,
        soak=body.soak,
        without_test_stage=body.without_test_stage,
        selector=parse_selector(body.selector),
    )
    return PlanOut.of(updates.plan(request, principal.name))


@router.get("", response_model=list[PlanOut], responses=error_responses(422))
def list_updates(principal: Reader, plans: PlansDep, client: str | None = None) -> list[PlanOut]:
    """Update plans (a client token: its own hospital's only)."""
    return [PlanOut.of(p) for p in plans.plans(client_scope(principal, client))]


@router.get("/{plan_id}", response_model=PlanOut, responses=NO_PLAN)
def get_update(plan_id: str, principal: Reader, plans: PlansDep) -> PlanOut:
    """A plan's status with every runbook step it ran (command, exit code, output tail)."""
    plan = visible(principal, plans.find(plan_id), PlanNotFound(plan_id))
    return PlanOut.of(plan, plans.steps(plan_id))


# The engineer's hand on the gate: approve and hold take the same body and answer alike.
Decide = Callable[[Updates, str, str, GateIn], UpdatePlan]


def _gate_decision(name: str, decide: Decide, description: str) -> None:
    async def decision(
        plan_id: str, principal: Engineer, updates: UpdatesDep, body: GateIn | None = None
    ) -> PlanOut:
        gate = body or GateIn()
        return PlanOut.of(await run_in_threadpool(decide, updates, plan_id, principal.name, gate))

    router.post(
        f"/{{plan_id}}/{name}",
        name=name,
        description=description,
        response_model=PlanOut,
        responses=GATE,
    )(decision)


_gate_decision(
    "approve",
    lambda updates, plan_id, actor, gate: updates.approve(
        plan_id, actor, gate.reason, gate.override
    ),
    "Open the gate by hand (after a test stage whose runbook passed). The soak judgement is "
    "made now and returned (gate_findings, judged_until); over one that found something, only "
    "with override and a reason (409 naming the findings otherwise).",
)
_gate_decision(
    "hold",
    lambda updates, plan_id, actor, gate: updates.hold(plan_id, actor, gate.reason),
    "Keep production from starting until an engineer approves.",
)


@router.post(
    "/{plan_id}/cancel",
    response_model=PlanOut,
    responses={**GATE, **error_responses(409, e409="the plan already ended")},
)
async def cancel(plan_id: str, body: CancelIn, principal: Engineer, updates: UpdatesDep) -> PlanOut:
    """Call a plan off: no later step or stage runs; a stage running now stops after its
    current command and is reported as cancelled with the hosts it did and did not update;
    the windows of stages that did not run are cancelled."""
    plan = await run_in_threadpool(updates.cancel, plan_id, principal.name, body.reason)
    return PlanOut.of(plan)
