"""The Redmine helpdesk sink against Debian's real Redmine (one per test session, tests/redmine.py),
end to end through the bridge: each ticket is one issue in its hospital's project with the
category's tracker and priority and dyzur's number in the custom field, later changes are notes
(a burst is one note), a resolution sets the status; a crash between "created in Redmine" and
"mapping stored" creates no second issue, and a note Redmine took before a lost answer is not
written twice. The way back: the engineer's assignment, note or status change in Redmine is the
ticket's first response at Redmine's time, by redmine:<login>; a close in Redmine resolves the
ticket; dyzur's own notes count for nothing. Each test has its own projects."""

from __future__ import annotations

import itertools
import json
import logging
import signal
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import yaml

from bridge.clock import FixedClock, local_iso
from bridge.config import ConfigError, parse_config
from bridge.delivery.outbox import IDLE_POLL, Permanent, Retry
from bridge.models import Category
from bridge.store import open_store
from tests.conftest import auth, config_data, free_port
from tests.processes import wait_for

_projects = itertools.count(1)


@pytest.fixture
def projects(redmine):
    """This test's own projects: Szpital A's, and the default (Klinika B's)."""
    n = next(_projects)
    return redmine.project(f"szpital-a-{n}"), redmine.project(f"klinika-b-{n}")


@pytest.fixture
def clock():
    """Tickets open a few minutes before Redmine's clock reads now; ``now`` catches up."""
    return FixedClock(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5))


def now(clock):
    """The bridge's clock moved to the wall clock's now (Redmine's journals are made on it)."""
    clock.set(datetime.now(UTC))


def key_file(tmp_path, key, name="redmine.key"):
    path = tmp_path / name
    path.write_text(key + "\n")
    path.chmod(0o600)
    return path


def sink_config(redmine, projects, **extra):
    a, b = projects
    return {
        "name": "redmine",
        "kind": "redmine",
        "url": redmine.url,
        "api_key_file": "redmine.key",
        "projects": {"szpital-a": a, "default": b},
        "custom_field_id": redmine.custom_field_id,
        "trackers": {"awaria": redmine.trackers["Bug"], "usterka": redmine.trackers["Support"]},
        "priorities": {
            "awaria": redmine.priorities["Urgent"],
            "usterka": redmine.priorities["High"],
        },
        "resolved_status_id": redmine.statuses["Resolved"],
        **extra,
    }


@pytest.fixture
def loaded(tmp_path, redmine, projects):
    key_file(tmp_path, redmine.dyzur.key)
    data = config_data()
    data["sinks"] = [sink_config(redmine, projects)]
    return parse_config(data, "test.yaml", tmp_path)


def push(api, asset, value):
    sample = {
        "metric": "dz_test_disk_used_ratio",
        "labels": {"asset": asset, "mountpoint": "/var"},
        "value": value,
    }
    r = api.post("/api/v1/samples", json={"samples": [sample]}, headers=auth("agent"))
    assert r.status_code == 200, r.text


def ticket_of(api, client):
    return api.get(f"/api/v1/tickets?client={client}", headers=auth("admin")).json()[0]["number"]


def shown(api, number):
    r = api.get(f"/api/v1/tickets/{number}", headers=auth("admin"))
    assert r.status_code == 200, r.text
    return r.json()


def deliver(bridge):
    """Rounds of the Redmine sink's outbox worker until it has nothing more to send."""
    worker = bridge.outbox.workers["sink:redmine"]
    for _ in range(50):
        if worker.step() == IDLE_POLL:
            return worker
    raise AssertionError("the sink kept delivering")


def poll(bridge, clock):
    now(clock)
    return bridge.helpdesk_responses[0].poll()


def dyzur_notes(redmine, issue_id):
    return [
        j["notes"]
        for j in redmine.issue(issue_id)["journals"]
        if j["user"]["id"] == redmine.dyzur.id and j["notes"]
    ]


