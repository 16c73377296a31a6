"""Updates: ``/ui/updates`` (the staged AMMS update plans) and ``/ui/updates/{id}`` (a plan's
stages, its runbook, the result of every step it ran, and its gate); engineers and admins
approve the gate or hold it with a reason, through the service the API uses
(``Updates.approve`` / ``hold``) and with its refusals (a gate the plan's state does not allow,
a soak judgement that found something without an override).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from bridge.errors import Conflict, DomainError, NotFound
from bridge.maintenance.queries import PlanQueries
from bridge.maintenance.updates import Updates
from bridge.models import Client, GateState, PlanStatus, StageState, UpdatePlan
from bridge.tickets.texts import gate_name, stage_name
from bridge.web.layout import (
    Problem,
    back_to,
    client_label,
    missing,
    page,
    scope_of,
    visible_clients,
    when,
)
from bridge.web.session import ActingUser, PageUser, WebUser
from bridge.web.texts import UI

router = APIRouter(prefix="/ui/updates", include_in_schema=False)

DONE = ("approve", "hold")
# Gates an engineer may still decide on (the service says the last word).
OPEN_GATES = (GateState.WAITING, GateState.SOAKING, GateState.HELD, GateState.FAILED)


@dataclass(frozen=True, slots=True)
class UpdateServices:
    updates: Updates
    plans: PlanQueries
    clients: Mapping[str, Client]


def get_update_services(request: Request) -> UpdateServices:
    bridge = request.app.state.bridge
    return UpdateServices(bridge.updates, bridge.plans, bridge.loaded.clients)


UpdateServicesDep = Annotated[UpdateServices, Depends(get_update_services)]


def _stages(plan: UpdatePlan, language: str) -> list[dict[str, object]]:
    t = UI[language]
    return [
        {
            "name": stage_name(language, s.environment),
            "window": s.window,
            "start": when(s.start, language),
            "end": when(s.end, language),
            "assets": ", ".join(s.assets),
            "state": t[f"stage_{s.state.value}"],
            "state_code": s.state.value,
            "started": when(s.started_at, language, seconds=True),
            "finished": when(s.finished_at, language, seconds=True),
            "failure": s.failure or "",
            "failure_ticket": s.failure_ticket,
            "updated": ", ".join(s.updated),
        }
        for s in plan.stages
    ]


def _summary(plan: UpdatePlan, clients: Mapping[str, Client], language: str) -> dict[str, object]:
    t = UI[language]
    return {
        "id": plan.id,
        "client": client_label(clients, plan.client),
        "version": plan.target_version,
        "status": t[f"plan_{plan.status.value}"],
        "status_code": plan.status.value,
        "gate": gate_name(language, plan.gate.value),
        "gate_code": plan.gate.value,
        "ticket": plan.ticket,
        "stages": _stages(plan, language),
        "created": when(plan.created_at, language),
        "created_by": plan.created_by,
    }


def can_decide(plan: UpdatePlan) -> bool:
    """Whether the plan's gate is still for an engineer to decide (approve or hold)."""
    prod = plan.stage("prod")
    return (
        plan.status is PlanStatus.ACTIVE
        and plan.gate in OPEN_GATES
        and (prod is None or prod.state is StageState.PLANNED)
    )


@router.get("", response_class=HTMLResponse)
async def plans(request: Request, user: PageUser, services: UpdateServicesDep) -> HTMLResponse:
    """Every plan (a hospital user: its own), with its stages and gate."""
    t = UI[user.language]
    scope = scope_of(user, request.query_params.get("client"))
    found = await run_in_threadpool(services.plans.plans, scope)
    found.sort(key=lambda p: p.created_at, reverse=True)
    return page(
        request,
        user,
        "updates.html",
        t["updates_title"],
        "/ui/updates",
        plans=[_summary(p, services.clients, user.language) for p in found],
        clients=[(c.id, c.name) for c in visible_clients(user, services.clients)],
        scope=scope,
        show_client=user.client is None,
    )


