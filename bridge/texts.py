"""Text a user reads on a ticket's timeline, in the contract's language."""

from __future__ import annotations

from rules.templates import format_number

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
        "opened": "Zgłoszenie otwarte automatycznie przez regułę {rule}{value_note}.",
        "refired": "Alert ponownie aktywny, wystąpienie nr {count}{value_note}.",
        "reopened": "Zgłoszenie otwarte ponownie: alert wrócił po rozwiązaniu{value_note}.",
        "escalated": "Kategoria podniesiona: {old} → {new}{value_note}.",
        "recovered": "Alert ustąpił{value_note}.",
        "resolved": "Zgłoszenie rozwiązane automatycznie po ustąpieniu alertu.",
        "left_open": "Zgłoszenie pozostaje otwarte do decyzji inżyniera.",
        "acknowledged": "Pierwsza reakcja: {actor}.",
        "resolved_by": "Zgłoszenie zamknięte przez {actor}.",
        "due": "Termin reakcji: {due}.",
        "sla_at_risk": "Ryzyko przekroczenia czasu reakcji: brak reakcji, termin {due}.",
        "sla_breached": "Przekroczono czas reakcji: brak reakcji do {due}.",
        "window_ended": "Alert aktywny od {since} w oknie serwisowym {window}; okno zakończone, "
        "alert nadal aktywny.",
        "update_planned": "Plan aktualizacji {plan}: {stages}.",
        "stage_started": "Etap {stage} rozpoczęty na: {assets}.",
        "stage_succeeded": "Etap {stage} zakończony powodzeniem; wersja {version} na: {assets}.",
        "stage_failed": "Etap {stage} nieudany na {asset}: krok {phase} `{command}` zakończył się "
        "kodem {exit_code}. {error}Wynik:\n{output}",
        "stage_interrupted": "Etap {stage} przerwany: most zatrzymał się w trakcie; sprawdź hosty "
        "ręcznie.",
        "soak": "Okres obserwacji środowiska testowego do {until}.",
        "gate_passed": "Bramka przed produkcją otwarta: {reason}.",
        "gate_failed": "Bramka przed produkcją zamknięta: {reason}. Produkcja nie zostanie "
        "zaktualizowana.",
        "gate_held": "Bramka wstrzymana przez {actor}: {reason}.",
        "gate_approved": "Bramka zatwierdzona przez {actor}: {reason}.",
        "plan_completed": "Aktualizacja do wersji {version} zakończona.",
        "plan_expired": "Okno etapu {stage} minęło, a etap nie został uruchomiony ({reason}).",
        "failure_ticket": "Otwarto zgłoszenie {ticket}.",
        "stale": "Pominięto nieaktualne powiadomienie: alert aktywny od {since} został już "
        "rozwiązany ({resolved}); to spóźniona kopia lub powtórka, zgłoszenie nie zostaje "
        "otwarte ponownie.",
    },
    "en": {
        "opened": "Ticket opened automatically by rule {rule}{value_note}.",
        "refired": "Alert fired again, occurrence {count}{value_note}.",
        "reopened": "Ticket reopened: the alert fired again after resolution{value_note}.",
        "escalated": "Category raised: {old} → {new}{value_note}.",
        "recovered": "Alert recovered{value_note}.",
        "resolved": "Ticket resolved automatically after the alert recovered.",
        "left_open": "Ticket left open for an engineer to close.",
        "acknowledged": "First response by {actor}.",
        "resolved_by": "Ticket closed by {actor}.",
        "due": "Response due by {due}.",
        "sla_at_risk": "SLA at risk: no response yet, due by {due}.",
        "sla_breached": "SLA breached: no response by {due}.",
        "window_ended": "Alert firing since {since} inside maintenance window {window}; the "
        "window ended with the alert still firing.",
        "update_planned": "Update plan {plan}: {stages}.",
        "stage_started": "{stage} stage started on: {assets}.",
        "stage_succeeded": "{stage} stage succeeded; version {version} on: {assets}.",
        "stage_failed": "{stage} stage failed on {asset}: {phase} step `{command}` ended with "
        "exit code {exit_code}. {error}Output:\n{output}",
        "stage_interrupted": "{stage} stage interrupted: the bridge stopped while it ran; check "
        "the hosts by hand.",
        "soak": "Watching the test environment until {until}.",
        "gate_passed": "Gate to production opened: {reason}.",
        "gate_failed": "Gate to production closed: {reason}. Production will not be updated.",
        "gate_held": "Gate held by {actor}: {reason}.",
        "gate_approved": "Gate approved by {actor}: {reason}.",
        "plan_completed": "Update to version {version} completed.",
        "plan_expired": "The {stage} stage's window passed without the stage running ({reason}).",
        "failure_ticket": "Ticket {ticket} opened.",
        "stale": "Stale notification ignored: the alert firing since {since} was already "
        "resolved at {resolved} (a late copy or a replay); the ticket is not reopened.",
    },
}


