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
        "note": "{text}",  # an engineer's note, as written (the entry names its author)
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
        "stage_not_run_step": "Etap {stage} nieudany na {asset}: krok {phase} `{command}` nie "
        "został wykonany: {problem}",
        "stage_interrupted": "Etap {stage} przerwany: most zatrzymał się w trakcie; sprawdź hosty "
        "ręcznie.",
        "stage_cancelled": "Etap {stage} anulowany po bieżącym poleceniu. Zaktualizowane: "
        "{updated}. Niezaktualizowane: {not_updated}. Sprawdź stan hostów.",
        "stage_cancelled_interrupted": "Etap {stage} anulowany; most zatrzymał się w trakcie "
        "etapu. Zaktualizowane: {updated}. Niezaktualizowane lub niepewne: {not_updated}. "
        "Sprawdź stan hostów.",
        "muting_ends": "Wyciszenie alertów {assets} kończy się o {at} (okno {window} skrócone "
        "do końca etapu i czasu na ustabilizowanie).",
        "soak": "Okres obserwacji środowiska testowego do {until}.",
        "gate_passed": "Bramka przed produkcją otwarta: etap testowy bez błędów; w okresie "
        "obserwacji {since} – {until} hosty testowe nie miały alertów ani zgłoszeń kategorii "
        "Awaria lub Usterka.",
        "gate_failed": "Bramka przed produkcją zamknięta: w okresie obserwacji {since} – {until} "
        "hosty testowe miały alerty lub zgłoszenia: {findings}. Produkcja nie zostanie "
        "zaktualizowana, chyba że inżynier zatwierdzi ją wbrew tej ocenie (dyzur update approve "
        "{plan} --override --reason ...).",
        "gate_held": "Bramka wstrzymana przez {actor}: {reason}.",
        "gate_approved": "Bramka zatwierdzona przez {actor}: {reason}. Ocena okresu obserwacji "
        "{since} – {until}: brak alertów i zgłoszeń kategorii Awaria lub Usterka hostów "
        "testowych.{cut_short}",
        "gate_overridden": "Bramka zatwierdzona przez {actor} WBREW ocenie okresu obserwacji "
        "{since} – {until}, która wykazała: {findings}. Uzasadnienie: {reason}.{cut_short}",
        "soak_cut_short": " Obserwacja zakończona zatwierdzeniem przed planowanym końcem "
        "({until}).",
        "plan_completed": "Aktualizacja do wersji {version} zakończona.",
        "plan_expired": "Okno etapu {stage} minęło, a etap nie został uruchomiony ({reason}).",
        "plan_cancelled": "Plan {plan_id} anulowany przez {actor}: {reason}. Kolejne kroki i etapy "
        "nie zostaną uruchomione.",
        "prod_not_run": "Produkcja nie została zaktualizowana: {why}. Zgłoszenie pozostaje "
        "otwarte do decyzji inżyniera.",
        "failure_ticket": "Otwarto zgłoszenie {ticket}.",
        "stale": "Pominięto nieaktualne powiadomienie: alert aktywny od {since} został już "
        "rozwiązany ({resolved}); to spóźniona kopia lub powtórka, zgłoszenie nie zostaje "
        "otwarte ponownie.",
        "paged": "Powiadomienie dyżurnego wysłane: {person}, {channel} (krok {step}{late}).",
        "page_late": ", zlecone {at}",
        "page_failed": "Powiadomienie do {person} ({channel}, krok {step}) nie zostało "
        "dostarczone: {reason}",
        "oncall_escalated": "Brak potwierdzenia w ciągu {after}: eskalacja do kroku {step}, "
        "powiadamiani: {people}.",
        "page_fallback": "Powiadomienie do {person} kanałem {channel} niedostarczone od {since}: "
        "wysyłane także kanałem {fallback}.",
        "nobody_on_duty": "Krok {step} eskalacji: nikt nie pełni dyżuru ({who}); nikt nie "
        "został powiadomiony w tym kroku.",
        "incident_attached": "Dołączony alert zasobu zależnego {asset}: {title} ({category}); "
        "bez osobnego zgłoszenia.",
        "incident_recovered": "Alert zasobu {asset} ustąpił: {title}.",
        "incident_released": "Alert zasobu {asset} nadal aktywny: otwarto osobne zgłoszenie "
        "{ticket}.",
        "incident_part": "Alert był częścią incydentu {ticket} (zasób {root}) od {since}; "
        "przyczyna ustąpiła, a alert nadal jest aktywny.",
        "incident_held": "Alert aktywny od {since} czekał do {until} na alert zasobu, od "
        "którego zależy ({parent}); przyczyna się nie pojawiła.",
        "incident_linked": "Zgłoszenie wyjaśnione przez incydent {ticket} (zasób {root}, od "
        "którego zależy {asset}); pozostaje otwarte.",
        "incident_explains": "Ten incydent wyjaśnia zgłoszenie {ticket} zasobu zależnego {asset}.",
        "incident_split": "Wydzielone przez {actor} ze zgłoszenia {ticket}; alert aktywny od "
        "{since}.",
        "incident_split_out": "Alert zasobu {asset} ({title}) wydzielony przez {actor} do "
        "zgłoszenia {ticket}.",
        "group_joined": "Kolejny alert grupy: {title} ({category}){value_note}.",
        "group_recovered": "Alert grupy ustąpił: {title}. Nadal aktywne: {remaining}.",
        "storm_attached": "Alert zasobu {asset} w burzy: {title} ({category}).",
        "storm_part": "Alert zebrany w zgłoszeniu burzy {ticket} od {since}; burza się "
        "zakończyła, a alert nadal jest aktywny.",
        "storm_ended": "Burza zakończona: {opened} alertów nadal aktywnych otworzyło własne "
        "zgłoszenia, {recovered} ustąpiło.",
        "storm_title": "Burza alertów: {count} alertów ({client})",
        "storm_description": "Klient {client} przekroczył limit {tickets} nowych zgłoszeń w "
        "ciągu {period}. Kolejne alerty są zbierane w tym zgłoszeniu; każdy, który będzie nadal "
        "aktywny, gdy przez {quiet} nie pojawi się nowy alert, otworzy własne zgłoszenie "
        "(inżynier może też wydzielić alert wcześniej).",
        "members_heading": "Alerty ({firing} aktywnych z {count}):",
        "members_more": "… i {more} kolejnych",
        "member_firing": "aktywny",
        "member_recovered": "ustąpił",
        "member_released": "osobne zgłoszenie",
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
        "note": "{text}",
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
        "stage_not_run_step": "{stage} stage failed on {asset}: {phase} step `{command}` did "
        "not run: {problem}",
        "stage_interrupted": "{stage} stage interrupted: the bridge stopped while it ran; check "
        "the hosts by hand.",
        "stage_cancelled": "{stage} stage cancelled after its current command. Updated: "
        "{updated}. Not updated: {not_updated}. Check the hosts.",
        "stage_cancelled_interrupted": "{stage} stage cancelled; the bridge stopped while it "
        "ran. Updated: {updated}. Not updated or unknown: {not_updated}. Check the hosts.",
        "muting_ends": "Alerts of {assets} are muted until {at} (window {window} shortened to "
        "the stage's end and the settle time).",
        "soak": "Watching the test environment until {until}.",
        "gate_passed": "Gate to production opened: the test stage passed, and the test hosts "
        "had no Awaria or Usterka alerts or tickets in the soak {since} – {until}.",
        "gate_failed": "Gate to production closed: in the soak {since} – {until} the test hosts "
        "had alerts or tickets: {findings}. Production will not be updated unless an engineer "
        "approves over this judgement (dyzur update approve {plan} --override --reason ...).",
        "gate_held": "Gate held by {actor}: {reason}.",
        "gate_approved": "Gate approved by {actor}: {reason}. Soak judgement {since} – {until}: "
        "no Awaria or Usterka alerts or tickets of the test hosts.{cut_short}",
        "gate_overridden": "Gate approved by {actor} OVER the soak judgement {since} – {until}, "
        "which found: {findings}. Reason: {reason}.{cut_short}",
        "soak_cut_short": " The soak was cut short by the approval (planned until {until}).",
        "plan_completed": "Update to version {version} completed.",
        "plan_expired": "The {stage} stage's window passed without the stage running ({reason}).",
        "plan_cancelled": "Plan {plan_id} cancelled by {actor}: {reason}. No further step or stage "
        "will run.",
        "prod_not_run": "Production was not updated: {why}. This ticket stays open for an "
        "engineer.",
        "failure_ticket": "Ticket {ticket} opened.",
        "stale": "Stale notification ignored: the alert firing since {since} was already "
        "resolved at {resolved} (a late copy or a replay); the ticket is not reopened.",
        "paged": "On-call page sent: {person}, {channel} (step {step}{late}).",
        "page_late": ", due since {at}",
        "page_failed": "The page to {person} ({channel}, step {step}) could not be delivered: "
        "{reason}",
        "oncall_escalated": "No acknowledgment within {after}: escalated to step {step}, "
        "paging: {people}.",
        "page_fallback": "The page to {person} by {channel} not delivered since {since}: "
        "sent by {fallback} too.",
        "nobody_on_duty": "Escalation step {step}: nobody is on duty ({who}); nobody was paged "
        "at this step.",
        "incident_attached": "Attached an alert of dependent asset {asset}: {title} "
        "({category}); no ticket of its own.",
        "incident_recovered": "The alert of {asset} recovered: {title}.",
        "incident_released": "The alert of {asset} is still firing: ticket {ticket} opened for it.",
        "incident_part": "The alert was part of incident {ticket} (asset {root}) since {since}; "
        "the root cause recovered and the alert still fires.",
        "incident_held": "The alert firing since {since} waited until {until} for an alert of "
        "the asset it depends on ({parent}); no root cause appeared.",
        "incident_linked": "Explained by incident {ticket} (asset {root}, which {asset} depends "
        "on); this ticket stays open.",
        "incident_explains": "This incident explains ticket {ticket} of dependent asset {asset}.",
        "incident_split": "Split out of ticket {ticket} by {actor}; the alert fires since {since}.",
        "incident_split_out": "The alert of {asset} ({title}) was split out by {actor} into "
        "ticket {ticket}.",
        "group_joined": "Another alert of the group: {title} ({category}){value_note}.",
        "group_recovered": "An alert of the group recovered: {title}. Still firing: {remaining}.",
        "storm_attached": "An alert of {asset} in the storm: {title} ({category}).",
        "storm_part": "The alert was collected in storm ticket {ticket} since {since}; the storm "
        "ended and the alert still fires.",
        "storm_ended": "The storm ended: {opened} alerts still firing opened tickets of their "
        "own, {recovered} recovered.",
        "storm_title": "Alert storm: {count} alerts ({client})",
        "storm_description": "Client {client} went over its budget of {tickets} new tickets in "
        "{period}. Further alerts are collected in this ticket; each one still firing when no "
        "new alert came for {quiet} opens a ticket of its own (an engineer may split one out "
        "sooner).",
        "members_heading": "Alerts ({firing} firing of {count}):",
        "members_more": "… and {more} more",
        "member_firing": "firing",
        "member_recovered": "recovered",
        "member_released": "own ticket",
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
        "failed_description_not_run": "Plan {plan}: krok {phase} `{command}` na {asset} nie "
        "został wykonany: {problem}",
        "gate_title": "Aktualizacja AMMS {version} zatrzymana: alerty w środowisku testowym",
        "gate_description": "Plan {plan}: w okresie obserwacji {since} – {until} po etapie "
        "testowym hosty testowe miały alerty lub zgłoszenia: {findings}. Produkcja nie zostanie "
        "zaktualizowana, chyba że inżynier zatwierdzi ją wbrew tej ocenie: dyzur update approve "
        "{plan} --override --reason ...",
    },
    "en": {
        "plan_title": "AMMS update to version {version}: {client}",
        "plan_description": "Planned AMMS update to version {version}.\n{stages}\nSteps: {steps}.",
        "stage_line": "{stage} stage: {start} – {end} on {assets}",
        "failed_title": "AMMS update {version} failed: {stage} stage on {asset}",
        "failed_description": "Plan {plan}: {phase} step `{command}` on {asset} ended with "
        "exit code {exit_code}. {error}\nOutput:\n{output}",
        "failed_description_not_run": "Plan {plan}: {phase} step `{command}` on {asset} did "
        "not run: {problem}",
        "gate_title": "AMMS update {version} stopped: alerts in the test environment",
        "gate_description": "Plan {plan}: in the soak {since} – {until} after the test stage "
        "the test hosts had alerts or tickets: {findings}. Production will not be updated "
        "unless an engineer approves over this judgement: dyzur update approve {plan} "
        "--override --reason ...",
    },
}


