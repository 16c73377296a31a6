"""The queue: ``/ui/``, the open tickets of every hospital (a hospital user: its own) by
reaction deadline, the most urgent first, with the time left in service time — amber once at
risk, red once breached. Filters by hospital, category, status and asset are a GET form; the
table (``/ui/queue/table``, the same filters) is re-fetched every 30 s by the pages' script, or
the page reloads itself without scripts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from bridge.models import Asset, Category, Client, SlaState, Ticket, TicketStatus
from bridge.store import TicketFilter
from bridge.tickets.sla import ServiceCalendar
from bridge.web.layout import (
    TicketReading,
    TicketReadingDep,
    asset_label,
    category,
    client_label,
    fragment,
    iso_moment,
    page,
    scope_of,
    span,
    visible_clients,
    when,
)
from bridge.web.session import PageUser, WebUser
from bridge.web.texts import UI

router = APIRouter(prefix="/ui", include_in_schema=False)

PAGE_SIZE = 200  # rows per page: the most urgent first; more behind "next page"
REFRESH_SECONDS = 30


@dataclass(frozen=True, slots=True)
class Filters:
    """The queue's filters as asked (a value that names nothing is dropped)."""

    client: str | None
    category: Category | None
    status: TicketStatus
    asset: str | None
    page: int

    @classmethod
    def read(
        cls,
        user: WebUser,
        client: str | None,
        category_code: str | None,
        status: str | None,
        asset: str | None,
        page_number: str | None,
    ) -> Filters:
        try:
            chosen = Category(category_code) if category_code else None
        except ValueError:
            chosen = None
        shown = (
            TicketStatus.RESOLVED if status == TicketStatus.RESOLVED.value else TicketStatus.OPEN
        )
        try:
            number = max(1, min(int(page_number or 1), 10_000))
        except ValueError:
            number = 1
        return cls(
            scope_of(user, (client or "").strip()),
            chosen,
            shown,
            (asset or "").strip()[:64] or None,
            number,
        )

    def query(self, page_number: int | None = None) -> dict[str, str]:
        """The filters as the form sends them (for links to pages and the table)."""
        query = {
            "client": self.client or "",
            "category": self.category.value if self.category else "",
            "status": self.status.value,
            "asset": self.asset or "",
        }
        if page_number is not None and page_number > 1:
            query["page"] = str(page_number)
        return {k: v for k, v in query.items() if v}


@dataclass(frozen=True, slots=True)
class Row:
    """One ticket as the queue shows it; ``state`` is the row's colour (and says it in words
    too): breached, at_risk, running, paused (outside service hours), answered, none,
    resolved."""

    number: str
    title: str
    client: str
    asset: str
    category: str
    category_code: str
    due: str
    due_iso: str
    left: str
    state: str
    status: str


def row_of(
    ticket: Ticket,
    now: datetime,
    calendar: ServiceCalendar,
    clients: Mapping[str, Client],
    assets: Mapping[str, Asset],
    language: str,
) -> Row:
    t = UI[language]
    due = ticket.reaction_due
    if not ticket.is_open:
        state, left = "resolved", "—"
        status = t["status_resolved_at"].format(at=when(ticket.resolved_at, language))
    elif ticket.responded_at is not None:
        late = ticket.sla_state is SlaState.BREACHED
        state, left = "answered", t["left_late"] if late else t["left_met"]
        status = t["status_acknowledged"].format(by=ticket.responded_by or "?")
    elif due is None:
        state, left, status = "none", t["left_no_clock"], t["status_waiting"]
    elif now >= due:
        state, left, status = "breached", t["left_breached"], t["status_waiting"]
    else:
        at_risk = ticket.sla_state is SlaState.AT_RISK or (
            ticket.sla_at_risk_at is not None and now >= ticket.sla_at_risk_at
        )
        left = span(calendar.between(now, due), language)
        if at_risk:
            state, left = "at_risk", t["left_at_risk"].format(left=left)
        elif not calendar.covers(now):
            state, left = "paused", t["left_paused"].format(left=left)
        else:
            state = "running"
        status = t["status_waiting"]
    return Row(
        number=ticket.number,
        title=ticket.title,
        client=client_label(clients, ticket.client),
        asset=asset_label(assets, ticket.asset),
        category=category(ticket.category.value, language),
        category_code=ticket.category.value,
        due=when(due, language),
        due_iso=iso_moment(due),
        left=left,
        state=state,
        status=status,
    )


def queue_rows(
    reading: TicketReading, filters: Filters, now: datetime, language: str
) -> tuple[list[Row], bool]:
    """One page of the queue and whether another follows. Open tickets by deadline (the store
    sorts and pages them); resolved ones newest first."""
    query = TicketFilter(
        filters.client,
        filters.status,
        filters.category,
        filters.asset,
        limit=PAGE_SIZE + 1,
        offset=(filters.page - 1) * PAGE_SIZE,
        by_deadline=filters.status is TicketStatus.OPEN,
    )
    found = reading.desk.matching(query)
    rows = [
        row_of(t, now, reading.calendar(t.client), reading.clients, reading.assets, language)
        for t in found[:PAGE_SIZE]
    ]
    return rows, len(found) > PAGE_SIZE


async def _table_context(
    request: Request, user: WebUser, reading: TicketReading
) -> dict[str, object]:
    p = request.query_params
    filters = Filters.read(
        user, p.get("client"), p.get("category"), p.get("status"), p.get("asset"), p.get("page")
    )
    now = reading.clock.now()
    rows, more = await run_in_threadpool(queue_rows, reading, filters, now, user.language)
    first = (filters.page - 1) * PAGE_SIZE
    return {
        "filters": filters,
        "rows": rows,
        "first": first + 1 if rows else 0,
        "last": first + len(rows),
        "previous_query": filters.query(filters.page - 1) if filters.page > 1 else None,
        "next_query": filters.query(filters.page + 1) if more else None,
        "as_of": when(now, user.language, seconds=True),
        "table_query": filters.query(filters.page),
        "show_client": user.client is None,
    }


@router.get("/", response_class=HTMLResponse)
async def queue(request: Request, user: PageUser, reading: TicketReadingDep) -> HTMLResponse:
    """The queue with its filter form."""
    context = await _table_context(request, user, reading)
    t = UI[user.language]
    assets = sorted(a.id for a in reading.assets.values() if user.principal.can_see(a.client))
    return page(
        request,
        user,
        "queue.html",
        t["queue_title"],
        "/ui/",
        clients=[(c.id, c.name) for c in visible_clients(user, reading.clients)],
        categories=[(c.value, category(c.value, user.language)) for c in Category],
        statuses=[("open", t["filter_open"]), ("resolved", t["filter_resolved"])],
        assets=assets,
        refresh=REFRESH_SECONDS,
        **context,
    )


@router.get("/queue/table", response_class=HTMLResponse)
async def queue_table(request: Request, user: PageUser, reading: TicketReadingDep) -> HTMLResponse:
    """The queue's table alone, for the script's refresh."""
    context = await _table_context(request, user, reading)
    return fragment(request, user, "queue_table.html", **context)
