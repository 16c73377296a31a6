"""Maintenance windows (okna serwisowe): plan, list, show, cancel; and the calendar feed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from bridge.api.deps import (
    CalendarDep,
    Engineer,
    MaintenanceDep,
    Reader,
    WindowsDep,
    basic_or_bearer,
    check_role,
    client_scope,
    visible,
)
from bridge.api.schemas import error_responses
from bridge.auth import Principal, Role
from bridge.clock import WARSAW, local_iso
from bridge.maintenance.planning import WindowNotFound, WindowRequest
from bridge.maintenance.queries import WindowView
from bridge.maintenance.windows import parse_selector
from bridge.models import SuppressedAlert

router = APIRouter(prefix="/api/v1", tags=["maintenance windows"])
NO_WINDOW = error_responses(404, 422, e404="no such window, or another hospital's")


def in_warsaw(when: datetime) -> datetime:
    """A time without an offset is what a person in Poland means: Europe/Warsaw."""
    return when if when.tzinfo is not None else when.replace(tzinfo=WARSAW)


# Windows and update stages are planned inside these years: any plan fits, and every time in
# them converts to and from Europe/Warsaw (year 1 or 9999 in Warsaw leaves what a datetime holds).
EARLIEST_PLAN = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_PLAN = datetime(3000, 1, 1, tzinfo=UTC)


def _plannable(when: datetime) -> datetime:
    when = in_warsaw(when)
    try:
        inside = EARLIEST_PLAN <= when < LATEST_PLAN
    except OverflowError:  # the offset takes it out of what a datetime holds
        inside = False
    if not inside:
        raise ValueError("must be from 1970-01-01 to 2999-12-31 (without an offset: Warsaw)")
    return when


# ISO 8601; without an offset Europe/Warsaw.
PlannedTime = Annotated[datetime, AfterValidator(_plannable)]


def _selector(text: str) -> str:
    try:
        parse_selector(text)
    except ValueError as exc:
        raise ValueError(str(exc).removeprefix("selector: ")) from None
    return text


# key=value pairs, comma-separated: environment=test, kind=amms,environment=prod.
Selector = Annotated[str, Field(max_length=200), AfterValidator(_selector)]


class WindowIn(BaseModel):
    """A window to plan. Times are ISO 8601; without an offset they are Europe/Warsaw."""

    model_config = ConfigDict(extra="forbid")

    client: str = Field(max_length=64)
    start: PlannedTime
    end: PlannedTime
    reason: str = Field(min_length=1, max_length=500)
    assets: list[str] = Field(default_factory=list, max_length=1000)
    selector: Selector | None = Field(None, description="instead of assets, e.g. environment=test")
    rrule: str | None = Field(
        None, max_length=500, description="RFC 5545, e.g. FREQ=WEEKLY;INTERVAL=2;BYDAY=TU"
    )
    ticket: str | None = Field(None, max_length=32, description="a linked ticket number")


class SuppressedOut(BaseModel):
    rule: str
    asset: str
    labels: dict[str, str] = Field(
        description="the alert's labels: two alerts of one rule on one asset differ here "
        "(mountpoint=/var and mountpoint=/data)"
    )
    value: float | None = Field(description="the value that fired it, if the rule has one")
    category: str
    state: str
    fired_at: str
    recovered_at: str | None
    ticket: str | None

    @classmethod
    def of(cls, a: SuppressedAlert) -> SuppressedOut:
        return cls(
            rule=a.rule,
            asset=a.asset,
            labels=dict(sorted(a.labels.items())),
            value=a.value,
            category=a.category.value,
            state=a.state.value,
            fired_at=local_iso(a.fired_at) or "",
            recovered_at=local_iso(a.recovered_at),
            ticket=a.ticket,
        )


class WindowOut(BaseModel):
    """A window; times are ISO 8601 in Europe/Warsaw with their UTC offset."""

    id: str
    client: str
    start: str
    end: str
    reason: str
    assets: list[str]
    selector: str | None
    rrule: str | None
    ticket: str | None
    plan: str | None
    created_by: str
    created_at: str | None
    cancelled_at: str | None
    cancelled_by: str | None
    active: bool
    ended: bool = Field(
        description="no occurrence is left: the last one is over, or the window was cancelled"
    )
    next_start: str | None = Field(description="the occurrence running now or next")
    next_end: str | None
    alerts: list[SuppressedOut] | None = None

    @classmethod
    def of(cls, view: WindowView) -> WindowOut:
        w, occurrence = view.window, view.occurrence
        alerts = None if view.alerts is None else [SuppressedOut.of(a) for a in view.alerts]
        return cls(
            id=w.id,
            client=w.client,
            start=local_iso(w.start) or "",
            end=local_iso(w.end) or "",
            reason=w.reason,
            assets=view.assets,
            selector=",".join(f"{k}={v}" for k, v in w.selector.items()) or None,
            rrule=w.rrule,
            ticket=w.ticket,
            plan=w.plan,
            created_by=w.created_by,
            created_at=local_iso(w.created_at),
            cancelled_at=local_iso(w.cancelled_at),
            cancelled_by=w.cancelled_by,
            active=view.active,
            ended=occurrence is None,
            next_start=local_iso(occurrence[0]) if occurrence else None,
            next_end=local_iso(occurrence[1]) if occurrence else None,
            alerts=alerts,
        )


@router.post(
    "/windows",
    status_code=201,
    response_model=WindowOut,
    responses=error_responses(400, 409, 422, e409="overlaps another window of the same asset"),
)
def plan_window(
    body: WindowIn, principal: Engineer, maintenance: MaintenanceDep, windows: WindowsDep
) -> WindowOut:
    """Plan a window; refused with 409 naming the other window if it overlaps one."""
    request = WindowRequest(
        client=body.client,
        start=in_warsaw(body.start),
        end=in_warsaw(body.end),
        reason=body.reason,
        assets=body.assets,
        selector=parse_selector(body.selector) if body.selector else {},
        rrule=body.rrule,
        ticket=body.ticket,
    )
    return WindowOut.of(windows.view(maintenance.plan(request, principal.name)))


@router.get("/windows", response_model=list[WindowOut], responses=error_responses(422))
def list_windows(
    principal: Reader,
    windows: WindowsDep,
    client: str | None = None,
    include_cancelled: bool = False,
) -> list[WindowOut]:
    """Windows by start (a client token: its own hospital's only)."""
    scope = client_scope(principal, client)
    return [WindowOut.of(windows.view(w)) for w in windows.windows(scope, include_cancelled)]


@router.get("/windows/{window_id}", response_model=WindowOut, responses=NO_WINDOW)
def get_window(window_id: str, principal: Reader, windows: WindowsDep) -> WindowOut:
    """One window with the alerts recorded against it."""
    window = visible(principal, windows.find(window_id), WindowNotFound(window_id))
    return WindowOut.of(windows.view(window, with_alerts=True))


@router.post(
    "/windows/{window_id}/cancel",
    response_model=WindowOut,
    responses={
        **NO_WINDOW,
        **error_responses(409, e409="a stage of an update plan: cancel the plan"),
    },
)
def cancel_window(
    window_id: str, principal: Engineer, maintenance: MaintenanceDep, windows: WindowsDep
) -> WindowOut:
    """Cancel a window; alerts still firing in it open their tickets at the next tick. A
    stage's window of an update plan is refused (409): cancel the plan instead."""
    visible(principal, windows.find(window_id), WindowNotFound(window_id))
    return WindowOut.of(windows.view(maintenance.cancel(window_id, principal.name)))


@router.get("/calendar.ics", response_class=Response)
async def calendar(
    principal: Annotated[Principal, Depends(basic_or_bearer)], feed: CalendarDep
) -> Response:
    """Windows and update stages as iCalendar: every client for engineers, one for a client
    token."""
    check_role(principal, {Role.ENGINEER, Role.ADMIN, Role.CLIENT})
    scope = principal.client if principal.role is Role.CLIENT else None
    body = await run_in_threadpool(feed.ics, scope)
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": 'inline; filename="dyzur.ics"'},
    )
