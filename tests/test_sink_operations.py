"""Operating the helpdesk sinks, against the real app, the real store file and the webhook
receiver of tests/test_sink_webhook.py: a refused change parks the ticket's later changes
behind it while other tickets go on; `dyzur sinks retry` (the real CLI, another process on the
same store) sends them again in order once the helpdesk is fixed; GET /api/v1/deliveries shows
the parked changes to whom they belong; the sink metrics on /metrics; `dyzur sinks test`."""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bridge.config import parse_config
from bridge.delivery.outbox import IDLE_POLL, Backoff
from bridge.delivery.sinks import request_retry
from tests import test_sink_webhook
from tests.conftest import auth, config_data, free_port
from tests.processes import wait_for
from tests.test_cli import dyzur
from tests.test_sink_webhook import (
    SECRET,
    changes,
    push,
    secret_file,
    start_delivery,
    ticket_of,
)

PARKED = "/api/v1/deliveries?state=failed"
receiver = test_sink_webhook.receiver  # the fixture: the helpdesk's real HTTP server


def sinks_config(tmp_path, receiver, helpdesk_url: str | None = None) -> dict:
    """Two webhook sinks (every hospital's, and Klinika B's) on the store file the ``bridge``
    fixture opens, so that the CLI run by a test works on the same store."""
    secret_file(tmp_path)
    data = config_data("sqlite:///store.db")
    data["sinks"] = [
        {
            "name": "helpdesk",
            "kind": "webhook",
            "url": helpdesk_url or receiver.url,
            "secret_file": "webhook.secret",
        },
        {
            "name": "klinika",
            "kind": "webhook",
            "url": receiver.url.replace("/hook", "/klinika"),
            "secret_file": "webhook.secret",
            "clients": ["klinika-b"],
        },
    ]
    return data


def write_config(tmp_path, data: dict):
    path = tmp_path / "dyzur.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def loaded(tmp_path, receiver):
    data = sinks_config(tmp_path, receiver)
    write_config(tmp_path, data)
    return parse_config(data, "dyzur.yaml", tmp_path)


class Refusals:
    """What the helpdesk refuses (400): changes of these tickets with these actions."""

    def __init__(self, receiver) -> None:
        self.refused: set[tuple[str, str]] = set()
        receiver.refuse = self

    def __call__(self, payload: dict) -> int | None:
        if (payload.get("ticket"), payload.get("action")) in self.refused:
            return 400
        return None


def drain(worker) -> None:
    """Rounds of one sink's worker until it has nothing left to do."""
    for _ in range(100):
        if worker.step() == IDLE_POLL:
            return
    raise AssertionError("the sink kept working")


def trail(bridge, action: str) -> list:
    return [e for e in bridge.store.audit_events(0, 10_000, None) if e.action == action]


def two_tickets(api, clock) -> tuple[str, str]:
    """Szpital A's ticket opened and escalated, Klinika B's opened: the numbers."""
    push(api, "srv-a1", 0.95)
    push(api, "srv-b1", 0.95)
    clock.advance(60)
    push(api, "srv-a1", 0.99)  # escalated
    return ticket_of(api, "szpital-a"), ticket_of(api, "klinika-b")


def later_changes(api, clock, number_a: str, number_b: str) -> None:
    """Both tickets acknowledged and recovered, interleaved."""
    clock.advance(60)
    assert api.post(f"/api/v1/tickets/{number_a}/ack", headers=auth("engineer")).status_code == 200
    assert api.post(f"/api/v1/tickets/{number_b}/ack", headers=auth("engineer")).status_code == 200
    clock.advance(60)
    push(api, "srv-a1", 0.5)
    push(api, "srv-b1", 0.5)