async def _plan_page(
    request: Request,
    user: WebUser,
    plan_id: str,
    services: UpdateServices,
    status: int = 200,
    problem: Problem | None = None,
) -> HTMLResponse:
    t = UI[user.language]
    language = user.language
    plan = await run_in_threadpool(services.plans.find, plan_id)
    if plan is None or not user.principal.can_see(plan.client):
        return missing(request, user, t["no_plan"].format(id=plan_id), "/ui/updates")
    steps = await run_in_threadpool(services.plans.steps, plan_id)
    done = request.query_params.get("done")
    return page(
        request,
        user,
        "update.html",
        t["update_title"].format(id=plan.id, version=plan.target_version),
        "/ui/updates",
        status,
        plan=plan,
        summary=_summary(plan, services.clients, language),
        gate={
            "by": plan.gate_by or "—",
            "at": when(plan.gate_at, language, seconds=True),
            "reason": plan.gate_reason or "—",
            "override": plan.gate_override,
            "findings": plan.gate_findings,
            "judged_until": when(plan.judged_until, language, seconds=True),
            "soak_until": when(plan.soak_until, language, seconds=True),
            "ticket": plan.gate_ticket,
        },
        runbook=[
            {"phase": t[f"phase_{s.phase}"], "command": s.command, "timeout": s.timeout}
            for s in plan.runbook
        ],
        steps=[
            {
                "stage": stage_name(language, s.environment),
                "asset": s.asset,
                "phase": t[f"phase_{s.phase}"],
                "command": s.command,
                "exit_code": "—" if s.exit_code is None else str(s.exit_code),
                "ok": s.exit_code == 0 and s.error is None,
                "error": s.error or "",
                "output": s.output,
                "started": when(s.started_at, language, seconds=True),
                "duration": f"{s.duration:.1f}".replace(".", "," if language == "pl" else "."),
            }
            for s in steps
        ],
        can_decide=user.can_act and can_decide(plan),
        done=t[f"done_{done}"] if done in DONE and status == 200 else "",
        problem=problem,
        form=dict(problem.values) if problem is not None else {},
    )


@router.get("/{plan_id}", response_class=HTMLResponse)
async def plan(
    plan_id: str, request: Request, user: PageUser, services: UpdateServicesDep
) -> HTMLResponse:
    return await _plan_page(request, user, plan_id, services)


async def _decide(
    request: Request, user: WebUser, plan_id: str, services: UpdateServices, decision: str
) -> Response:
    t = UI[user.language]
    form = await request.form()
    reason = str(form.get("reason", "")).strip()
    override = str(form.get("override", "")) in ("1", "on", "true")
    found = await run_in_threadpool(services.plans.find, plan_id)
    if found is None or not user.principal.can_see(found.client):
        return missing(request, user, t["no_plan"].format(id=plan_id), "/ui/updates")
    actor = user.principal.name
    try:
        if decision == "approve":
            await run_in_threadpool(services.updates.approve, plan_id, actor, reason, override)
        else:
            await run_in_threadpool(services.updates.hold, plan_id, actor, reason)
    except NotFound:
        return missing(request, user, t["no_plan"].format(id=plan_id), "/ui/updates")
    except DomainError as exc:
        status = 409 if isinstance(exc, Conflict) else 422
        values = {"reason": reason, "override": "1" if override else ""}
        problem = Problem(decision, str(exc), values)
        return await _plan_page(request, user, plan_id, services, status, problem)
    return back_to(request, f"/ui/updates/{plan_id}", done=decision)


@router.post("/{plan_id}/approve")
async def approve(
    plan_id: str, request: Request, user: ActingUser, services: UpdateServicesDep
) -> Response:
    """Open the gate as the user (``reason``; ``override`` over a soak judgement that found
    something)."""
    return await _decide(request, user, plan_id, services, "approve")


@router.post("/{plan_id}/hold")
async def hold(
    plan_id: str, request: Request, user: ActingUser, services: UpdateServicesDep
) -> Response:
    """Keep production from starting until an engineer approves (``reason``)."""
    return await _decide(request, user, plan_id, services, "hold")
