"""The page behind the link in an on-call page: ``/oncall/ack/{token}``.

GET shows the ticket and a button and changes nothing (mail scanners open links); the button
POSTs to the same address, which acknowledges the ticket as the paged person. No session: the
one-time token is the credential. A link that is not accepted gets a page saying so in both
languages (4xx), and nothing changes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from bridge.delivery.oncall.responses import (
    Acknowledged,
    LinkNotAccepted,
    LinkView,
    PageResponses,
    Refusal,
)
from bridge.delivery.sinks.message import local_datetime
from bridge.models import Client, Ticket
from bridge.service import Bridge
from bridge.store import StoreError
from bridge.tickets.texts import category_name
from bridge.web.pages import foreign_form, render
from bridge.web.texts import LANGUAGES, ONCALL, REFUSED

router = APIRouter(prefix="/oncall", include_in_schema=False)

# The answer to each refusal: the reader learns what to do, a forger nothing.
REFUSAL_STATUS = {
    Refusal.INVALID: 404,
    Refusal.EXPIRED: 410,
    Refusal.USED: 409,
    Refusal.FOREIGN: 403,
}


class Pages:
    """What the on-call pages read: the link's service and the names of hospitals and assets."""

    def __init__(self, bridge: Bridge) -> None:
        self.responses: PageResponses | None = bridge.page_responses
        self.clients = bridge.loaded.clients
        self.assets = bridge.loaded.assets
        self.public_url = bridge.config.public_url


def get_pages(request: Request) -> Pages:
    return Pages(request.app.state.bridge)


PagesDep = Annotated[Pages, Depends(get_pages)]


def _source(request: Request) -> str:
    return request.client.host if request.client else "?"


@router.get("/ack/{token}", response_class=HTMLResponse)
async def show(token: str, request: Request, pages: PagesDep) -> HTMLResponse:
    """The ticket and the button that acknowledges it; changes nothing."""
    if pages.responses is None:
        return refused(request, Refusal.INVALID)
    try:
        view = await run_in_threadpool(pages.responses.look, token, _source(request))
    except LinkNotAccepted as exc:
        return refused(request, exc.refusal)
    except StoreError:
        return unavailable(request)
    return ticket_page(request, pages, view)


@router.post("/ack/{token}", response_class=HTMLResponse)
async def acknowledge(token: str, request: Request, pages: PagesDep) -> HTMLResponse:
    """Acknowledge the ticket as the paged person; the link is used."""
    if pages.responses is None:
        return refused(request, Refusal.INVALID)
    if foreign_form(request, pages.public_url):
        await run_in_threadpool(pages.responses.foreign_form, _source(request))
        return refused(request, Refusal.FOREIGN)
    try:
        done = await run_in_threadpool(pages.responses.acknowledge, token, _source(request))
    except LinkNotAccepted as exc:
        return refused(request, exc.refusal)
    except StoreError:
        return unavailable(request)
    return done_page(request, pages, done)


# --- the pages -------------------------------------------------------------------------------


def ticket_fields(pages: Pages, ticket: Ticket, language: str) -> list[tuple[str, str]]:
    """The ticket as the page lists it: number, hospital, asset, category, title, reaction
    deadline (Warsaw time) and status."""
    t = ONCALL[language]
    client: Client | None = pages.clients.get(ticket.client)
    asset = pages.assets.get(ticket.asset)
    due = ticket.reaction_due
    return [
        (t["ticket"], ticket.number),
        (t["client"], f"{client.name} ({client.id})" if client else ticket.client),
        (t["asset"], f"{asset.id} ({asset.name})" if asset and asset.name else ticket.asset),
        (t["category"], category_name(language, ticket.category.value)),
        (t["subject"], ticket.title),
        (t["due"], local_datetime(due, language) if due is not None else t["no_due"]),
        (t["status"], t[ticket.status.value]),
    ]


def _responded(ticket: Ticket, language: str) -> str:
    at: datetime = ticket.responded_at  # type: ignore[assignment]
    by = ticket.responded_by or "?"
    return ONCALL[language]["responded"].format(by=by, at=local_datetime(at, language))


def ticket_page(request: Request, pages: Pages, view: LinkView) -> HTMLResponse:
    ticket, person = view.ticket, view.person
    language = person.language
    t = ONCALL[language]
    answered = ticket.responded_at is not None
    return render(
        request,
        "oncall_ticket.html",
        200,
        language,
        title=t["title"].format(number=ticket.number),
        greeting="" if answered else t["greeting"].format(name=person.name),
        note=_responded(ticket, language) if answered else "",
        note_class="done",
        fields=ticket_fields(pages, ticket, language),
        button="" if answered else t["button"],
        button_note=t["button_note"],
        step_note=t["step_note"].format(step=view.step + 1),
    )


def done_page(request: Request, pages: Pages, done: Acknowledged) -> HTMLResponse:
    ticket, person = done.ticket, done.person
    language = person.language
    t = ONCALL[language]
    if done.first:
        at = local_datetime(ticket.responded_at, language)  # type: ignore[arg-type]
        title = t["done_title"].format(number=ticket.number)
        note = t["done"].format(name=person.name, at=at)
    else:
        title = t["already_title"].format(number=ticket.number)
        note = t["already"].format(
            by=ticket.responded_by or "?",
            at=local_datetime(ticket.responded_at, language),  # type: ignore[arg-type]
        )
    return render(
        request,
        "oncall_ticket.html",
        200,
        language,
        title=title,
        greeting="",
        note=note,
        note_class="done" if done.first else "warn",
        fields=ticket_fields(pages, ticket, language),
        button="",
        button_note="",
        step_note="",
    )


def refused(request: Request, refusal: Refusal) -> HTMLResponse:
    """The page of a link that is not accepted, in both languages: the link's person is not
    trusted, so neither is their language."""
    reasons = [(*REFUSED[lang][refusal.value], lang) for lang in LANGUAGES]
    return render(
        request, "refused.html", REFUSAL_STATUS[refusal], "pl", title=reasons[0][0], reasons=reasons
    )


def unavailable(request: Request) -> HTMLResponse:
    reasons = [
        (ONCALL[lang]["unavailable_title"], ONCALL[lang]["unavailable"], lang) for lang in LANGUAGES
    ]
    response = render(request, "refused.html", 503, "pl", title=reasons[0][0], reasons=reasons)
    response.headers["Retry-After"] = "5"
    return response
