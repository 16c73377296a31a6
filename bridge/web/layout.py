"""What the pages under /ui/ share: the nav bar, the frame around each page, the services they
read beyond bridge.api.deps', and how times, spans and numbers are written in the reader's
language (dates in Europe/Warsaw, Polish number formats in Polish).

A later page (deliveries, on-call) adds its router in ``bridge.web.add_pages``, its item to
``NAV`` and its words to ``bridge.web.texts.UI``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from bridge.clock import WARSAW, Clock
from bridge.models import Asset, Client, IncidentAlert
from bridge.tickets.desk import TicketDesk
from bridge.tickets.sla import ServiceCalendar
from bridge.tickets.texts import category_name
from bridge.web.pages import render
from bridge.web.session import WebUser
from bridge.web.texts import UI
from rules.model import Rule
from rules.templates import format_number


@dataclass(frozen=True, slots=True)
class NavItem:
    key: str  # its name in bridge.web.texts.UI
    path: str  # under the bridge's root path


# The nav bar, in order. Later pages join here: ("nav_deliveries", "/ui/deliveries"),
# ("nav_oncall", "/ui/oncall").
NAV: list[NavItem] = [
    NavItem("nav_queue", "/ui/"),
    NavItem("nav_incidents", "/ui/incidents"),
    NavItem("nav_maintenance", "/ui/maintenance"),
    NavItem("nav_updates", "/ui/updates"),
    NavItem("nav_agents", "/ui/agents"),
]


def root_of(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


def page(
    request: Request,
    user: WebUser,
    template: str,
    title: str,
    current: str,
    status: int = 200,
    /,
    **context: object,
) -> HTMLResponse:
    """``template`` in the user's language, in the frame of every /ui/ page: the nav bar with
    ``current`` marked, the user's name and logout, the pages' one script. The template reads
    its words from ``t`` and the bridge's root path from ``root``."""
    root = root_of(request)
    t = UI[user.language]
    nav = [
        {"label": t[item.key], "href": root + item.path, "current": item.path == current}
        for item in NAV
    ]
    return render(
        request,
        template,
        status,
        user.language,
        title=title,
        nav=nav,
        user=user,
        t=t,
        root=root,
        script=f"{root}/static/dyzur.js",
        **context,
    )


def fragment(request: Request, user: WebUser, template: str, **context: object) -> HTMLResponse:
    """A part of a page (what the script re-fetches), without the frame."""
    return render(
        request, template, 200, user.language, t=UI[user.language], root=root_of(request), **context
    )


def back_to(request: Request, path: str, **query: str) -> RedirectResponse:
    """After a form's POST: 303 to the page that shows what it changed (``done`` names it)."""
    url = root_of(request) + path
    if query:
        url += "?" + urlencode(query)
    return RedirectResponse(url, status_code=303)


# --- what the pages read besides bridge.api.deps' services -------------------------------------


@dataclass(frozen=True, slots=True)
class TicketReading:
    """What the queue and the ticket page read: the ticket desk, the names of hospitals and
    assets, each hospital's service calendar (what the SLA clock counts), the alerts recorded
    against a ticket (attached, held, released), and the bridge's clock."""

    desk: TicketDesk
    clients: Mapping[str, Client]
    assets: Mapping[str, Asset]
    calendar: Callable[[str], ServiceCalendar]
    members: Callable[[str], list[IncidentAlert]]
    clock: Clock


def get_ticket_reading(request: Request) -> TicketReading:
    bridge = request.app.state.bridge
    return TicketReading(
        bridge.tickets,
        bridge.loaded.clients,
        bridge.loaded.assets,
        bridge.lifecycle.calendar,
        bridge.lifecycle.incidents.members,
        bridge.clock,
    )


def get_clients(request: Request) -> Mapping[str, Client]:
    return request.app.state.bridge.loaded.clients


def get_clock(request: Request) -> Clock:
    return request.app.state.bridge.clock


def get_rule_of(request: Request) -> Callable[[str], Rule | None]:
    return request.app.state.bridge.ingestor.rule_of