def test_a_ticket_is_an_issue_in_its_hospitals_project_and_later_changes_are_notes(
    api, bridge, clock, redmine, projects
):
    project_a, project_b = projects
    push(api, "srv-a1", 0.95)
    number = ticket_of(api, "szpital-a")
    deliver(bridge)
    [issue] = redmine.issues(project_a)
    assert redmine.issues(project_b) == []
    assert issue["subject"].startswith(f"[{number}] Usterka: ")
    assert issue["tracker"]["id"] == redmine.trackers["Support"]
    assert issue["priority"]["id"] == redmine.priorities["High"]
    assert issue["author"]["id"] == redmine.dyzur.id
    assert {"id": redmine.custom_field_id, "name": "dyzur", "value": number} in issue[
        "custom_fields"
    ]
    assert "srv-a1" in issue["description"] and "Szpital A" in issue["description"]
    ticket = shown(api, number)
    assert [(d["sink"], d["remote_id"], d["state"]) for d in ticket["deliveries"]] == [
        ("redmine", str(issue["id"]), "delivered")
    ]
    # A burst of changes (escalated, acknowledged in dyzur, recovered and resolved) is ONE note.
    clock.advance(60)
    push(api, "srv-a1", 0.99)
    clock.advance(60)
    r = api.post(f"/api/v1/tickets/{number}/ack", headers=auth("engineer"))
    assert r.status_code == 200
    clock.advance(60)
    push(api, "srv-a1", 0.5)
    assert shown(api, number)["status"] == "resolved"
    deliver(bridge)
    issue = redmine.issue(issue["id"])
    [burst] = dyzur_notes(redmine, issue["id"])
    for said in ("Kategoria podniesiona", "Pierwsza reakcja", "jan.kowalski", "rozwiązane"):
        assert said in burst
    assert issue["tracker"]["id"] == redmine.trackers["Bug"]  # awaria's, after the escalation
    assert issue["priority"]["id"] == redmine.priorities["Urgent"]
    assert issue["subject"].startswith(f"[{number}] Awaria: ")
    assert issue["status"]["id"] == redmine.statuses["Resolved"]
    # Klinika B's ticket goes to the default project, in English.
    push(api, "srv-b1", 0.95)
    deliver(bridge)
    [other] = redmine.issues(project_b)
    assert other["subject"].startswith(f"[{ticket_of(api, 'klinika-b')}] Fault (Usterka): ")
    assert "Hospital" in redmine.issue(other["id"])["description"]


def test_a_crash_between_creating_the_issue_and_storing_its_id_creates_no_second_issue(
    api, bridge, clock, redmine, projects
):
    project_a, _ = projects
    push(api, "srv-a1", 0.95)
    number = ticket_of(api, "szpital-a")
    worker = bridge.outbox.workers["sink:redmine"]
    api_ = worker.consumer.api
    request = api_.request

    def killed(method, path, **kwargs):  # the bridge dies once Redmine created the issue
        answer = request(method, path, **kwargs)
        if method == "POST":
            api_.request = request
            raise RuntimeError("killed")
        return answer

    api_.request = killed
    assert worker.step() != 0.0  # failed: offered again after the backoff
    [issue] = redmine.issues(project_a)
    assert shown(api, number)["deliveries"] == []  # dyzur never learned the issue's id
    deliver(bridge)
    assert [i["id"] for i in redmine.issues(project_a)] == [issue["id"]]
    assert [d["remote_id"] for d in shown(api, number)["deliveries"]] == [str(issue["id"])]
    # Later changes go to that issue.
    push(api, "srv-a1", 0.99)
    deliver(bridge)
    assert len(dyzur_notes(redmine, issue["id"])) == 1
    assert len(redmine.issues(project_a)) == 1