def test_a_refused_change_holds_the_tickets_later_changes_and_not_other_tickets(
    api, bridge, clock, receiver
):
    refusals = Refusals(receiver)
    number_a, number_b = two_tickets(api, clock)
    refusals.refused.add((number_a, "ticket.escalated"))
    worker = bridge.outbox.workers["sink:helpdesk"]
    drain(worker)  # refused: parked
    later_changes(api, clock, number_a, number_b)
    drain(worker)  # the ticket's changes made since: held behind it

    expected = changes(bridge)
    opened_a, escalated_a, *after_a = expected[number_a]
    assert after_a  # acknowledged, recovered
    taken = receiver.taken_on("/hook")
    assert taken[number_b] == expected[number_b]  # the other ticket: every change, in order
    assert taken[number_a] == [opened_a]
    # Nothing after the refused change was even offered to the helpdesk.
    tried = [json.loads(body)["event_id"] for _, body, _ in receiver.requests]
    assert not set(after_a) & set(tried)
    assert tried.count(escalated_a) == 1

    parked = api.get(PARKED, headers=auth("admin")).json()
    assert [(p["ticket"], p["event_id"], p["state"]) for p in parked] == [
        (number_a, escalated_a, "failed"),
        *[(number_a, e, "waiting") for e in after_a],
    ]
    assert parked[0]["action"] == "ticket.escalated" and "400" in parked[0]["reason"]
    assert all(f"behind change {escalated_a}" in p["reason"] for p in parked[1:])
    assert {p["sink"] for p in parked} == {"helpdesk"} and parked[0]["client"] == "szpital-a"
    # The audit trail: the refusal (the outbox's) and each change held behind it.
    [failed] = [e for e in trail(bridge, "outbox.delivery_failed")]
    assert failed.detail["event"] == escalated_a and failed.client == "szpital-a"
    held = trail(bridge, "sink.delivery_held")
    assert [(e.detail["event"], e.detail["behind"]) for e in held] == [
        (e, escalated_a) for e in after_a
    ]
    assert {(e.client, e.detail["consumer"], e.outcome) for e in held} == {
        ("szpital-a", "sink:helpdesk", "failure")
    }
    shown = api.get(f"/api/v1/tickets/{number_a}", headers=auth("admin")).json()["deliveries"]
    assert [(d["sink"], d["state"]) for d in shown] == [("helpdesk", "waiting")]


def test_sinks_retry_from_another_process_sends_the_parked_changes_in_order_once(
    tmp_path, api, bridge, clock, receiver
):
    """The bridge delivers on its own threads; the fix is made at the helpdesk and `dyzur
    sinks retry` runs as a separate process on the same store file while it does."""
    refusals = Refusals(receiver)
    number_a, number_b = two_tickets(api, clock)
    refusals.refused.add((number_a, "ticket.escalated"))
    later_changes(api, clock, number_a, number_b)
    start_delivery(bridge)
    expected = changes(bridge)
    wait_for(
        lambda: (
            len(bridge.store.parked_changes("helpdesk")) == len(expected[number_a]) - 1
            and receiver.taken_on("/hook").get(number_b) == expected[number_b]
        ),
        timeout=20,
        what="the refused change and the ones behind it parked, the other ticket delivered",
    )

    refusals.refused.clear()  # the helpdesk was fixed
    config = tmp_path / "dyzur.yaml"
    r = dyzur("sinks", "retry", "helpdesk", "--config", config)
    assert r.returncode == 0, r.stderr
    assert f"{len(expected[number_a]) - 1} parked change(s) queued" in r.stdout
    assert number_a in r.stdout and "ticket.escalated" in r.stdout and "waiting" in r.stdout
    wait_for(
        lambda: receiver.taken_on("/hook").get(number_a) == expected[number_a],
        timeout=20,
        what="the parked changes sent again",
    )
    wait_for(lambda: not bridge.store.parked_changes(), timeout=20, what="nothing parked")
    # Every change once as the helpdesk sees it, in order per ticket.
    assert receiver.taken_on("/hook") == expected
    assert api.get(PARKED, headers=auth("admin")).json() == []
    shown = api.get(f"/api/v1/tickets/{number_a}", headers=auth("admin")).json()["deliveries"]
    assert [(d["sink"], d["state"], d["remote_id"]) for d in shown] == [
        ("helpdesk", "delivered", f"HD-{number_a}")
    ]
    # Who asked, for which sink and changes.
    [asked] = trail(bridge, "sink.retry_requested")
    assert asked.actor == f"cli:{getpass.getuser()}"
    assert asked.client == "szpital-a"
    assert asked.detail == {
        "sink": "helpdesk",
        "consumer": "sink:helpdesk",
        "tickets": [number_a],
        "events": expected[number_a][1:],
    }
    # The ticket's next change goes straight on.
    clock.advance(60)
    push(api, "srv-a1", 0.95)
    bridge.outbox.notify()
    wait_for(
        lambda: receiver.taken_on("/hook") == changes(bridge),
        timeout=20,
        what="the next change of the ticket",
    )
    # Nothing is left to send again.
    r = dyzur("sinks", "retry", "helpdesk", "--config", config)
    assert r.returncode == 0 and "no parked changes" in r.stdout


