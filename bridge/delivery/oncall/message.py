"""What a paged engineer reads, in the person's own language (``OncallPerson.language``).

An e-mail page has a subject that says it is a page and names the ticket, and a short plain
text: whom it is for, the ticket's hospital, asset, category, title and deadline, the earlier
pages of an escalation with their times, and the one-time link that acknowledges it. An SMS is
one text of at most 160 characters with the same essentials and the link; what does not fit
(the title, the hospital's name, the earlier pages) is shortened at a word, never the link or
the ticket number, and never inside a character (Python counts characters, not bytes).

``sms_encoding`` tells whether a text fits the GSM 03.38 alphabet (160 characters a segment)
or needs UCS-2 (70 a segment; Polish letters such as ą, ć, ł are not in GSM-7), and
``sms_segments`` how many parts a phone receives: a gateway's body template may pass them on.

Times are Europe/Warsaw, dates as the language writes them (``sinks.message.local_datetime``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bridge.clock import WARSAW
from bridge.delivery.sinks.message import local_datetime
from bridge.models import Asset, Client, Ticket
from bridge.tickets.texts import category_name

SMS_LIMIT = 160
CLIENT_FLOOR = 24  # a hospital's name in an SMS gives way down to this many characters first
ELLIPSIS = "…"

# GSM 03.38: the basic alphabet and the extension table (two septets each).
_GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = "^{}\\[~]|€\f"

TEXTS: dict[str, dict[str, str]] = {
    "pl": {
        "subject": "[{number}] DYŻUR{step}: {category} – {client}: {title}",
        "subject_step": " (eskalacja, krok {step})",
        "greeting": "{name}, zgłoszenie wymaga reakcji dyżurnego.",
        "escalated": "Eskalacja, krok {step}: nikt nie potwierdził wcześniejszych powiadomień.",
        "earlier": "Wcześniej powiadomieni",
        "ticket": "Zgłoszenie",
        "client": "Szpital",
        "asset": "Zasób",
        "category": "Kategoria",
        "title": "Tytuł",
        "opened": "Otwarte",
        "due": "Termin reakcji",
        "no_due": "brak",
        "ack": "Potwierdź przyjęcie zgłoszenia (link jednorazowy, ważny do {until}):",
        "no_link": "Potwierdź przyjęcie w dyzur: dyzur tickets ack {number}",
        "footer": "Powiadomienie dyżurne wysłane automatycznie przez dyzur.",
        "sms_head": "DYŻUR {category} {number}",
        "sms_earlier": "Wcześniej: {times}.",
        "sms_ack": "Potwierdź: {link}",
        "sms_no_link": "Potwierdź w dyzur.",
    },
    "en": {
        "subject": "[{number}] ON CALL{step}: {category} – {client}: {title}",
        "subject_step": " (escalated, step {step})",
        "greeting": "{name}, a ticket needs the on-call engineer.",
        "escalated": "Escalation, step {step}: nobody acknowledged the earlier pages.",
        "earlier": "Paged before",
        "ticket": "Ticket",
        "client": "Hospital",
        "asset": "Asset",
        "category": "Category",
        "title": "Title",
        "opened": "Opened",
        "due": "Reaction deadline",
        "no_due": "none",
        "ack": "Acknowledge the ticket (one-time link, valid until {until}):",
        "no_link": "Acknowledge it in dyzur: dyzur tickets ack {number}",
        "footer": "On-call page sent automatically by dyzur.",
        "sms_head": "ON CALL {category} {number}",
        "sms_earlier": "Paged before: {times}.",
        "sms_ack": "Ack: {link}",
        "sms_no_link": "Ack it in dyzur.",
    },
}
# Short category names for an SMS (the English ones carry the Polish name in brackets).
SMS_CATEGORY = {"en": {"awaria": "Outage", "usterka": "Fault"}}


@dataclass(frozen=True, slots=True)
class EarlierPage:
    """A page of an earlier step of the same ticket, as an escalation's message names it."""

    name: str
    channel: str
    at: datetime


@dataclass(frozen=True, slots=True)
class PageMessage:
    """Everything a channel needs to page one person about one ticket: ``key`` is the page's
    idempotency key (the same on every send of it), ``at`` when it was decided, ``link`` its
    one-time link (None where the bridge has no link key or public_url), valid until
    ``expires``, ``step`` 0 for the person on duty."""

    key: str
    at: datetime
    ticket: Ticket
    client: Client | None
    asset: Asset | None
    person_id: str
    name: str
    language: str
    email: str | None
    phone: str | None
    step: int
    link: str | None
    expires: datetime
    earlier: list[EarlierPage] = field(default_factory=list)


def _category(language: str, code: str) -> str:
    return category_name(language, code)


def _client_name(message: PageMessage) -> str:
    return message.client.name if message.client is not None else message.ticket.client


def _asset(message: PageMessage) -> str:
    asset = message.asset
    if asset is None:
        return message.ticket.asset
    return f"{asset.id} ({asset.name})" if asset.name else asset.id


def _clock(at: datetime) -> str:
    return at.astimezone(WARSAW).strftime("%H:%M")