def test_a_note_whose_answer_was_lost_is_not_written_twice(api, bridge, clock, redmine, projects):
    project_a, _ = projects
    push(api, "srv-a1", 0.95)
    deliver(bridge)
    [issue] = redmine.issues(project_a)
    clock.advance(60)
    push(api, "srv-a1", 0.99)
    worker = bridge.outbox.workers["sink:redmine"]
    api_ = worker.consumer.api
    request = api_.request

    def answer_lost(method, path, **kwargs):  # Redmine takes the note; its answer never comes
        answer = request(method, path, **kwargs)
        if method == "PUT":
            api_.request = request
            raise Retry("ReadTimeout: timed out")
        return answer

    api_.request = answer_lost
    assert worker.step() != 0.0
    assert len(dyzur_notes(redmine, issue["id"])) == 1
    deliver(bridge)  # the escalation again: its marker is in the issue, so it is dropped
    [note] = dyzur_notes(redmine, issue["id"])
    assert "Kategoria podniesiona" in note
    assert shown(api, ticket_of(api, "szpital-a"))["deliveries"][0]["state"] == "delivered"


def helpdesk_lines(ticket):
    return [e for e in ticket["timeline"] if e["kind"] == "helpdesk"]


def test_the_engineers_response_in_redmine_is_the_tickets_first_response(
    api, bridge, clock, redmine, projects
):
    project_a, _ = projects
    push(api, "srv-a1", 0.95)
    number = ticket_of(api, "szpital-a")
    deliver(bridge)
    [issue] = redmine.issues(project_a)
    clock.advance(60)
    push(api, "srv-a1", 0.99)
    deliver(bridge)
    assert dyzur_notes(redmine, issue["id"])  # dyzur's own note: no response
    redmine.call(
        redmine.dyzur, "PUT", f"/issues/{issue['id']}.json", json={"issue": {"notes": "by dyzur"}}
    )
    assert poll(bridge, clock) == 0
    assert shown(api, number)["responded_at"] is None
    # The engineer takes the issue in Redmine.
    redmine.call(
        redmine.engineer,
        "PUT",
        f"/issues/{issue['id']}.json",
        json={"issue": {"assigned_to_id": redmine.engineer.id}},
    )
    journal = redmine.issue(issue["id"])["journals"][-1]
    # Another bridge on the same store does not poll while this one holds the lease.
    mine = bridge.helpdesk_responses[0]
    other = type(mine)(
        "redmine", mine.api, mine.custom_field_id, bridge.store, bridge.lifecycle, {}, clock, "b2"
    )
    assert poll(bridge, clock) == 1
    assert other.poll() == 0
    ticket = shown(api, number)
    responded = datetime.fromisoformat(journal["created_on"])
    assert ticket["responded_at"] == local_iso(responded)  # Redmine's time, not the poll's
    assert ticket["responded_by"] == "redmine:jan.kowalski"
    assert ticket["sla_state"] == "met" and ticket["responded_within_deadline"] is True
    [line] = helpdesk_lines(ticket)
    assert line["actor"] == "redmine:jan.kowalski"
    assert "Jan Kowalski (jan.kowalski)" in line["message"]
    assert "przypisano do: Jan Kowalski" in line["message"]
    assert line["message"].endswith(f"{redmine.url}/issues/{issue['id']}#change-{journal['id']}")
    trail = api.get("/api/v1/audit?action=ticket.acknowledged", headers=auth("admin")).json()
    events = trail if isinstance(trail, list) else trail["events"]
    assert [e["actor"] for e in events] == ["redmine:jan.kowalski"]
    # A public note is on the timeline; a private one is not; the first response stays.
    for notes, private in (("Sprawdzam dysk na srv-a1.", False), ("wewnętrzne", True)):
        redmine.call(
            redmine.engineer,
            "PUT",
            f"/issues/{issue['id']}.json",
            json={"issue": {"notes": notes, "private_notes": private}},
        )
    assert poll(bridge, clock) == 1
    assert poll(bridge, clock) == 0  # nothing applied twice
    ticket = shown(api, number)
    assert ticket["responded_at"] == local_iso(responded)
    lines = [e["message"] for e in helpdesk_lines(ticket)]
    assert len(lines) == 2 and "„Sprawdzam dysk na srv-a1.”" in lines[1]
    assert not any("wewnętrzne" in m for m in lines)
    # What came from Redmine is not sent back to it.
    notes_before = dyzur_notes(redmine, issue["id"])
    deliver(bridge)
    assert dyzur_notes(redmine, issue["id"]) == notes_before


