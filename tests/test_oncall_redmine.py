"""On call and the Redmine helpdesk together (issue 17): an engineer's response made in Redmine,
brought back by the sink's poll of the issues dyzur created, acknowledges the ticket and stops
its escalation at once; the same Awaria left unanswered in Redmine escalates to the next step.

In process, the bridge's clock controlled, against Debian's real Redmine (one per test session,
tests/redmine.py), a real SMTP server (aiosmtpd) and the HTTP server standing in for the SMS
gateway. Redmine stamps its journals with the real clock and dyzur keeps a response's time
between the ticket's opening and its own now, so the tickets open a few minutes before the real
now (as in tests/test_sink_redmine.py) and the hospital is Klinika B, whose 24/7 contract pages
at any hour of the day or night; the rota has a 24-hour shift around that time."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from bridge.clock import local_iso
from bridge.config import parse_config
from tests.conftest import auth
from tests.oncall_parts import oncall_config, pages_to, sms_texts
from tests.processes import wait_for
from tests.test_oncall_paging import page_events, settled, start_delivery, timeline
from tests.test_sink_redmine import (  # noqa: F401  (projects, clock: fixtures)
    clock,
    helpdesk_lines,
    key_file,
    now,
    projects,
    shown,
    sink_config,
)
from tests.test_sink_webhook import push

ANNA, ANNA_PHONE = "anna@serwis.example.pl", "+48601000001"  # on duty: step 1
JOHN, JOHN_PHONE = "john@serwis.example.pl", "+48601000002"  # step 2, after 15 min
NOTE = "Biorę to, łączę się z serwerem srv-b1."


@pytest.fixture
def loaded(tmp_path, smtp, gateway, redmine, projects, clock):  # noqa: F811 (the imported fixtures)
    """Anna on duty for a day around the clock's start, John the next step after 15 minutes;
    Klinika B's tickets are issues in its Redmine project (the sink's default); a second
    server of Klinika B for the unanswered ticket."""
    data = oncall_config(tmp_path, smtp.url, gateway.url, clock.now() - timedelta(hours=1))
    data["assets"].append({"id": "srv-b2", "client": "klinika-b"})
    for asset in data["assets"]:  # no agent_silent Awaria when the clock jumps
        asset["reports"] = False
    key_file(tmp_path, redmine.dyzur.key)
    data["sinks"] = [sink_config(redmine, projects)]
    return parse_config(data, "test.yaml", tmp_path)


def awaria(api, asset: str) -> str:
    push(api, asset, 0.99)
    [ticket] = api.get(f"/api/v1/tickets?asset={asset}", headers=auth("admin")).json()
    assert ticket["client"] == "klinika-b" and ticket["category"] == "awaria"
    return ticket["number"]


def pages_of(bridge, number: str) -> list[tuple[str, str, int]]:
    return [
        (e.detail["person"], e.detail["channel"], e.detail["step"])
        for e in page_events(bridge, number)
    ]


def test_a_response_in_redmine_stops_the_escalation_and_an_unanswered_ticket_escalates(
    api,
    bridge,
    clock,  # noqa: F811 (the imported fixtures)
    smtp,
    gateway,
    redmine,
    projects,  # noqa: F811
):
    _, project_b = projects
    opened = clock.now()
    start_delivery(bridge)  # the pages' channels and the Redmine sink, in their threads
    answered, unanswered = awaria(api, "srv-b1"), awaria(api, "srv-b2")
    # Anna is paged for both (step 1), and both are issues in Klinika B's Redmine project.
    for number in (answered, unanswered):
        wait_for(
            lambda n=number: [t for t in sms_texts(gateway, ANNA_PHONE) if n in t],
            timeout=20,
            what=f"the SMS to Anna for {number}",
        )
        wait_for(
            lambda n=number: [m for m in pages_to(smtp.mailbox, ANNA) if n in m["Subject"]],
            timeout=20,
            what=f"the e-mail to Anna for {number}",
        )
    issues = wait_for(
        lambda: (found := redmine.issues(project_b)) and len(found) == 2 and found,
        timeout=60,
        what="both issues in Redmine",
    )
    issue = {i["custom_fields"][0]["value"]: i["id"] for i in issues}
    assert sorted(issue) == sorted([answered, unanswered])
    for number in (answered, unanswered):
        assert pages_of(bridge, number) == [("anna", "mail", 0), ("anna", "sms", 0)]
        assert bridge.store.paging(number).next_at == opened + timedelta(minutes=15)

    # An engineer of the helpdesk (a Redmine user, not dyzur's) answers one of them in Redmine.
    redmine.call(
        redmine.engineer,
        "PUT",
        f"/issues/{issue[answered]}.json",
        json={"issue": {"notes": NOTE}},
    )
    journal = redmine.issue(issue[answered])["journals"][-1]
    assert journal["user"]["id"] == redmine.engineer.id
    assert shown(api, answered)["responded_at"] is None  # not yet read back
    now(clock)
    assert bridge.helpdesk_responses[0].poll() == 1
    ticket = shown(api, answered)
    assert ticket["responded_by"] == "redmine:jan.kowalski"
    responded = datetime.fromisoformat(journal["created_on"])
    assert ticket["responded_at"] == local_iso(responded)  # Redmine's time
    [line] = helpdesk_lines(ticket)
    assert line["actor"] == "redmine:jan.kowalski" and NOTE in line["message"]
    assert shown(api, unanswered)["responded_at"] is None

    # The escalation's 15 minutes pass and the pager ticks: John is paged for the unanswered
    # ticket only.
    clock.set(opened + timedelta(minutes=15))
    bridge.tick()
    wait_for(
        lambda: [t for t in sms_texts(gateway, JOHN_PHONE) if unanswered in t],
        timeout=20,
        what="the SMS to John for the unanswered ticket",
    )
    wait_for(lambda: pages_to(smtp.mailbox, JOHN), timeout=20, what="the e-mail to John")
    clock.advance(3600)  # and later: still nobody for the answered one
    bridge.tick()
    settled(bridge)
    assert pages_of(bridge, unanswered) == [
        ("anna", "mail", 0),
        ("anna", "sms", 0),
        ("john", "mail", 1),
        ("john", "sms", 1),
    ]
    assert timeline(bridge, unanswered, "oncall_escalated") == [
        "No acknowledgment within 15 min: escalated to step 2, paging: John Smith."
    ]
    assert pages_of(bridge, answered) == [("anna", "mail", 0), ("anna", "sms", 0)]
    assert timeline(bridge, answered, "oncall_escalated") == []
    [john_mail] = pages_to(smtp.mailbox, JOHN)
    assert unanswered in john_mail["Subject"] and answered not in john_mail["Subject"]
    assert [t for t in sms_texts(gateway, JOHN_PHONE) if answered in t] == []
    assert len(sms_texts(gateway, JOHN_PHONE)) == 1
    paging = bridge.store.paging(answered)
    assert paging.stopped_by == "acknowledged" and paging.step == 0
    assert bridge.store.paging(unanswered).step == 1
    # The answered ticket's timeline shows the response read back from Redmine.
    [line] = helpdesk_lines(shown(api, answered))
    assert f"{redmine.url}/issues/{issue[answered]}#change-{journal['id']}" in line["message"]