TicketReadingDep = Annotated[TicketReading, Depends(get_ticket_reading)]
ClientsDep = Annotated[Mapping[str, Client], Depends(get_clients)]
ClockDep = Annotated[Clock, Depends(get_clock)]
RuleOfDep = Annotated[Callable[[str], Rule | None], Depends(get_rule_of)]


@dataclass(frozen=True, slots=True)
class Problem:
    """What a form's POST was refused for, shown on the page it came from with the form
    filled in again: ``form`` names the form, ``values`` what was sent."""

    form: str
    message: str
    values: Mapping[str, str]


def missing(request: Request, user: WebUser, what: str, current: str = "") -> HTMLResponse:
    """404: something that is not there, or another hospital's (the same answer)."""
    t = UI[user.language]
    return page(
        request, user, "message.html", t["missing_title"], current, 404,
        heading=t["missing_title"], text=what,
    )  # fmt: skip


def visible_clients(user: WebUser, clients: Mapping[str, Client]) -> list[Client]:
    """The hospitals the user may see, by name."""
    shown = [c for c in clients.values() if user.principal.can_see(c.id)]
    return sorted(shown, key=lambda c: c.name.casefold())


def scope_of(user: WebUser, asked: str | None) -> str | None:
    """The hospital a list is limited to: a hospital user's own, whatever was asked (the
    pages have no other hospital to offer them); an engineer's choice, or all."""
    if user.client is not None:
        return user.client
    return asked or None


def client_label(clients: Mapping[str, Client], client_id: str) -> str:
    client = clients.get(client_id)
    return client.name if client is not None else client_id


def asset_label(assets: Mapping[str, Asset], asset_id: str) -> str:
    asset = assets.get(asset_id)
    return f"{asset_id} ({asset.name})" if asset is not None and asset.name else asset_id


# --- the reader's language -----------------------------------------------------------------

DATE_FORMATS = {"pl": "%d.%m.%Y", "en": "%Y-%m-%d"}


def when(at: datetime | None, language: str, seconds: bool = False) -> str:
    """A moment in Europe/Warsaw as the reader writes it: 23.11.2026 14:05 (pl),
    2026-11-23 14:05 (en); ``seconds`` for timelines and runbook steps."""
    if at is None:
        return "—"
    local = at.astimezone(WARSAW)
    clock = "%H:%M:%S" if seconds else "%H:%M"
    return local.strftime(f"{DATE_FORMATS[language]} {clock}")


def day_text(day: date, language: str) -> str:
    """23.11.2026 (pl), 2026-11-23 (en)."""
    return day.strftime(DATE_FORMATS[language])


def day_name(day: date, language: str) -> str:
    """Mon 11-23 / pon. 23.11: a calendar day's heading."""
    names = UI[language]["weekdays"].split(",")
    fmt = "%d.%m" if language == "pl" else "%m-%d"
    return f"{names[day.weekday()]} {day.strftime(fmt)}"


def iso_moment(at: datetime | None) -> str:
    """For <time datetime=...>: ISO 8601 in Warsaw with its offset."""
    return "" if at is None else at.astimezone(WARSAW).isoformat(timespec="seconds")


def span(length: timedelta, language: str) -> str:
    """A length of time, coarsely: 45 min, 2 godz. 15 min, 3 d 4 godz. (pl); under a minute is
    "< 1 min"."""
    t = UI[language]
    minutes = int(length.total_seconds() // 60)
    if minutes < 1:
        return t["span_lt_minute"]
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return t["span_dh"].format(d=days, h=hours) if hours else t["span_d"].format(d=days)
    if hours:
        return t["span_hm"].format(h=hours, m=minutes) if minutes else t["span_h"].format(h=hours)
    return t["span_m"].format(m=minutes)


def number(value: float | None, language: str) -> str:
    """A count or a measured value as the reader writes numbers: 10 000 / 0,934 (pl)."""
    return format_number(value, language)


def category(code: str, language: str) -> str:
    return category_name(language, code)