def test_a_close_in_redmine_resolves_the_ticket_and_the_alerts_next_firing_reopens_it(
    api, bridge, clock, redmine, projects
):
    project_a, _ = projects
    push(api, "srv-a1", 0.95)
    number = ticket_of(api, "szpital-a")
    deliver(bridge)
    [issue] = redmine.issues(project_a)
    redmine.call(
        redmine.engineer,
        "PUT",
        f"/issues/{issue['id']}.json",
        json={"issue": {"status_id": redmine.statuses["Closed"]}},
    )
    assert poll(bridge, clock) == 1
    ticket = shown(api, number)
    assert ticket["status"] == "resolved"
    assert ticket["responded_by"] == "redmine:jan.kowalski"  # a status change responds too
    [line] = helpdesk_lines(ticket)
    assert "status New → Closed" in line["message"]
    assert "alert wciąż trwa" in line["message"]  # the alert still fires: the timeline says so
    resolved = [e for e in ticket["timeline"] if e["kind"] == "resolved"]
    assert [e["actor"] for e in resolved] == ["redmine:jan.kowalski"]
    trail = api.get("/api/v1/audit?action=ticket.resolved", headers=auth("admin")).json()
    events = trail if isinstance(trail, list) else trail["events"]
    assert [(e["actor"], e["detail"]["ticket"]) for e in events] == [
        ("redmine:jan.kowalski", number)
    ]
    deliver(bridge)  # nothing goes back: the issue stays closed as the engineer left it
    assert dyzur_notes(redmine, issue["id"]) == []
    assert redmine.issue(issue["id"])["status"]["id"] == redmine.statuses["Closed"]
    # The alert recovers (nothing to do), then fires again within reopen_period: reopened.
    clock.advance(60)
    push(api, "srv-a1", 0.5)
    assert shown(api, number)["status"] == "resolved"
    clock.advance(60)
    push(api, "srv-a1", 0.95)
    assert ticket_of(api, "szpital-a") == number
    assert shown(api, number)["status"] == "open"
    deliver(bridge)
    [note] = dyzur_notes(redmine, issue["id"])
    assert "Zgłoszenie otwarte ponownie" in note
    assert redmine.issue(issue["id"])["status"]["id"] == redmine.statuses["New"]
    assert len(redmine.issues(project_a)) == 1


def test_a_wrong_api_key_is_a_clear_error_without_the_key(
    api, bridge, clock, redmine, projects, tmp_path, caplog
):
    project_a, _ = projects
    wrong = "0123456789abcdef0123456789abcdef01234567"
    key_file(tmp_path, wrong)
    worker = bridge.outbox.workers["sink:redmine"]
    with pytest.raises(Retry) as refused:
        worker.consumer.probe()
    assert "401" in str(refused.value) and "refused dyzur's API key" in str(refused.value)
    assert str(tmp_path / "redmine.key") in str(refused.value)
    push(api, "srv-a1", 0.95)
    number = ticket_of(api, "szpital-a")
    with caplog.at_level(logging.ERROR):
        assert worker.step() != 0.0
        with pytest.raises(Retry):
            bridge.helpdesk_responses[0].poll()
    assert "refused dyzur's API key" in caplog.text
    assert redmine.issues(project_a) == []
    assert shown(api, number)["deliveries"] == []
    trail = api.get("/api/v1/audit", headers=auth("admin")).text
    assert wrong not in caplog.text + trail + str(refused.value)
    assert redmine.dyzur.key not in caplog.text + trail
    # The key fixed in its file: taken on the next round, without a restart.
    key_file(tmp_path, redmine.dyzur.key)
    deliver(bridge)
    assert len(redmine.issues(project_a)) == 1


