"""Two real bridge processes on one SQLite store and one config, as an operator running a
second bridge for availability would: the work outside (a webhook helpdesk, an e-mail intake,
the on-call pages by e-mail and SMS) is shared through leases, so every change reaches each
helpdesk once as seen from there, in order per ticket, and every page goes once.

The agent sends each numbered batch, and the engineer each acknowledgment, to both processes
at once. The process holding the leases is SIGKILLed while the destinations are away with a
backlog waiting; the other one takes over once the leases ran out (30 s) and finishes it. One
page's one-time link POSTed to both processes at once acknowledges once.

A process reads the real clock: the rota has a 24-hour shift around now, and the tickets are
Klinika B's, whose 24/7 contract pages at any hour; the escalation (1 h) never comes.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from bridge.delivery.oncall.channels import page_message_id
from bridge.delivery.sinks.email import message_id
from bridge.store import open_store
from tests.cluster import at_once
from tests.conftest import auth, free_port
from tests.oncall_parts import link_in, oncall_config, pages_to, token_of
from tests.processes import RunningBridge, wait_for
from tests.test_sink_webhook import Receiver

STORE = "sqlite:///var/dyzur.db"
AGENT = "two-bridges-agent"
INTAKE = "zgloszenia@helpdesk.example.pl"
ANNA = "anna@serwis.example.pl"
DOMAIN = "serwis.example.pl"
FIRST = 24  # tickets opened, escalated and recovered while both processes run
LATER = 8  # tickets opened while the leases' holder lies dead
RETRY_AFTER = 35  # seconds a busy webhook asks for: longer than the outbox's 30 s lease
SINK_CHANGES = ("ticket.", "sla.", "window.alert_released")


def batch(seq: int, value: float, mounts: range) -> dict:
    return {
        "agent": {"id": AGENT, "seq": seq},
        "samples": [
            {
                "metric": "dz_test_disk_used_ratio",
                "labels": {"asset": "srv-b1", "mountpoint": f"/t{i}"},
                "value": value,
            }
            for i in mounts
        ],
    }


class Fleet:
    """The bridges the agent and the engineer talk to (a dead one fails to connect)."""

    def __init__(self, bridges: list[RunningBridge]) -> None:
        self.bridges = bridges
        self.http = httpx.Client(timeout=60)

    def post_all(self, path: str, body: dict | None, who: str) -> list[httpx.Response | None]:
        calls = [
            (lambda b=b: self.http.post(f"{b.url}{path}", json=body, headers=auth(who)))
            for b in self.bridges
        ]
        return at_once(calls)

    def push(
        self, seq: int, value: float, mounts: range, to: RunningBridge | None = None
    ) -> RunningBridge | None:
        """One numbered batch to every bridge at once (or only ``to``), again until one took
        it: exactly one answer is not a duplicate. The bridge that took it, if it is known.

        Without coordination each process's engine knows only the batches it evaluated (README:
        Store): a recovery goes to the bridge that saw its alerts fire, as an agent pinned to
        one bridge would send it."""
        body = batch(seq, value, mounts)
        targets = self.bridges if to is None else [to]
        while True:
            calls = [
                (
                    lambda b=b: self.http.post(
                        f"{b.url}/api/v1/samples", json=body, headers=auth("agent")
                    )
                )
                for b in targets
            ]
            answers = at_once(calls)
            assert all(a.status_code in (200, 503) for a in answers if a), [
                a.text for a in answers if a
            ]
            taken = [
                (b, a.json())
                for b, a in zip(targets, answers, strict=True)
                if a and a.status_code == 200
            ]
            if taken:
                break
        fresh = [b for b, t in taken if not t["duplicate"]]
        assert len(fresh) <= 1, taken  # two processes applied one batch
        assert all(t["rejected"] == [] for _, t in taken)
        return fresh[0] if fresh else None


def store_read(tmp_path: Path, read):
    store = open_store(STORE, tmp_path)
    try:
        return read(store)
    finally:
        store.close()


def sql(tmp_path: Path, query: str, *params) -> list[tuple]:
    with sqlite3.connect(tmp_path / "var" / "dyzur.db") as db:
        return db.execute(query, params).fetchall()


def lease_holders(tmp_path: Path) -> dict[str, str]:
    """Lease name -> the owner holding it now."""
    now = datetime.now(UTC).timestamp()
    rows = sql(tmp_path, "SELECT name, owner, until FROM leases")
    return {name: owner for name, owner, until in rows if owner and until >= now}


def lease_tokens(tmp_path: Path) -> dict[str, int]:
    """Lease name -> its fencing token (it grows each time the lease changes hands)."""
    return dict(sql(tmp_path, "SELECT name, token FROM leases"))


def pid_of(owner: str) -> int:
    return int(owner.split(":")[1])  # host:pid:nonce (Outbox.owner)


@pytest.fixture
def receiver():
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def two_bridge_config(tmp_path: Path, smtp, gateway, receiver, public_url: str) -> Path:
    data = oncall_config(
        tmp_path,
        smtp.url,
        gateway.url,
        datetime.now(UTC) - timedelta(hours=1),
        store=STORE,
        public_url=public_url,
        escalate_after="1h",
    )
    data["tick_interval"] = "1s"
    (tmp_path / "webhook.secret").write_bytes(b"two-bridges-webhook-secret\n")
    (tmp_path / "webhook.secret").chmod(0o600)
    data["sinks"] = [
        {"name": "hook", "kind": "webhook", "url": receiver.url, "secret_file": "webhook.secret"},
        {
            "name": "mail",
            "kind": "email",
            "url": smtp.url,
            "tls": "none",
            "from": f"dyzur@{DOMAIN}",
            "to": [INTAKE],
        },
    ]
    config = tmp_path / "dyzur.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True))
    return config


def test_two_bridges_on_one_store_deliver_every_change_and_page_once(
    tmp_path, smtp, gateway, receiver
):
    ports = [free_port(), free_port()]
    config = two_bridge_config(tmp_path, smtp, gateway, receiver, f"http://127.0.0.1:{ports[0]}")
    first = RunningBridge(config, ports[0])
    bridges = [first]
    try:
        # The first one takes every lease before the second one starts: it is the holder.
        wait_for(
            lambda: (
                {"sink:hook", "sink:mail", "oncall", "page:mail", "page:sms"}
                <= lease_holders(tmp_path).keys()
            ),
            what="the first bridge to take the leases",
        )
        bridges.append(RunningBridge(config, ports[1]))
        fleet = Fleet(bridges)
        everything = range(FIRST)

        # 1. Opened (Usterka), escalated (Awaria: pages), half acknowledged, all recovered.
        fleet.push(1, 0.95, everything)
        escalated_by = fleet.push(2, 0.99, everything)
        tickets = {
            t["labels"]["mountpoint"]: t["number"]
            for t in fleet.http.get(
                f"{first.url}/api/v1/tickets?client=klinika-b&limit=1000", headers=auth("admin")
            ).json()
        }
        assert len(tickets) == FIRST
        acknowledged = sorted(tickets.values())[: FIRST // 2]
        for number in acknowledged:
            answers = fleet.post_all(f"/api/v1/tickets/{number}/ack", None, "engineer")
            assert all(a is not None and a.status_code in (200, 409) for a in answers)

        # 2. One page's link POSTed to both processes at once: one acknowledges.
        unanswered = sorted(set(tickets.values()) - set(acknowledged))[0]
        wait_for(
            lambda: [m for m in pages_to(smtp.mailbox, ANNA) if m["X-Dyzur-Ticket"] == unanswered],
            timeout=60,
            what=f"Anna's page of {unanswered}",
        )
        [page] = [m for m in pages_to(smtp.mailbox, ANNA) if m["X-Dyzur-Ticket"] == unanswered]
        token = token_of(link_in(page.get_content()))
        answers = at_once(
            [(lambda b=b: fleet.http.post(f"{b.url}/oncall/ack/{token}")) for b in bridges]
        )
        assert sorted(a.status_code for a in answers if a is not None) == [200, 409]
        [used] = [a for a in answers if a is not None and a.status_code == 409]
        assert "Ten link został już użyty" in used.text  # the "used" page, nothing changed

        fleet.push(3, 0.5, everything, to=escalated_by)

        # 3. The destinations away. The webhook asks for RETRY_AFTER s, longer than the 30 s
        # lease: the holder honours it and keeps its leases meanwhile (the other bridge does
        # not take over and send at once what the helpdesk asked to wait for).
        before = lease_tokens(tmp_path)
        asked = len(receiver.requests)
        receiver.script = [(503, {"Retry-After": str(RETRY_AFTER)})]
        receiver.refuse = lambda payload: 503
        smtp.mailbox.closed = True
        gateway.script = [(503, {})] * 10_000
        more = range(FIRST, FIRST + LATER)
        opened_by = fleet.push(4, 0.99, more)  # opened as Awaria at once: pages
        wait_for(
            lambda: len(receiver.requests) >= asked + 2,
            timeout=RETRY_AFTER + 20,
            what="the webhook asked again after its Retry-After",
        )
        assert receiver.requests[asked][2] == 503
        assert lease_tokens(tmp_path)["sink:hook"] == before["sink:hook"], "taken over"
        fleet.push(5, 0.5, range(FIRST, FIRST + LATER // 2), to=opened_by)  # some recover

        # The holder of the leases killed with its backlog waiting; the destinations back.
        holders = lease_holders(tmp_path)
        victim = next(b for b in bridges if b.proc.pid == pid_of(holders["sink:hook"]))
        held = sorted(name for name, owner in holders.items() if pid_of(owner) == victim.proc.pid)
        victim.stop(signal.SIGKILL)
        survivor = next(b for b in bridges if b is not victim)
        fleet.bridges = [survivor]
        smtp.mailbox.closed = False
        receiver.refuse = lambda payload: None
        gateway.script = []

        trail = store_read(tmp_path, lambda s: s.audit_events(0, 1_000_000, None))
        expected: dict[str, list[int]] = defaultdict(list)
        for event in trail:
            if event.action.startswith(SINK_CHANGES) and "ticket" in event.detail:
                expected[event.detail["ticket"]].append(event.id)
        total = sum(map(len, expected.values()))
        wait_for(
            lambda: len(receiver.taken) >= total,
            timeout=90,
            what=f"{total} changes at the webhook (the survivor after the 30 s lease)",
        )
        wait_for(
            lambda: (
                len({m["Message-ID"] for m in smtp.mailbox.messages() if INTAKE in str(m["To"])})
                >= total
            ),
            timeout=60,
            what=f"{total} changes at the e-mail intake",
        )
        wait_for(
            lambda: all(
                p.outcome is not None
                for p in store_read(
                    tmp_path, lambda s: [p for number in expected for p in s.pages(number)]
                )
            ),
            timeout=60,
            what="every page sent",
        )
        survivor_log = survivor.output()
    finally:
        for bridge in bridges:
            bridge.stop()

    trail = store_read(tmp_path, lambda s: s.audit_events(0, 1_000_000, None))
    by_id = {e.id: e for e in trail}
    pages = store_read(tmp_path, lambda s: [p for number in expected for p in s.pages(number)])
    print(
        f"\nkilled the holder of {held}; changes: {total}, "
        f"webhook requests: {len(receiver.requests)}, pages: {len(pages)}"
    )
    assert "sink:hook" in held and "lease lost" not in survivor_log

    # Each ticket exists once.
    counts = Counter(
        m for (m,) in sql(tmp_path, "SELECT json_extract(labels, '$.mountpoint') FROM tickets")
    )
    assert counts == Counter({f"/t{i}": 1 for i in range(FIRST + LATER)})
    resolved = dict(
        sql(tmp_path, "SELECT json_extract(labels, '$.mountpoint'), status FROM tickets")
    )
    assert all(resolved[f"/t{i}"] == "resolved" for i in range(FIRST + LATER // 2)), resolved

    # Each change once at the webhook (by Idempotency-Key), in order per ticket.
    assert receiver.taken_on("/hook") == dict(expected)
    assert len(receiver.taken) == total

    # Each change once at the e-mail intake by Message-ID (a repeat only with the same one),
    # one thread per ticket.
    mails: dict[str, list] = defaultdict(list)
    for m in smtp.mailbox.messages():
        if INTAKE in str(m["To"]):
            mails[m["X-Dyzur-Ticket"]].append(m)
    for number, ids in expected.items():
        want = [message_id(by_id[i].hash, "mail", DOMAIN) for i in ids]
        arrived = list(dict.fromkeys(m["Message-ID"] for m in mails[number]))
        assert arrived == want, number
        assert all(m["In-Reply-To"] == want[0] for m in mails[number] if m["Message-ID"] != want[0])
    assert mails.keys() == expected.keys()

    # Each page once per person, channel and step: one page event each, sent once as the
    # gateway and the mailbox see it (a repeat only with the same Idempotency-Key or
    # Message-ID: the holder killed between the send and its record).
    steps = Counter((p.ticket, p.round, p.step, p.person, p.channel) for p in pages)
    assert all(n == 1 for n in steps.values()), steps
    # An Awaria pages unless it was acknowledged or resolved before the pager read it (the
    # ones still open now were not).
    awaria = {
        number
        for number, ids in expected.items()
        if any(
            by_id[i].action in ("ticket.escalated", "ticket.opened")
            and by_id[i].detail.get("category") == "awaria"
            for i in ids
        )
    }
    paged = {p.ticket for p in pages}
    numbers = dict(
        sql(tmp_path, "SELECT json_extract(labels, '$.mountpoint'), number FROM tickets")
    )
    still_open = {numbers[f"/t{i}"] for i in range(FIRST + LATER // 2, FIRST + LATER)}
    assert still_open | {unanswered} <= paged <= awaria
    assert len(awaria) == FIRST + LATER
    assert all(p.outcome == "delivered" for p in pages if p.ticket in still_open)
    keys = {by_id[p.event_id].hash: p for p in pages}
    sms = Counter(h["idempotency-key"] for h, _, status in gateway.requests if status == 200)
    assert set(sms) == set(gateway.taken)
    assert set(gateway.taken) == {
        k for k, p in keys.items() if p.channel == "sms" and p.outcome == "delivered"
    }
    mail_pages = Counter(m["Message-ID"] for m in pages_to(smtp.mailbox, ANNA))
    assert set(mail_pages) == {
        page_message_id(k, "mail", DOMAIN)
        for k, p in keys.items()
        if p.channel == "mail" and p.outcome == "delivered"
    }
    print(
        f"SMS pages: {len(sms)} ({sum(sms.values()) - len(sms)} repeats), e-mail pages: "
        f"{len(mail_pages)} ({sum(mail_pages.values()) - len(mail_pages)} repeats)"
    )

    # 2. The link's ticket: one acknowledgment, by Anna, one use of the link in the trail.
    acks = [
        e
        for e in trail
        if e.action == "ticket.acknowledged" and e.detail.get("ticket") == unanswered
    ]
    assert [e.actor for e in acks] == ["oncall:anna"]
    uses = [e for e in trail if e.action == "oncall.link_used"]
    assert len(uses) == 1 and uses[0].detail["ticket"] == unanswered
    refused = [e for e in trail if e.action == "oncall.link_refused"]
    assert [e.detail.get("reason") for e in refused] == ["used"]
    for number in acknowledged:
        assert (
            sum(
                1
                for e in trail
                if e.action == "ticket.acknowledged" and e.detail.get("ticket") == number
            )
            == 1
        )
