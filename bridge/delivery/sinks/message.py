"""What a person at the helpdesk reads about a ticket change, in the contract's language.

One text for every sink that writes to people: the e-mail sink sends ``subject`` and ``body``
for each change; a ticket system (Redmine) takes ``body`` of the opening change as the issue's
description and ``note`` of each later change as a journal note. Times are in Europe/Warsaw,
numbers and dates as the language writes them (``1 234,5``, ``23.11.2026 14:00`` in Polish).

The category and the reaction deadline are those recorded with the change (its audit event),
so a change delivered late (a helpdesk that was away) says what was true when it happened;
the other fields are the ticket's as it is when sent.
"""

from __future__ import annotations

from datetime import datetime

from bridge.clock import WARSAW
from bridge.delivery.sinks import TicketChange
from bridge.models import Asset, Client, Language, Ticket, TicketStatus
from bridge.tickets.texts import CATEGORY_NAMES, category_name, format_value

# The name of each change, as the heading of its message or note.
CHANGES: dict[str, dict[str, str]] = {
    "pl": {
        "ticket.opened": "Zgłoszenie otwarte",
        "ticket.refired": "Alert ponownie aktywny",
        "ticket.reopened": "Zgłoszenie otwarte ponownie",
        "ticket.escalated": "Kategoria podniesiona",
        "ticket.recovered": "Alert ustąpił",
        "ticket.left_open": "Zgłoszenie pozostaje otwarte",
        "ticket.resolved": "Zgłoszenie rozwiązane",
        "ticket.acknowledged": "Pierwsza reakcja",
        "ticket.note": "Notatka",
        "sla.at_risk": "Zagrożony czas reakcji",
        "sla.breached": "Przekroczony czas reakcji",
        "window.alert_released": "Koniec okna serwisowego, alert nadal aktywny",
    },
    "en": {
        "ticket.opened": "Ticket opened",
        "ticket.refired": "Alert fired again",
        "ticket.reopened": "Ticket reopened",
        "ticket.escalated": "Category raised",
        "ticket.recovered": "Alert recovered",
        "ticket.left_open": "Ticket left open",
        "ticket.resolved": "Ticket resolved",
        "ticket.acknowledged": "First response",
        "ticket.note": "Note",
        "sla.at_risk": "SLA at risk",
        "sla.breached": "SLA breached",
        "window.alert_released": "Maintenance window ended, alert still firing",
    },
}
# An update plan's progress on its ticket (ticket.stage_started, ...): one heading for all.
OTHER_CHANGE = {"pl": "Zmiana zgłoszenia", "en": "Ticket update"}

LABELS: dict[str, dict[str, str]] = {
    "pl": {
        "ticket": "Zgłoszenie",
        "change": "Zmiana",
        "at": "Czas zmiany",
        "by": "Kto",
        "client": "Szpital",
        "asset": "Zasób",
        "category": "Kategoria",
        "status": "Status",
        "due": "Termin reakcji",
        "responded": "Pierwsza reakcja",
        "rule": "Reguła",
        "value": "Ostatnia wartość",
        "labels": "Etykiety",
        "fired": "Wystąpienia",
        "opened": "Otwarte",
        "description": "Opis",
        "link": "Zgłoszenie w dyzur",
        "no_due": "brak (kategoria bez czasu reakcji)",
        "open": "otwarte",
        "resolved": "rozwiązane",
    },
    "en": {
        "ticket": "Ticket",
        "change": "Change",
        "at": "Changed at",
        "by": "By",
        "client": "Hospital",
        "asset": "Asset",
        "category": "Category",
        "status": "Status",
        "due": "Reaction deadline",
        "responded": "First response",
        "rule": "Rule",
        "value": "Last value",
        "labels": "Labels",
        "fired": "Times fired",
        "opened": "Opened",
        "description": "Description",
        "link": "Ticket in dyzur",
        "no_due": "none (no reaction time for this category)",
        "open": "open",
        "resolved": "resolved",
    },
}

# How a date and time is written: 23.11.2026 14:00 in Polish, 2026-11-23 14:00 in English.
DATE_FORMATS = {"pl": "%d.%m.%Y", "en": "%Y-%m-%d"}


def language_of(client: Client | None) -> Language:
    """The contract's language; Polish for a client no longer in the configuration."""
    return client.contract.language if client is not None else "pl"


def local_datetime(when: datetime, language: str) -> str:
    """A time in Europe/Warsaw as ``language`` writes it, with the zone's name:
    ``23.11.2026 14:00 CET``; seconds only when there are some (an escalated deadline)."""
    local = when.astimezone(WARSAW)
    clock = "%H:%M:%S" if local.second else "%H:%M"
    return local.strftime(f"{DATE_FORMATS[language]} {clock} %Z")


def change_name(action: str, language: str) -> str:
    return CHANGES[language].get(action, OTHER_CHANGE[language])