def test_sinks_test_names_dyzurs_redmine_user_and_what_it_cannot_do(api, bridge, redmine, projects):
    push(api, "srv-a1", 0.95)
    deliver(bridge)  # an issue dyzur's user sees
    sink = bridge.outbox.workers["sink:redmine"].consumer
    said = sink.probe()
    assert f"dyzur acts as dyzur (Dyżur Bridge, user #{redmine.dyzur.id})" in said
    assert redmine.url in said and ", ".join(sorted(projects)) in said
    assert redmine.dyzur.key not in said
    # A project dyzur's user is no member of: refused, naming it, before any ticket fails.
    elsewhere = redmine.project(f"{projects[0]}-x", dyzur_member=False)
    sink.projects = {**sink.projects, "klinika-b": elsewhere}
    with pytest.raises(Permanent) as refused:
        sink.probe()
    assert f"project {elsewhere!r} does not exist or dyzur's user is no member" in str(
        refused.value
    )
    assert redmine.dyzur.key not in str(refused.value)
    # A custom field Redmine does not filter by (here: none with that id) would find nothing.
    sink.custom_field_id = 9999
    with pytest.raises(Permanent) as refused:
        sink.probe()
    assert "custom field #9999 is not used as a filter" in str(refused.value)


def test_refused_changes_are_parked_with_redmines_reason_and_other_tickets_go_on(
    api, bridge, clock, redmine, projects
):
    project_a, project_b = projects
    push(api, "srv-a1", 0.95)
    push(api, "srv-b1", 0.95)
    number_a, number_b = ticket_of(api, "szpital-a"), ticket_of(api, "klinika-b")
    deliver(bridge)
    [issue_a], [issue_b] = redmine.issues(project_a), redmine.issues(project_b)
    # Szpital A's issue is deleted in Redmine; Klinika B's escalation asks for a priority
    # Redmine does not have.
    redmine.call(redmine.admin, "DELETE", f"/issues/{issue_a['id']}.json")
    sink = bridge.outbox.workers["sink:redmine"].consumer
    sink.priorities = {**sink.priorities, Category.AWARIA: 99999}
    clock.advance(60)
    push(api, "srv-a1", 0.99)
    push(api, "srv-b1", 0.99)
    clock.advance(60)
    push(api, "srv-b1", 0.5)  # recovered and resolved: waits behind the refused change
    deliver(bridge)
    gone = shown(api, number_a)["deliveries"][0]
    assert gone["state"] == "failed" and "404" in gone["reason"]
    assert f"/issues/{issue_a['id']}.json" in gone["reason"] and "deleted" in gone["reason"]
    refused = shown(api, number_b)["deliveries"][0]
    assert refused["state"] in ("failed", "waiting")
    parked = api.get("/api/v1/deliveries?state=failed", headers=auth("admin")).json()
    reasons = json.dumps(parked)
    assert "422" in reasons and "Priority cannot be blank" in reasons  # Redmine's own words
    assert len(redmine.issues(project_a)) == 0  # no issue created behind the helpdesk's back
    assert dyzur_notes(redmine, issue_b["id"]) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"projects": {"szpital-a": "a"}}, "sinks.0.projects: no Redmine project for klinika-b"),
        ({"projects": {"nowhere": "x", "default": "d"}}, "sinks.0.projects.nowhere: unknown"),
        ({"trackers": {"pilne": 1}}, "sinks.0.trackers.pilne"),
        ({"custom_field_id": 0}, "sinks.0.custom_field_id"),
        ({"api_key_file": "missing.key"}, "sinks.0.api_key_file: no such file"),
        ({"poll_interval": "1s"}, "sinks.0.poll_interval"),
    ],
)
def test_bad_redmine_settings_name_the_field(tmp_path, change, problem):
    key_file(tmp_path, "k" * 40)
    data = config_data()
    sink = {
        "name": "redmine",
        "kind": "redmine",
        "url": "https://redmine.example.pl",
        "api_key_file": "redmine.key",
        "projects": {"default": "szpitale"},
        "custom_field_id": 7,
    }
    data["sinks"] = [{**sink, **change}]
    with pytest.raises(ConfigError) as error:
        parse_config(data, "test.yaml", tmp_path)
    assert any(p.startswith(problem) for p in error.value.problems), error.value.problems


