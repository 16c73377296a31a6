"""The webhook helpdesk sink against a real HTTP server: every change of a ticket arrives once
as the receiver sees it (by Idempotency-Key), signed, in order per ticket, through 429, 503 and
500 answers; a 400 parks one change as failed without blocking other tickets."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from bridge.config import ConfigError, parse_config
from bridge.delivery.outbox import Backoff, Selection
from bridge.delivery.sinks import TICKET_CHANGES
from bridge.delivery.sinks.webhook import retry_after
from bridge.maintenance.planning import WindowRequest
from tests.conftest import START, auth, config_data, free_port
from tests.processes import wait_for
from tests.test_cli import dyzur

SECRET = b"s3cret-webhook-key"
FAST = Backoff(base=0.01, cap=0.05, jitter=0.0)


class Receiver:
    """A helpdesk's webhook endpoint: answers from ``script`` first (status, headers), then
    ``refuse(payload)`` (a status, or None for 200); keeps every request and the changes it
    took (first 2xx per Idempotency-Key), as the helpdesk would."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        # (path, Idempotency-Key) -> payload, in arrival order
        self.taken: dict[tuple[str, str], dict] = {}
        self.script: list[tuple[int, dict[str, str]]] = []
        self.refuse = lambda payload: None
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                payload = json.loads(body)
                headers = {k.lower(): v for k, v in self.headers.items()}
                payload["path"] = self.path
                with receiver.lock:
                    status, extra = (
                        receiver.script.pop(0)
                        if receiver.script
                        else (receiver.refuse(payload) or 200, {})
                    )
                    receiver.requests.append((headers, body, status))
                    if status == 200:
                        key = (self.path, headers["idempotency-key"])
                        receiver.taken.setdefault(key, payload)
                ticket = payload.get("ticket")  # none in a test message (dyzur sinks test)
                answer = json.dumps({"id": f"HD-{ticket}"} if ticket else {"ok": True}).encode()
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def taken_on(self, path: str) -> dict[str, list[int]]:
        """The event ids of the changes ``path`` took, per ticket in arrival order."""
        order: dict[str, list[int]] = defaultdict(list)
        for payload in self.taken.values():
            if payload["path"] == path:
                order[payload["ticket"]].append(payload["event_id"])
        return dict(order)


@pytest.fixture
def receiver():
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def secret_file(tmp_path, mode=0o600, name="webhook.secret"):
    path = tmp_path / name
    path.write_bytes(SECRET + b"\n")
    path.chmod(mode)
    return path


