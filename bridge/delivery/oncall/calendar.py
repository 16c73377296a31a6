"""One person's on-call duty as an iCalendar feed (RFC 5545), to subscribe to in Outlook,
Thunderbird or a phone's calendar: ``GET /api/v1/oncall/{person}.ics``.

Each period the person is on duty is one event (``Rota.schedule``: their shifts less what a
higher-priority shift or an override takes, and what overrides hand to them), written in
Europe/Warsaw with a VTIMEZONE like the windows' feed (``bridge.maintenance.calendar_feed``).
The periods are expanded rather than written as RRULEs, so an override or a priority shows as
it is. In the person's language (``pl``/``en``).

Pure: given the person, their periods, the clients and ``now``; the same input gives the same
bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

from icalendar import Calendar, Event, Timezone

from bridge.clock import WARSAW, local_time
from bridge.delivery.oncall.rota import Assignment
from bridge.models import Client

PRODID = "-//dyzur//on call//PL"
CATEGORY = "dyzur"
# The periods a feed shows, around now: what just happened and the next months.
PAST = timedelta(days=14)
AHEAD = timedelta(days=120)

TEXTS: dict[str, dict[str, str]] = {
    "pl": {
        "calendar": "dyzur: dyżur {name}",
        "summary": "Dyżur ({rota}): {coverage}",
        "everyone": "wszyscy klienci",
        "kinds": "rodzaje zasobów: {kinds}",
        "rota": "Grafik: {rota}",
        "shift": "Zmiana: oncall.shifts.{shift}",
        "override": "Przejęte od: {person} ({reason}; zlecił(a) {by}, {at})",
    },
    "en": {
        "calendar": "dyzur: on call {name}",
        "summary": "On call ({rota}): {coverage}",
        "everyone": "all clients",
        "kinds": "asset kinds: {kinds}",
        "rota": "Rota: {rota}",
        "shift": "Shift: oncall.shifts.{shift}",
        "override": "Taken over from: {person} ({reason}; by {by}, {at})",
    },
}


def person_calendar(
    person_id: str,
    name: str,
    language: str,
    assignments: Sequence[Assignment],
    clients: Mapping[str, Client],
    now: datetime,
) -> bytes:
    """The feed of one person's periods on duty, by start."""
    texts = TEXTS[language]
    stamp = now.astimezone(UTC)
    calendar = Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    calendar.add("CALSCALE", "GREGORIAN")
    calendar.add("X-WR-CALNAME", texts["calendar"].format(name=name))
    calendar.add("X-WR-TIMEZONE", WARSAW.key)
    for a in sorted(assignments, key=lambda a: (a.start, a.shift)):
        calendar.add_component(_event(person_id, a, clients, texts, stamp))
    days = [a.start.astimezone(WARSAW).date() for a in assignments] or [
        stamp.astimezone(WARSAW).date()
    ]
    first: date = min(days) - timedelta(days=1)
    last: date = max(days) + timedelta(days=366)
    calendar.add_missing_timezones(first_date=first, last_date=last)
    if not calendar.timezones:
        # No events: RFC 5545 wants a component, and X-WR-TIMEZONE names this one.
        calendar.add_component(Timezone.from_tzid(WARSAW.key, first_date=first, last_date=last))
    return calendar.to_ical()


def _event(
    person_id: str,
    a: Assignment,
    clients: Mapping[str, Client],
    texts: dict[str, str],
    stamp: datetime,
) -> Event:
    coverage = (
        texts["everyone"]
        if a.clients is None
        else ", ".join(clients[c].name if c in clients else c for c in a.clients)
    )
    if a.kinds is not None:
        coverage += "; " + texts["kinds"].format(kinds=", ".join(a.kinds))
    lines = [texts["rota"].format(rota=a.rota), texts["shift"].format(shift=a.shift)]
    uid = f"{person_id}-{a.rota}-{a.shift}-{a.start.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    if a.override is not None:
        o = a.override
        uid += f"-o{o.id}"
        lines.append(
            texts["override"].format(
                person=o.shift_person, reason=o.reason, by=o.created_by, at=local_time(o.created_at)
            )
        )
    event = Event()
    event.add("UID", f"{uid}@dyzur")
    event.add("DTSTAMP", stamp)
    event.start = a.start.astimezone(WARSAW)
    event.end = a.end.astimezone(WARSAW)
    event.add("SUMMARY", texts["summary"].format(rota=a.rota, coverage=coverage))
    event.add("DESCRIPTION", "\n".join(lines))
    event.categories = [CATEGORY]
    event.add("STATUS", "CONFIRMED")
    event.add("TRANSP", "OPAQUE")
    return event
