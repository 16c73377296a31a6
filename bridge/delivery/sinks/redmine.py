"""``kind: redmine``: each ticket as a Redmine issue, its later changes as journal notes.

Out (this module)
    The ticket's first change creates an issue in the hospital's project (``projects``: client
    id -> project identifier, ``default`` for the rest), with the tracker and priority of the
    ticket's category (``trackers``, ``priorities``; Redmine's defaults otherwise), dyzur's
    number in the custom field ``custom_field_id``, the subject ``[DZ-2026-000123] Awaria: ...``
    and the description of ``message.body``. The issue's id is the ticket's ``remote_id``. Every
    later change is a journal note (``message.note``); the changes of one ticket a batch holds
    go as ONE note (a burst of twenty re-fires is one note, not twenty). A resolved ticket sets
    ``resolved_status_id`` (if configured); a reopened one puts a closed (or resolved) issue at
    ``reopened_status_id`` (default: the tracker's default status, Redmine's "New"); an
    escalation sets the tracker and priority of the new category and the subject. Changes made
    from Redmine itself (actor ``redmine:...``, brought back by ``redmine_responses``) are not
    sent back to it. ``probe`` (``dyzur sinks test``) names dyzur's Redmine user and checks the
    projects and the custom field, writing nothing.

Exactly once, as Redmine shows it
    Before creating an issue (no ``remote_id`` known yet) the sink looks for one carrying the
    ticket's number in the custom field in the hospital's project (``GET /issues.json?cf_<id>=
    <number>|<number>...&project_id=...&status_id=*``, the batch's new tickets at once): a bridge
    that stopped between "created in Redmine" and "mapping stored" finds its issue and does not
    create a second one. Each change leaves a marker in the issue (``dz-`` and the first 12 hex
    digits of its idempotency key: at the end of the description for the change that created
    it, at the end of the note for the changes of a note). After every start and every failure
    (a timeout may hide a note Redmine took), the first delivery to an issue reads its journals
    and drops the changes whose markers are already there.

Answers
    * 2xx: taken.
    * 401: Redmine refused the API key (wrong or revoked): retried with the backoff until the
      key is fixed (the file is read again after each failure), every change waiting in order;
      nothing could be delivered with that key anyway.
    * 403: dyzur's user may not do this in this project (a role or a workflow is missing): the
      change is parked as failed (other hospitals' tickets go on); ``dyzur sinks retry`` after
      the role is given.
    * 404 of a mapped issue: it was deleted in Redmine (or moved where dyzur's user cannot see
      it). The change is parked as failed, naming the issue, and the ticket's later changes
      wait behind it; dyzur does not create another issue behind the helpdesk's back.
    * 422: Redmine refused the content (a priority it does not have, a required field): parked
      as failed with Redmine's own error messages. (A status or tracker its workflow does not
      allow dyzur's role Redmine ignores, answering 204: the sink reads the issue back and
      logs it.)
    * 429, 503 (``Retry-After`` honoured), other 5xx, 408, timeouts, refused connections:
      retried with the backoff, in order.
    * a redirect: refused as failed (the ``url`` is wrong, e.g. http for an https Redmine).
    The API key never appears in an error, a log or an audit event.

The way back (responses made in Redmine) is ``bridge.delivery.sinks.redmine_responses``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from bridge.delivery.outbox import Permanent, Retry
from bridge.delivery.sinks import SinkStore, TicketChange, TicketSink, without_userinfo
from bridge.delivery.sinks.message import body, language_of, note, subject
from bridge.delivery.sinks.webhook import BUSY, retry_after
from bridge.models import Asset, AuditEvent, Category, Client

log = logging.getLogger(__name__)

TIMEOUT = 10.0
CHECKED_MAX = 10_000  # issues whose journals are known since the last failure
LOOK_UP = 50  # ticket numbers looked up in one request (the page holds 100 issues)
SUBJECT_MAX = 255  # Redmine's limit
MARKER = re.compile(r"\bdz-([0-9a-f]{12})\b")
FROM_REDMINE = "redmine:"  # the actor of a change brought back from a Redmine
RESOLVED = "ticket.resolved"
REOPENED = "ticket.reopened"
RETITLED = frozenset({"ticket.escalated", REOPENED})


def marker(change: TicketChange) -> str:
    """The trace a change leaves in its issue: the same on every delivery of the change."""
    return f"dz-{change.key[:12]}"


def from_redmine(change: TicketChange) -> bool:
    """A change made in a Redmine (its acknowledgment or close, brought back): not sent back."""
    return change.event.actor.startswith(FROM_REDMINE)


class RedmineApi:
    """Redmine's REST API as dyzur's Redmine user: JSON over httpx with the key of
    ``api_key_file`` (read at first use and again after a failure, so a fixed key is taken
    without a restart); every answer that is not a 2xx becomes ``Retry`` or ``Permanent`` with
    a reason that names Redmine without the key."""

    def __init__(self, url: str, api_key_file: Path, *, timeout: float = TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.where = without_userinfo(self.url)  # named in errors and logs
        self.api_key_file = api_key_file
        self.timeout = timeout
        self._key: str | None = None
        self._http: httpx.Client | None = None
        self._me: dict[str, Any] | None = None
        # The Date header of the last answer: Redmine's clock (the way back's poll position).
        self.last_date: str | None = None

    def key(self) -> str:
        if self._key is None:
            try:
                key = self.api_key_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:  # names the file, never its content
                why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise Retry(f"cannot read api_key_file {self.api_key_file}: {why}") from None
            if not key:
                raise Retry(f"api_key_file {self.api_key_file} is empty")
            self._key = key
        return self._key

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                base_url=self.url,
                timeout=self.timeout,
                follow_redirects=False,
                headers={"User-Agent": "dyzur", "Accept": "application/json"},
            )
        return self._http

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> Any:
        """The answer's JSON (None for an empty 2xx, such as a PUT's 204)."""
        headers = {"X-Redmine-API-Key": self.key()}
        try:
            answer = self._client().request(method, path, params=params, json=json, headers=headers)
        except httpx.HTTPError as exc:  # timeouts, refused and broken connections
            told = str(exc).replace(self.url, self.where)
            raise Retry(f"Redmine at {self.where}: {type(exc).__name__}: {told}") from None
        self.last_date = answer.headers.get("Date")
        status = answer.status_code
        if 200 <= status < 300:
            return answer.json() if answer.content.strip() else None
        what = (
            f"Redmine at {self.where} answered {status} {answer.reason_phrase} to {method} {path}"
        )
        if status == 401:
            self._key = None  # read the file again: the key may have been fixed meanwhile
            raise Retry(
                f"{what}: it refused dyzur's API key; check api_key_file {self.api_key_file}"
            )
        if status in BUSY:
            raise Retry(what, retry_after(answer.headers.get("Retry-After")))
        if status >= 500 or status == 408:
            raise Retry(what)
        if status == 403:
            raise Permanent(f"{what}: dyzur's Redmine user may not do this in the project")
        if status == 404 and path.startswith("/issues/"):
            raise Permanent(f"{what}: the issue was deleted, or dyzur's user cannot see it")
        if 300 <= status < 400:
            where = answer.headers.get("Location", "")
            raise Permanent(f"{what}: redirected to {without_userinfo(where)}; fix the url")
        raise Permanent(what + _errors(answer))

    def me(self) -> dict[str, Any]:
        """Dyzur's Redmine user (``/users/current.json``): its id and login; refused when the
        key is taken for the anonymous user. Asked once per session (again after ``close``)."""
        if self._me is None:
            found = self.request("GET", "/users/current.json")
            user = found.get("user") if isinstance(found, dict) else None
            if not isinstance(user, dict) or not user.get("id") or not user.get("login"):
                raise Retry(
                    f"Redmine at {self.where} did not name dyzur's user for its API key "
                    f"(anonymous?); check api_key_file {self.api_key_file}"
                )
            self._me = {k: user[k] for k in ("id", "login", "firstname", "lastname", "admin")
                        if k in user}  # fmt: skip  # never the api_key it also answers with
        return self._me

    def close(self) -> None:
        """Forget the connection, the key and who we are (after a failure, on stop)."""
        if self._http is not None:
            self._http.close()
            self._http = None
        self._key = None
        self._me = None


def _errors(answer: httpx.Response) -> str:
    """Redmine's own error messages (422: ``{"errors": [...]}``), else an excerpt."""
    try:
        data = answer.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("errors"), list):
        return ": " + "; ".join(str(e) for e in data["errors"])
    text = " ".join(answer.text.split())[:200]
    return f": {text}" if text else ""