@pytest.fixture
def loaded(tmp_path, receiver):
    """The test configuration with two webhook sinks: every hospital's, and Klinika B's."""
    secret_file(tmp_path)
    data = config_data()
    data["sinks"] = [
        {
            "name": "helpdesk",
            "kind": "webhook",
            "url": receiver.url,
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
    found = api.get(f"/api/v1/tickets?client={client}", headers=auth("admin")).json()
    return found[0]["number"]


def changes(bridge, clients=None) -> dict[str, list[int]]:
    """The ticket changes in the audit log, per ticket in id order: what a sink must deliver."""
    selection = Selection(clients=clients, actions=TICKET_CHANGES)
    order: dict[str, list[int]] = defaultdict(list)
    for event in bridge.store.audit_events(0, 10_000, None):
        if selection.takes(event) and "ticket" in event.detail:
            order[event.detail["ticket"]].append(event.id)
    return dict(order)


def count(per_ticket: dict[str, list[int]]) -> int:
    return sum(map(len, per_ticket.values()))


def everything_delivered(bridge, receiver):
    """Wait until both sinks took every change of their tickets."""
    total = count(changes(bridge)) + count(changes(bridge, frozenset({"klinika-b"})))
    wait_for(lambda: len(receiver.taken) >= total, timeout=20, what="every change delivered")
    return total


def storm(api, clock):
    """Changes of two tickets, interleaved: opened, escalated, acknowledged, recovered."""
    push(api, "srv-a1", 0.95)
    clock.advance(60)
    push(api, "srv-b1", 0.95)
    clock.advance(60)
    push(api, "srv-a1", 0.99)
    clock.advance(60)
    r = api.post(f"/api/v1/tickets/{ticket_of(api, 'klinika-b')}/ack", headers=auth("engineer"))
    assert r.status_code == 200
    clock.advance(60)
    push(api, "srv-b1", 0.5)
    clock.advance(60)
    r = api.post(f"/api/v1/tickets/{ticket_of(api, 'szpital-a')}/ack", headers=auth("engineer"))
    assert r.status_code == 200


def start_delivery(bridge):
    for worker in bridge.outbox.workers.values():
        worker.backoff = FAST
    bridge.outbox.start()


def test_every_change_arrives_once_signed_and_in_order_per_ticket(api, bridge, clock, receiver):
    storm(api, clock)
    start_delivery(bridge)
    expected = changes(bridge)
    assert len(expected) == 2 and count(expected) >= 6
    everything_delivered(bridge, receiver)
    # Every change once (the receiver keeps the first of each key), in order per ticket.
    assert receiver.taken_on("/hook") == expected
    main = [p for p in receiver.taken.values() if p["path"] == "/hook"]
    for headers, body, _ in receiver.requests:
        mac = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        assert headers["x-dyzur-signature"] == f"sha256={mac}"
        assert headers["content-type"].startswith("application/json")
    number_a = ticket_of(api, "szpital-a")
    first = next(p for p in main if p["ticket"] == number_a)
    assert first["action"] == "ticket.opened"
    assert first["client"] == "szpital-a" and first["asset"] == "srv-a1"
    assert first["category"] in ("usterka", "awaria") and first["title"]
    escalated = next(p for p in main if p["action"] == "ticket.escalated")
    assert escalated["text"] and escalated["text"] != first["text"]
    # The ticket shows where it went, with the helpdesk's id.
    shown = api.get(f"/api/v1/tickets/{number_a}", headers=auth("admin")).json()
    trail = bridge.store.audit_events(0, 10_000, None)
    loaded = [e for e in trail if e.action == "config.loaded"]
    assert loaded[-1].detail["sinks"] == ["webhook:helpdesk", "webhook:klinika"]
    assert SECRET.decode() not in repr(trail)
    timeline = {e["kind"]: e["message"] for e in shown["timeline"]}
    assert first["text"] == timeline["opened"]  # the timeline text written with the change
    assert escalated["text"] == timeline["escalated"]
    assert shown["deliveries"] == [
        {
            "sink": "helpdesk",
            "remote_id": f"HD-{number_a}",
            "state": "delivered",
            "reason": None,
            "at": shown["deliveries"][0]["at"],
        }
    ]


def test_clients_limit_a_sink_to_some_hospitals(api, bridge, clock, receiver):
    storm(api, clock)
    start_delivery(bridge)
    everything_delivered(bridge, receiver)
    klinika = receiver.taken_on("/klinika")
    number_a, number_b = ticket_of(api, "szpital-a"), ticket_of(api, "klinika-b")
    assert klinika == changes(bridge, frozenset({"klinika-b"}))
    assert list(klinika) == [number_b]
    sinks_a = api.get(f"/api/v1/tickets/{number_a}", headers=auth("admin")).json()["deliveries"]
    sinks_b = api.get(f"/api/v1/tickets/{number_b}", headers=auth("admin")).json()["deliveries"]
    assert [d["sink"] for d in sinks_a] == ["helpdesk"]
    assert [d["sink"] for d in sinks_b] == ["helpdesk", "klinika"]


def test_a_window_release_and_the_sla_warnings_reach_the_helpdesk_in_order(
    api, bridge, clock, receiver
):
    """The changes the storm does not make: an alert held by a maintenance window and still
    firing when it ends (its ticket opened, then released), SLA at risk, SLA breached."""
    window = bridge.maintenance.plan(
        WindowRequest(
            client="klinika-b",
            start=START,
            end=START + timedelta(hours=1),
            reason="aktualizacja systemu",
            assets=["srv-b1"],
        ),
        "jan.kowalski",
    )
    push(api, "srv-b1", 0.95)  # held by the window: no ticket yet
    clock.set(window.end)
    bridge.tick()  # the window ends with the alert firing: its ticket opens now
    [record] = bridge.store.suppressed_alerts(window=window.id)
    number = record.ticket
    assert number is not None
    due = bridge.store.get_ticket(number).reaction_due
    clock.set(due - timedelta(minutes=1))  # past the at-risk share of the reaction time
    bridge.tick()
    clock.set(due + timedelta(minutes=1))
    bridge.tick()
    start_delivery(bridge)
    everything_delivered(bridge, receiver)
    main = [p for p in receiver.taken.values() if p["path"] == "/hook"]
    assert [p["action"] for p in main if p["ticket"] == number] == [
        "ticket.opened",
        "window.alert_released",
        "sla.at_risk",
        "sla.breached",
    ]
    assert receiver.taken_on("/hook") == changes(bridge)
    assert receiver.taken_on("/klinika") == changes(bridge, frozenset({"klinika-b"}))
    shown = api.get(f"/api/v1/tickets/{number}", headers=auth("admin")).json()
    timeline = {e["kind"]: e["message"] for e in shown["timeline"]}
    said = {p["action"]: p["text"] for p in main if p["ticket"] == number}
    assert said["window.alert_released"] == timeline["window_ended"]
    assert said["sla.at_risk"] == timeline["sla_at_risk"]
    assert said["sla.breached"] == timeline["sla_breached"]


def service(api, asset, up):
    sample = {
        "metric": "dz_test_service_up",
        "labels": {"asset": asset, "service": "amms"},
        "value": up,
    }
    r = api.post("/api/v1/samples", json={"samples": [sample]}, headers=auth("agent"))
    assert r.status_code == 200, r.text


def test_an_alert_firing_again_on_its_open_ticket_reaches_the_helpdesk(
    api, bridge, clock, receiver
):
    """A keep_open rule: the service recovers (the ticket stays open for an engineer), then
    breaks again: the helpdesk hears the re-fire on the same ticket, after the recovery."""
    for up in (0, 0, 1, 0, 0):
        service(api, "srv-a1", up)
        clock.advance(61)
    number = ticket_of(api, "szpital-a")
    start_delivery(bridge)
    everything_delivered(bridge, receiver)
    main = [p for p in receiver.taken.values() if p["path"] == "/hook"]
    assert [p["action"] for p in main if p["ticket"] == number] == [
        "ticket.opened",
        "ticket.recovered",
        "ticket.left_open",
        "ticket.refired",
    ]
    assert receiver.taken_on("/hook") == changes(bridge)


def test_busy_and_failing_answers_lose_nothing_and_keep_order(api, bridge, clock, receiver):
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=1), usegmt=True)
    receiver.script = [
        (429, {"Retry-After": "1"}),
        (503, {"Retry-After": soon}),
        (500, {}),
        (503, {}),
        (200, {}),
        (500, {}),
    ]
    storm(api, clock)
    start_delivery(bridge)
    total = everything_delivered(bridge, receiver)
    assert [s for _, _, s in receiver.requests][:6] == [429, 503, 500, 503, 200, 500]
    assert receiver.taken_on("/hook") == changes(bridge)
    assert receiver.taken_on("/klinika") == changes(bridge, frozenset({"klinika-b"}))
    # Changes were sent again, each repeat with its first key: the receiver took each once.
    keys: dict[int, set[str]] = defaultdict(set)
    for headers, body, _ in receiver.requests:
        keys[json.loads(body)["event_id"]].add(headers["idempotency-key"])
    assert all(len(k) == 1 for k in keys.values())
    assert len(receiver.requests) > total == len(receiver.taken)


