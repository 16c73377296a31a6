"""Tickets: list, show, acknowledge, resolve. A hospital's token sees only its own tickets."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from bridge.api.deps import client_scope, get_bridge, require
from bridge.api.schemas import INT64_MAX, TicketOut, error_responses
from bridge.auth import Principal, Role
from bridge.models import Category, Ticket, TicketStatus
from bridge.service import Bridge
from bridge.store import TicketFilter
from bridge.tickets.lifecycle import TicketNotFound

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])
readers = require(Role.ENGINEER, Role.CLIENT)
engineers = require(Role.ENGINEER)
NO_TICKET = error_responses(404, 422, e404="no such ticket, or another hospital's")


def _visible(bridge: Bridge, number: str, principal: Principal) -> Ticket:
    ticket = bridge.store.get_ticket(number)
    # Another hospital's ticket is reported as missing, so its existence does not leak.
    if ticket is None or not principal.can_see(ticket.client):
        raise HTTPException(404, f"no ticket {number}")
    return ticket


NEXT_PAGE = {
    "Link": {
        "description": "The next page's URL when more tickets follow: "
        '`</api/v1/tickets?limit=100&before=DZ-2026-000123>; rel="next"`',
        "schema": {"type": "string"},
    }
}


@router.get(
    "",
    response_model=list[TicketOut],
    responses={200: {"headers": NEXT_PAGE}, **error_responses(422)},
)
def list_tickets(
    request: Request,
    response: Response,
    client: str | None = None,
    status: TicketStatus | None = None,
    category: Category | None = None,
    asset: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=INT64_MAX),
    before: str | None = Query(
        None,
        max_length=64,
        description="Keyset cursor: the number of the last ticket of the previous page; the "
        "list continues right after it. The `Link` header of a full page carries it.",
    ),
    principal: Principal = Depends(readers),
    bridge: Bridge = Depends(get_bridge),
) -> list[TicketOut]:
    """Tickets, newest first. A client token may filter only by its own client. When more
    tickets follow, the `Link` header (rel="next") gives the next page's URL (`before=`)."""
    scope = client_scope(principal, client)
    if before is not None:
        cursor = bridge.store.get_ticket(before)
        # A cursor outside the listed client is refused; another hospital's ticket is reported
        # as missing, so its existence does not leak.
        if (
            cursor is None
            or not principal.can_see(cursor.client)
            or scope not in (None, cursor.client)
        ):
            raise RequestValidationError(
                [{"loc": ("query", "before"), "msg": f"no ticket {before}", "type": "value_error"}]
            )
    query = TicketFilter(scope, status, category, asset, limit + 1, offset, before)
    tickets = bridge.store.list_tickets(query)
    if len(tickets) > limit:
        tickets = tickets[:limit]
        url = request.url.remove_query_params("offset").include_query_params(
            before=tickets[-1].number
        )
        response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    return [TicketOut.of(t) for t in tickets]


@router.get("/{number}", response_model=TicketOut, responses=NO_TICKET)
def get_ticket(
    number: str, principal: Principal = Depends(readers), bridge: Bridge = Depends(get_bridge)
) -> TicketOut:
    """One ticket with its timeline."""
    ticket = _visible(bridge, number, principal)
    return TicketOut.of(ticket, bridge.store.timeline(number))


async def _act(bridge: Bridge, number: str, action) -> TicketOut:
    try:
        ticket = await run_in_threadpool(action)
    except TicketNotFound:
        raise HTTPException(404, f"no ticket {number}") from None
    return TicketOut.of(ticket, await run_in_threadpool(bridge.store.timeline, number))


@router.post("/{number}/ack", response_model=TicketOut, responses=NO_TICKET)
async def acknowledge(
    number: str, principal: Principal = Depends(engineers), bridge: Bridge = Depends(get_bridge)
) -> TicketOut:
    """An engineer's first response; the first one counts, repeating it changes nothing."""
    return await _act(bridge, number, lambda: bridge.acknowledge(number, principal.name))


@router.post("/{number}/resolve", response_model=TicketOut, responses=NO_TICKET)
async def resolve(
    number: str, principal: Principal = Depends(engineers), bridge: Bridge = Depends(get_bridge)
) -> TicketOut:
    """Close a ticket by hand (for example one a keep_open rule left open)."""
    return await _act(bridge, number, lambda: bridge.lifecycle.resolve(number, principal.name))
