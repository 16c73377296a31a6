"""Incidents: ``/ui/incidents`` — the open incidents per hospital (a root cause's ticket with
the alerts of its dependents attached, a hospital's storm ticket, one asset's group ticket) and
the alerts held for their root cause, as ``GET /api/v1/incidents`` and ``/incidents/held``
list them. A hospital user sees its own hospital's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from bridge.models import Asset, Client
from bridge.tickets.incident_desk import IncidentDesk
from bridge.web.layout import asset_label, category, client_label, page, scope_of, when
from bridge.web.session import PageUser, WebUser
from bridge.web.texts import UI

router = APIRouter(prefix="/ui/incidents", include_in_schema=False)


@dataclass(frozen=True, slots=True)
class IncidentServices:
    incidents: IncidentDesk
    clients: Mapping[str, Client]
    assets: Mapping[str, Asset]


def get_incident_services(request: Request) -> IncidentServices:
    bridge = request.app.state.bridge
    return IncidentServices(bridge.incidents, bridge.loaded.clients, bridge.loaded.assets)


IncidentServicesDep = Annotated[IncidentServices, Depends(get_incident_services)]


def _context(services: IncidentServices, user: WebUser) -> dict[str, object]:
    language = user.language
    t = UI[language]
    scope = scope_of(user, None)
    views = services.incidents.open_incidents(scope)
    held = services.incidents.held(scope)
    return {
        "incidents": [
            {
                "number": v.ticket.number,
                "title": v.ticket.title,
                "client": client_label(services.clients, v.ticket.client),
                "kind": t[f"incident_{v.kind.value}"],
                "root": asset_label(services.assets, v.root) if v.root else "—",
                "category": category(v.ticket.category.value, language),
                "opened": when(v.ticket.opened_at, language),
                "firing": v.firing,
                "recovered": v.recovered,
                "released": v.released,
                "explains": v.explains,
            }
            for v in views
        ],
        "held": [
            {
                "asset": asset_label(services.assets, h.alert.asset),
                "client": client_label(services.clients, h.alert.client),
                "title": h.alert.title or h.alert.rule,
                "fired": when(h.alert.fired_at, language, seconds=True),
                "until": when(h.alert.until, language, seconds=True),
                "waiting_for": ", ".join(h.waiting_for),
            }
            for h in held
        ],
        "show_client": user.client is None,
    }


@router.get("", response_class=HTMLResponse)
async def incidents(
    request: Request, user: PageUser, services: IncidentServicesDep
) -> HTMLResponse:
    t = UI[user.language]
    context = await run_in_threadpool(_context, services, user)
    return page(request, user, "incidents.html", t["incidents_title"], "/ui/incidents", **context)
