"""Ticket changes delivered per second by the helpdesk sinks, draining a backlog.

A bridge in this process (its own SQLite store, a fixed clock) opens, escalates and recovers
N/4 tickets from pushed samples with the outbox stopped, which leaves a backlog of N ticket
changes (default 10,000: opened, escalated, recovered, resolved). Then the outbox starts with
one sink and the time until its cursor passed the last change is the drain time.

- webhook: a receiver in a separate process (``http.server``, HTTP/1.1 keep-alive, answering
  200 with an id) so it does not share this process's GIL.
- email: an ``aiosmtpd`` server in a separate process (plain SMTP on loopback, ``tls: none``),
  when the e-mail sink is built.

    .venv/bin/python benchmarks/bench_sinks.py [--changes 10000] [--kinds webhook,email]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402

from bridge.api import create_app  # noqa: E402
from bridge.config import parse_config  # noqa: E402
from bridge.service import Bridge  # noqa: E402
from bridge.store.sqlite import SQLiteStore  # noqa: E402
from tests.conftest import START, FixedClock, auth, config_data, free_port  # noqa: E402
from tests.processes import wait_for  # noqa: E402

WEBHOOK_RECEIVER = textwrap.dedent(
    """
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else each answer waits for a delayed ACK (40 ms)

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b'{"id": "1"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
    """
)

SMTP_RECEIVER = textwrap.dedent(
    """
    import sys, time
    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1])).start()
    while True:
        time.sleep(3600)
    """
)


def sink_config(kind: str, port: int, tmp: Path) -> dict:
    if kind == "webhook":
        secret = tmp / "webhook.secret"
        secret.write_text("bench-secret\n")
        secret.chmod(0o600)
        return {
            "name": "bench",
            "kind": "webhook",
            "url": f"http://127.0.0.1:{port}/hook",
            "secret_file": "webhook.secret",
        }
    return {
        "name": "bench",
        "kind": "email",
        "url": f"smtp://127.0.0.1:{port}",
        "tls": "none",
        "from": "dyzur@serwis.example.pl",
        "to": ["helpdesk@serwis.example.pl"],
    }


def backlog(bridge: Bridge, api: TestClient, changes: int) -> int:
    """Push samples that make ``changes`` ticket changes; the last audit event's id."""
    tickets = changes // 4
    for value in (0.95, 0.99, 0.5):
        for first in range(0, tickets, 1000):
            batch = [
                {
                    "metric": "dz_test_disk_used_ratio",
                    "labels": {"asset": "srv-a1", "mountpoint": f"/m{i}"},
                    "value": value,
                }
                for i in range(first, min(first + 1000, tickets))
            ]
            r = api.post("/api/v1/samples", json={"samples": batch}, headers=auth("agent"))
            assert r.status_code == 200, r.text
        bridge.clock.advance(60)  # type: ignore[attr-defined]
    events = bridge.store.audit_events(0, 10**7, None)
    return events[-1].id or 0


def run(kind: str, changes: int, tmp: Path) -> tuple[int, float]:
    port = free_port()
    script = WEBHOOK_RECEIVER if kind == "webhook" else SMTP_RECEIVER
    receiver = subprocess.Popen([sys.executable, "-c", script, str(port)])
    try:
        data = config_data()
        data["sinks"] = [sink_config(kind, port, tmp)]
        loaded = parse_config(data, "bench.yaml", tmp)
        store = SQLiteStore(tmp / f"{kind}.db")
        store.migrate()
        bridge = Bridge(loaded, store=store, clock=FixedClock(START))
        bridge.start(ticker=False)
        with TestClient(create_app(bridge, run_ticker=False)) as api:
            last = backlog(bridge, api, changes)
        wait_for(lambda: _answers(kind, port), timeout=20, what=f"the {kind} receiver")
        delivered = sum(
            1 for e in store.audit_events(0, 10**7, None) if e.action.startswith("ticket.")
        )
        began = time.perf_counter()
        bridge.outbox.start()
        wait_for(
            lambda: store.cursor("sink:bench").last_id >= last,
            timeout=3600,
            interval=0.05,
            what="the backlog drained",
        )
        seconds = time.perf_counter() - began
        bridge.close()
        return delivered, seconds
    finally:
        receiver.kill()
        receiver.wait()


def _answers(kind: str, port: int) -> bool:
    if kind == "webhook":
        try:
            httpx.post(f"http://127.0.0.1:{port}/", content=b"{}", timeout=1)
            return True
        except httpx.TransportError:
            return False
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--kinds", default="webhook,email")
    args = parser.parse_args()
    print(f"helpdesk sinks: drain a backlog of {args.changes:,} ticket changes (loopback)")
    for kind in args.kinds.split(","):
        try:
            with tempfile.TemporaryDirectory() as tmp:
                delivered, seconds = run(kind, args.changes, Path(tmp))
        except NotImplementedError as exc:
            print(f"  {kind:8} not built: {exc}")
            continue
        print(
            f"  {kind:8} {delivered:>7,} changes in {seconds:6.2f} s"
            f"  = {delivered / seconds:8,.0f} changes/s"
        )


if __name__ == "__main__":
    main()