def test_a_retry_request_comes_before_the_later_changes_in_the_stream(api, bridge, clock, receiver):
    """A change made after `dyzur sinks retry` (and before the sink got to it) arrives after
    the parked ones; a change refused again stays parked with the new reason."""
    refusals = Refusals(receiver)
    number_a, number_b = two_tickets(api, clock)
    refusals.refused.add((number_a, "ticket.escalated"))
    worker = bridge.outbox.workers["sink:helpdesk"]
    worker.backoff = Backoff(base=0.01, cap=0.01, jitter=0.0)
    drain(worker)
    [(escalated_a, first_reason)] = [
        (p.event_id, p.reason) for p in bridge.store.parked_changes("helpdesk")
    ]

    # Asked again while the helpdesk still refuses it: parked again, with its new answer.
    receiver.refuse = lambda p: 422 if p.get("action") == "ticket.escalated" else None
    request_retry(bridge.store, "helpdesk", "jan.kowalski", clock.now(), ticket=number_a)
    later_changes(api, clock, number_a, number_b)
    drain(worker)
    parked = bridge.store.parked_changes("helpdesk")
    assert [(p.event_id, p.state) for p in parked] == [(escalated_a, "failed")] + [
        (e, "waiting") for e in changes(bridge)[number_a][2:]
    ]
    assert "422" in parked[0].reason and parked[0].reason != first_reason
    again = trail(bridge, "outbox.delivery_failed")[-1]
    assert again.detail["event"] == escalated_a and "422" in again.detail["reason"]
    assert again.detail["retry"] == trail(bridge, "sink.retry_requested")[-1].id

    # Fixed now; one more change of the ticket comes after the request.
    receiver.refuse = lambda p: None
    request_retry(bridge.store, "helpdesk", "jan.kowalski", clock.now(), ticket=number_a)
    clock.advance(60)
    push(api, "srv-a1", 0.95)  # reopened or refired: after the request
    drain(worker)
    assert receiver.taken_on("/hook") == changes(bridge)
    assert bridge.store.parked_changes() == []


