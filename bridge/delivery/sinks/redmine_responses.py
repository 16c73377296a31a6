"""The way back of ``kind: redmine``: what the helpdesk does in Redmine reaches dyzur's tickets.

Every ``poll_interval`` one bridge (the holder of the lease ``sink-back:<name>``) lists the
issues carrying a dyzur number in the custom field that changed since its last poll
(``GET /issues.json?cf_<id>=*&status_id=*&updated_on=>=...&sort=updated_on``) and reads their
journals (``GET /issues/<id>.json?include=journals``). Journals written by dyzur's own Redmine
user (its notes) are skipped. Of the others, each that

* assigns the issue (to anyone, or unassigns it),
* changes its status, or
* adds a public note (a private note does not count),

is the helpdesk's response: the ticket's first response (``responded_at`` = the journal's
``created_on`` on Redmine's clock, kept between the ticket's opening and now; actor
``redmine:<login>``), so the SLA clock judges the time the engineer responded in the helpdesk,
and one ``helpdesk`` line on the ticket's timeline with what was done and a link to the journal.
A status that Redmine counts as closed (``is_closed``) resolves an open ticket as an engineer's
resolve would (``ticket.resolved`` by ``redmine:<login>`` in the audit trail). When the ticket's
alert is still firing, its timeline line says so: the ticket stays resolved while the alert goes
on unchanged (the rules engine and Alertmanager report a firing alert once), and the alert's
next firing, or an escalation, reopens it within ``reopen_period`` of the close or opens a new
ticket after it, as for any resolved ticket.

Each journal goes through the lifecycle in one store transaction (response, close, timeline
line); nothing is asked of Redmine inside it. A journal already on the ticket's timeline (its
link ``#change-<id>``) is not applied twice, so the poll may read an issue again: the position
(``Cursors``, consumer ``sink-back:<name>``: Redmine's time, epoch seconds, when the last poll
began) is read with a minute's overlap, and not moved when the listing changed under the poll.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from bridge.clock import Clock
from bridge.delivery.outbox import Permanent, Retry
from bridge.delivery.sinks.message import language_of
from bridge.delivery.sinks.redmine import RedmineApi, custom_value
from bridge.models import Client, Ticket, TimelineEntry
from bridge.store.roles import Coordination, Cursor, Cursors, SinkDeliveries, TicketStore
from bridge.tickets.lifecycle import TicketLifecycle

log = logging.getLogger(__name__)

KIND = "helpdesk"  # the timeline line of a response made in a helpdesk
LEASE_SECONDS = 60.0  # renewed before each issue; another bridge may take the next round
OVERLAP = 60  # seconds of the last poll read again (updates Redmine was still saving)
PAGE = 100  # Redmine's largest page
NOTE_EXCERPT = 200
CHANGE_LINK = re.compile(r"#change-(\d+)\b")
# Timeline kinds that tell whether a ticket's alert fires: the last of them wins.
ALERT_KINDS = frozenset(
    {"opened", "reopened", "refired", "escalated", "recovered", "left_open", "window_ended"}
)
ALERT_QUIET = frozenset({"recovered", "left_open"})

TEXTS: dict[str, dict[str, str]] = {
    "pl": {
        "line": "Redmine #{issue}, {user}: {what}. {link}",
        "assigned": "przypisano do: {name}",
        "unassigned": "usunięto przypisanie",
        "status": "status {old} → {new}",
        "note": "notatka: „{text}”",
        "firing": (
            " Zamknięte w helpdesku, gdy alert wciąż trwa: zgłoszenie pozostaje rozwiązane, "
            "dopóki alert trwa bez zmian; jego ponowne wystąpienie lub eskalacja w okresie "
            "ponownego otwarcia otworzy je znowu, później nowe zgłoszenie."
        ),
    },
    "en": {
        "line": "Redmine #{issue}, {user}: {what}. {link}",
        "assigned": "assigned to {name}",
        "unassigned": "unassigned",
        "status": "status {old} → {new}",
        "note": "note: “{text}”",
        "firing": (
            " Closed in the helpdesk while the alert is still firing: the ticket stays resolved "
            "while the alert goes on unchanged; its next firing or an escalation within the "
            "reopen period reopens it, a later one opens a new ticket."
        ),
    },
}


class ResponseStore(TicketStore, SinkDeliveries, Cursors, Coordination, Protocol):
    """The roles the way back uses: tickets (read), the sink's issues (read), its poll
    position and its lease."""


@dataclass(frozen=True, slots=True)
class Response:
    """One journal of an issue dyzur created that is a response of the helpdesk."""

    number: str  # dyzur's ticket
    journal: int
    at: datetime  # the journal's created_on, Redmine's clock
    actor: str  # redmine:<login>
    closes: bool  # to a status Redmine counts as closed
    line: str  # the timeline line
    line_firing: str  # the same, for a ticket closed while its alert fires


class RedmineResponses:
    """Polls one Redmine for the responses to dyzur's issues; ``poll`` is one round, ``run``
    the loop of a thread."""

    def __init__(
        self,
        name: str,
        api: RedmineApi,
        custom_field_id: int,
        store: ResponseStore,
        lifecycle: TicketLifecycle,
        directory: Mapping[str, Client],
        clock: Clock,
        owner: str,
        *,
        interval: float = 60.0,
        responded: Callable[[Ticket], None] | None = None,
        notify: Callable[[], None] | None = None,
    ) -> None:
        self.sink = name
        self.name = f"sink-back:{name}"  # the lease and the poll position
        self.api = api
        self.custom_field_id = custom_field_id
        self.store = store
        self.lifecycle = lifecycle
        self.directory = directory
        self.clock = clock
        self.owner = owner
        self.interval = interval
        self.lease_seconds = LEASE_SECONDS
        self._responded = responded  # a first response: the metrics count it
        self._notify = notify  # tickets changed: the outbox looks at once
        self._users: dict[int, tuple[str, str]] = {}  # id -> (login, name)
        self._statuses: dict[int, tuple[str, bool]] = {}  # id -> (name, is_closed)
        self.failures = 0

    # --- one round ---------------------------------------------------------------------------

    def poll(self) -> int:
        """Bring back the responses made since the last poll, if this bridge holds the lease;
        the number of journals applied. Raises ``Retry``/``Permanent`` when Redmine fails."""
        token = self._lease()
        if token is None:
            return 0
        me = int(self.api.me()["id"])
        position = self.store.cursor(self.name).last_id
        issues, began, steady = self._changed(position)
        applied = 0
        for issue in issues:
            if self._lease() != token:
                return applied  # another bridge took over: it reads from the position
            applied += self._issue(issue, me)
        if began is not None and steady and began > position:
            self.store.set_cursor(self.name, Cursor(began), token)
        return applied

    def _lease(self) -> int | None:
        return self.store.lease(self.name, self.owner, self.lease_seconds, self.clock.time())

    def _changed(self, position: int) -> tuple[list[dict[str, Any]], int | None, bool]:
        """The issues with a dyzur number updated since ``position`` (with the overlap), oldest
        first; Redmine's time when the listing began; whether the listing held still (an issue
        seen twice: one updated while paging moved the rest, and one may have been missed)."""
        params: dict[str, str | int] = {
            f"cf_{self.custom_field_id}": "*",
            "status_id": "*",
            "sort": "updated_on",
            "limit": PAGE,
        }
        if position:
            since = datetime.fromtimestamp(max(0, position - OVERLAP), UTC)
            params["updated_on"] = ">=" + since.strftime("%Y-%m-%dT%H:%M:%SZ")
        issues: list[dict[str, Any]] = []
        seen: set[int] = set()
        began: int | None = None
        newest: int | None = None
        steady = True
        offset = 0
        while True:
            page = self.api.request("GET", "/issues.json", params={**params, "offset": offset})
            if offset == 0:
                began = _epoch(self.api.last_date)
            listed = (page or {}).get("issues", [])
            for issue in listed:
                if issue.get("updated_on"):  # without a Date header: the newest issue's time
                    updated = int(datetime.fromisoformat(issue["updated_on"]).timestamp())
                    newest = max(newest or 0, updated)
                if issue["id"] in seen:
                    steady = False
                    continue
                seen.add(issue["id"])
                issues.append(issue)
            offset += len(listed)
            if not listed or offset >= int((page or {}).get("total_count", 0)):
                return issues, began if began is not None else newest, steady

    def _issue(self, listed: dict[str, Any], me: int) -> int:
        number = custom_value(listed, self.custom_field_id)
        if not number:
            return 0  # a custom field Redmine does not filter by lists every issue
        known = self.store.sink_delivery(self.sink, number)
        if known is None or known.remote_id != str(listed["id"]):
            return 0  # not the issue this sink made for the ticket (another bridge's number)
        done = _applied(self.store.timeline(number))
        try:
            found = self.api.request(
                "GET", f"/issues/{listed['id']}.json", params={"include": "journals"}
            )
        except Permanent as gone:  # deleted since it was listed: the others go on
            log.warning("helpdesk sink %s: %s", self.sink, gone)
            return 0
        issue = (found or {}).get("issue", {})
        applied = 0
        for journal in sorted(issue.get("journals", []), key=lambda j: j["id"]):
            user = (journal.get("user") or {}).get("id")
            if journal["id"] in done or user is None or user == me:
                continue  # dyzur's own notes never count as the helpdesk's response
            response = self._response(number, issue, journal, user)
            if response is not None and self._apply(response):
                applied += 1
        return applied

    # --- one journal -------------------------------------------------------------------------

    def _response(
        self, number: str, issue: dict[str, Any], journal: dict[str, Any], user: int
    ) -> Response | None:
        """What the journal did that counts as a response, as the timeline tells it; None when
        nothing does (a private note, another field)."""
        ticket = self.store.get_ticket(number)
        language = language_of(self.directory.get(ticket.client) if ticket else None)
        text = TEXTS[language]
        what: list[str] = []
        closes = False
        for detail in journal.get("details", []):
            if detail.get("property") != "attr":
                continue
            if detail.get("name") == "assigned_to_id":
                new = detail.get("new_value")
                what.append(
                    text["assigned"].format(name=self._user(int(new))[1])
                    if new
                    else text["unassigned"]
                )
            elif detail.get("name") == "status_id":
                old = self._status(detail.get("old_value"))
                new_status = self._status(detail.get("new_value"))
                closes = new_status[1]
                what.append(text["status"].format(old=old[0], new=new_status[0]))
        notes = (journal.get("notes") or "").strip()
        if notes and not journal.get("private_notes"):
            excerpt = " ".join(notes.split())
            if len(excerpt) > NOTE_EXCERPT:
                excerpt = excerpt[: NOTE_EXCERPT - 1] + "…"
            what.append(text["note"].format(text=excerpt))
        if not what:
            return None
        login, name = self._user(user)
        link = f"{self.api.where}/issues/{issue['id']}#change-{journal['id']}"
        line = text["line"].format(
            issue=issue["id"], user=f"{name} ({login})", what="; ".join(what), link=link
        )
        return Response(
            number,
            int(journal["id"]),
            datetime.fromisoformat(journal["created_on"]),
            f"redmine:{login}",
            closes,
            line,
            line + text["firing"],
        )

    def _apply(self, response: Response) -> bool:
        """One journal in one transaction: the first response, the close, the timeline line.
        False when it was applied before (another round, another bridge)."""
        number, actor, lifecycle = response.number, response.actor, self.lifecycle
        with self.store.transaction():
            timeline = self.store.timeline(number)
            if response.journal in _applied(timeline):
                return False
            ticket, first = lifecycle.acknowledge_within(number, actor, response.at)
            firing = False
            if response.closes and ticket.is_open:
                firing = _alert_firing(ticket, timeline)
                ticket = lifecycle.resolve_within(number, actor)
            line = response.line_firing if firing else response.line
            lifecycle.remark_within(number, KIND, line, actor)
        log.info("helpdesk sink %s: %s", self.sink, response.line)
        if first and self._responded is not None:
            self._responded(ticket)
        if self._notify is not None:
            self._notify()
        return True

    # --- Redmine's names ---------------------------------------------------------------------

    def _user(self, user_id: int) -> tuple[str, str]:
        """A Redmine user's login and name; ``#<id>`` for one dyzur cannot see (or a group)."""
        if user_id not in self._users:
            try:
                found = self.api.request("GET", f"/users/{user_id}.json")
            except Permanent:
                self._users[user_id] = (f"#{user_id}", f"#{user_id}")
            else:
                user = (found or {}).get("user", {})
                name = " ".join(str(user.get(k) or "") for k in ("firstname", "lastname"))
                login = str(user.get("login") or f"#{user_id}")
                self._users[user_id] = (login, name.strip() or login)
        return self._users[user_id]

    def _status(self, value: object) -> tuple[str, bool]:
        """A status's name and whether Redmine counts it as closed."""
        if value is None:
            return ("—", False)
        status_id = int(str(value))
        if status_id not in self._statuses:  # a status added since: list them again
            listed = self.api.request("GET", "/issue_statuses.json") or {}
            for s in listed.get("issue_statuses", []):
                self._statuses[int(s["id"])] = (str(s["name"]), bool(s.get("is_closed")))
        return self._statuses.get(status_id, (f"#{status_id}", False))

    # --- the thread ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Poll every ``interval`` until ``stop``; a failure is logged when it starts and when
        it ends, and the next round tries again."""
        try:
            while True:
                try:
                    self.poll()
                    if self.failures:
                        log.warning("helpdesk sink %s: reading Redmine again", self.sink)
                    self.failures = 0
                except Exception as exc:
                    self.failures += 1
                    self.api.close()
                    if self.failures == 1:
                        if isinstance(exc, Retry | Permanent):
                            log.error("helpdesk sink %s: cannot read Redmine: %s", self.sink, exc)
                        else:
                            log.exception("helpdesk sink %s: reading Redmine failed", self.sink)
                if stop.wait(self.interval):
                    return
        finally:
            self.api.close()
            try:
                self.store.release_lease(self.name, self.owner)
            except Exception:
                log.exception("helpdesk sink %s: lease not released", self.sink)


def _applied(timeline: list[TimelineEntry]) -> set[int]:
    """The journals already on the timeline (by the link of their ``helpdesk`` line)."""
    return {
        int(found)
        for entry in timeline
        if entry.kind == KIND
        for found in CHANGE_LINK.findall(entry.message)
    }


def _alert_firing(ticket: Ticket, timeline: list[TimelineEntry]) -> bool:
    """Whether the ticket's alert still fires: its last alert line is not a recovery. Update
    plans' tickets have no alert."""
    if ticket.fingerprint.startswith("update:"):
        return False
    last = next((e.kind for e in reversed(timeline) if e.kind in ALERT_KINDS), None)
    return last is not None and last not in ALERT_QUIET


def _epoch(date: str | None) -> int | None:
    """An HTTP ``Date`` header as epoch seconds; None when absent or unreadable."""
    if not date:
        return None
    try:
        at = parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        return None
    return int((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp())