def test_a_sink_for_some_hospitals_needs_projects_only_for_them(tmp_path):
    key_file(tmp_path, "k" * 40)
    data = config_data()
    data["sinks"] = [
        {
            "name": "redmine",
            "kind": "redmine",
            "url": "https://redmine.example.pl",
            "api_key_file": "redmine.key",
            "projects": {"klinika-b": "klinika"},
            "custom_field_id": 7,
            "clients": ["klinika-b"],
        }
    ]
    assert parse_config(data, "test.yaml", tmp_path).config.sinks[0].projects == {
        "klinika-b": "klinika"
    }


def test_sigkill_during_delivery_creates_no_issue_twice_and_no_note_twice(
    tmp_path, redmine, projects
):
    """The real bridge process, SIGKILLed again and again while it creates issues and writes
    notes, and started again on the same store: one issue per ticket, every change in it once."""
    from tests.processes import RunningBridge
    from tests.test_sink_outage import expected_changes, samples  # the storm's helpers

    tickets, project_a = 20, projects[0]
    key_file(tmp_path, redmine.dyzur.key)
    data = config_data("sqlite:///var/dyzur.db")
    data["sinks"] = [sink_config(redmine, projects, poll_interval="5s")]
    config = tmp_path / "dyzur.yaml"
    config.write_text(yaml.safe_dump(data))
    port = free_port()
    bridge = RunningBridge(config, port)
    try:
        with httpx.Client(base_url=bridge.url, timeout=30) as http:
            for value in (0.95, 0.99):
                r = http.post(
                    "/api/v1/samples", json=samples(value, 0, tickets), headers=auth("agent")
                )
                assert r.status_code == 200, r.text
        # Killed while it creates the issues; the new process waits out the dead one's outbox
        # lease (30 s), then finds the issues already made and writes the rest.
        wait_for(lambda: redmine.issues(project_a), timeout=60, what="issues being created")
        bridge.stop(signal.SIGKILL)
        killed_at = len(redmine.issues(project_a))
        bridge = RunningBridge(config, port)
        expected = expected_changes("sqlite:///var/dyzur.db", tmp_path)
        store = open_store("sqlite:///var/dyzur.db", tmp_path)
        try:
            markers = {
                number: [f"dz-{e.hash[:12]}" for e in store.audit_events_by_id(ids)]
                for number, ids in expected.items()
            }
        finally:
            store.close()

        def issue_texts() -> dict[str, list[str]]:
            texts: dict[str, list[str]] = defaultdict(list)
            for listed in redmine.issues(project_a):
                issue = redmine.issue(listed["id"])
                number = next(f["value"] for f in issue["custom_fields"])
                texts[number].append(
                    "\n".join([issue["description"], *(j["notes"] for j in issue["journals"])])
                )
            return texts

        def all_there() -> dict[str, list[str]] | None:
            texts = issue_texts()
            every = all(
                m in "".join(texts.get(number, [])) for number, ms in markers.items() for m in ms
            )
            return texts if every else None

        texts = wait_for(all_there, timeout=120, interval=1.0, what="every change in Redmine")
    finally:
        bridge.stop()
    assert len(markers) == tickets and killed_at < tickets  # killed during delivery
    assert sorted(texts) == sorted(markers)
    for number, issues in texts.items():
        assert len(issues) == 1, f"{number}: {len(issues)} issues"
        for m in markers[number]:
            assert issues[0].count(m) == 1, f"{number}: {m} written {issues[0].count(m)} times"