def test_the_deliveries_api_shows_each_hospital_its_own_parked_changes(
    api, bridge, clock, receiver
):
    refusals = Refusals(receiver)
    number_a, number_b = two_tickets(api, clock)
    refusals.refused |= {(number_a, "ticket.acknowledged"), (number_b, "ticket.acknowledged")}
    later_changes(api, clock, number_a, number_b)
    for name in ("sink:helpdesk", "sink:klinika"):
        drain(bridge.outbox.workers[name])

    def parked(who: str, query: str = "") -> list[tuple[int, str, str, str]]:
        r = api.get(PARKED + query, headers=auth(who))
        assert r.status_code == 200, r.text
        return [(p["event_id"], p["sink"], p["ticket"], p["state"]) for p in r.json()]

    # Each sink's refused acknowledgment and the changes after it, oldest first.
    acks = {e.id for e in trail(bridge, "ticket.acknowledged")}
    expected = []
    for sink, clients in (("helpdesk", None), ("klinika", frozenset({"klinika-b"}))):
        for number, ids in changes(bridge, clients).items():
            [ack] = [i for i in ids if i in acks]
            for i in ids[ids.index(ack) :]:
                expected.append((i, sink, number, "failed" if i == ack else "waiting"))
    everything = parked("engineer")
    assert everything == sorted(expected)
    assert {sink for _, sink, number, _ in everything if number == number_a} == {"helpdesk"}
    assert parked("admin") == everything
    assert parked("client-a") == [p for p in everything if p[2] == number_a]
    assert parked("client-b") == [p for p in everything if p[2] == number_b]
    assert parked("client-b", "&sink=klinika") == [p for p in everything if p[1] == "klinika"]
    assert parked("engineer", "&client=szpital-a") == parked("client-a")
    assert parked("engineer", "&limit=2&offset=1") == everything[1:3]
    # A hospital's token cannot ask for another's; agents see none; a bad state is named.
    assert api.get(PARKED + "&client=klinika-b", headers=auth("client-a")).status_code == 403
    assert api.get(PARKED, headers=auth("agent")).status_code == 403
    for query in ("?state=delivered", "?state=", ""):
        r = api.get("/api/v1/deliveries" + query, headers=auth("engineer"))
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["query.state"]
    spec = api.get("/openapi.json").json()
    assert "/api/v1/deliveries" in spec["paths"]


