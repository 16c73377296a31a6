"""A ticket: ``/ui/tickets/{number}`` — its fields, labels and values, timeline, the incident it
belongs to and the alerts recorded against it, where it was delivered; and, for engineers and
admins, the forms that acknowledge it, resolve it (with an optional note) and add a note.

Each form POSTs to an address of its own with the session's CSRF token (``ActingUser``) and
answers 303 back to the ticket (``done`` says what was done); what the desk refuses (a blank
note) is shown on the ticket with the form filled in again. Another hospital's ticket is
missing, as in the API. Every action is the user's: the audit names them.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from bridge.errors import DomainError, NotFound
from bridge.models import IncidentAlert, Ticket
from bridge.tickets.texts import format_value
from bridge.web.layout import (
    Problem,
    TicketReading,
    TicketReadingDep,
    asset_label,
    back_to,
    category,
    client_label,
    iso_moment,
    missing,
    page,
    when,
)
from bridge.web.queue import row_of
from bridge.web.session import ActingUser, PageUser, WebUser
from bridge.web.texts import UI

router = APIRouter(prefix="/ui/tickets", include_in_schema=False)

# What a form did, said on the ticket after its 303.
DONE = ("ack", "resolve", "note")


def _members(alerts: list[IncidentAlert], language: str) -> list[dict[str, object]]:
    t = UI[language]
    return [
        {
            "asset": m.asset,
            "rule": m.rule,
            "title": m.title,
            "category": category(m.category.value, language),
            "reason": t[f"reason_{m.reason.value}"],
            "state": t[f"member_{m.state.value}"],
            "fired": when(m.fired_at, language, seconds=True),
            "recovered": when(m.recovered_at, language, seconds=True) if m.recovered_at else "",
            "value": format_value(m.value, language) if m.value is not None else "",
            "own_ticket": m.own_ticket,
            "labels": ", ".join(f"{k}={v}" for k, v in sorted(m.labels.items())),
        }
        for m in alerts
    ]


def _fields(ticket: Ticket, reading: TicketReading, language: str) -> list[tuple[str, str]]:
    t = UI[language]
    if ticket.responded_at is not None:
        at = when(ticket.responded_at, language, seconds=True)
        responded = t["responded_line"].format(by=ticket.responded_by or "?", at=at)
    else:
        responded = t["not_responded"]
    fields = [
        (t["client"], f"{client_label(reading.clients, ticket.client)} ({ticket.client})"),
        (t["asset"], asset_label(reading.assets, ticket.asset)),
        (t["category"], category(ticket.category.value, language)),
        (t["status"], t["status_open"] if ticket.is_open else t["status_resolved"]),
        (t["opened"], when(ticket.opened_at, language, seconds=True)),
        (t["updated"], when(ticket.updated_at, language, seconds=True)),
        (t["response"], responded),
        (t["sla_state"], t[f"sla_{ticket.sla_state.value}"]),
        (t["rule"], ticket.rule),
        (t["fire_count"], format_value(ticket.fire_count, language)),
        (t["last_value"], format_value(ticket.last_value, language)),
    ]
    if ticket.resolved_at is not None:
        fields.insert(5, (t["resolved"], when(ticket.resolved_at, language, seconds=True)))
    return fields


def _context(reading: TicketReading, user: WebUser, ticket: Ticket) -> dict[str, object]:
    """Everything the ticket page shows, read from the services (in a worker thread)."""
    language = user.language
    now = reading.clock.now()
    calendar = reading.calendar(ticket.client)
    return {
        "ticket": ticket,
        "row": row_of(ticket, now, calendar, reading.clients, reading.assets, language),
        "fields": _fields(ticket, reading, language),
        "labels": sorted(ticket.labels.items()),
        "timeline": [
            {
                "at": when(e.at, language, seconds=True),
                "iso": iso_moment(e.at),
                "kind": e.kind,
                "message": e.message,
                "actor": e.actor,
            }
            for e in reading.desk.timeline(ticket.number)
        ],
        "members": _members(reading.members(ticket.number), language),
        "deliveries": [
            {
                "sink": d.sink,
                "remote": d.remote_id or "—",
                "state": d.state,
                "reason": d.reason or "",
                "at": when(d.at, language, seconds=True),
            }
            for d in reading.desk.deliveries(ticket.number)
        ],
        "can_ack": user.can_act and ticket.is_open and ticket.responded_at is None,
        "can_resolve": user.can_act and ticket.is_open,
        "can_note": user.can_act,
    }


async def _page(
    request: Request,
    user: WebUser,
    number: str,
    reading: TicketReading,
    status: int = 200,
    problem: Problem | None = None,
) -> HTMLResponse:
    t = UI[user.language]
    ticket = await run_in_threadpool(reading.desk.find, number)
    if ticket is None or not user.principal.can_see(ticket.client):
        return missing(request, user, t["no_ticket"].format(number=number), "/ui/")
    context = await run_in_threadpool(_context, reading, user, ticket)
    done = request.query_params.get("done")
    return page(
        request,
        user,
        "ticket.html",
        f"{ticket.number}: {ticket.title}",
        "/ui/",
        status,
        done=t[f"done_{done}"] if done in DONE and status == 200 else "",
        problem=problem,
        **context,
    )


@router.get("/{number}", response_class=HTMLResponse)
async def show(
    number: str, request: Request, user: PageUser, reading: TicketReadingDep
) -> HTMLResponse:
    return await _page(request, user, number, reading)


async def _act(
    request: Request, user: WebUser, number: str, reading: TicketReading, form: str
) -> Response:
    """Do ``form``'s action as the user: back to the ticket, or its page with the refusal."""
    t = UI[user.language]
    text = str((await request.form()).get("text", ""))
    desk, actor = reading.desk, user.principal.name
    found = await run_in_threadpool(desk.find, number)
    if found is None or not user.principal.can_see(found.client):
        return missing(request, user, t["no_ticket"].format(number=number), "/ui/")
    try:
        if form == "ack":
            await run_in_threadpool(desk.acknowledge, number, actor)
        elif form == "resolve":
            await run_in_threadpool(desk.resolve, number, actor, text if text.strip() else None)
        else:
            await run_in_threadpool(desk.note, number, text, actor)
    except NotFound:
        return missing(request, user, t["no_ticket"].format(number=number), "/ui/")
    except DomainError as exc:
        problem = Problem(form, str(exc), {"text": text})
        return await _page(request, user, number, reading, 422, problem)
    return back_to(request, f"/ui/tickets/{number}", done=form)


@router.post("/{number}/ack")
async def acknowledge(
    number: str, request: Request, user: ActingUser, reading: TicketReadingDep
) -> Response:
    """The user's first response: stops the SLA clock (the first one counts)."""
    return await _act(request, user, number, reading, "ack")


@router.post("/{number}/resolve")
async def resolve(
    number: str, request: Request, user: ActingUser, reading: TicketReadingDep
) -> Response:
    """Close the ticket by hand, with the user's note (``text``) first when one is given."""
    return await _act(request, user, number, reading, "resolve")


@router.post("/{number}/note")
async def note(
    number: str, request: Request, user: ActingUser, reading: TicketReadingDep
) -> Response:
    """A line of the user's on the ticket's timeline (audited ``ticket.note``)."""
    return await _act(request, user, number, reading, "note")
