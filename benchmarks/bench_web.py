"""The pages under /ui/ at size: the queue with 10,000 open tickets of 40 hospitals, and a
ticket page whose timeline has 1,000 lines.

A bridge in this process (the real app, a real SQLite file in a temporary directory, a fixed
clock) is filled through its store: 40 hospitals (half on standard hours, half 24/7, ten assets
each), N open tickets (default 10,000) opened over the last three days in all categories, each
with the reaction deadline and at-risk time its contract gives (some already answered), and
one of them with a 1,000-line timeline. An engineer logs in through the login form; each page
is then asked for R times through the app (FastAPI's TestClient: the whole ASGI stack —
session lookup, the services, the template — without a socket). Printed per page: median and
95th percentile in milliseconds, with the target "queue <= 100 ms". ``GET /healthz`` through
the same client gives the floor of the stack on this machine (a loaded machine raises every
figure).

- queue:           ``/ui/`` (the 200 most urgent of every hospital, with the filter form)
- queue, refresh:  ``/ui/queue/table`` (what the pages' script re-fetches every 30 s)
- queue, filtered: ``/ui/?client=szpital-07&category=awaria``
- queue, page 10:  ``/ui/?page=10`` (rows 1,801-2,000)
- ticket:          ``/ui/tickets/<the ticket with 1,000 timeline lines>``

Run: ``.venv/bin/python benchmarks/bench_web.py [--tickets 10000] [--timeline 1000] [--repeat 30]``
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from argon2 import PasswordHasher  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from bridge.api import create_app  # noqa: E402
from bridge.clock import FixedClock  # noqa: E402
from bridge.config import parse_config  # noqa: E402
from bridge.models import (  # noqa: E402
    Category,
    SlaState,
    Ticket,
    TicketStatus,
    TimelineEntry,
    ticket_number,
)
from bridge.service import Bridge  # noqa: E402

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # a Wednesday, 10:00 in Warsaw
HOSPITALS = 40
ASSETS = 10
PASSWORD = "benchmark password"
CATEGORIES = [Category.AWARIA, Category.USTERKA, Category.USTERKA, Category.ADMINISTRACJA,
              Category.KONSULTACJA, Category.UTRZYMANIE]  # fmt: skip


def config(tmp: Path) -> dict:
    clients, assets = [], []
    for h in range(HOSPITALS):
        client = f"szpital-{h:02d}"
        contract = {"language": "pl", "hours": "standard" if h % 2 else "24/7"}
        clients.append({"id": client, "name": f"Szpital nr {h}", "contract": contract})
        assets += [{"id": f"srv-{h:02d}-{a}", "client": client} for a in range(ASSETS)]
    hashed = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    return {
        "store": f"sqlite:///{tmp / 'dyzur.db'}",
        "rule_files": ["builtin:hosts"],
        "clients": clients,
        "assets": assets,
        "users": [{"name": "anna", "role": "engineer", "password": hashed, "language": "pl"}],
    }


def fill(bridge: Bridge, tickets: int, timeline: int) -> str:
    """N open tickets with their contracts' deadlines; the number of the one with a long
    timeline."""
    rnd = random.Random(19)
    store, lifecycle = bridge.store, bridge.lifecycle
    with store.transaction():
        for n in range(1, tickets + 1):
            h = rnd.randrange(HOSPITALS)
            client, asset = f"szpital-{h:02d}", f"srv-{h:02d}-{rnd.randrange(ASSETS)}"
            category = rnd.choice(CATEGORIES)
            opened = NOW - timedelta(seconds=rnd.uniform(0, 3 * 86400))
            ticket = Ticket(
                ticket_number(2026, n),
                client,
                asset,
                "disk_usage",
                f"fp-{n}",
                category,
                TicketStatus.OPEN,
                f"Zajętość dysku /data{n % 7} na {asset}: 9{n % 10},5 %",
                "Dysk jest prawie pełny.",
                opened,
                opened,
                labels={"asset": asset, "mountpoint": f"/data{n % 7}"},
                last_value=0.9 + (n % 10) / 100,
            )
            deadline = lifecycle.deadline(client, category, opened)
            if deadline is not None:
                ticket.reaction_due, ticket.sla_at_risk_at = deadline.due, deadline.at_risk
                ticket.sla_state = SlaState.RUNNING
                if rnd.random() < 0.2:  # answered
                    ticket.responded_at = opened + timedelta(minutes=20)
                    ticket.responded_by = "jan.kowalski"
                    ticket.sla_state = SlaState.MET
            store.insert_ticket(ticket, TimelineEntry(opened, "opened", "Zgłoszenie otwarte."))
    long = ticket_number(2026, 1)
    ticket = store.get_ticket(long)
    assert ticket is not None
    with store.transaction():
        for i in range(timeline - 1):
            at = ticket.opened_at + timedelta(seconds=30 * (i + 1))
            kind = "refired" if i % 3 else "note"
            text = f"Alert ponownie aktywny, wystąpienie nr {i + 2} (wartość 0,9{i % 10})."
            store.update_ticket(ticket, TimelineEntry(at, kind, text, "dyzur"))
    return long


def measure(client: TestClient, path: str, repeat: int) -> tuple[float, float, int]:
    client.get(path)  # warm: templates compiled, calendars cached
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        r = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert r.status_code == 200, (path, r.status_code)
    times.sort()
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    return statistics.median(times), p95, len(r.content)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--timeline", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        loaded = parse_config(config(Path(tmp)), "bench.yaml", Path(tmp))
        bridge = Bridge.open(loaded, FixedClock(NOW))
        bridge.start(ticker=False)
        began = time.perf_counter()
        long = fill(bridge, args.tickets, args.timeline)
        print(
            f"{args.tickets:,} open tickets of {HOSPITALS} hospitals and a {args.timeline:,}-line "
            f"timeline stored in {time.perf_counter() - began:.1f} s"
        )
        with TestClient(create_app(bridge, run_ticker=False)) as client:
            r = client.post(
                "/login",
                data={"name": "anna", "password": PASSWORD, "next": "/ui/"},
                follow_redirects=False,
            )
            assert r.status_code == 303, r.text
            pages = [
                ("/healthz (the floor)", "/healthz"),
                ("queue", "/ui/"),
                ("queue, refresh", "/ui/queue/table"),
                ("queue, filtered", "/ui/?client=szpital-07&category=awaria"),
                ("queue, page 10", "/ui/?page=10"),
                (f"ticket ({args.timeline:,} lines)", f"/ui/tickets/{long}"),
            ]
            print(f"{'page':<26} {'median':>9} {'p95':>9} {'size':>9}")
            for name, path in pages:
                median, p95, size = measure(client, path, args.repeat)
                print(f"{name:<26} {median:7.1f}ms {p95:7.1f}ms {size / 1024:7.0f}kB")
        bridge.close()
    print("target: queue <= 100 ms")


if __name__ == "__main__":
    main()