def test_retry_after_is_honoured_and_other_failures_back_off(api, bridge, clock, receiver):
    """One round at a time: the pause after each answer is the destination's Retry-After (in
    seconds or an HTTP date), else the backoff's."""
    push(api, "srv-a1", 0.95)
    worker = bridge.outbox.workers["sink:helpdesk"]
    worker.backoff = Backoff(base=0.25, cap=0.25, jitter=0.0)
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    receiver.script = [(429, {"Retry-After": "7"}), (503, {"Retry-After": later}), (500, {})]
    assert worker.step() == 7.0
    assert 100 < worker.step() <= 120
    assert worker.step() == 0.25
    assert worker.step() == 0.0  # taken
    assert [s for _, _, s in receiver.requests] == [429, 503, 500, 200]
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date gone by: now
    assert retry_after("soon") is None


def test_a_refused_change_is_parked_as_failed_and_other_tickets_go_on(api, bridge, clock, receiver):
    number_a = None

    def refuse(payload):
        if payload["ticket"] == number_a and payload["action"] == "ticket.acknowledged":
            return 400
        return None

    receiver.refuse = refuse
    push(api, "srv-a1", 0.95)
    push(api, "srv-b1", 0.95)
    number_a, number_b = ticket_of(api, "szpital-a"), ticket_of(api, "klinika-b")
    assert api.post(f"/api/v1/tickets/{number_a}/ack", headers=auth("engineer")).status_code == 200
    clock.advance(60)
    push(api, "srv-b1", 0.5)  # a change of the other ticket after the refused one
    start_delivery(bridge)
    expected = changes(bridge)
    refused = expected[number_a][-1]
    wait_for(
        lambda: (
            [
                e
                for e in expected[number_b]
                if e not in {p["event_id"] for p in receiver.taken.values()}
            ]
            == []
        ),
        timeout=20,
        what="the other ticket's changes",
    )
    shown = api.get(f"/api/v1/tickets/{number_a}", headers=auth("admin")).json()["deliveries"]
    failed = next(d for d in shown if d["sink"] == "helpdesk")
    assert failed["state"] == "failed"
    assert "400" in failed["reason"]
    assert failed["remote_id"] == f"HD-{number_a}"  # the helpdesk's id from the opening stays
    trail = api.get("/api/v1/audit?action=outbox.delivery_failed", headers=auth("admin")).json()
    events = trail if isinstance(trail, list) else trail["events"]
    parked = [e for e in events if e["detail"]["consumer"] == "sink:helpdesk"]
    assert [e["detail"]["event"] for e in parked] == [refused]
    assert [p["event_id"] for p in receiver.taken.values() if p["ticket"] == number_a] == expected[
        number_a
    ][:-1]
    # The refused change was not offered again.
    tries = [json.loads(b)["event_id"] for _, b, _ in receiver.requests]
    assert tries.count(refused) == 1
    assert SECRET.decode() not in json.dumps(events)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_check_config_refuses_a_secret_file_open_to_others(tmp_path, mode):
    secret_file(tmp_path, mode)
    path = tmp_path / "dyzur.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "clients": [{"id": "a", "name": "A"}],
                "sinks": [
                    {
                        "name": "glpi",
                        "kind": "webhook",
                        "url": "https://glpi.example/hook",
                        "secret_file": "webhook.secret",
                        "clients": ["a"],
                    }
                ],
            }
        )
    )
    r = dyzur("check-config", path)
    assert r.returncode == 2
    assert f"sinks.0.secret_file: '{tmp_path / 'webhook.secret'}' is open to group" in r.stderr
    assert SECRET.decode() not in r.stderr + r.stdout
    os.chmod(tmp_path / "webhook.secret", 0o400)
    r = dyzur("check-config", path)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    ("sink", "problem"),
    [
        ({"kind": "smtp"}, "sinks.0.kind"),
        ({"url": "ftp://x/"}, "sinks.0.url"),
        ({"secret_file": "missing"}, "sinks.0.secret_file: no such file"),
        ({"clients": ["nowhere"]}, "sinks.0.clients: unknown client 'nowhere'"),
    ],
)
def test_bad_sink_settings_name_the_field(tmp_path, sink, problem):
    secret_file(tmp_path)
    data = config_data()
    base = {"name": "h", "kind": "webhook", "url": "http://h/x", "secret_file": "webhook.secret"}
    data["sinks"] = [{**base, **sink}]
    with pytest.raises(ConfigError) as error:
        parse_config(data, "test.yaml", tmp_path)
    assert any(p.startswith(problem) for p in error.value.problems), error.value.problems


