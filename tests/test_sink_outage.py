"""A helpdesk away during a storm of ticket changes, and the real bridge process killed with
SIGKILL while it delivers: nothing is lost, every change arrives once as the helpdesk sees it
(by Idempotency-Key), in order per ticket.

The storm opens, escalates, acknowledges and recovers one ticket per mountpoint, pushed to the
real bridge process over HTTP; a killer thread SIGKILLs it at random moments and starts it
again on the same store; the receiver is shut down for a while in the middle and started again
on the same port.
"""

from __future__ import annotations

import random
import signal
import threading
from collections import defaultdict
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import yaml

from bridge.delivery.outbox import Selection
from bridge.delivery.sinks import TICKET_CHANGES
from bridge.store import open_store
from tests.conftest import auth, config_data, free_port
from tests.processes import RunningBridge, wait_for
from tests.test_sink_webhook import Receiver, secret_file

TICKETS = 30
MIN_KILLS = 3


def samples(value: float, first: int, last: int) -> dict:
    return {
        "samples": [
            {
                "metric": "dz_test_disk_used_ratio",
                "labels": {"asset": "srv-a1", "mountpoint": f"/m{i}"},
                "value": value,
            }
            for i in range(first, last)
        ]
    }


class Helpdesk:
    """The receiver, stoppable and started again on the same port (what it took is kept)."""

    def __init__(self) -> None:
        self.receiver = Receiver()
        self.port = self.receiver.server.server_address[1]
        self._serve()

    def _serve(self) -> None:
        threading.Thread(target=self.receiver.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        self.receiver.server.shutdown()
        self.receiver.server.server_close()

    def up(self) -> None:
        handler = self.receiver.server.RequestHandlerClass
        self.receiver.server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._serve()


def expected_changes(store_url: str, base_dir: Path) -> dict[str, list[int]]:
    store = open_store(store_url, base_dir)
    try:
        selection = Selection(actions=TICKET_CHANGES)
        order: dict[str, list[int]] = defaultdict(list)
        for event in store.audit_events(0, 100_000, None):
            if selection.takes(event) and "ticket" in event.detail:
                order[event.detail["ticket"]].append(event.id)
        return dict(order)
    finally:
        store.close()


def test_outage_and_sigkill_during_delivery_lose_nothing_and_keep_order(tmp_path: Path):
    helpdesk = Helpdesk()
    secret_file(tmp_path)
    data = config_data("sqlite:///var/dyzur.db")
    data["sinks"] = [
        {
            "name": "helpdesk",
            "kind": "webhook",
            "url": helpdesk.receiver.url,
            "secret_file": "webhook.secret",
        }
    ]
    config = tmp_path / "dyzur.yaml"
    config.write_text(yaml.safe_dump(data))
    port = free_port()
    bridge = RunningBridge(config, port)
    lock = threading.Lock()  # the killer and the storm agree on which process is current
    kills = 0
    done = threading.Event()
    rng = random.Random(20261130)

    def killer() -> None:
        nonlocal bridge, kills
        while not done.is_set() or kills < MIN_KILLS:
            if done.wait(rng.uniform(0.5, 2.0)) and kills >= MIN_KILLS:
                return
            with lock:
                bridge.stop(signal.SIGKILL)
                kills += 1
                bridge = RunningBridge(config, port)

    def send(http: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response:
        """Until the current bridge answered (a killed one is started again meanwhile)."""
        while True:
            with lock:
                url = bridge.url
            try:
                r = http.request(method, f"{url}{path}", **kwargs)
            except httpx.TransportError:
                continue
            if r.status_code != 503:
                return r

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        with httpx.Client(timeout=30) as http:
            for step, value in enumerate((0.95, 0.99, 0.5)):
                for first in range(0, TICKETS, 5):
                    r = send(
                        http,
                        "POST",
                        "/api/v1/samples",
                        json=samples(value, first, first + 5),
                        headers=auth("agent"),
                    )
                    assert r.status_code == 200, r.text
                if step == 0:
                    helpdesk.down()  # the helpdesk goes away while the escalations come
                if step == 1:
                    tickets = send(
                        http, "GET", "/api/v1/tickets?client=szpital-a", headers=auth("admin")
                    ).json()
                    for ticket in tickets[::2]:
                        r = send(
                            http,
                            "POST",
                            f"/api/v1/tickets/{ticket['number']}/ack",
                            headers=auth("engineer"),
                        )
                        assert r.status_code in (200, 409), r.text
                    # Away for several delivery rounds, the kills going on meanwhile.
                    wait_for(lambda: kills >= 2, timeout=60, what="two kills in the outage")
                    done.wait(3.0)
                    helpdesk.up()
    finally:
        done.set()
        thread.join()
    assert kills >= MIN_KILLS
    expected = expected_changes("sqlite:///var/dyzur.db", tmp_path)
    total = sum(map(len, expected.values()))
    try:
        wait_for(
            lambda: len(helpdesk.receiver.taken) >= total,
            timeout=120,
            what=f"{total} changes delivered",
        )
    finally:
        bridge.stop()
        helpdesk.down()
    assert len(expected) == TICKETS
    assert total >= 3 * TICKETS
    # Every change once as the helpdesk sees it, in order per ticket, nothing more.
    assert helpdesk.receiver.taken_on("/hook") == expected
