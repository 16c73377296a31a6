"""The update plans role: plans kept whole, and what each runbook command did."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import START


def test_update_plans_and_their_steps_round_trip(store):
    from bridge.models import (
        GateState,
        PlanStatus,
        RunbookStep,
        StageState,
        StepRecord,
        UpdatePlan,
        UpdateStage,
    )

    plan = UpdatePlan(
        id="AK-2026-0001", client="szpital-a", target_version="5.2.1",
        runbook=[RunbookStep("update", "echo {version}", 60.0)],
        stages=[UpdateStage("test", "OS-2026-0001", START, START + timedelta(hours=1), ["a"])],
        soak=1800.0, ticket="DZ-2026-000001", created_by="jan", created_at=START,
    )  # fmt: skip
    store.save_plan(plan)
    plan.gate, plan.soak_until = GateState.SOAKING, START + timedelta(hours=2)
    plan.stages[0].state = StageState.SUCCEEDED
    store.save_plan(plan)
    assert store.get_plan("AK-2026-0001") == plan
    assert store.plans(status=PlanStatus.ACTIVE) == [plan] and store.plans("klinika-b") == []
    step = StepRecord(
        "AK-2026-0001", "test", "a", "update", "echo 5.2.1", 0, "5.2.1\n", "ab" * 32, START, 0.1
    )
    store.append_step(step)
    assert store.steps("AK-2026-0001") == [step]


def test_plans_are_listed_by_id_and_steps_by_plan_in_order(store):
    from bridge.models import PlanStatus, StepRecord, UpdatePlan

    def plan(plan_id, client, status):
        return UpdatePlan(
            id=plan_id, client=client, target_version="5.2.1", runbook=[], stages=[], soak=60.0,
            ticket="DZ-2026-000001", created_by="jan", created_at=START, status=status,
        )  # fmt: skip

    store.save_plan(plan("AK-2026-0002", "szpital-a", PlanStatus.COMPLETED))
    store.save_plan(plan("AK-2026-0001", "szpital-a", PlanStatus.ACTIVE))
    store.save_plan(plan("AK-2026-0003", "klinika-b", PlanStatus.ACTIVE))
    assert store.get_plan("AK-2026-0009") is None
    assert [p.id for p in store.plans()] == ["AK-2026-0001", "AK-2026-0002", "AK-2026-0003"]
    assert [p.id for p in store.plans("szpital-a", PlanStatus.ACTIVE)] == ["AK-2026-0001"]
    assert [p.id for p in store.plans(status=PlanStatus.ACTIVE)] == ["AK-2026-0001", "AK-2026-0003"]

    def step(plan_id, command):
        return StepRecord(plan_id, "test", "a", "update", command, 0, "", "", START, 0.1)

    for plan_id, command in [("AK-2026-0001", "b"), ("AK-2026-0003", "x"), ("AK-2026-0001", "a")]:
        store.append_step(step(plan_id, command))
    assert [s.command for s in store.steps("AK-2026-0001")] == ["b", "a"]  # as they ran
    assert store.steps("AK-2026-0002") == []