def scrape(api) -> dict[tuple[str, str, str], float]:
    """The sink series of /metrics: (name, sink, outcome) -> value."""
    text = api.get("/metrics", headers=auth("engineer")).text
    return {
        (s.name, s.labels.get("sink", ""), s.labels.get("outcome", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("dyzur_sink_")
    }


def test_sink_metrics_count_outcomes_backlog_age_and_parked(api, bridge, clock, receiver):
    refusals = Refusals(receiver)
    worker = bridge.outbox.workers["sink:helpdesk"]
    worker.backoff = Backoff(base=0.01, cap=0.01, jitter=0.0)
    before = scrape(api)
    assert before[("dyzur_sink_oldest_undelivered_seconds", "helpdesk", "")] == 0
    assert before[("dyzur_sink_deliveries_total", "helpdesk", "delivered")] == 0
    assert before[("dyzur_sink_parked", "klinika", "")] == 0

    # The helpdesk is down: the backlog waits and ages.
    receiver.script = [(503, {})]
    number_a, number_b = two_tickets(api, clock)
    waiting = len(bridge.store.audit_events(0, 10_000, None))  # every event: no clients
    assert worker.step() == 0.01
    clock.advance(300)
    down = scrape(api)
    assert down[("dyzur_sink_deliveries_total", "helpdesk", "retried")] == 1
    assert down[("dyzur_sink_backlog", "helpdesk", "")] == waiting
    assert down[("dyzur_sink_oldest_undelivered_seconds", "helpdesk", "")] == 360  # first push

    # Back, refusing one change: delivered, failed and held counted; nothing waits.
    refusals.refused.add((number_a, "ticket.escalated"))
    later_changes(api, clock, number_a, number_b)
    drain(worker)
    expected = changes(bridge)
    up = scrape(api)
    labels = {(name, sink) for name, sink, _ in up}
    assert {sink for _, sink in labels} == {"helpdesk", "klinika"}  # never a ticket number
    assert (
        up[("dyzur_sink_deliveries_total", "helpdesk", "delivered")] == len(expected[number_b]) + 1
    )
    assert up[("dyzur_sink_deliveries_total", "helpdesk", "failed")] == 1
    assert up[("dyzur_sink_deliveries_total", "helpdesk", "held")] == len(expected[number_a]) - 2
    assert up[("dyzur_sink_parked", "helpdesk", "")] == len(expected[number_a]) - 1
    assert up[("dyzur_sink_backlog", "helpdesk", "")] == 0
    assert up[("dyzur_sink_oldest_undelivered_seconds", "helpdesk", "")] == 0


def test_each_sink_is_audited_as_loaded_without_its_secret_or_password(
    tmp_path, receiver, store, clock
):
    from bridge.service import Bridge

    data = sinks_config(tmp_path, receiver, receiver.url.replace("//", "//dyzur:pa55-word@"))
    bridge = Bridge(parse_config(data, "dyzur.yaml", tmp_path), store=store, clock=clock)
    bridge.start(ticker=False)
    try:
        configured = trail(bridge, "sink.configured")
    finally:
        bridge.close()
    assert [e.detail for e in configured] == [
        {"sink": "helpdesk", "kind": "webhook", "url": receiver.url, "clients": None},
        {
            "sink": "klinika",
            "kind": "webhook",
            "url": receiver.url.replace("/hook", "/klinika"),
            "clients": ["klinika-b"],
        },
    ]
    assert "pa55-word" not in repr(configured) and SECRET.decode() not in repr(configured)


def test_sinks_test_reports_what_the_helpdesk_answered(tmp_path, receiver):
    data = sinks_config(tmp_path, receiver, receiver.url.replace("//", "//dyzur:pa55-word@"))
    config = write_config(tmp_path, data)
    r = dyzur("sinks", "test", "helpdesk", "--config", config)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("sink helpdesk (webhook): test message taken: ")
    assert f"{receiver.url} answered 200 OK" in r.stdout and '"ok": true' in r.stdout
    [(headers, body, _)] = receiver.requests
    test = json.loads(body)
    assert test["test"] is True and test["sink"] == "helpdesk" and "ticket" not in test
    mac = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert headers["x-dyzur-signature"] == f"sha256={mac}"
    assert headers["idempotency-key"].startswith("test-")

    receiver.refuse = lambda payload: 403
    r = dyzur("sinks", "test", "helpdesk", "--config", config)
    assert r.returncode == 1
    assert f"test message not taken: {receiver.url} answered 403 Forbidden" in r.stderr

    data["sinks"][0]["url"] = f"http://dyzur:pa55-word@127.0.0.1:{free_port()}/hook"
    write_config(tmp_path, data)
    r = dyzur("sinks", "test", "helpdesk", "--config", config)
    assert r.returncode == 1 and "ConnectError" in r.stderr

    r = dyzur("sinks", "test", "servicedesk", "--config", config)
    assert r.returncode == 2
    assert "no sink 'servicedesk'" in r.stderr and "helpdesk, klinika" in r.stderr
    for out in (r.stdout, r.stderr):
        assert "pa55-word" not in out and SECRET.decode() not in out


def test_sinks_list_shows_each_sinks_backlog_and_parked_changes(
    tmp_path, api, bridge, clock, receiver
):
    refusals = Refusals(receiver)
    _, number_b = two_tickets(api, clock)
    refusals.refused.add((number_b, "ticket.opened"))
    drain(bridge.outbox.workers["sink:klinika"])  # the helpdesk sink has not run yet
    r = dyzur("sinks", "list", "--config", tmp_path / "dyzur.yaml")
    assert r.returncode == 0, r.stderr
    header, helpdesk, klinika = r.stdout.splitlines()
    assert header.split() == ["NAME", "KIND", "WHERE", "CLIENTS", "BACKLOG", "PARKED"]
    backlog = len(bridge.store.audit_events(0, 10_000, None))
    assert helpdesk.split() == ["helpdesk", "webhook", receiver.url, "*", str(backlog), "0"]
    assert klinika.split()[:4] == ["klinika", "webhook", receiver.url[:-4] + "klinika", "klinika-b"]
    assert klinika.split()[4:] == ["0", "1"]