def stage_name(language: str, environment: str) -> str:
    return STAGE_NAMES[language][environment]


def update_text(language: str, key: str, **values: object) -> str:
    return UPDATE_TICKETS[language][key].format(**values)


# Why a runbook step failed or did not run, as the ticket tells it.
STEP_PROBLEMS = {
    "pl": {
        "unreachable": "brak połączenia SSH z {host}:{port} ({reason}).",
        "auth": "serwer {host}:{port} odrzucił logowanie kluczem SSH jako {user} ({reason}).",
        "host_key_unknown": "połączenie odrzucone: nieznany klucz hosta SSH {presented} serwera "
        "{host}:{port}. Sprawdź klucz na hoście i zapisz go: {hint}",
        "host_key_mismatch": "połączenie odrzucone: KLUCZ HOSTA SSH serwera {host}:{port} SIĘ "
        "ZMIENIŁ (zapisany {expected}, przedstawiony {presented}); możliwy atak. Jeśli zmiana "
        "jest zamierzona, sprawdź klucz na hoście i zapisz go: {hint}",
        "timed_out": "przekroczono limit czasu {timeout} s; polecenie przerwane.",
        "error": "{error}",
    },
    "en": {
        "unreachable": "no SSH connection to {host}:{port} ({reason}).",
        "auth": "{host}:{port} refused the SSH key login as {user} ({reason}).",
        "host_key_unknown": "connection refused: unknown SSH host key {presented} of "
        "{host}:{port}. Verify it on the host and record it: {hint}",
        "host_key_mismatch": "connection refused: the SSH HOST KEY of {host}:{port} CHANGED "
        "(recorded {expected}, presented {presented}); possibly an attack. If the change is "
        "intended, verify the key on the host and record it: {hint}",
        "timed_out": "timed out after {timeout} s; the command was stopped.",
        "error": "{error}",
    },
}

