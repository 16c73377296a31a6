"""The words of the pages, in Polish and English (the reader's language)."""

from __future__ import annotations

from bridge.models import Language

ONCALL: dict[str, dict[str, str]] = {
    "pl": {
        "title": "Dyżur: zgłoszenie {number}",
        "greeting": "{name}, to zgłoszenie czeka na Twoją reakcję.",
        "step_note": "Powiadomienie nr {step} w eskalacji.",
        "ticket": "Zgłoszenie",
        "client": "Szpital",
        "asset": "Zasób",
        "category": "Kategoria",
        "subject": "Tytuł",
        "due": "Termin reakcji",
        "status": "Status",
        "open": "otwarte",
        "resolved": "rozwiązane",
        "no_due": "brak",
        "responded": "Pierwsza reakcja: {by}, {at}.",
        "button": "Potwierdzam — przyjmuję zgłoszenie",
        "button_note": "Potwierdzenie zatrzymuje eskalację i zapisuje Cię jako osobę, "
        "która zareagowała. Link działa tylko raz.",
        "done_title": "Potwierdzono: {number}",
        "done": "Dziękujemy, {name}. Zapisano Twoją reakcję o {at}; eskalacja zatrzymana.",
        "already_title": "Zgłoszenie {number} było już potwierdzone",
        "already": "Pierwsza reakcja była już zapisana: {by}, {at}. Nic nie zmieniono.",
        "unavailable_title": "Spróbuj ponownie za chwilę",
        "unavailable": "Baza zgłoszeń chwilowo nie odpowiada; nic nie zostało zmienione. "
        "Otwórz link ponownie za chwilę.",
    },
    "en": {
        "title": "On call: ticket {number}",
        "greeting": "{name}, this ticket is waiting for your response.",
        "step_note": "Page {step} of the escalation.",
        "ticket": "Ticket",
        "client": "Hospital",
        "asset": "Asset",
        "category": "Category",
        "subject": "Title",
        "due": "Reaction deadline",
        "status": "Status",
        "open": "open",
        "resolved": "resolved",
        "no_due": "none",
        "responded": "First response: {by}, {at}.",
        "button": "Acknowledge — I am on it",
        "button_note": "Acknowledging stops the escalation and records you as the responder. "
        "The link works once.",
        "done_title": "Acknowledged: {number}",
        "done": "Thank you, {name}. Your response was recorded at {at}; the escalation is stopped.",
        "already_title": "Ticket {number} was already acknowledged",
        "already": "Its first response was already recorded: {by}, {at}. Nothing was changed.",
        "unavailable_title": "Try again in a moment",
        "unavailable": "The ticket store is not answering right now; nothing was changed. "
        "Open the link again in a moment.",
    },
}

# Why a link was not accepted. The reader may be anyone holding the link: the text names no
# ticket and says nothing of how links are made. Both languages: the link did not say whose.
REFUSED: dict[str, dict[str, tuple[str, str]]] = {
    "pl": {
        "invalid": (
            "Ten link jest nieprawidłowy",
            "Nie rozpoznajemy tego linku. Nic nie zostało zmienione. Skopiuj pełny link z "
            "powiadomienia albo potwierdź zgłoszenie w dyzur.",
        ),
        "expired": (
            "Ten link wygasł",
            "Zgłoszenie przeszło do kolejnego kroku eskalacji, więc ten link już nie działa. "
            "Nic nie zostało zmienione. Użyj linku z najnowszego powiadomienia albo potwierdź "
            "zgłoszenie w dyzur.",
        ),
        "used": (
            "Ten link został już użyty",
            "Link z powiadomienia działa tylko raz i został już wykorzystany. Nic nie zostało "
            "zmienione.",
        ),
        "foreign": (
            "Formularz z innej strony",
            "Potwierdzenie przyszło z formularza innej strony i zostało odrzucone. Nic nie "
            "zostało zmienione. Otwórz link z powiadomienia bezpośrednio.",
        ),
    },
    "en": {
        "invalid": (
            "This link is not valid",
            "We do not recognise this link. Nothing was changed. Copy the whole link from the "
            "page, or acknowledge the ticket in dyzur.",
        ),
        "expired": (
            "This link has expired",
            "The ticket went on to the next step of its escalation, so this link no longer "
            "works. Nothing was changed. Use the link of the newest page, or acknowledge the "
            "ticket in dyzur.",
        ),
        "used": (
            "This link was already used",
            "The link in a page works once, and it has been used. Nothing was changed.",
        ),
        "foreign": (
            "A form from another site",
            "The acknowledgment came from a form on another site and was refused. Nothing was "
            "changed. Open the link from the page directly.",
        ),
    },
}
LANGUAGES: tuple[Language, ...] = ("pl", "en")
