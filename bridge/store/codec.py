"""Update plans as JSON for stores that keep them whole: datetimes as epoch seconds."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

from bridge.clock import to_datetime
from bridge.models import (
    GateState,
    PlanStatus,
    RunbookStep,
    StageState,
    UpdatePlan,
    UpdateStage,
)

_PLAN_TIMES = ("created_at", "gate_at", "soak_until", "judged_until", "cancelled_at")
_STAGE_TIMES = ("start", "end", "started_at", "finished_at")


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _times(data: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: (to_datetime(v) if k in names and v is not None else v) for k, v in data.items()}


def plan_to_json(plan: UpdatePlan) -> str:
    return json.dumps(_encode(asdict(plan)), sort_keys=True, ensure_ascii=False)


def plan_from_json(text: str) -> UpdatePlan:
    data = _times(json.loads(text), _PLAN_TIMES)
    known = {f.name for f in fields(UpdatePlan)}
    data = {k: v for k, v in data.items() if k in known}
    data["runbook"] = [RunbookStep(**s) for s in data["runbook"]]
    stages = []
    for stage in data["stages"]:
        stage = _times(stage, _STAGE_TIMES)
        stage["state"] = StageState(stage["state"])
        stages.append(UpdateStage(**stage))
    data["stages"] = stages
    data["status"] = PlanStatus(data["status"])
    data["gate"] = GateState(data["gate"])
    return UpdatePlan(**data)