# What the soak judgement found on a test host: one ticket or muted alert and what it did.
FINDINGS = {
    "pl": {
        "ticket": "{ticket} ({category}, {rule} na {asset}): {events}",
        "muted": "alert {rule} na {asset} ({category}, wyciszony w oknie {window}): {events}",
        "open_since": "otwarte od {at}",
        "opened": "otwarte {at}",
        "reopened": "otwarte ponownie {at}",
        "refired": "alert ponownie aktywny {at}",
        "escalated": "kategoria podniesiona {at}",
        "recovered": "alert ustąpił {at}",
        "resolved": "rozwiązane {at}",
        "firing_since": "aktywny od {at}",
        "fired": "aktywny od {at}",
    },
    "en": {
        "ticket": "{ticket} ({category}, {rule} on {asset}): {events}",
        "muted": "alert {rule} on {asset} ({category}, muted in window {window}): {events}",
        "open_since": "open since {at}",
        "opened": "opened {at}",
        "reopened": "reopened {at}",
        "refired": "fired again {at}",
        "escalated": "escalated {at}",
        "recovered": "recovered {at}",
        "resolved": "resolved {at}",
        "firing_since": "firing since {at}",
        "fired": "fired {at}",
    },
}

# Why production did not run, on the plan's aktualizacja ticket.
NOT_RUN_REASONS = {
    "pl": {
        "test_failed": "etap testowy nieudany: krok {phase} `{command}` na {asset} (zgłoszenie "
        "{ticket})",
        "test_interrupted": "etap testowy przerwany (zgłoszenie {ticket})",
        "test_missed": "okno etapu testowego minęło bez jego uruchomienia",
        "gate": "okno produkcyjne minęło, a bramka nie została otwarta ({gate})",
        "gate_failed": "okno produkcyjne minęło przy bramce zamkniętej przez ocenę okresu "
        "obserwacji ({findings})",
    },
    "en": {
        "test_failed": "the test stage failed: {phase} step `{command}` on {asset} (ticket "
        "{ticket})",
        "test_interrupted": "the test stage was interrupted (ticket {ticket})",
        "test_missed": "the test stage's window passed without the stage running",
        "gate": "the production window passed with the gate not open ({gate})",
        "gate_failed": "the production window passed with the gate closed by the soak "
        "judgement ({findings})",
    },
}