def test_the_running_bridge_reads_the_responses_back_on_its_own(tmp_path, redmine, projects):
    """``dyzur run``: the poller thread reads Redmine every poll_interval."""
    from tests.processes import RunningBridge
    from tests.test_sink_outage import samples

    key_file(tmp_path, redmine.dyzur.key)
    data = config_data("sqlite:///var/dyzur.db")
    data["sinks"] = [sink_config(redmine, projects, poll_interval="5s")]
    config = tmp_path / "dyzur.yaml"
    config.write_text(yaml.safe_dump(data))
    bridge = RunningBridge(config, free_port())
    try:
        with httpx.Client(base_url=bridge.url, timeout=30, headers=auth("admin")) as http:
            r = http.post("/api/v1/samples", json=samples(0.95, 0, 1), headers=auth("agent"))
            assert r.status_code == 200, r.text
            [issue] = wait_for(lambda: redmine.issues(projects[0]), what="the issue")
            number = issue["custom_fields"][0]["value"]
            redmine.call(
                redmine.engineer,
                "PUT",
                f"/issues/{issue['id']}.json",
                json={"issue": {"notes": "Biorę to."}},
            )
            ticket = wait_for(
                lambda: (t := http.get(f"/api/v1/tickets/{number}").json())["responded_by"] and t,
                timeout=60,
                what="the response read back",
            )
    finally:
        bridge.stop()
    assert ticket["responded_by"] == "redmine:jan.kowalski"
    assert "„Biorę to.”" in helpdesk_lines(ticket)[0]["message"]


def test_a_response_made_in_the_helpdesk_counts_at_its_own_time(tmp_path, store):
    """The lifecycle's hook of the way back (no Redmine needed): a response made before the
    deadline is in time though dyzur read it after the deadline passed; a time from a clock
    that runs behind or ahead stays between the ticket's opening and now."""
    from bridge.models import SlaState
    from bridge.service import Bridge
    from tests.test_sla_tickets import at, disk, only_ticket

    data = config_data()
    for asset in data["assets"]:
        asset["reports"] = False
    clock = FixedClock(at("2026-11-23T10:00"))  # an usterka opened now is due Tuesday 10:00
    bridge = Bridge(parse_config(data, "test.yaml", tmp_path), store=store, clock=clock)
    bridge.start(ticker=False)
    try:
        disk(bridge, 0.95)
        number = only_ticket(bridge).number
        clock.set(at("2026-11-24T11:00"))
        bridge.check_deadlines()
        assert only_ticket(bridge).sla_state is SlaState.BREACHED
        with store.transaction():
            ticket, first = bridge.lifecycle.acknowledge_within(
                number, "redmine:jan.kowalski", at("2026-11-24T09:30")
            )
        assert first and ticket.responded_at == at("2026-11-24T09:30")
        assert only_ticket(bridge).sla_state is SlaState.MET
        disk(bridge, 0.95, "srv-a2")  # opened Tuesday 11:00
        later = only_ticket(bridge, "srv-a2")
        with store.transaction():
            behind, _ = bridge.lifecycle.acknowledge_within(
                later.number, "redmine:jan.kowalski", at("2026-11-24T10:59")
            )
        assert behind.responded_at == later.opened_at
        disk(bridge, 0.95, "srv-b1")
        ahead = only_ticket(bridge, "srv-b1")
        with store.transaction():
            ahead, _ = bridge.lifecycle.acknowledge_within(
                ahead.number, "redmine:jan.kowalski", at("2026-11-24T11:05")
            )
        assert ahead.responded_at == clock.now()
    finally:
        bridge.close()