def test_a_refused_connection_is_retried_and_the_change_goes_when_the_helpdesk_is_back(
    api, bridge, clock, receiver
):
    push(api, "srv-a1", 0.95)
    worker = bridge.outbox.workers["sink:helpdesk"]
    worker.backoff = Backoff(base=0.25, cap=0.25, jitter=0.0)
    sink = worker.consumer
    url, sink.url = sink.url, f"http://127.0.0.1:{free_port()}/hook"  # nobody listens there
    assert worker.step() == 0.25
    assert worker.step() == 0.25
    number = ticket_of(api, "szpital-a")
    assert api.get(f"/api/v1/tickets/{number}", headers=auth("admin")).json()["deliveries"] == []
    sink.url = url  # the helpdesk is back
    assert worker.step() == 0.0
    assert receiver.taken_on("/hook") == changes(bridge)
    shown = api.get(f"/api/v1/tickets/{number}", headers=auth("admin")).json()["deliveries"]
    assert [(d["sink"], d["state"]) for d in shown] == [("helpdesk", "delivered")]


def test_a_password_in_the_sink_url_never_reaches_an_error(tmp_path):
    """A helpdesk URL with a user and password: the errors that reach the log and the audit
    trail name the helpdesk without them."""
    from bridge.delivery.outbox import Retry
    from bridge.delivery.sinks import TicketChange
    from bridge.delivery.sinks.webhook import WebhookSink
    from bridge.models import AuditEvent

    port = free_port()  # nothing listens there: a refused connection
    sink = WebhookSink(
        "helpdesk",
        f"http://dyzur:pa55-word@127.0.0.1:{port}/hook",
        secret_file(tmp_path),
        store=None,  # type: ignore[arg-type]  # send() does not touch it
    )
    event = AuditEvent(START, "dyzur", "ticket.opened", "success", "szpital-a", "srv-a1", {})
    event.id, event.hash = 1, "0" * 64  # as the audit log stores it
    with pytest.raises(Retry) as refused:
        sink.send(TicketChange(event, "DZ-2026-000001", None, ""), None)
    sink.close()
    assert f"http://127.0.0.1:{port}/hook" in str(refused.value)
    assert "pa55-word" not in str(refused.value) and "dyzur:" not in str(refused.value)
