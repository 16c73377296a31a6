"""Text a user reads on a ticket's timeline, in the contract's language."""

from __future__ import annotations

CATEGORY_NAMES = {
    "pl": {
        "awaria": "Awaria",
        "usterka": "Usterka",
        "administracja": "Administracja",
        "konsultacja": "Konsultacja",
        "aktualizacja": "Aktualizacja",
        "utrzymanie": "Utrzymanie",
    },
    "en": {
        "awaria": "Outage (Awaria)",
        "usterka": "Fault (Usterka)",
        "administracja": "Administration",
        "konsultacja": "Consultation",
        "aktualizacja": "Update",
        "utrzymanie": "Maintenance",
    },
}

TIMELINE = {
    "pl": {
        "opened": "Zgłoszenie otwarte automatycznie przez regułę {rule} (wartość {value}).",
        "refired": "Alert ponownie aktywny, wystąpienie nr {count} (wartość {value}).",
        "reopened": "Zgłoszenie otwarte ponownie: alert wrócił po rozwiązaniu (wartość {value}).",
        "escalated": "Kategoria podniesiona: {old} → {new} (wartość {value}).",
        "recovered": "Alert ustąpił (wartość {value}).",
        "resolved": "Zgłoszenie rozwiązane automatycznie po ustąpieniu alertu.",
        "left_open": "Zgłoszenie pozostaje otwarte do decyzji inżyniera.",
        "acknowledged": "Pierwsza reakcja: {actor}.",
        "resolved_by": "Zgłoszenie zamknięte przez {actor}.",
        "due": "Termin reakcji: {due}.",
        "sla_at_risk": "Ryzyko przekroczenia czasu reakcji: brak reakcji, termin {due}.",
        "sla_breached": "Przekroczono czas reakcji: brak reakcji do {due}.",
        "window_ended": "Alert aktywny od {since} w oknie serwisowym {window}; okno zakończone, "
        "alert nadal aktywny.",
    },
    "en": {
        "opened": "Ticket opened automatically by rule {rule} (value {value}).",
        "refired": "Alert fired again, occurrence {count} (value {value}).",
        "reopened": "Ticket reopened: the alert fired again after resolution (value {value}).",
        "escalated": "Category raised: {old} → {new} (value {value}).",
        "recovered": "Alert recovered (value {value}).",
        "resolved": "Ticket resolved automatically after the alert recovered.",
        "left_open": "Ticket left open for an engineer to close.",
        "acknowledged": "First response by {actor}.",
        "resolved_by": "Ticket closed by {actor}.",
        "due": "Response due by {due}.",
        "sla_at_risk": "SLA at risk: no response yet, due by {due}.",
        "sla_breached": "SLA breached: no response by {due}.",
        "window_ended": "Alert firing since {since} inside maintenance window {window}; the "
        "window ended with the alert still firing.",
    },
}


def timeline_text(language: str, key: str, **values: object) -> str:
    return TIMELINE[language][key].format(**values)


def category_name(language: str, code: str) -> str:
    return CATEGORY_NAMES[language][code]


def format_value(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"
