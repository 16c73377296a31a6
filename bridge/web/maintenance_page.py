"""Maintenance: ``/ui/maintenance`` — a week or month calendar of the windows and update stages
of each hospital, the windows running or still to come, and (engineers, admins) the form that
plans a window and the buttons that cancel one.

A window is planned exactly as ``POST /api/v1/windows`` plans it: the form is read by the API's
own model (``WindowIn``: times without an offset are Warsaw's) and planned by the same service
(``Maintenance.plan``), so a refusal says what the API's would — the field at fault, or the
window it overlaps. An update stage's window is cancelled with its plan, not here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from bridge.clock import WARSAW, Clock
from bridge.errors import Conflict, DomainError, NotFound
from bridge.maintenance.planning import Maintenance, WindowRequest
from bridge.maintenance.queries import PlanQueries, WindowQueries
from bridge.maintenance.windows import Occurrences, parse_selector
from bridge.models import Asset, Client, MaintenanceWindow, UpdatePlan, UpdateStage
from bridge.tickets.texts import stage_name
from bridge.web.layout import (
    Problem,
    back_to,
    client_label,
    day_name,
    day_text,
    iso_moment,
    missing,
    page,
    scope_of,
    visible_clients,
    when,
)
from bridge.web.session import ActingUser, PageUser, WebUser
from bridge.web.texts import UI

router = APIRouter(prefix="/ui/maintenance", include_in_schema=False)

View = Literal["week", "month"]
DONE = ("planned", "cancelled")
FORM_FIELDS = ("client", "start", "end", "reason", "assets", "selector", "rrule", "ticket")


@dataclass(slots=True)
class Entry:
    """A window's or a stage's time on one day of the calendar."""

    kind: str  # window, stage
    id: str
    client: str
    hours: str  # 22:00–24:00, 00:00–02:00
    text: str
    href: str
    state: str = ""  # a stage's state; "active" for a window running now


@dataclass(slots=True)
class Day:
    day: date
    name: str
    today: bool
    outside: bool = False  # a day of the month view that belongs to the month before or after
    entries: list[Entry] = field(default_factory=list)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), WARSAW).astimezone(UTC)


def period(view: View, anchor: date) -> tuple[date, date, date, date]:
    """The days shown: (first, after the last) and the period itself (for the month view the
    month; its grid runs from a Monday to a Sunday)."""
    if view == "week":
        first = anchor - timedelta(days=anchor.weekday())
        return first, first + timedelta(days=7), first, first + timedelta(days=7)
    start = anchor.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    first = start - timedelta(days=start.weekday())
    last = end + timedelta(days=(7 - end.weekday()) % 7)
    return first, last, start, end


def _stages(plans: Iterable[UpdatePlan]) -> dict[str, tuple[UpdatePlan, UpdateStage]]:
    return {s.window: (p, s) for p in plans for s in p.stages}


def entries(
    windows: Iterable[MaintenanceWindow],
    plans: Iterable[UpdatePlan],
    first: date,
    last: date,
    root: str,
    now: datetime,
    language: str,
) -> dict[date, list[Entry]]:
    """Every occurrence of the windows between the days ``first`` and ``last`` (exclusive),
    cut at midnight into the days it spans; a stage's window is told as its plan's stage."""
    t = UI[language]
    stages = _stages(plans)
    days: dict[date, list[Entry]] = {}
    begin, end = _midnight(first), _midnight(last)
    for window in windows:
        stage = stages.get(window.id)
        for start, stop in Occurrences(window).between(begin, end):
            local_start, local_stop = start.astimezone(WARSAW), stop.astimezone(WARSAW)
            day = max(local_start.date(), first)
            while day < last and _midnight(day) < stop:
                day_end = _midnight(day + timedelta(days=1))
                shown_start = local_start if start >= _midnight(day) else None
                shown_stop = local_stop if stop <= day_end else None
                hours = (
                    f"{shown_start.strftime('%H:%M') if shown_start else '00:00'}–"
                    f"{shown_stop.strftime('%H:%M') if shown_stop else '24:00'}"
                )
                if stage is not None:
                    plan, s = stage
                    entry = Entry(
                        "stage",
                        plan.id,
                        window.client,
                        hours,
                        t["stage_entry"].format(
                            version=plan.target_version,
                            stage=stage_name(language, s.environment),
                            plan=plan.id,
                        ),
                        f"{root}/ui/updates/{plan.id}",
                        s.state.value,
                    )
                else:
                    entry = Entry(
                        "window",
                        window.id,
                        window.client,
                        hours,
                        f"{window.reason} ({window.id})",
                        f"#w-{window.id}",
                        "active" if start <= now < stop else "",
                    )
                days.setdefault(day, []).append(entry)
                day += timedelta(days=1)
    for found in days.values():
        found.sort(key=lambda e: (e.hours, e.client, e.id))
    return days


@dataclass(frozen=True, slots=True)
class WindowRow:
    id: str
    client: str
    next_start: str
    next_end: str
    next_iso: str
    assets: str
    reason: str
    rrule: str
    ticket: str | None
    plan: str | None
    active: bool
    created_by: str


def window_rows(
    queries: WindowQueries,
    scope: str | None,
    clients: Mapping[str, Client],
    language: str,
) -> list[WindowRow]:
    """The windows running now or still to come, the next first."""
    rows = []
    for window in queries.windows(scope):
        view = queries.view(window)
        if view.occurrence is None:
            continue
        start, end = view.occurrence
        rows.append(
            (
                start,
                WindowRow(
                    window.id,
                    client_label(clients, window.client),
                    when(start, language),
                    when(end, language),
                    iso_moment(start),
                    ", ".join(view.assets),
                    window.reason,
                    window.rrule or "",
                    window.ticket,
                    window.plan,
                    view.active,
                    window.created_by,
                ),
            )
        )
    rows.sort(key=lambda r: (r[0], r[1].id))
    return [r for _, r in rows]


@dataclass(frozen=True, slots=True)
class Services:
    maintenance: Maintenance
    windows: WindowQueries
    plans: PlanQueries
    clients: Mapping[str, Client]
    assets: Mapping[str, Asset]
    clock: Clock


def _anchor(text: str | None, today: date) -> date:
    try:
        return date.fromisoformat(text) if text else today
    except ValueError:
        return today


def _context(
    services: Services, user: WebUser, query: Mapping[str, str], root: str
) -> dict[str, object]:
    """The calendar, the list of windows and the form's choices, read from the services."""
    language = user.language
    now = services.clock.now()
    today = now.astimezone(WARSAW).date()
    view: View = "month" if query.get("view") == "month" else "week"
    anchor = _anchor(query.get("at"), today)
    first, last, start, end = period(view, anchor)
    scope = scope_of(user, query.get("client"))
    shown = [c for c in visible_clients(user, services.clients) if scope in (None, c.id)]
    windows = services.windows.windows(scope)
    plans = services.plans.plans(scope)
    found = entries(windows, plans, first, last, root, now, language)
    days = []
    day = first
    while day < last:
        outside = not start <= day < end
        days.append(Day(day, day_name(day, language), day == today, outside, found.get(day, [])))
        day += timedelta(days=1)
    step = timedelta(days=7) if view == "week" else timedelta(days=31)
    before = start - timedelta(days=1) if view == "month" else anchor - step
    after = end if view == "month" else anchor + step
    t = UI[language]
    if view == "week":
        shown_last = last - timedelta(days=1)
        heading = t["week_of"].format(
            first=day_text(first, language), last=day_text(shown_last, language)
        )
    else:
        heading = f"{t['months'].split(',')[start.month - 1]} {start.year}"
    base = {"view": view, **({"client": scope} if scope and user.client is None else {})}
    return {
        "view": view,
        "heading": heading,
        "days": days,
        "weeks": [days[i : i + 7] for i in range(0, len(days), 7)],
        "rows_by_client": [
            (c, [[e for e in d.entries if e.client == c.id] for d in days]) for c in shown
        ],
        "client_names": {c.id: c.name for c in services.clients.values()},
        "scope": scope,
        "clients": [(c.id, c.name) for c in visible_clients(user, services.clients)],
        "nav_query": {
            "previous": {**base, "at": before.isoformat()},
            "today": base,
            "next": {**base, "at": after.isoformat()},
            "week": {**base, "view": "week", "at": anchor.isoformat()},
            "month": {**base, "view": "month", "at": anchor.isoformat()},
        },
        "anchor": anchor.isoformat(),
        "windows": window_rows(services.windows, scope, services.clients, language),
        "assets": sorted(
            (a for a in services.assets.values() if user.principal.can_see(a.client)),
            key=lambda a: (a.client, a.id),
        ),
        "can_act": user.can_act,
        "show_client": user.client is None,
    }


