"""Tickets: list, show, acknowledge, resolve, write a note. A hospital's token sees only its own
tickets."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from bridge.api.deps import Engineer, Reader, TicketsDep, client_scope, visible
from bridge.api.schemas import INT64_MAX, NoteIn, ResolveIn, TicketOut, error_responses
from bridge.models import Category, TicketStatus
from bridge.store import TicketFilter
from bridge.tickets.lifecycle import TicketNotFound

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])
NO_TICKET = error_responses(404, 422, e404="no such ticket, or another hospital's")
WITH_A_BODY = error_responses(400, 404, 422, e404="no such ticket, or another hospital's")


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
    principal: Reader,
    tickets: TicketsDep,
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
) -> list[TicketOut]:
    """Tickets, newest first. A client token may filter only by its own client. When more
    tickets follow, the `Link` header (rel="next") gives the next page's URL (`before=`)."""
    scope = client_scope(principal, client)
    if before is not None:
        cursor = tickets.find(before)
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
    found = tickets.matching(query)
    if len(found) > limit:
        found = found[:limit]
        url = request.url.remove_query_params("offset").include_query_params(
            before=found[-1].number
        )
        response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    return [TicketOut.of(t) for t in found]


@router.get("/{number}", response_model=TicketOut, responses=NO_TICKET)
def get_ticket(number: str, principal: Reader, tickets: TicketsDep) -> TicketOut:
    """One ticket with its timeline and where it was delivered (helpdesk sinks)."""
    ticket = visible(principal, tickets.find(number), TicketNotFound(number))
    return TicketOut.of(ticket, tickets.timeline(number), tickets.deliveries(number))


@router.post("/{number}/ack", response_model=TicketOut, responses=NO_TICKET)
async def acknowledge(number: str, principal: Engineer, tickets: TicketsDep) -> TicketOut:
    """An engineer's first response; the first one counts, repeating it changes nothing."""
    ticket = await run_in_threadpool(tickets.acknowledge, number, principal.name)
    return TicketOut.of(ticket, await run_in_threadpool(tickets.timeline, number))


@router.post("/{number}/resolve", response_model=TicketOut, responses=WITH_A_BODY)
async def resolve(
    number: str, principal: Engineer, tickets: TicketsDep, body: ResolveIn | None = None
) -> TicketOut:
    """Close a ticket by hand (for example one a keep_open rule left open). The body is
    optional: `{"note": "..."}` writes the engineer's note on the timeline first (also on a
    ticket already resolved, which otherwise stays as it is)."""
    note = body.note if body is not None else None
    ticket = await run_in_threadpool(tickets.resolve, number, principal.name, note)
    return TicketOut.of(ticket, await run_in_threadpool(tickets.timeline, number))


@router.post("/{number}/notes", response_model=TicketOut, status_code=201, responses=WITH_A_BODY)
async def add_note(
    number: str, body: NoteIn, principal: Engineer, tickets: TicketsDep
) -> TicketOut:
    """An engineer's note on the ticket's timeline (kind `note`, by the token's name; audited
    as `ticket.note`), on an open or a resolved ticket. One line of at most 2000 characters:
    a control character (a line break, an escape, a bidirectional override) is refused (422,
    `body.text`). Answers the ticket with its timeline."""
    ticket = await run_in_threadpool(tickets.note, number, body.text, principal.name)
    return TicketOut.of(ticket, await run_in_threadpool(tickets.timeline, number))
