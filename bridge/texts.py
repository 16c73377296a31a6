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


def timeline_text(language: str, key: str, **values: object) -> str:
    return TIMELINE[language][key].format(**values)


def category_name(language: str, code: str) -> str:
    return CATEGORY_NAMES[language][code]


def format_value(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


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