# The alert's value on a timeline line, left out when there is none (an Alertmanager alert
# carries no value: NaN).
VALUE_NOTE = {"pl": " (wartość {value})", "en": " (value {value})"}


def timeline_text(language: str, key: str, **values: object) -> str:
    """A timeline line; ``value`` (a number, NaN or None) becomes its "(wartość 0,95)" note."""
    if "value" in values:
        values["value_note"] = value_note(language, values.pop("value"))  # type: ignore[arg-type]
    return TIMELINE[language][key].format(**values)


def value_note(language: str, value: float | None) -> str:
    """``" (wartość 1 234,5)"`` in the language's number format, or ``""`` without a value."""
    if value is None or value != value:  # NaN
        return ""
    return VALUE_NOTE[language].format(value=format_value(value, language))


def category_name(language: str, code: str) -> str:
    return CATEGORY_NAMES[language][code]


def format_value(value: float | None, language: str = "en") -> str:
    """A measured value as ``language`` writes it (``0,934``, ``1 234,5``); ``—`` for none."""
    return format_number(value, language)


STAGE_NAMES = {
    "pl": {"test": "testowy", "prod": "produkcyjny"},
    "en": {"test": "Test", "prod": "Production"},
}

UPDATE_TICKETS = {
    "pl": {
        "plan_title": "Aktualizacja AMMS do wersji {version}: {client}",
        "plan_description": "Planowana aktualizacja AMMS do wersji {version}.\n{stages}\n"
        "Kroki: {steps}.",
        "stage_line": "Etap {stage}: {start} – {end} na {assets}",
        "failed_title": "Nieudana aktualizacja AMMS {version}: etap {stage} na {asset}",
        "failed_description": "Plan {plan}: krok {phase} `{command}` na {asset} zakończył się "
        "kodem {exit_code}. {error}\nWynik:\n{output}",
        "gate_title": "Aktualizacja AMMS {version} zatrzymana: alerty w środowisku testowym",
        "gate_description": "Plan {plan}: w okresie obserwacji po etapie testowym wystąpiły "
        "alerty: {alerts}. Produkcja nie zostanie zaktualizowana.",
    },
    "en": {
        "plan_title": "AMMS update to version {version}: {client}",
        "plan_description": "Planned AMMS update to version {version}.\n{stages}\nSteps: {steps}.",
        "stage_line": "{stage} stage: {start} – {end} on {assets}",
        "failed_title": "AMMS update {version} failed: {stage} stage on {asset}",
        "failed_description": "Plan {plan}: {phase} step `{command}` on {asset} ended with "
        "exit code {exit_code}. {error}\nOutput:\n{output}",
        "gate_title": "AMMS update {version} stopped: alerts in the test environment",
        "gate_description": "Plan {plan}: alerts fired while the test environment was "
        "watched after the test stage: {alerts}. Production will not be updated.",
    },
}


def stage_name(language: str, environment: str) -> str:
    return STAGE_NAMES[language][environment]


def update_text(language: str, key: str, **values: object) -> str:
    return UPDATE_TICKETS[language][key].format(**values)
