"""Audit events forwarded per second to a real rsyslog, over TCP and over TLS.

Writes N events into a fresh SQLite store, starts the outbox with one SIEM consumer forwarding
to an rsyslogd started here (127.0.0.1, free ports), and times until rsyslog has written every
one of them to its file.

    python benchmarks/bench_siem.py [--events 20000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import trustme  # noqa: E402

from bridge.clock import Clock  # noqa: E402
from bridge.delivery.outbox import Outbox  # noqa: E402
from bridge.delivery.siem import Destination, SiemConsumer  # noqa: E402
from bridge.metrics import BridgeMetrics  # noqa: E402
from bridge.models import AuditEvent  # noqa: E402
from bridge.store.sqlite import SQLiteStore  # noqa: E402
from tests.rsyslog import Rsyslog  # noqa: E402


def lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def run(kind: str, events: int, tmp: Path) -> float:
    tls = None
    ca_file = None
    if kind == "tls":
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1")
        ca.cert_pem.write_to_path(tmp / "ca.pem")
        server.cert_chain_pems[0].write_to_path(tmp / "server.pem")
        server.private_key_pem.write_to_path(tmp / "server-key.pem")
        tls = (tmp / "ca.pem", tmp / "server.pem", tmp / "server-key.pem")
        ca_file = tmp / "ca.pem"
    rsyslog = Rsyslog(tmp / f"rsyslog-{kind}", tls=tls)
    rsyslog.start()
    store = SQLiteStore(tmp / f"{kind}.db")
    store.migrate()
    now = datetime.now(UTC)
    for i in range(events):
        store.append_audit(
            AuditEvent(
                now,
                "jan.kowalski",
                "ticket.opened",
                "success",
                "szpital-a",
                "srv-a1",
                {"ticket": f"DZ-2026-{i:06d}", "category": "awaria"},
            )
        )
    outbox = Outbox(store, Clock())
    destination = Destination.from_url(
        "bench", f"{kind}://127.0.0.1:{rsyslog.tcp_port}", ca_file=ca_file
    )
    outbox.register(SiemConsumer(destination, BridgeMetrics()))
    started = time.perf_counter()
    outbox.start()
    try:
        while lines(rsyslog.out) < events:
            time.sleep(0.01)
        return events / (time.perf_counter() - started)
    finally:
        outbox.stop()
        rsyslog.stop()
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("tcp", "tls"):
            rate = run(kind, args.events, Path(tmp))
            print(f"{kind.upper():>3}: {args.events:,} audit events to rsyslog, {rate:,.0f}/s")


if __name__ == "__main__":
    main()
