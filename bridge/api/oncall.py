"""On call (dyżur): who is on duty, overrides, and a person's calendar feed."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from bridge.api.deps import Engineer, Reader, basic_or_bearer, check_role, client_scope
from bridge.api.schemas import error_responses
from bridge.api.windows import PlannedTime, in_warsaw
from bridge.auth import Principal, Role
from bridge.clock import local_iso
from bridge.delivery.oncall.desk import DutyRow, OncallDesk, OncallOverride, SwapRequest
from bridge.delivery.oncall.rota import PRIMARY
from bridge.models import ID_PATTERN, AssetKind

router = APIRouter(prefix="/api/v1", tags=["on call"])


def get_oncall(request: Request) -> OncallDesk:
    return request.app.state.bridge.oncall


OncallDep = Annotated[OncallDesk, Depends(get_oncall)]


class PersonOut(BaseModel):
    id: str
    name: str


class DutyOut(BaseModel):
    """Who is on duty in one rota for a hospital and asset kind; person null: nobody. Times
    are ISO 8601 in Europe/Warsaw with their offset: the shift's period (or the override's
    within it) that contains the moment asked about."""

    rota: str
    client: str
    kind: str
    person: PersonOut | None
    start: str | None
    end: str | None
    override: bool = Field(description="handed to this person by an override")

    @classmethod
    def of(cls, row: DutyRow) -> DutyOut:
        d = row.duty
        return cls(
            rota=row.rota,
            client=row.client,
            kind=row.kind,
            person=None if d is None else PersonOut(id=d.person.id, name=d.person.name),
            start=None if d is None else local_iso(d.start),
            end=None if d is None else local_iso(d.end),
            override=d is not None and d.override,
        )


class OverrideIn(BaseModel):
    """Hand ``shift_person``'s duty from ``start`` to ``end`` to ``person``. Times are ISO
    8601; without an offset they are Europe/Warsaw."""

    model_config = ConfigDict(extra="forbid")

    shift_person: str = Field(max_length=64, description="whose shift it is")
    person: str = Field(max_length=64, description="who takes it over")
    start: PlannedTime
    end: PlannedTime
    reason: str = Field(min_length=1, max_length=500, description="why (kept in the audit)")
    client: str | None = Field(None, max_length=64, description="only this hospital's duty")
    rota: str = Field(PRIMARY, pattern=ID_PATTERN)


class OverrideOut(BaseModel):
    id: int
    rota: str
    shift_person: str
    person: str
    start: str
    end: str
    client: str | None
    reason: str
    created_by: str
    created_at: str

    @classmethod
    def of(cls, o: OncallOverride) -> OverrideOut:
        return cls(
            id=o.id,
            rota=o.rota,
            shift_person=o.shift_person,
            person=o.person,
            start=local_iso(o.start) or "",
            end=local_iso(o.end) or "",
            client=o.client,
            reason=o.reason,
            created_by=o.created_by,
            created_at=local_iso(o.created_at) or "",
        )


@router.get("/oncall", response_model=list[DutyOut], responses=error_responses(422))
def on_duty(
    principal: Reader,
    oncall: OncallDep,
    at: Annotated[
        PlannedTime | None,
        Query(description="ISO 8601; without an offset Europe/Warsaw; default: now"),
    ] = None,
    client: str | None = None,
    kind: AssetKind | None = None,
) -> list[DutyOut]:
    """Who is on duty at ``at`` in every rota, for each hospital (a hospital token: its own)
    and each kind of its assets, or the ones asked for; a row without a person: nobody."""
    scope = client_scope(principal, client)
    moment: datetime = in_warsaw(at) if at is not None else oncall.clock.now()
    return [DutyOut.of(row) for row in oncall.on_duty(moment, scope, kind)]


@router.post(
    "/oncall/overrides",
    status_code=201,
    response_model=OverrideOut,
    responses=error_responses(400, 422),
)
def add_override(body: OverrideIn, principal: Engineer, oncall: OncallDep) -> OverrideOut:
    """Hand a period of a person's shifts to another person (audited as ``oncall.override``
    with who asked and why); 422 naming the field when refused."""
    request = SwapRequest(
        shift_person=body.shift_person,
        person=body.person,
        start=in_warsaw(body.start),
        end=in_warsaw(body.end),
        reason=body.reason,
        client=body.client,
        rota=body.rota,
    )
    return OverrideOut.of(oncall.swap(request, principal.name))


@router.get(
    "/oncall/{person}.ics",
    response_class=Response,
    responses=error_responses(404, 422, e404="no such person in oncall.people"),
)
async def person_calendar(
    person: str,
    principal: Annotated[Principal, Depends(basic_or_bearer)],
    oncall: OncallDep,
) -> Response:
    """A person's periods on duty as iCalendar (two weeks back, four months ahead), for
    engineers; a calendar program may use HTTP Basic with the token as password."""
    check_role(principal, {Role.ENGINEER, Role.ADMIN})
    body = await run_in_threadpool(oncall.ics, person)
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'inline; filename="dyzur-{person}.ics"'},
    )
