"""Agents: ``/ui/agents`` — every agent's stream of numbered batches (last seen, batches,
samples, duplicates, gaps, sequence jumps, the samples the agent says it dropped from a full
spool), and the assets that went silent: the open tickets of absence rules (``agent_silent``).
A hospital user sees the streams of its own assets only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from bridge.clock import Clock
from bridge.models import AgentStream, Asset, Client, Ticket, TicketStatus
from bridge.sources.samples import Ingestor
from bridge.store import TicketFilter
from bridge.tickets.desk import TicketDesk
from bridge.web.layout import (
    asset_label,
    client_label,
    iso_moment,
    number,
    page,
    scope_of,
    span,
    when,
)
from bridge.web.session import PageUser, WebUser
from bridge.web.texts import UI
from rules.model import Rule

router = APIRouter(prefix="/ui/agents", include_in_schema=False)

QUIET = timedelta(minutes=5)  # a stream not heard from for this long is shown as quiet
READ_PAGE = 1000  # open tickets are read in pages of this many


@dataclass(frozen=True, slots=True)
class AgentServices:
    ingestor: Ingestor
    desk: TicketDesk
    rule_of: Callable[[str], Rule | None]
    clients: Mapping[str, Client]
    assets: Mapping[str, Asset]
    clock: Clock


def get_agent_services(request: Request) -> AgentServices:
    bridge = request.app.state.bridge
    return AgentServices(
        bridge.ingestor,
        bridge.tickets,
        bridge.ingestor.rule_of,
        bridge.loaded.clients,
        bridge.loaded.assets,
        bridge.clock,
    )


AgentServicesDep = Annotated[AgentServices, Depends(get_agent_services)]


def silent_tickets(services: AgentServices, scope: str | None) -> list[Ticket]:
    """The open tickets of absence rules: assets that stopped reporting, the longest silent
    first."""
    found: list[Ticket] = []
    offset = 0
    while True:
        batch = services.desk.matching(
            TicketFilter(scope, TicketStatus.OPEN, limit=READ_PAGE, offset=offset)
        )
        for ticket in batch:
            rule = services.rule_of(ticket.rule)
            if rule is not None and rule.absent_seconds is not None:
                found.append(ticket)
        if len(batch) < READ_PAGE:
            break
        offset += READ_PAGE
    found.sort(key=lambda t: (t.opened_at, t.number))
    return found


def _context(services: AgentServices, user: WebUser) -> dict[str, object]:
    language = user.language
    now = services.clock.now()
    scope = scope_of(user, None)

    def shown(stream: AgentStream) -> bool:
        asset = services.assets.get(stream.asset)
        if user.client is None:
            return True
        return asset is not None and asset.client == user.client

    silent = silent_tickets(services, scope)
    silent_assets = {t.asset for t in silent}
    streams = sorted(
        (s for s in services.ingestor.agent_streams() if shown(s)),
        key=lambda s: (s.last_seen, s.agent_id),
    )
    return {
        "streams": [_stream(s, services, now, silent_assets, language) for s in streams],
        "silent": [
            {
                "number": t.number,
                "title": t.title,
                "client": client_label(services.clients, t.client),
                "asset": asset_label(services.assets, t.asset),
                "since": when(t.opened_at, language),
                "for": span(now - t.opened_at, language),
                "responded": t.responded_by or "",
            }
            for t in silent
        ],
        "show_client": user.client is None,
    }


def _stream(
    s: AgentStream,
    services: AgentServices,
    now: datetime,
    silent_assets: set[str],
    language: str,
) -> dict[str, object]:
    t = UI[language]
    asset = services.assets.get(s.asset)
    quiet = now - s.last_seen
    if s.asset in silent_assets:
        state = "silent"
    elif quiet >= QUIET:
        state = "quiet"
    else:
        state = "ok"
    return {
        "agent": s.agent_id,
        "asset": asset_label(services.assets, s.asset),
        "client": client_label(services.clients, asset.client) if asset else "—",
        "owner": s.owner or "—",
        "first_seen": when(s.first_seen, language),
        "last_seen": when(s.last_seen, language, seconds=True),
        "last_iso": iso_moment(s.last_seen),
        "ago": t["ago"].format(span=span(quiet, language)) if quiet.total_seconds() > 0 else "",
        "batches": number(s.batches, language),
        "samples": number(s.samples, language),
        "duplicates": number(s.duplicates, language),
        "gaps": number(s.gaps, language),
        "anomalies": number(s.anomalies, language),
        "dropped": number(s.dropped_reported, language),
        "lossy": s.gaps > 0 or s.dropped_reported > 0,
        "state": state,
        "state_text": t[f"stream_{state}"],
    }


@router.get("", response_class=HTMLResponse)
async def agents(request: Request, user: PageUser, services: AgentServicesDep) -> HTMLResponse:
    t = UI[user.language]
    context = await run_in_threadpool(_context, services, user)
    return page(request, user, "agents.html", t["agents_title"], "/ui/agents", **context)
