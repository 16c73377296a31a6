"""Incidents (issue 18): the open incidents per hospital, the alerts held for a root cause,
and splitting an attached alert out into a ticket of its own. Scoped like tickets: a
hospital's token sees only its own hospital's, and another hospital's ticket is missing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from starlette.concurrency import run_in_threadpool

from bridge.api.deps import Reader, TicketsDep, check_role, client_scope, visible
from bridge.api.schemas import HeldAlertOut, IncidentOut, SplitIn, TicketOut, error_responses
from bridge.auth import Role
from bridge.tickets.incident_desk import IncidentDesk
from bridge.tickets.lifecycle import TicketNotFound

router = APIRouter(prefix="/api/v1", tags=["incidents"])


def get_incidents(request: Request) -> IncidentDesk:
    return request.app.state.bridge.incidents


IncidentsDep = Annotated[IncidentDesk, Depends(get_incidents)]
ClientQuery = Query(
    None, max_length=200, description="only this hospital's (a client token: its own only)"
)


@router.get("/incidents", response_model=list[IncidentOut], responses=error_responses(422))
async def list_incidents(
    principal: Reader, incidents: IncidentsDep, client: str | None = ClientQuery
) -> list[IncidentOut]:
    """Open incidents, by hospital and then oldest first: each with its ticket, its kind
    (`dependency`, `storm`, `group`), its root asset, the alerts recorded against it instead
    of tickets of their own, the tickets it explains, and counts. A client token sees its own
    hospital's and may filter only by its own client."""
    scope = client_scope(principal, client)
    found = await run_in_threadpool(incidents.open_incidents, scope)
    return [IncidentOut.of(v) for v in found]


@router.get("/incidents/held", response_model=list[HeldAlertOut], responses=error_responses(422))
async def list_held(
    principal: Reader, incidents: IncidentsDep, client: str | None = ClientQuery
) -> list[HeldAlertOut]:
    """Alerts of dependent assets held for their root cause (no ticket yet), by hospital and
    then oldest first. Scoped like GET /api/v1/incidents."""
    scope = client_scope(principal, client)
    held = await run_in_threadpool(incidents.held, scope)
    return [HeldAlertOut.of(h) for h in held]


@router.post(
    "/tickets/{number}/split",
    response_model=TicketOut,
    status_code=status.HTTP_201_CREATED,
    tags=["tickets"],
    responses=error_responses(
        400,
        404,
        409,
        422,
        e404="no such ticket (or another hospital's), or no such firing alert on it",
        e409="the alert's asset is in a maintenance window: it opens its ticket when it ends",
    ),
)
async def split(
    number: str,
    body: SplitIn,
    principal: Reader,
    tickets: TicketsDep,
    incidents: IncidentsDep,
) -> TicketOut:
    """An alert attached to this ticket (a storm's, a root cause's) gets a ticket of its own
    now, with the reaction deadline it would have had (from the alert's first firing).
    Engineers and admins; audited (`incident.alert_split`) with the token's name."""
    # Another hospital's ticket is missing for a client token, as everywhere; its own is
    # refused for its role.
    visible(principal, await run_in_threadpool(tickets.find, number), TicketNotFound(number))
    check_role(principal, {Role.ENGINEER, Role.ADMIN})
    ticket = await run_in_threadpool(incidents.split, number, body.alert, principal.name)
    return TicketOut.of(ticket, await run_in_threadpool(tickets.timeline, ticket.number))