def get_services(request: Request) -> Services:
    bridge = request.app.state.bridge
    return Services(
        bridge.maintenance,
        bridge.windows,
        bridge.plans,
        bridge.loaded.clients,
        bridge.loaded.assets,
        bridge.clock,
    )


ServicesDep = Annotated[Services, Depends(get_services)]


async def _page(
    request: Request,
    user: WebUser,
    services: Services,
    status: int = 200,
    problem: Problem | None = None,
    query: Mapping[str, str] | None = None,
) -> HTMLResponse:
    t = UI[user.language]
    asked = dict(request.query_params) if query is None else dict(query)
    root = str(request.scope.get("root_path", ""))
    context = await run_in_threadpool(_context, services, user, asked, root)
    done = asked.get("done")
    done_text = ""
    if done in DONE and status == 200:
        done_text = t[f"done_{done}"].format(id=asked.get("id", "")[:32])
    # The form as it was sent (refused), else for the hospital the calendar shows.
    values = dict(problem.values) if problem is not None else {"client": context["scope"] or ""}
    return page(
        request,
        user,
        "maintenance.html",
        t["maintenance_title"],
        "/ui/maintenance",
        status,
        done=done_text,
        problem=problem,
        form={name: values.get(name, "") for name in FORM_FIELDS},
        **context,
    )