class RedmineSink(TicketSink):
    """Creates one Redmine issue per ticket and writes its later changes as notes."""

    kind = "redmine"

    def __init__(
        self,
        name: str,
        api: RedmineApi,
        store: SinkStore,
        clients: frozenset[str] | None = None,
        *,
        projects: Mapping[str, str],
        custom_field_id: int,
        trackers: Mapping[Category, int] | None = None,
        priorities: Mapping[Category, int] | None = None,
        resolved_status_id: int | None = None,
        reopened_status_id: int | None = None,
        directory: Mapping[str, Client],
        assets: Mapping[str, Asset],
        public_url: str | None = None,
    ) -> None:
        super().__init__(name, store, clients)
        self.api = api
        self.projects = projects
        self.custom_field_id = custom_field_id
        self.trackers = trackers or {}
        self.priorities = priorities or {}
        self.resolved_status_id = resolved_status_id
        self.reopened_status_id = reopened_status_id
        self.directory = directory
        self.assets = assets
        self.public_url = public_url
        # Issues whose journals were read since the last start or failure (``_check``).
        self._checked: set[str] = set()
        # This batch's tickets without an issue yet, looked up at once: number -> issue or None.
        self._looked_up: dict[str, str | None] = {}
        self._default_status: dict[int, int] = {}  # tracker id -> its default status

    def deliver(self, events: Sequence[AuditEvent]) -> None:
        self._looked_up = self._look_up(events)
        try:
            super().deliver(events)
        finally:
            self._looked_up = {}

    def send(self, change: TicketChange, remote_id: str | None) -> str | None:
        return self.send_group([change], remote_id)

    def send_group(self, changes: list[TicketChange], remote_id: str | None) -> str | None:
        changes = [c for c in changes if not from_redmine(c)]
        if not changes:
            return remote_id
        self.api.me()  # a key Redmine takes for a real user, before anything is written
        number = changes[0].number
        if remote_id is None:
            remote_id = self._find(changes[0])
            if remote_id is None:
                remote_id = self._create(changes[0])
                # Recorded now: a failure of the note below must not lose the issue's id.
                self._record(changes[0].event, number, remote_id, "delivered", None)
                self._check(remote_id)
                changes = changes[1:]
        if remote_id not in self._checked:
            taken = self._markers(remote_id, changes[0])
            changes = [c for c in changes if marker(c) not in taken]
            self._check(remote_id)
        if changes:
            self._update(remote_id, changes)
        return remote_id

    def _check(self, remote_id: str) -> None:
        """The issue's journals are known to hold no change still to come, until the next
        failure (``close``); a bounded memory: forgetting costs one read of the journals."""
        if len(self._checked) >= CHECKED_MAX:
            self._checked.clear()
        self._checked.add(remote_id)

    def probe(self) -> str:
        """Who dyzur is in Redmine, and whether it can work there: every project of
        ``projects`` visible to its user, the custom field usable as a filter. Writes nothing."""
        me = self.api.me()
        name = " ".join(str(me.get(k, "")) for k in ("firstname", "lastname")).strip()
        admin = ", an administrator" if me.get("admin") else ""
        who = f"Redmine at {self.api.where}: dyzur acts as {me['login']} "
        who += f"({name}, user #{me['id']}{admin})"
        problems = []
        for project in sorted(set(self.projects.values())):
            try:
                self.api.request("GET", f"/projects/{project}.json")
            except Permanent:
                problems.append(f"project {project!r} does not exist or dyzur's user is no member")
        field = f"cf_{self.custom_field_id}"
        listed = self.api.request(
            "GET", "/issues.json", params={field: "dz-probe-no-such-ticket", "status_id": "*"}
        )
        if (listed or {}).get("total_count"):  # Redmine ignores a filter it does not offer
            problems.append(
                f"custom field #{self.custom_field_id} is not used as a filter (or not visible "
                "to dyzur's user): responses and a restart's look-up cannot find issues by it"
            )
        if problems:
            raise Permanent(f"{who}, but: " + "; ".join(problems))
        projects = ", ".join(sorted(set(self.projects.values())))
        return f"{who}; projects {projects}; custom field #{self.custom_field_id}"

    # --- the issue -------------------------------------------------------------------------

    def _project(self, change: TicketChange) -> str:
        """The Redmine project of the ticket's hospital."""
        client = change.event.client or ""
        project = self.projects.get(client, self.projects.get("default"))
        if project is None:  # config's cross-check prevents it; a client removed since
            raise Permanent(
                f"no Redmine project for hospital {client!r}: add it to projects, or a default",
                change.event.id,
            )
        return project

    def _look_up(self, events: Sequence[AuditEvent]) -> dict[str, str | None]:
        """The issues of the batch's tickets that have none recorded yet, one request per
        project for up to LOOK_UP numbers (``cf_<id>=a|b|c``) instead of one per ticket (a
        backlog of new tickets after an outage). A project Redmine refuses is left to ``_find``,
        which names the change."""
        numbers: dict[str, set[str]] = {}
        for event in events:
            number = event.detail.get("ticket")
            if not isinstance(number, str) or event.actor.startswith(FROM_REDMINE):
                continue
            project = self.projects.get(event.client or "", self.projects.get("default"))
            known = self.store.sink_delivery(self.sink, number)
            if project is not None and (known is None or known.remote_id is None):
                numbers.setdefault(project, set()).add(number)
        if not numbers:
            return {}
        self.api.me()
        found: dict[str, str | None] = {}
        for project, wanted in numbers.items():
            ordered = sorted(wanted)
            for first in range(0, len(ordered), LOOK_UP):
                chunk = ordered[first : first + LOOK_UP]
                try:
                    listed = self._issues_of(project, "|".join(chunk))
                except Permanent:
                    continue
                found.update(dict.fromkeys(chunk))
                for issue in listed:
                    number = custom_value(issue, self.custom_field_id)
                    if number in chunk:
                        found[number] = str(issue["id"])
        return found

    def _issues_of(self, project: str, numbers: str) -> list[dict[str, Any]]:
        """The issues of ``project`` whose custom field is one of ``numbers`` (``a|b``)."""
        params: dict[str, str | int] = {
            f"cf_{self.custom_field_id}": numbers,
            "project_id": project,
            "status_id": "*",
            "limit": 100,
        }
        found = self.api.request("GET", "/issues.json", params=params)
        return list((found or {}).get("issues", []))

    def _find(self, change: TicketChange) -> str | None:
        """The issue of the hospital's project that already carries the ticket's number (a
        crash after creating it), or None."""
        if change.number in self._looked_up:
            return self._looked_up[change.number]
        try:
            listed = self._issues_of(self._project(change), change.number)
        except Permanent as refusal:  # the project is gone, or dyzur's user is not in it
            raise Permanent(refusal.reason, change.event.id) from None
        for issue in listed:
            if custom_value(issue, self.custom_field_id) == change.number:  # a filter that
                return str(issue["id"])  # Redmine ignores (not "used as a filter") finds all
        return None

    def _create(self, change: TicketChange) -> str:
        ticket = change.ticket
        client = self.directory.get(change.event.client or "")
        issue: dict[str, Any] = {
            "project_id": self._project(change),
            "subject": subject(change, language_of(client))[:SUBJECT_MAX],
            "description": self._description(change, client),
            "custom_fields": [{"id": self.custom_field_id, "value": change.number}],
        }
        if ticket is not None:
            issue.update(self._category_fields(ticket.category))
        try:
            created = self.api.request("POST", "/issues.json", json={"issue": issue})
        except Permanent as refusal:
            raise Permanent(refusal.reason, change.event.id) from None
        made = (created or {}).get("issue", {})
        if "id" not in made:
            raise Retry(f"Redmine at {self.api.where} created no issue: {str(created)[:200]}")
        remote_id = str(made["id"])
        if custom_value(made, self.custom_field_id) != change.number:
            log.error(
                "helpdesk sink %s: Redmine issue #%s has no dyzur number in custom field #%s: "
                "enable the field for its project and tracker (else a restart may create the "
                "issue again, and responses there do not come back)",
                self.sink,
                remote_id,
                self.custom_field_id,
            )
        return remote_id

    def _description(self, change: TicketChange, client: Client | None) -> str:
        asset = self.assets.get(change.event.asset or "")
        return f"{body(change, client, asset, self.public_url).rstrip()}\n\n{marker(change)}\n"

    def _category_fields(self, category: Category) -> dict[str, int]:
        fields = {}
        if category in self.trackers:
            fields["tracker_id"] = self.trackers[category]
        if category in self.priorities:
            fields["priority_id"] = self.priorities[category]
        return fields

    def _markers(self, remote_id: str, change: TicketChange) -> set[str]:
        """The markers already in the issue's description and notes."""
        try:
            found = self.api.request(
                "GET", f"/issues/{remote_id}.json", params={"include": "journals"}
            )
        except Permanent as refusal:
            raise Permanent(refusal.reason, change.event.id) from None
        issue = (found or {}).get("issue", {})
        texts = [issue.get("description") or ""]
        texts += [j.get("notes") or "" for j in issue.get("journals", [])]
        return {f"dz-{m}" for t in texts for m in MARKER.findall(t)}

    def _update(self, remote_id: str, changes: list[TicketChange]) -> None:
        """One note with every change, and the issue's status and category if they changed."""
        first = changes[0]
        client = self.directory.get(first.event.client or "")
        language = language_of(client)
        notes = "\n\n".join(note(c, language) for c in changes)
        issue: dict[str, Any] = {"notes": f"{notes}\n\n{' '.join(marker(c) for c in changes)}"}
        last = changes[-1]
        ticket = last.ticket
        if ticket is not None and any(c.event.action in RETITLED for c in changes):
            issue.update(self._category_fields(ticket.category))
            issue["subject"] = subject(last, language)[:SUBJECT_MAX]
        status = self._status(remote_id, changes)
        if status is not None:
            issue["status_id"] = status
        try:
            self.api.request("PUT", f"/issues/{remote_id}.json", json={"issue": issue})
        except Permanent as refusal:
            raise Permanent(refusal.reason, first.event.id) from None
        self._check_taken(remote_id, issue)

    def _check_taken(self, remote_id: str, sent: dict[str, Any]) -> None:
        """Redmine ignores a status or tracker its workflow does not allow dyzur's role (and
        answers 204 all the same): say so in the log, naming the setting to fix."""
        wanted = {k: sent[k] for k in ("status_id", "tracker_id") if k in sent}
        if not wanted:
            return
        found = self.api.request("GET", f"/issues/{remote_id}.json") or {}
        issue = found.get("issue", {})
        for key, value in wanted.items():
            has = issue.get(key.removesuffix("_id"), {}).get("id")
            if has != value:
                log.error(
                    "helpdesk sink %s: Redmine kept %s #%s of issue #%s instead of #%s: check "
                    "the setting and the workflow of dyzur's role in Redmine",
                    self.sink,
                    key.removesuffix("_id"),
                    has,
                    remote_id,
                    value,
                )

    def _status(self, remote_id: str, changes: list[TicketChange]) -> int | None:
        """The status the note sets: of the last resolution or reopening among the changes."""
        last = next(
            (c.event.action for c in reversed(changes) if c.event.action in (RESOLVED, REOPENED)),
            None,
        )
        if last == RESOLVED:
            return self.resolved_status_id
        if last == REOPENED:
            return self._reopened_status(remote_id)
        return None

    def _reopened_status(self, remote_id: str) -> int | None:
        """For a reopened ticket: ``reopened_status_id`` (else the default status of the
        issue's tracker, Redmine's "New") when the issue is closed or at ``resolved_status_id``;
        None (left as it is) when the helpdesk still has it open."""
        found = self.api.request("GET", f"/issues/{remote_id}.json")
        issue = (found or {}).get("issue", {})
        status = issue.get("status", {})
        if not status.get("is_closed") and status.get("id") != self.resolved_status_id:
            return None
        if self.reopened_status_id is not None:
            return self.reopened_status_id
        tracker = issue.get("tracker", {}).get("id")
        if tracker not in self._default_status:
            listed = self.api.request("GET", "/trackers.json") or {}
            for t in listed.get("trackers", []):
                if isinstance(t.get("default_status"), dict):
                    self._default_status[t["id"]] = t["default_status"]["id"]
        return self._default_status.get(tracker)

    def close(self) -> None:
        self.api.close()
        self._checked.clear()


def custom_value(issue: Mapping[str, Any], field_id: int) -> str | None:
    """The value of custom field ``field_id`` of an issue as Redmine's JSON has it."""
    for field in issue.get("custom_fields", []) or []:
        if field.get("id") == field_id:
            value = field.get("value")
            return value if isinstance(value, str) else None
    return None
