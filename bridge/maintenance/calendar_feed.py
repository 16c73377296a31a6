"""The maintenance windows and AMMS update stages as an iCalendar feed (RFC 5545).

Engineers and hospital IT subscribe to it in Outlook, Thunderbird or Google Calendar. Times are
written as Europe/Warsaw wall-clock times with a VTIMEZONE, not as UTC: a recurring window repeats
at the same Warsaw hour across DST changes (as ``windows`` evaluates it), and only a zoned
DTSTART makes calendar clients repeat it that way too.

Pure: given the windows, the plans, the clients and ``now``; the output is byte-for-byte the same
for the same input, so a client's refresh only sees real changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta

from icalendar import Calendar, Event, Timezone, vRecur

from bridge.clock import WARSAW, local_time
from bridge.maintenance.windows import Occurrences
from bridge.models import (
    Client,
    Language,
    MaintenanceWindow,
    PlanStatus,
    StageState,
    UpdatePlan,
    UpdateStage,
)

PRODID = "-//dyzur//maintenance windows//PL"
CALENDAR_NAME = "dyzur: okna serwisowe"
WINDOW_CATEGORY = "okno-serwisowe"
UPDATE_CATEGORY = "aktualizacja"

TEXTS: dict[str, dict[str, str]] = {
    "pl": {
        "window": "Okno serwisowe: {reason} ({client})",
        "update": "Aktualizacja AMMS {version}: {stage} ({client})",
        "test": "etap testowy",
        "prod": "etap produkcyjny",
        "assets": "Zasoby: {assets}",
        "all_assets": "wszystkie zasoby klienta",
        "ticket": "Zgłoszenie: {ticket}",
        "planned_by": "Zaplanowane przez: {who}",
        "cancelled": "Odwołane: {when} ({who})",
        "plan": "Plan aktualizacji: {plan}",
        "stage_state": "Stan etapu: {state}",
        "gate": "Bramka produkcji: {gate}",
    },
    "en": {
        "window": "Maintenance window: {reason} ({client})",
        "update": "AMMS update {version}: {stage} ({client})",
        "test": "test stage",
        "prod": "production stage",
        "assets": "Assets: {assets}",
        "all_assets": "all of the client's assets",
        "ticket": "Ticket: {ticket}",
        "planned_by": "Planned by: {who}",
        "cancelled": "Cancelled: {when} ({who})",
        "plan": "Update plan: {plan}",
        "stage_state": "Stage state: {state}",
        "gate": "Production gate: {gate}",
    },
}


def build_calendar(
    windows: Iterable[MaintenanceWindow],
    plans: Iterable[UpdatePlan],
    clients: Mapping[str, Client],
    now: datetime,
) -> bytes:
    """The feed: one event per stand-alone window and one per stage of every update plan.

    A window that belongs to a plan is left out: its stage's event shows it, with the plan's
    state. Events are ordered by start, then UID, so the same data gives the same bytes.
    """
    stamp = _aware(now).astimezone(UTC)
    events = [_window_event(w, clients, stamp) for w in windows if w.plan is None]
    events += [_stage_event(plan, stage, clients, stamp) for plan in plans for stage in plan.stages]
    events.sort(key=lambda e: (e.start, str(e["UID"])))

    calendar = Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    calendar.add("CALSCALE", "GREGORIAN")
    calendar.add("X-WR-CALNAME", CALENDAR_NAME)
    calendar.add("X-WR-TIMEZONE", WARSAW.key)
    for event in events:
        calendar.add_component(event)

    first, last = _timezone_span(events, stamp)
    calendar.add_missing_timezones(first_date=first, last_date=last)
    if not calendar.timezones:
        # No events: RFC 5545 wants at least one component, and X-WR-TIMEZONE names this one.
        calendar.add_component(Timezone.from_tzid(WARSAW.key, first_date=first, last_date=last))
    return calendar.to_ical()


def _window_event(
    window: MaintenanceWindow, clients: Mapping[str, Client], stamp: datetime
) -> Event:
    name, language = _client(window.client, clients)
    texts = TEXTS[language]
    if window.assets:
        assets = ", ".join(window.assets)
    elif window.selector:
        assets = ", ".join(f"{key}={value}" for key, value in sorted(window.selector.items()))
    else:
        assets = texts["all_assets"]
    lines = [texts["assets"].format(assets=assets)]
    if window.ticket:
        lines.append(texts["ticket"].format(ticket=window.ticket))
    lines.append(texts["planned_by"].format(who=window.created_by))
    if window.cancelled_at is not None:
        lines.append(
            texts["cancelled"].format(
                when=local_time(window.cancelled_at), who=window.cancelled_by or "—"
            )
        )

    start, end = window.start, window.end
    first = Occurrences(window).first() if window.rrule else None
    if first is not None:
        # DTSTART is the first instance (RFC 5545). A window planned before starts were checked
        # against their rule may begin off it; the occurrence dyzur mutes first is written.
        start, end = first
    event = _event(
        uid=f"{window.id}@dyzur",
        stamp=stamp,
        start=start,
        end=end,
        summary=texts["window"].format(reason=window.reason, client=name),
        description="\n".join(lines),
        category=WINDOW_CATEGORY,
        cancelled=window.cancelled_at is not None,
        client=window.client,
    )
    if window.rrule:
        event.add("RRULE", _rrule(window.rrule))
    return event


def _stage_event(
    plan: UpdatePlan, stage: UpdateStage, clients: Mapping[str, Client], stamp: datetime
) -> Event:
    name, language = _client(plan.client, clients)
    texts = TEXTS[language]
    lines = [
        texts["plan"].format(plan=plan.id),
        texts["stage_state"].format(state=str(stage.state)),
        texts["gate"].format(gate=str(plan.gate)),
        texts["ticket"].format(ticket=plan.ticket),
        texts["assets"].format(assets=", ".join(stage.assets) or "—"),
    ]
    # A stage that will never run (failed gate, expired or failed plan) leaves the calendars.
    cancelled = stage.state == StageState.NOT_RUN and plan.status != PlanStatus.ACTIVE
    return _event(
        uid=f"{plan.id}-{stage.environment}@dyzur",
        stamp=stamp,
        start=stage.start,
        end=stage.end,
        summary=texts["update"].format(
            version=plan.target_version, stage=texts[stage.environment], client=name
        ),
        description="\n".join(lines),
        category=UPDATE_CATEGORY,
        cancelled=cancelled,
        client=plan.client,
    )


def _event(
    *,
    uid: str,
    stamp: datetime,
    start: datetime,
    end: datetime,
    summary: str,
    description: str,
    category: str,
    cancelled: bool,
    client: str,
) -> Event:
    event = Event()
    event.add("UID", uid)
    event.add("DTSTAMP", stamp)
    event.start = _aware(start).astimezone(WARSAW)
    event.end = _aware(end).astimezone(WARSAW)
    event.add("SUMMARY", summary)
    event.add("DESCRIPTION", description)
    event.categories = [category]
    event.add("STATUS", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("X-DYZUR-CLIENT", client)
    return event


def _client(client_id: str, clients: Mapping[str, Client]) -> tuple[str, Language]:
    """Name and language of a client; one no longer configured still gets a readable event."""
    client = clients.get(client_id)
    if client is None:
        return client_id, "pl"
    return client.name, client.contract.language


def _rrule(text: str) -> vRecur:
    """A window's RRULE for a DTSTART with TZID.

    ``windows`` reads UNTIL as Warsaw wall-clock time (its DTSTART is naive), but RFC 5545
    requires UTC for UNTIL when DTSTART has a TZID, and clients drop the rule otherwise.
    """
    rule = vRecur.from_ical(text)
    if "UNTIL" in rule:
        rule["UNTIL"] = [_utc_until(value) for value in rule["UNTIL"]]
    return rule


def _utc_until(value: date | datetime) -> datetime:
    if not isinstance(value, datetime):
        value = datetime.combine(value, time())
    if value.tzinfo is None:
        # The same reading as windows.py: a wall time skipped in spring counts as CET.
        value = value.replace(tzinfo=WARSAW)
    return value.astimezone(UTC)


def _aware(when: datetime) -> datetime:
    """Refuse a naive datetime: astimezone() would read it in the host's zone, silently."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"calendar feed: expected an aware datetime, got {when.isoformat()}")
    return when


def _timezone_span(events: list[Event], stamp: datetime) -> tuple[date, date]:
    """The dates the VTIMEZONE must cover.

    From just before the first event (the feed stays small), to at least icalendar's default end
    (2038): a recurring window keeps the right offsets for years in clients that read only it.
    """
    starts = [_day(e.start) for e in events] or [stamp.astimezone(WARSAW).date()]
    ends = [_day(e.end) for e in events] or starts
    first = min(starts) - timedelta(days=1)
    last = max(Timezone.DEFAULT_LAST_DATE, max(ends) + timedelta(days=366))
    return first, last


def _day(value: date | datetime) -> date:
    """The date of an event's start or end: icalendar types them as a date or a datetime."""
    return value.date() if isinstance(value, datetime) else value