@router.get("", response_class=HTMLResponse)
async def calendar(
    request: Request,
    user: PageUser,
    services: ServicesDep,
) -> HTMLResponse:
    return await _page(request, user, services)


def window_request(values: Mapping[str, str]) -> WindowRequest:
    """The form as POST /api/v1/windows reads its body (WindowIn: pydantic's errors), then as
    it makes the request of it."""
    # Here, not at the top: bridge.api's package imports the app, which imports these pages.
    from bridge.api.windows import WindowIn, in_warsaw

    assets = [a for a in values.get("assets", "").replace(",", " ").split() if a]
    body = WindowIn.model_validate(
        {
            "client": values.get("client", ""),
            "start": values.get("start", ""),
            "end": values.get("end", ""),
            "reason": values.get("reason", ""),
            "assets": assets,
            "selector": values.get("selector") or None,
            "rrule": values.get("rrule") or None,
            "ticket": values.get("ticket") or None,
        }
    )
    return WindowRequest(
        client=body.client,
        start=in_warsaw(body.start),
        end=in_warsaw(body.end),
        reason=body.reason,
        assets=body.assets,
        selector=parse_selector(body.selector) if body.selector else {},
        rrule=body.rrule,
        ticket=body.ticket,
    )


def field_errors(error: ValidationError) -> str:
    """pydantic's errors as the API names them: ``start: Input should be ...``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"]
        for e in error.errors()
    )


@router.post("/windows")
async def plan_window(
    request: Request,
    user: ActingUser,
    services: ServicesDep,
) -> Response:
    """Plan a window as the user; refused like the API's (the field at fault, 422, or the
    window it overlaps, 409), shown with the form filled in again."""
    form = await request.form()
    values = {name: str(form.get(name, "")).strip() for name in FORM_FIELDS}
    try:
        asked = window_request(values)
        if not user.principal.can_see(asked.client):
            raise NotFound(f"client: unknown client {asked.client!r}")
        window = await run_in_threadpool(services.maintenance.plan, asked, user.principal.name)
    except ValidationError as exc:
        problem = Problem("plan", field_errors(exc), values)
        return await _page(request, user, services, 422, problem, _after(values))
    except DomainError as exc:
        status = 409 if isinstance(exc, Conflict) else 422
        problem = Problem("plan", str(exc), values)
        return await _page(request, user, services, status, problem, _after(values))
    day = window.start.astimezone(WARSAW).date().isoformat()
    return back_to(request, "/ui/maintenance", at=day, done="planned", id=window.id)


def _after(values: Mapping[str, str]) -> dict[str, str]:
    """The calendar shown with a refused form: the week of the window asked for."""
    start = values.get("start", "")[:10]
    return {"at": start} if start else {}


@router.post("/windows/{window_id}/cancel")
async def cancel_window(
    window_id: str,
    request: Request,
    user: ActingUser,
    services: ServicesDep,
) -> Response:
    """Cancel a window as the user; a stage's window is refused (409: cancel its plan)."""
    t = UI[user.language]
    found = await run_in_threadpool(services.windows.find, window_id)
    if found is None or not user.principal.can_see(found.client):
        return missing(request, user, t["no_window"].format(id=window_id), "/ui/maintenance")
    try:
        await run_in_threadpool(services.maintenance.cancel, window_id, user.principal.name)
    except DomainError as exc:
        status = 409 if isinstance(exc, Conflict) else 422
        return await _page(request, user, services, status, Problem("cancel", str(exc), {}), {})
    return back_to(request, "/ui/maintenance", done="cancelled", id=window_id)