def ticket_link(public_url: str | None, number: str) -> str | None:
    """The ticket in dyzur's API, where the bridge is reachable; None without a public_url."""
    if public_url is None:
        return None
    return f"{public_url.rstrip('/')}/api/v1/tickets/{number}"


def category_at(change: TicketChange) -> str | None:
    """The ticket's category code when the change happened."""
    recorded = change.event.detail.get("category")
    if isinstance(recorded, str):
        return recorded
    return change.ticket.category.value if change.ticket is not None else None


def deadline_at(change: TicketChange) -> datetime | None:
    """The reaction deadline when the change happened (None: no reaction clock)."""
    detail = change.event.detail
    if "reaction_due" in detail:
        due = detail["reaction_due"]
        return datetime.fromisoformat(due) if isinstance(due, str) else None
    return change.ticket.reaction_due if change.ticket is not None else None


def status_at(change: TicketChange) -> TicketStatus | None:
    """Open or resolved when the change happened: a ticket resolved since was still open."""
    ticket = change.ticket
    if change.event.action == "ticket.resolved":
        return TicketStatus.RESOLVED
    if ticket is None:
        return None
    if ticket.status is TicketStatus.RESOLVED and (
        ticket.resolved_at is None or ticket.resolved_at <= change.event.at
    ):
        return TicketStatus.RESOLVED
    return TicketStatus.OPEN


def subject(change: TicketChange, language: str) -> str:
    """``[DZ-2026-000123] Awaria: UPS ups-sw-01 pracuje na baterii``: the number in brackets
    (helpdesks thread by it), the category in the language, the ticket's title."""
    category = category_at(change)
    title = change.ticket.title if change.ticket is not None else ""
    text = ": ".join(part for part in (_category(category, language), title) if part)
    # A header is one line: a title never has a line break, but a subject must not either.
    return " ".join(f"[{change.number}] {text}".split())


def note(change: TicketChange, language: str) -> str:
    """A later change as a line of the helpdesk's ticket: what happened, when, by whom."""
    event = change.event
    head = f"{change_name(event.action, language)} ({local_datetime(event.at, language)}"
    head += f", {event.actor})" if event.actor != "dyzur" else ")"
    lines = [head]
    if change.text:
        lines.append(change.text)
    return "\n".join(lines)


def body(
    change: TicketChange,
    client: Client | None,
    asset: Asset | None,
    public_url: str | None = None,
) -> str:
    """The plain-text body of a change's message: what happened, then the ticket's fields."""
    language = language_of(client)
    label = LABELS[language]
    event, ticket = change.event, change.ticket
    fields: list[tuple[str, str]] = [
        ("change", change_name(event.action, language)),
        ("at", local_datetime(event.at, language)),
    ]
    if event.actor != "dyzur":
        fields.append(("by", event.actor))
    fields.append(("client", _client(client, event.client)))
    fields.append(("asset", _asset(asset, event.asset)))
    category = category_at(change)
    if category is not None:
        fields.append(("category", _category(category, language)))
    status = status_at(change)
    if status is not None:
        fields.append(("status", label[status.value]))
    due = deadline_at(change)
    fields.append(("due", local_datetime(due, language) if due is not None else label["no_due"]))
    if ticket is not None:
        fields.extend(_ticket_fields(ticket, language))
    width = max(len(label[key]) for key, _ in fields) + 1
    lines = [f"{label['ticket']} {change.number}" + (f": {ticket.title}" if ticket else ""), ""]
    if change.text:
        lines += [change.text, ""]
    lines += [f"{label[key] + ':':<{width}} {value}" for key, value in fields]
    if ticket is not None and ticket.description:
        lines += ["", f"{label['description']}:", ticket.description]
    link = ticket_link(public_url, change.number)
    if link is not None:
        lines += ["", f"{label['link']}: {link}"]
    return "\n".join(lines) + "\n"


def _category(code: str | None, language: str) -> str:
    if code is None:
        return ""
    return category_name(language, code) if code in CATEGORY_NAMES[language] else code


def _client(client: Client | None, client_id: str | None) -> str:
    if client is None:
        return client_id or "—"
    return f"{client.name} ({client.id})"


def _asset(asset: Asset | None, asset_id: str | None) -> str:
    if asset is None:
        return asset_id or "—"
    return f"{asset.id} ({asset.name})" if asset.name else asset.id


def _ticket_fields(ticket: Ticket, language: str) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    if ticket.responded_at is not None:
        by = f" ({ticket.responded_by})" if ticket.responded_by else ""
        fields.append(("responded", local_datetime(ticket.responded_at, language) + by))
    fields.append(("rule", ticket.rule))
    if ticket.last_value is not None and ticket.last_value == ticket.last_value:  # not NaN
        fields.append(("value", format_value(ticket.last_value, language)))
    if ticket.labels:
        fields.append(("labels", ", ".join(f"{k}={v}" for k, v in sorted(ticket.labels.items()))))
    fields.append(("fired", format_value(ticket.fire_count, language)))
    fields.append(("opened", local_datetime(ticket.opened_at, language)))
    return fields
