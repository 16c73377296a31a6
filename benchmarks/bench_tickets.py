"""Ticket lists at 100,000 tickets: GET /api/v1/tickets through a real bridge process over
HTTP, and the store's own list_tickets in this process.

A fresh SQLite store is migrated by dyzur and then filled directly with SQLite inserts: N
tickets (default 100,000) of 40 hospitals, ten assets each, over two years, opened in bursts
(several tickets at the same second, as a UPS storm opens them), about 5 % still open. Then a
real bridge process (``python -m bridge run``, as tests/processes.py starts it) serves that
store on a free port and each page is asked for R times over one keep-alive connection with an
engineer's token:

- default:  ``?limit=100`` (the first page, what a list view opens with)
- filtered: ``?client=szpital-a&status=open&limit=100``
- offset:   ``?limit=100&offset=9000``
- before:   ``?limit=100&before=<number of the 9000th ticket>`` (the same deep page by cursor)

Printed per page: median and 95th percentile in milliseconds over HTTP (from sending the
request to the last byte of the answer) and in-process (``store.list_tickets``), and the same
store queries on a copy of the file without the list indexes of this release (what 275 ms /
328 ms were measured on), with the target "default and filtered page <= 10 ms". ``GET
/healthz`` over the same connection gives the floor of the HTTP stack on this machine (a loaded
machine raises every HTTP figure).

Run: ``.venv/bin/python benchmarks/bench_tickets.py [--tickets 100000] [--repeat 100]``
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.models import TicketStatus, ticket_number  # noqa: E402
from bridge.store import TicketFilter  # noqa: E402
from bridge.store.sqlite import _TICKET_COLUMNS, SQLiteStore  # noqa: E402
from tests.conftest import auth, config_data, free_port  # noqa: E402
from tests.processes import RunningBridge  # noqa: E402

CLIENTS = ["szpital-a", "klinika-b", *(f"szpital-{n:02d}" for n in range(3, 41))]
CATEGORIES = ["awaria", "usterka", "usterka", "usterka", "administracja", "konsultacja"]
START = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
TWO_YEARS = 2 * 365 * 86400
TARGET_MS = 10.0
# The indexes this release added for ticket lists; dropped on a copy for the comparison.
LIST_INDEXES = (
    "tickets_by_opened",
    "tickets_by_client_opened",
    "tickets_by_client_category",
    "tickets_by_status",
    "tickets_by_category",
    "tickets_by_asset",
)


def fill(path: Path, count: int, seed: int = 13) -> None:
    """Migrate a store with dyzur, then insert ``count`` tickets with plain SQLite."""
    store = SQLiteStore(path)
    store.migrate()
    store.close()
    rnd = random.Random(seed)
    rows = []
    at = START
    for n in range(1, count + 1):
        if rnd.random() < 0.7:  # else: same second as the previous ticket (a burst)
            at += rnd.expovariate(count / TWO_YEARS)
        client = rnd.choice(CLIENTS)
        asset = f"{client}-srv{rnd.randrange(10)}"
        is_open = rnd.random() < 0.05
        value = round(rnd.uniform(0.9, 1.0), 3)
        rows.append(
            (
                ticket_number(2025 + int((at - START) // (365 * 86400)), n),
                client,
                asset,
                "disk_usage",
                f"bench-{n}",
                rnd.choice(CATEGORIES),
                "open" if is_open else "resolved",
                f"Zajętość dysku /var na {asset}: {value * 100:.1f} %".replace(".", ","),
                f"Dysk /var jest zapełniony w {value * 100:.1f} %.".replace(".", ","),
                f'{{"asset": "{asset}", "mountpoint": "/var"}}',
                1,
                value,
                at,
                at + 60,
                None if is_open else at + 3600,
                at + 600,
                "jan.kowalski",
                at + 7200,
                at + 5400,
                "met",
            )
        )
    with sqlite3.connect(path) as conn:
        conn.executemany(
            f"INSERT INTO tickets({_TICKET_COLUMNS}) VALUES ({', '.join('?' * 20)})", rows
        )


def timed(
    calls: dict[str, Callable[[], object]], repeat: int
) -> dict[str, tuple[float, float, object]]:
    """name -> (median ms, 95th percentile ms, last result) of ``repeat`` calls each, after
    two warm-ups; the calls take turns, so a busy moment of the machine hits them all alike."""
    results: dict[str, object] = {}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(repeat + 2):
        for name, call in calls.items():
            t0 = time.perf_counter()
            results[name] = call()
            if round_ >= 2:
                times[name].append((time.perf_counter() - t0) * 1000)
    summary = {}
    for name, spent in times.items():
        spent.sort()
        p95 = spent[int(0.95 * (len(spent) - 1))]
        summary[name] = (statistics.median(spent), p95, results[name])
    return summary


def store_pages(store: SQLiteStore, cursor: str) -> dict[str, TicketFilter]:
    return {
        "default": TicketFilter(),
        "filtered": TicketFilter(client="szpital-a", status=TicketStatus.OPEN),
        "offset": TicketFilter(offset=9000),
        "before": TicketFilter(before=cursor),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=100)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dyzur-bench-tickets-") as tmp:
        work = Path(tmp)
        (work / "var").mkdir()
        db = work / "var" / "dyzur.db"
        t0 = time.perf_counter()
        fill(db, args.tickets)
        print(f"filled {args.tickets:,} tickets in {time.perf_counter() - t0:.1f} s ({db})")

        store = SQLiteStore(db)
        # The 9000th ticket of the default order: the cursor of the page offset=9000 shows.
        [cursor] = store.list_tickets(TicketFilter(limit=1, offset=8999))
        pages = store_pages(store, cursor.number)
        assert store.list_tickets(pages["offset"]) == store.list_tickets(pages["before"])
        in_process = timed(
            {name: lambda q=q: store.list_tickets(q) for name, q in pages.items()}, args.repeat
        )
        store.close()

        bare = work / "without-indexes.db"
        shutil.copy(db, bare)
        with sqlite3.connect(bare) as conn:
            for name in LIST_INDEXES:
                conn.execute(f"DROP INDEX {name}")
        old_store = SQLiteStore(bare)
        before_release = timed(
            {name: lambda q=q: old_store.list_tickets(q) for name, q in pages.items()},
            max(5, args.repeat // 5),
        )
        old_store.close()

        config = work / "dyzur.yaml"
        config.write_text(yaml.safe_dump(config_data("sqlite:///var/dyzur.db")))
        bridge = RunningBridge(config, free_port())
        try:
            urls = {
                "default": "/api/v1/tickets?limit=100",
                "filtered": "/api/v1/tickets?client=szpital-a&status=open&limit=100",
                "offset": "/api/v1/tickets?limit=100&offset=9000",
                "before": f"/api/v1/tickets?limit=100&before={cursor.number}",
            }
            with httpx.Client(base_url=bridge.url, headers=auth("engineer"), timeout=30) as http:

                def get(url: str) -> httpx.Response:
                    return http.get(url).raise_for_status()

                calls = {name: lambda u=url: get(u) for name, url in urls.items()}
                # The floor: a request that reads nothing (the HTTP stack and the machine).
                calls["/healthz"] = lambda: http.get("/healthz").raise_for_status()
                over_http = timed(calls, args.repeat)
                floor = over_http["/healthz"]
                page = {name: over_http[name][2].json() for name in urls}  # type: ignore[union-attr]
                numbers = {name: [t["number"] for t in page[name]] for name in urls}
                assert numbers["offset"] == numbers["before"]
                assert len(page["default"]) == len(page["filtered"]) == 100
        finally:
            bridge.stop()

    print(f"\nGET /api/v1/tickets at {args.tickets:,} tickets, {args.repeat} requests each (ms)")
    print(
        f"{'page':<10}{'HTTP median':>13}{'HTTP p95':>10}{'store median':>14}{'store p95':>11}"
        f"{'no index':>10}"
    )
    for name in urls:
        h_med, h_p95, _ = over_http[name]
        s_med, s_p95, _ = in_process[name]
        old = before_release[name][0]
        print(f"{name:<10}{h_med:>13.2f}{h_p95:>10.2f}{s_med:>14.2f}{s_p95:>11.2f}{old:>10.1f}")
    print(f"{'/healthz':<10}{floor[0]:>13.2f}{floor[1]:>10.2f}   (the HTTP floor: no store read)")
    ok = all(over_http[name][0] <= TARGET_MS for name in ("default", "filtered"))
    verdict = "met" if ok else "NOT met"
    print(f"\ntarget: default and filtered page <= {TARGET_MS:g} ms over HTTP (median): {verdict}")
    print("('no index': the store's median on a copy without this release's list indexes)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
