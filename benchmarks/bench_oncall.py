"""From an Awaria opening to its on-call page reaching the SMTP server, on loopback.

A real bridge process (``dyzur run``, its own SQLite store, the real clock) with an oncall
section: a 24-hour shift around now, the person paged at once by an e-mail channel to an
``aiosmtpd`` server in a separate process (plain SMTP, ``tls: none``) that prints each
message's ticket number and arrival time, and by SMS to the SMS-gateway stand-in
(tests/sms_gateway.py), which takes its pages as a gateway would. N times (default 20), an
agent's push of a sample opens an Awaria of a 24/7 hospital; the clock starts when the push is
answered (the ticket is committed) and stops when the page's DATA is taken. Pushes are spaced
by a random pause so they fall anywhere in the outbox workers' polling cycle.

The total is split, from the store afterwards, into the wait until the pager decided the page
(its ``oncall.page`` audit event) and the sending. The outbox's workers look for new entries
when woken (``Outbox.notify``) or every IDLE_POLL (1 s); what the median says about that is
printed with the figures.

    .venv/bin/python benchmarks/bench_oncall.py [--runs 20]
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.delivery.outbox import IDLE_POLL  # noqa: E402
from bridge.store import open_store  # noqa: E402
from tests.conftest import auth, free_port  # noqa: E402
from tests.oncall_parts import oncall_config, sms_gateway  # noqa: E402
from tests.processes import RunningBridge, wait_for  # noqa: E402

STORE = "sqlite:///var/dyzur.db"

SMTP_RECEIVER = textwrap.dedent(
    """
    import email, sys, time
    from aiosmtpd.controller import Controller

    class Pages:
        async def handle_DATA(self, server, session, envelope):
            taken = time.time()
            message = email.message_from_bytes(envelope.content)
            print(message["X-Dyzur-Ticket"], taken, flush=True)
            return "250 OK"

    Controller(Pages(), hostname="127.0.0.1", port=int(sys.argv[1])).start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)
    """
)


class Receiver:
    """The SMTP server process; ``arrived`` maps a ticket number to its page's arrival time."""

    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SMTP_RECEIVER, str(port)], stdout=subprocess.PIPE, text=True
        )
        self.arrived: dict[str, float] = {}
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(30):
            raise RuntimeError("the SMTP server did not start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip() == "ready":
                self.ready.set()
                continue
            number, at = line.split()
            self.arrived.setdefault(number, float(at))

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def sample(i: int) -> dict:
    return {
        "samples": [
            {
                "metric": "dz_test_disk_used_ratio",
                "labels": {"asset": "srv-b1", "mountpoint": f"/m{i}"},
                "value": 0.99,
            }
        ]
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def figures(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"  {name:34} median {statistics.median(ms):7.1f} ms   p95 {percentile(ms, 0.95):7.1f} ms"
        f"   min {min(ms):6.1f}   max {max(ms):7.1f}"
    )


def run(runs: int, tmp: Path) -> None:
    smtp_port, port = free_port(), free_port()
    receiver = Receiver(smtp_port)
    gateway = sms_gateway()  # the SMS pages at the same time as the e-mail
    data = oncall_config(
        tmp,
        f"smtp://127.0.0.1:{smtp_port}",
        gateway.url,
        datetime.now(UTC) - timedelta(hours=1),
        store=STORE,
        public_url=f"http://127.0.0.1:{port}",
        escalate_after="1h",
    )
    config = tmp / "dyzur.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True))
    bridge = RunningBridge(config, port)
    answered: dict[str, float] = {}
    rng = random.Random(20261130)
    try:
        with httpx.Client(timeout=30) as http:
            for i in range(runs):
                time.sleep(rng.uniform(0.0, IDLE_POLL))  # anywhere in the polling cycle
                r = http.post(f"{bridge.url}/api/v1/samples", json=sample(i), headers=auth("agent"))
                at = time.time()
                assert r.status_code == 200, r.text
                tickets = http.get(
                    f"{bridge.url}/api/v1/tickets?client=klinika-b&limit=1", headers=auth("admin")
                ).json()
                number = tickets[0]["number"]
                answered[number] = at
                wait_for(
                    lambda n=number: n in receiver.arrived, timeout=60, what=f"page of {number}"
                )
    finally:
        bridge.stop()
        receiver.stop()
        gateway.down()
    decided = page_decisions(tmp)
    total = [receiver.arrived[n] - answered[n] for n in answered]
    waited = [decided[n] - answered[n] for n in answered]
    sending = [receiver.arrived[n] - decided[n] for n in answered]
    print(f"on call: Awaria opened -> page at the SMTP server, {runs} runs (loopback)")
    print(figures("push answered -> page at SMTP", total))
    print(figures("  push answered -> page decided", waited))
    print(figures("  page decided -> at SMTP", sending))
    share = max(0.0, statistics.median(waited)) / statistics.median(total)
    print(
        f"  the wait for the pager's outbox worker is {share:.0%} of the median (a commit that "
        f"appends to the outbox wakes it; unwoken it would look every {IDLE_POLL:g} s); the "
        "page can be decided before the agent has read its answer, hence times below 0"
    )


def page_decisions(tmp: Path) -> dict[str, float]:
    """When the pager decided each ticket's page: its oncall.page audit event's time."""
    store = open_store(STORE, tmp)
    try:
        return {
            e.detail["ticket"]: e.at.timestamp()
            for e in store.audit_events(0, 100_000, None)
            if e.action == "oncall.page"
        }
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(args.runs, Path(tmp))


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    main()
