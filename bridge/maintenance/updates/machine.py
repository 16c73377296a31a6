"""What the ticker must do for an update plan at a moment: a pure state machine.

``next_actions(plan, now, runner_alive)`` is given a plan, the time and whether this bridge's
runbook thread for the plan is alive, and returns the actions to apply, in order. It does no
I/O, reads no clock and touches no store; the service applies the actions (``service.py``).

A gate judgement's outcome is not known here: when the last action returned is ``JudgeGate``,
the caller applies it and asks again (a passed gate lets production start in the same tick);
``drive`` does that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bridge.models import Environment, GateState, PlanStatus, StageState, UpdatePlan

# The gates that let production start once its window opens.
OPEN_GATES = (GateState.PASSED, GateState.NOT_REQUIRED)
MISSED_TEST_WINDOW = "the bridge did not run in the window"


@dataclass(frozen=True)
class StartStage:
    """The stage's window opened: mark it running and start its runbook."""

    environment: Environment


@dataclass(frozen=True)
class JudgeGate:
    """The soak is over: judge the test assets (then ask again)."""


@dataclass(frozen=True)
class Expire:
    """The stage's window closed before it could run: the plan expires."""

    environment: Environment
    reason: str


@dataclass(frozen=True)
class FailInterrupted:
    """The stage is running but no runbook runs it here (the bridge restarted, or the worker
    that ran it died): nobody knows how far it got, so it failed."""

    environment: Environment


@dataclass(frozen=True)
class SettleCancelled:
    """A cancelled plan's stage is running but no runbook runs it here: report it cancelled,
    with the hosts updated and not."""

    environment: Environment


@dataclass(frozen=True)
class EndMuting:
    """The stage is over: its window mutes its hosts for the settle time, then ends."""

    environment: Environment


PlanAction = StartStage | JudgeGate | Expire | FailInterrupted | SettleCancelled | EndMuting


def next_actions(plan: UpdatePlan, now: datetime, runner_alive: bool = False) -> list[PlanAction]:
    """What to do for ``plan`` at ``now``; ``runner_alive``: this bridge runs its runbook."""
    for stage in plan.stages:
        if stage.state is StageState.RUNNING and not runner_alive:
            env = stage.environment
            if plan.status is PlanStatus.CANCELLED:
                return [SettleCancelled(env), EndMuting(env)]
            return [FailInterrupted(env), EndMuting(env)]
    if plan.status is not PlanStatus.ACTIVE:
        return []  # a running stage of a cancelled plan stops on its own
    test, prod = plan.stage("test"), plan.stage("prod")
    if prod is None:
        return []
    if test is not None and test.state is StageState.PLANNED and now >= test.end:
        return [Expire("test", MISSED_TEST_WINDOW)]
    soaked = plan.soak_until is not None and now >= plan.soak_until
    if test is not None and plan.gate is GateState.SOAKING and soaked:
        return [JudgeGate()]
    if prod.state is StageState.PLANNED and now >= prod.end:
        return [Expire("prod", f"gate {plan.gate.value}")]
    if test is not None and test.state is StageState.PLANNED and now >= test.start:
        return [StartStage("test")]
    if prod.state is StageState.PLANNED and now >= prod.start and plan.gate in OPEN_GATES:
        return [StartStage("prod")]
    return []


def drive(
    plan: UpdatePlan,
    now: datetime,
    runner_alive: bool,
    apply: Callable[[PlanAction], None],
) -> list[PlanAction]:
    """One tick for ``plan``: ``apply`` each action in order (it changes the plan), asking
    again after a gate judgement; returns what was applied."""
    done: list[PlanAction] = []
    actions = next_actions(plan, now, runner_alive)
    while actions:
        for action in actions:
            apply(action)
            done.append(action)
        if not isinstance(actions[-1], JudgeGate):
            break
        # The judgement decided the gate: production may start or expire in this same tick.
        actions = next_actions(plan, now, runner_alive)
    return done
