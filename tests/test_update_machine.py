"""The update plan's state machine, pure: a plan and a moment in, the ticker's actions out.

No sshd, no store, no clock: each case builds a plan in one state, asks what to do at one
moment and compares the answer. The same plan at the same moment always gives the same
answer, and asking never changes the plan.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from bridge.maintenance.updates.machine import (
    MISSED_TEST_WINDOW,
    EndMuting,
    Expire,
    FailInterrupted,
    JudgeGate,
    PlanAction,
    SettleCancelled,
    StartStage,
    drive,
    next_actions,
)
from bridge.models import GateState, PlanStatus, StageState, UpdatePlan, UpdateStage

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
TEST_START, TEST_END = T0 + timedelta(hours=1), T0 + timedelta(hours=3)
PROD_START, PROD_END = T0 + timedelta(hours=13), T0 + timedelta(hours=17)
TEST_DONE = TEST_START + timedelta(minutes=20)  # the test stage's runbook finished
SOAK_UNTIL = TEST_DONE + timedelta(minutes=30)
PROD_DONE = PROD_START + timedelta(minutes=20)
SECOND = timedelta(seconds=1)


def make_plan(
    status: PlanStatus = PlanStatus.ACTIVE,
    gate: GateState = GateState.WAITING,
    test: StageState | None = StageState.PLANNED,
    prod: StageState = StageState.PLANNED,
    soak_until: datetime | None = None,
    override: bool = False,
) -> UpdatePlan:
    """A plan of szpital-a: test 10:00-12:00 Warsaw, production 22:00-02:00; ``test=None``:
    without a test stage."""
    stages = []
    if test is not None:
        stages.append(
            UpdateStage("test", "OK-2026-0001", TEST_START, TEST_END, ["amms-a-test"], test)
        )
        if test is not StageState.PLANNED:
            stages[-1].started_at = TEST_START
        if test not in (StageState.PLANNED, StageState.RUNNING, StageState.NOT_RUN):
            stages[-1].finished_at = TEST_DONE
    stages.append(UpdateStage("prod", "OK-2026-0002", PROD_START, PROD_END, ["amms-a-prod"], prod))
    if prod is not StageState.PLANNED and prod is not StageState.NOT_RUN:
        stages[-1].started_at = PROD_START
    if prod in (StageState.SUCCEEDED, StageState.FAILED, StageState.CANCELLED):
        stages[-1].finished_at = PROD_DONE
    return UpdatePlan(
        id="AK-2026-0001",
        client="szpital-a",
        target_version="5.4.0",
        runbook=[],
        stages=stages,
        soak=1800.0,
        ticket="SZA-2026-0001",
        created_by="engineer",
        created_at=T0,
        without_test_stage=test is None,
        status=status,
        gate=gate,
        soak_until=soak_until,
        gate_override=override,
    )


@dataclass(frozen=True)
class Case:
    plan: UpdatePlan
    at: datetime
    expected: list[PlanAction]
    runner_alive: bool = False
    label: str = field(default="", compare=False)


A = PlanStatus.ACTIVE
P, R, S, F = StageState.PLANNED, StageState.RUNNING, StageState.SUCCEEDED, StageState.FAILED
NOT_RUN, CANCELLED = StageState.NOT_RUN, StageState.CANCELLED
soaking = {"gate": GateState.SOAKING, "test": S, "soak_until": SOAK_UNTIL}


def passed(**extra) -> dict:
    return {"gate": GateState.PASSED, "test": S, "soak_until": SOAK_UNTIL, **extra}


CASES = [
    # --- before and in the test window ---------------------------------------------------
    Case(make_plan(), T0, [], label="created, long before the test window"),
    Case(make_plan(), TEST_START - SECOND, [], label="a second before the test window"),
    Case(make_plan(), TEST_START, [StartStage("test")], label="the test window opens"),
    Case(make_plan(), TEST_END - SECOND, [StartStage("test")], label="late in the test window"),
    Case(
        make_plan(),
        TEST_END,
        [Expire("test", MISSED_TEST_WINDOW)],
        label="the test window closed without the bridge running",
    ),
    Case(
        make_plan(),
        PROD_END + timedelta(days=1),
        [Expire("test", MISSED_TEST_WINDOW)],
        label="both windows long gone: the missed test stage is named",
    ),
    # --- the test stage runs ---------------------------------------------------------------
    Case(make_plan(test=R), TEST_START + SECOND, [], runner_alive=True, label="test running"),
    Case(
        make_plan(test=R),
        TEST_END + SECOND,
        [],
        runner_alive=True,
        label="test running past its window's end (a long runbook)",
    ),
    Case(
        make_plan(test=R),
        TEST_START + SECOND,
        [FailInterrupted("test"), EndMuting("test")],
        label="test running but no runner here (the bridge restarted)",
    ),
    Case(
        make_plan(test=R),
        PROD_START,
        [FailInterrupted("test"), EndMuting("test")],
        label="the restart noticed in the production window: the stage failed, nothing starts",
    ),
    # --- soak ------------------------------------------------------------------------------
    Case(make_plan(**soaking), TEST_DONE, [], label="soak begins"),
    Case(make_plan(**soaking), SOAK_UNTIL - SECOND, [], label="soak running"),
    Case(make_plan(**soaking), SOAK_UNTIL, [JudgeGate()], label="soak over: judge"),
    Case(make_plan(**soaking), PROD_START, [JudgeGate()], label="soak over in the prod window"),
    Case(
        make_plan(**soaking),
        PROD_END,
        [JudgeGate()],
        label="soak over as production's window closed: judged first, expiry asked after",
    ),
    Case(
        make_plan(gate=GateState.SOAKING, test=S, soak_until=PROD_END + timedelta(hours=1)),
        PROD_END,
        [Expire("prod", "gate soaking")],
        label="production's window closed while the soak still ran",
    ),
    # --- the judgement's outcome -----------------------------------------------------------
    Case(make_plan(**passed()), SOAK_UNTIL, [], label="gate passed, before the prod window"),
    Case(make_plan(**passed()), PROD_START, [StartStage("prod")], label="gate passed, prod opens"),
    Case(
        make_plan(**passed()),
        PROD_END - SECOND,
        [StartStage("prod")],
        label="gate passed, the last second of the prod window",
    ),
    Case(
        make_plan(**passed()),
        PROD_END,
        [Expire("prod", "gate passed")],
        label="gate passed but production's window closed before it started",
    ),
    Case(
        make_plan(gate=GateState.FAILED, test=S, soak_until=SOAK_UNTIL),
        SOAK_UNTIL,
        [],
        label="the judgement found something, before the prod window",
    ),
    Case(
        make_plan(gate=GateState.FAILED, test=S, soak_until=SOAK_UNTIL),
        PROD_START,
        [],
        label="the judgement found something: production does not start",
    ),
    Case(
        make_plan(gate=GateState.FAILED, test=S, soak_until=SOAK_UNTIL),
        PROD_END,
        [Expire("prod", "gate failed")],
        label="a failed judgement nobody overrode: the plan expires with the window",
    ),
    # --- an engineer's hand on the gate ----------------------------------------------------
    Case(
        make_plan(gate=GateState.HELD, test=S, soak_until=SOAK_UNTIL),
        PROD_START,
        [],
        label="held: production does not start",
    ),
    Case(
        make_plan(gate=GateState.HELD, test=R),
        PROD_START,
        [],
        runner_alive=True,
        label="held while the test stage runs",
    ),
    Case(
        make_plan(gate=GateState.HELD, test=S, soak_until=SOAK_UNTIL),
        PROD_END,
        [Expire("prod", "gate held")],
        label="held until production's window closed",
    ),
    Case(
        make_plan(**passed()),
        SOAK_UNTIL - timedelta(minutes=10),
        [],
        label="approved before the soak ended, before the prod window",
    ),
    Case(
        make_plan(**passed(override=True)),
        PROD_START,
        [StartStage("prod")],
        label="approved over the judgement (override): production starts",
    ),
    Case(
        make_plan(**passed(override=True)),
        PROD_START - SECOND,
        [],
        label="overridden, a second before the prod window",
    ),
    # --- production ------------------------------------------------------------------------
    Case(
        make_plan(**passed(), prod=R),
        PROD_START + SECOND,
        [],
        runner_alive=True,
        label="production running",
    ),
    Case(
        make_plan(**passed(), prod=R),
        PROD_END + SECOND,
        [],
        runner_alive=True,
        label="production running past its window (no expiry of a started stage)",
    ),
    Case(
        make_plan(**passed(), prod=R),
        PROD_START + SECOND,
        [FailInterrupted("prod"), EndMuting("prod")],
        label="production running but its runner is gone",
    ),
    Case(
        make_plan(status=PlanStatus.COMPLETED, **passed(), prod=S),
        PROD_DONE,
        [],
        label="completed",
    ),
    # --- without a test stage --------------------------------------------------------------
    Case(
        make_plan(gate=GateState.NOT_REQUIRED, test=None),
        TEST_START,
        [],
        label="production alone, before its window",
    ),
    Case(
        make_plan(gate=GateState.NOT_REQUIRED, test=None),
        PROD_START,
        [StartStage("prod")],
        label="production alone: its window opens",
    ),
    Case(
        make_plan(gate=GateState.NOT_REQUIRED, test=None),
        PROD_END,
        [Expire("prod", "gate not_required")],
        label="production alone: its window closed without the bridge",
    ),
    Case(
        make_plan(gate=GateState.HELD, test=None),
        PROD_START,
        [],
        label="production alone, held",
    ),
    # --- cancelled -------------------------------------------------------------------------
    Case(
        make_plan(status=PlanStatus.CANCELLED, test=NOT_RUN, prod=NOT_RUN),
        TEST_START,
        [],
        label="cancelled before anything ran: its windows are gone, nothing starts",
    ),
    Case(
        make_plan(status=PlanStatus.CANCELLED, test=R, prod=NOT_RUN),
        TEST_START + SECOND,
        [],
        runner_alive=True,
        label="cancelled with the test stage running: it stops on its own",
    ),
    Case(
        make_plan(status=PlanStatus.CANCELLED, test=R, prod=NOT_RUN),
        TEST_START + SECOND,
        [SettleCancelled("test"), EndMuting("test")],
        label="cancelled with the test stage running and its runner gone",
    ),
    Case(
        make_plan(status=PlanStatus.CANCELLED, **passed(), prod=R),
        PROD_START + SECOND,
        [SettleCancelled("prod"), EndMuting("prod")],
        label="cancelled with production running and its runner gone",
    ),
    Case(
        make_plan(status=PlanStatus.CANCELLED, test=CANCELLED, prod=NOT_RUN),
        PROD_START,
        [],
        label="cancelled, its running stage settled: nothing more, even in the prod window",
    ),
    # --- ended plans -----------------------------------------------------------------------
    Case(
        make_plan(status=PlanStatus.EXPIRED, test=NOT_RUN, prod=NOT_RUN),
        PROD_START,
        [],
        label="expired",
    ),
    Case(
        make_plan(status=PlanStatus.FAILED, gate=GateState.FAILED, test=F, prod=NOT_RUN),
        PROD_START,
        [],
        label="the test stage failed: production never starts",
    ),
    Case(
        make_plan(status=PlanStatus.FAILED, **passed(), prod=F),
        PROD_END,
        [],
        label="production failed",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_next_actions(case: Case) -> None:
    before = copy.deepcopy(case.plan)
    assert next_actions(case.plan, case.at, case.runner_alive) == case.expected
    assert case.plan == before  # asking changes nothing


def test_the_cases_are_distinct() -> None:
    """Each case is a state or a moment of its own (a copied case tests nothing new)."""
    seen = [(repr(c.plan), c.at, c.runner_alive) for c in CASES]
    assert len(set(seen)) == len(seen)


def ticker(plan: UpdatePlan, at: datetime, findings: bool) -> list[PlanAction]:
    """One tick of the service (``drive``), each action applied to the plan as the service
    would; a gate judgement's outcome is ``findings``."""

    def apply(action: PlanAction) -> None:
        if isinstance(action, JudgeGate):
            plan.gate = GateState.FAILED if findings else GateState.PASSED
        elif isinstance(action, StartStage):
            stage = plan.stage(action.environment)
            assert stage is not None
            stage.state = StageState.RUNNING
        elif isinstance(action, Expire):
            plan.status = PlanStatus.EXPIRED

    return drive(plan, at, False, apply)


@pytest.mark.parametrize(
    ("at", "findings", "expected"),
    [
        (SOAK_UNTIL, False, [JudgeGate()]),
        (SOAK_UNTIL, True, [JudgeGate()]),
        (PROD_START, False, [JudgeGate(), StartStage("prod")]),
        (PROD_START, True, [JudgeGate()]),
        (PROD_END, False, [JudgeGate(), Expire("prod", "gate passed")]),
        (PROD_END, True, [JudgeGate(), Expire("prod", "gate failed")]),
    ],
)
def test_a_judgement_then_asking_again(at: datetime, findings: bool, expected) -> None:
    """A soak that ends in the production window: a quiet judgement lets production start in
    the same tick, one that found something keeps it back; after the window, the plan
    expires naming the judgement's outcome."""
    assert ticker(make_plan(**soaking), at, findings) == expected


def test_a_started_stage_is_not_started_again() -> None:
    plan = make_plan()
    assert ticker(plan, TEST_START, findings=False) == [StartStage("test")]
    assert next_actions(plan, TEST_START + SECOND, runner_alive=True) == []