GATE_NAMES = {
    "pl": {
        "waiting": "oczekuje na etap testowy",
        "soaking": "trwa obserwacja",
        "held": "wstrzymana",
        "passed": "otwarta",
        "failed": "zamknięta",
        "not_required": "niewymagana",
    },
    "en": {
        "waiting": "waiting for the test stage",
        "soaking": "soaking",
        "held": "held",
        "passed": "passed",
        "failed": "failed",
        "not_required": "not required",
    },
}


def step_problem(language: str, kind: str, **values: object) -> str:
    return STEP_PROBLEMS[language][kind].format(**values)


def finding_text(
    language: str,
    *,
    ticket: str | None,
    rule: str,
    asset: str,
    category: str,
    window: str | None,
    events: list[tuple[str, str]],
) -> str:
    """One finding of the soak judgement; ``events`` are (kind, time as read) pairs."""
    texts = FINDINGS[language]
    told = ", ".join(texts[kind].format(at=at) for kind, at in events)
    key = "ticket" if ticket is not None else "muted"
    return texts[key].format(
        ticket=ticket,
        rule=rule,
        asset=asset,
        category=category_name(language, category),
        window=window or "—",
        events=told,
    )


def not_run_reason(language: str, key: str, **values: object) -> str:
    return NOT_RUN_REASONS[language][key].format(**values)


def gate_name(language: str, gate: str) -> str:
    return GATE_NAMES[language][gate]