def subject(message: PageMessage) -> str:
    """``[DZ-2026-000123] DYŻUR: Awaria – Szpital A: title``, one line."""
    t = TEXTS[message.language]
    step = t["subject_step"].format(step=message.step + 1) if message.step else ""
    text = t["subject"].format(
        number=message.ticket.number,
        step=step,
        category=_category(message.language, message.ticket.category.value),
        client=_client_name(message),
        title=message.ticket.title,
    )
    return " ".join(text.split())


def body(message: PageMessage) -> str:
    """The plain text of an e-mail page."""
    language, ticket = message.language, message.ticket
    t = TEXTS[language]
    lines = [t["greeting"].format(name=message.name), ""]
    if message.step:
        lines += [t["escalated"].format(step=message.step + 1)]
        lines += [
            f"{t['earlier']}: "
            + "; ".join(
                f"{p.name} {local_datetime(p.at, language)} ({p.channel})" for p in message.earlier
            ),
            "",
        ]
    due = ticket.reaction_due
    fields = [
        ("ticket", ticket.number),
        ("client", f"{_client_name(message)} ({ticket.client})"),
        ("asset", _asset(message)),
        ("category", _category(language, ticket.category.value)),
        ("title", ticket.title),
        ("opened", local_datetime(ticket.opened_at, language)),
        ("due", local_datetime(due, language) if due is not None else t["no_due"]),
    ]
    width = max(len(t[key]) for key, _ in fields) + 1
    lines += [f"{t[key] + ':':<{width}} {value}" for key, value in fields]
    lines.append("")
    if message.link is not None:
        lines += [t["ack"].format(until=local_datetime(message.expires, language)), message.link]
    else:
        lines.append(t["no_link"].format(number=ticket.number))
    lines += ["", "-- ", t["footer"]]
    return "\n".join(lines) + "\n"


def _shorten(text: str, room: int) -> str:
    """``text`` in at most ``room`` characters: cut after a word, with an ellipsis (inside
    the first word only when even that does not fit)."""
    if len(text) <= room:
        return text
    if room <= 1:
        return ""
    cut = text[: room - 1]
    if " " in cut.strip():
        cut = cut[: cut.rstrip().rfind(" ")]
    return cut.rstrip(" ,.;:–-") + ELLIPSIS


def sms_text(message: PageMessage, limit: int = SMS_LIMIT) -> str:
    """The page as one SMS of at most ``limit`` characters: head (category and number), the
    hospital and title, the earlier pages' times, the link. The link and the head are kept
    whole; a long hospital name, the title and the earlier pages give way, in that order."""
    language, ticket = message.language, message.ticket
    t = TEXTS[language]
    code = ticket.category.value
    category = SMS_CATEGORY.get(language, {}).get(code) or _category(language, code)
    head = t["sms_head"].format(category=category, number=ticket.number)
    if message.step:
        head += f" ({message.step + 1})"
    tail = t["sms_ack"].format(link=message.link) if message.link is not None else t["sms_no_link"]
    client, title = _client_name(message), " ".join(ticket.title.split())
    earlier = ""
    if message.earlier:
        times = ", ".join(_clock(p.at) for p in message.earlier)
        earlier = t["sms_earlier"].format(times=times)

    def assemble(client: str, title: str, earlier: str) -> str:
        where = ": ".join(part for part in (client, title) if part)
        sentence = where if not where or where.endswith(ELLIPSIS) else f"{where}."
        middle = " ".join(part for part in (sentence, earlier) if part)
        return " ".join(part for part in (head, middle, tail) if part)

    text = assemble(client, title, earlier)
    # What gives way, in order: a long hospital name (to a recognisable start), the title,
    # the earlier pages' times, the rest of the hospital's name.
    for shrink, floor in (("client", CLIENT_FLOOR), ("title", 0), ("earlier", 0), ("client", 0)):
        over = len(text) - limit
        if over <= 0:
            break
        if shrink == "client":
            client = _shorten(client, max(len(client) - over, floor, 0))
        elif shrink == "title":
            title = _shorten(title, max(len(title) - over, floor))
        else:
            earlier = ""
        text = assemble(client, title, earlier)
    if len(text) > limit:  # a link too long for any SMS: the head and the link, cut
        text = _shorten(f"{head} {tail}", limit)
    return text


def sms_encoding(text: str) -> str:
    """``gsm7`` when every character is in the GSM 03.38 alphabet, else ``ucs2``."""
    allowed = _GSM7_BASIC + _GSM7_EXTENDED
    return "gsm7" if all(c in allowed for c in text) else "ucs2"


def sms_segments(text: str) -> int:
    """How many SMS parts a phone receives for ``text``: GSM-7 160 septets in one part or 153
    per part of a longer one (an extension character takes two), UCS-2 70 or 67 (a character
    beyond the BMP, an emoji, takes two)."""
    if sms_encoding(text) == "gsm7":
        units, single, multi = sum(2 if c in _GSM7_EXTENDED else 1 for c in text), 160, 153
    else:
        units, single, multi = sum(2 if ord(c) > 0xFFFF else 1 for c in text), 70, 67
    if units <= single:
        return 1
    return -(-units // multi)
